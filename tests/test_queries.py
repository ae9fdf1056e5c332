"""Tests of causalppl.causal.queries: interventional means, ATE, association, summaries."""

import itertools
import math

import pytest
import torch

import causalppl as cp
from causalppl.causal import EffectResult, QueryResult, Summary, association, ate, interventional


@pytest.fixture
def confounded():
    return cp.graphs.load("confounded")


# -- the confounded SCM: z -> x, z -> y, x -> y; y = 2x + 3z + noise -----------------------


def test_ate_recovers_the_causal_effect(confounded):
    cp.set_rng_seed(0)
    n = 50_000
    effect = ate(confounded, "x", "y", n=n)
    # Both arms share their noise, so every row's effect is exactly 2: no Monte Carlo error.
    assert effect.stderr < 1e-6
    assert effect.ate == pytest.approx(2.0, abs=1e-5)
    assert "Monte Carlo error only" in effect.covers
    assert effect.ate == pytest.approx(effect.treated_mean - effect.control_mean)
    assert abs(effect.treated_mean - 2.0) < 4 * math.sqrt(10 / n)
    assert abs(effect.control_mean) < 4 * math.sqrt(10 / n)


def test_naive_association_is_not_the_effect(confounded):
    cp.set_rng_seed(1)
    naive = association(confounded, "x", "y", n=20_000)
    # E[y | x] = 2x + 3 E[z | x] = 2x + 1.5x: the backdoor path adds 1.5.
    assert abs(naive.ate - 3.5) < max(4 * naive.stderr, 0.1)
    effect = ate(confounded, "x", "y", n=20_000)
    assert abs(naive.ate - effect.ate) > 1.0


def test_interventional_with_evidence_upstream(confounded):
    cp.set_rng_seed(2)
    n = 5000
    result = interventional(confounded, do={"x": 1.0}, evidence={"z": 1.0}, n=n)
    assert torch.all(result["z"] == 1.0) and torch.all(result["x"] == 1.0)
    # y | do(x=1), z=1 ~ N(2 + 3, 1)
    summary = result.summary("y")
    assert abs(summary.mean - 5.0) < 4 / math.sqrt(n)
    assert summary.std == pytest.approx(1.0, abs=0.05)
    conditional = ate(confounded, "x", "y", evidence={"z": 1.0}, n=n)
    assert abs(conditional.ate - 2.0) < 4 * math.sqrt(2 / n)


def test_interventional_with_evidence_downstream(confounded):
    cp.set_rng_seed(3)
    n = 5000
    # In the world where x := 1, seeing y = 5 says y - 2 = 3z + noise = 3: z | . ~ N(0.9, sqrt(0.1)).
    result = interventional(confounded, do={"x": 1.0}, evidence={"y": 5.0}, n=n)
    z = result.summary("z")
    assert result.ess is not None and 0 < result.ess <= n
    assert abs(z.mean - 0.9) < 4 * math.sqrt(0.1 / result.ess) + 0.01
    assert z.std == pytest.approx(math.sqrt(0.1), rel=0.1)


def test_do_agrees_between_graph_surgery_and_query(confounded):
    cp.set_rng_seed(4)
    n = 20_000
    result = interventional(confounded, do={"x": 1.0}, n=n)
    assert abs(result.mean("y") - 2.0) < 4 * math.sqrt(10 / n)
    assert abs(result.mean("z")) < 4 / math.sqrt(n)  # do(x) leaves the confounder alone


# -- the sprinkler against exact enumeration ------------------------------------------------

P_CLOUDY = 0.5
P_SPRINKLER = {1: 0.1, 0: 0.5}
P_RAIN = {1: 0.8, 0: 0.2}
P_WET = {(0, 0): 0.0, (1, 0): 0.9, (0, 1): 0.9, (1, 1): 0.99}


def bern(p, value):
    return p if value else 1 - p


def test_sprinkler_do_matches_enumeration():
    # P(wet=1 | do(sprinkler=1)) = sum_{c, r} P(c) P(r | c) P(wet=1 | s=1, r): the sprinkler
    # factor P(s | c) drops out of the truncated factorisation.
    exact = sum(bern(P_CLOUDY, c) * bern(P_RAIN[c], r) * P_WET[1, r]
                for c, r in itertools.product((0, 1), repeat=2))
    assert exact == pytest.approx(0.945)
    cp.set_rng_seed(5)
    n = 20_000
    result = interventional(cp.graphs.load("sprinkler"), do={"sprinkler": 1.0}, n=n)
    assert abs(result.mean("wet") - exact) < 4 * math.sqrt(exact * (1 - exact) / n)
    assert torch.all(result["sprinkler"] == 1.0)


def test_sprinkler_conditioning_matches_enumeration():
    def joint(c, s, r, w):
        return bern(P_CLOUDY, c) * bern(P_SPRINKLER[c], s) * bern(P_RAIN[c], r) * bern(P_WET[s, r], w)

    on = sum(joint(c, 1, r, w) for c, r, w in itertools.product((0, 1), repeat=3))
    exact = sum(joint(c, 1, r, 1) for c, r in itertools.product((0, 1), repeat=2)) / on
    assert exact == pytest.approx(0.927)
    cp.set_rng_seed(6)
    n = 20_000
    result = interventional(cp.graphs.load("sprinkler"), evidence={"sprinkler": 1.0}, n=n)
    assert abs(result.mean("wet") - exact) < 4 * math.sqrt(exact * (1 - exact) / result.ess)


# -- results and their summaries ----------------------------------------------------------


def test_query_result_summary_and_str(confounded):
    cp.set_rng_seed(7)
    n = 1000
    result = interventional(confounded, do={"x": 1.0}, n=n)
    assert isinstance(result, QueryResult)
    assert result.do == {"x": 1.0} and result.evidence == {} and result.ess is None
    assert result["y"].shape == (n,)
    summary = result.summary("y")
    assert isinstance(summary, Summary) and summary.n == n
    assert summary.mean == pytest.approx(float(result["y"].mean()), abs=1e-5)
    assert summary.std == pytest.approx(float(result["y"].std()), rel=1e-4)
    assert summary.stderr == pytest.approx(summary.std / math.sqrt(n))
    assert result.mean("y") == summary.mean
    assert set(result.summary()) == {"z", "x", "y"}
    text = str(result)
    assert text.splitlines()[0] == "do(x=1)"
    assert any(line.strip().startswith("y: ") for line in text.splitlines())
    assert "±" in str(summary) and f"n={n}" in str(summary)

    given = interventional(confounded, do={"x": 1.0}, evidence={"z": 0.5}, n=200)
    assert str(given).splitlines()[0] == "do(x=1) given z=0.5"
    assert str(interventional(confounded, n=10)).splitlines()[0] == "observational"


def test_effect_result_str_and_interval(confounded):
    cp.set_rng_seed(8)
    effect = ate(confounded, "x", "y", treated=2.0, control=-1.0, n=2000)
    assert isinstance(effect, EffectResult)
    assert (effect.treatment, effect.outcome, effect.treated, effect.control) == ("x", "y", 2.0, -1.0)
    low, high = effect.interval()
    assert low < effect.ate < high
    assert high - low == pytest.approx(2 * 1.96 * effect.stderr)
    assert effect.treated_result.do == {"x": 2.0} and effect.control_result.do == {"x": -1.0}
    text = str(effect)
    assert text.startswith("ATE of x on y (do(x=2) vs do(x=-1)): ")
    assert "95%" in text
    assert abs(effect.ate - 6.0) < 4 * effect.stderr  # 2 * (2 - (-1))


# -- errors -----------------------------------------------------------------------------


def test_unknown_nodes_raise_key_error_naming_them(confounded):
    with pytest.raises(KeyError, match="'w'"):
        ate(confounded, "w", "y")
    with pytest.raises(KeyError, match="'nope'"):
        ate(confounded, "x", "nope")
    with pytest.raises(KeyError, match="'q'"):
        interventional(confounded, do={"q": 1.0}, n=10)
    with pytest.raises(KeyError, match="'q'"):
        interventional(confounded, evidence={"q": 1.0}, n=10)
    with pytest.raises(KeyError, match="'w'.*nodes: z, x, y"):
        interventional(confounded, n=10).summary("w")


def test_treatment_equal_to_outcome_is_an_error(confounded):
    with pytest.raises(ValueError, match="treatment and outcome are both 'x'"):
        ate(confounded, "x", "x")


def test_likelihood_weighting_weighs_each_row_by_its_own_bayesian_weights():
    # Unfitted, the weights follow their N(0, 1) prior: y = w x + b + N(0, 1) noise.
    # Given y = 3 at x = 1: y | w, b ~ N(w + b, 1), so P(y) = N(0, 3) and
    # E[w | y = 3] = Cov(w, y) / Var(y) * 3 = 1.
    cp.set_rng_seed(0)
    scm = cp.SCM.from_graph([("x", "y")], bayesian=True, mechanisms="linear")
    scm.params["y.scale"] = torch.tensor(1.0)
    result = cp.causal.interventional(scm, do={"x": 1.0}, evidence={"y": 3.0}, n=4000)
    values, log_weights = cp.causal.queries.weighted_samples(scm.do(x=1.0).condition(y=3.0), 40_000)
    assert values["y.weight"].shape == (40_000, 1)
    posterior_w = float((log_weights.exp() * values["y.weight"][:, 0]).sum())
    assert posterior_w == pytest.approx(1.0, abs=0.1)
    assert set(result.samples) == {"x", "y"}


def test_ate_with_an_input_the_treatment_reads():
    cp.set_rng_seed(0)
    effect = ate(cp.graphs.load("scale"), "weight", "measurement", n=5000, guess=8.5)
    assert abs(effect.ate - 1.0) < 4 * effect.stderr
