import pytest

import causalppl as cp
from causalppl.causal.estimate import adjusted_slope, iv_slope


def test_backdoor_adjustment_recovers_the_effect_and_the_naive_slope_does_not():
    cp.set_rng_seed(0)
    data = cp.graphs.load("confounded").sample(20_000)
    adjusted = adjusted_slope(data, "x", "y", adjustment=["z"])
    naive = adjusted_slope(data, "x", "y")
    # y = 2x + 3z + e: adjusting for z gives 2; y on x alone gives 2 + 3 Cov(x,z)/Var(x) = 3.5.
    assert abs(adjusted.value - 2.0) < 4 * adjusted.stderr
    assert abs(naive.value - 3.5) < 4 * naive.stderr
    assert adjusted.stderr < 0.02


def test_two_stage_least_squares_recovers_the_effect_despite_a_latent_confounder():
    cp.set_rng_seed(1)
    scm = cp.graphs.load("instrument")
    data = scm.sample(20_000)
    truth = cp.causal.ate(scm, "x", "y", n=20_000)
    estimate = iv_slope(data, "z", "x", "y")
    ols = adjusted_slope(data, "x", "y")
    assert abs(estimate.value - truth.ate) < 4 * (estimate.stderr + truth.stderr)
    assert abs(ols.value - truth.ate) > 10 * ols.stderr  # OLS is biased by the latent u


def test_unknown_columns_are_named():
    with pytest.raises(KeyError, match="no samples of 'w'"):
        adjusted_slope({"x": [1.0, 2.0], "y": [1.0, 2.0]}, "x", "y", adjustment=["w"])
