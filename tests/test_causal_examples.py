"""End to end: the causal query examples (examples/causal_*.py) reach the known truths.

Tolerances are about four standard errors, from the sample size and the
variances worked out in each test.
"""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, **kwargs):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(quiet=True, **kwargs)


def test_confounded_backdoor_adjustment():
    results = run_example("causal_confounded", n=20_000)
    assert results["backdoor_sets"] == [frozenset({"z"})]
    assert abs(results["adjusted"] - 2.0) < 4 * results["adjusted_stderr"]
    assert abs(results["simulated"] - 2.0) < 4 * results["simulated_stderr"]
    assert abs(results["naive"] - 3.5) < 4 * results["naive_stderr"]  # 2 + 3 cov(z, x) / var(x)


def test_smoking_frontdoor():
    n = 40_000
    results = run_example("causal_smoking", n=n)
    assert results["backdoor_sets"] == [] and results["frontdoor_sets"] == [frozenset({"tar"})]
    assert results["truth"] == pytest.approx(0.27)  # 0.3 * (0.95 - 0.05)
    # The frontdoor estimate is 0.9 (I1 - I0), I_t = sum_s P(c | s, t) P(s); the rare cells
    # (s=0, t=1) and (s=1, t=0) hold 2.75% and 2.25% of the rows: sd <= 2.1 / sqrt(n).
    assert abs(results["frontdoor"] - 0.27) < 4 * 2.1 / math.sqrt(n)
    assert abs(results["simulated"] - 0.27) < 4 * results["simulated_stderr"]
    # Naive: P(u=1 | s=1) = 0.24 / 0.45 and P(u=1 | s=0) = 0.06 / 0.55 add 0.4 * their gap.
    naive = 0.27 + 0.4 * (0.24 / 0.45 - 0.06 / 0.55)
    assert abs(results["naive"] - naive) < 4 * math.sqrt(0.25 / (0.45 * n) + 0.25 / (0.55 * n))
    assert results["naive"] - results["frontdoor"] > 0.1


def test_kidney_stones_simpsons_paradox():
    n = 40_000
    results = run_example("causal_kidney_stones", n=n)
    assert results["backdoor_sets"] == [frozenset({"large"})]
    # A is better within each size, worse overall (273/350 against 289/350).
    assert results["small_A"] > results["small_B"] and results["large_A"] > results["large_B"]
    assert results["overall_A"] < results["overall_B"]
    for arm, exact in (("overall_A", 273 / 350), ("overall_B", 289 / 350)):
        assert abs(results[arm] - exact) < 4 * math.sqrt(exact * (1 - exact) / (n / 2))
    exact = 343 / 700 * (192 / 263 - 55 / 80) + 357 / 700 * (81 / 87 - 234 / 270)
    assert results["exact"] == pytest.approx(exact)
    # sd of the adjusted contrast: sum over sizes of P(size)^2 p(1-p)/N per cell, about 0.89 / sqrt(n).
    assert abs(results["adjusted_effect"] - exact) < 4 * 0.89 / math.sqrt(n)
    assert abs(results["simulated"] - exact) < 4 * results["simulated_stderr"]
    assert results["naive_effect"] < 0 < results["adjusted_effect"]


def test_sprinkler_do_conditioning_and_counterfactual():
    n = 20_000
    results = run_example("causal_sprinkler", n=n)
    exact = results["exact"]
    assert exact["do"] == pytest.approx(0.945) and exact["conditional"] == pytest.approx(0.927)
    assert exact["counterfactual"] == pytest.approx(0.27 / 0.927)  # P(rain | s=1) * 0.9 / P(wet | s=1)
    assert abs(results["do"] - 0.945) < 4 * results["do_stderr"]
    assert results["do_eliminated"] == pytest.approx(0.945, abs=1e-6)
    assert abs(results["conditional"] - 0.927) < 4 * results["conditional_stderr"]
    p = exact["counterfactual"]
    assert abs(results["counterfactual"] - p) < 4 * math.sqrt(p * (1 - p) * 2 / n)  # resampled: n / 2


def test_instrument_beats_ols():
    n = 20_000
    results = run_example("causal_instrument", n=n)
    assert results["instruments"] == ["z"] and results["backdoor_sets"] == []
    assert results["tsls"] == pytest.approx(results["wald"], abs=1e-6)  # one instrument: the same
    assert abs(results["wald"] - 2.0) < 4 * results["tsls_stderr"]
    assert results["tsls_stderr"] == pytest.approx(math.sqrt(10 / n), rel=0.1)  # var(3u + e) / var(z)
    # OLS: cov(x, y) / var(x) = (2 * 3 + 3) / 3; its residual variance is 7.
    assert abs(results["ols"] - 3.0) < 4 * math.sqrt(7 / (3 * n))
    assert abs(results["simulated"] - 2.0) < 4 * results["simulated_stderr"]


def test_m_bias_collider():
    n = 20_000
    results = run_example("causal_m_bias", n=n)
    assert results["backdoor_sets"] == [frozenset()]
    assert results["valid"] == {"{}": True, "{m}": False, "{m, a}": True}
    tol = 4 * 1.25 / math.sqrt(n)  # residual variance <= 1.6 and var(x | rest) >= 0.6 in all three
    assert abs(results["empty"] - 1.5) < tol
    assert abs(results["m"] - 1.3) < tol  # solve [[2, 1], [1, 3]] beta = [3, 2.5]
    assert abs(results["m_a"] - 1.5) < tol
    assert abs(results["simulated"] - 1.5) < 4 * results["simulated_stderr"]


def test_mediator_total_and_direct():
    n = 20_000
    results = run_example("causal_mediator", n=n)
    assert results["backdoor_sets"] == [frozenset({"c"})] and results["m_valid"] is False
    tol = 4 * 1.25 / math.sqrt(n)
    assert abs(results["total_adjusted"] - 0.65) < tol
    assert abs(results["direct_adjusted"] - 0.3) < tol
    assert abs(results["naive"] - 1.15) < tol  # (0.65 * 2 + 1) / 2
    assert abs(results["total"] - 0.65) < 4 * results["total_stderr"] + 1e-6
    assert abs(results["direct"] - 0.3) < 4 * results["direct_stderr"] + 1e-6


def test_counterfactual_example():
    n = 2000
    results = run_example("causal_counterfactual", n=n, steps=1000)
    assert torch.equal(results["full_y"], torch.full((n,), 5.0))
    assert torch.allclose(results["partial_do_x_y"], torch.full((n,), 5.0), atol=1e-4)
    z, y = 17 / 11, 14 / 11
    assert results["exact_z"] == pytest.approx(z) and results["exact_y"] == pytest.approx(y)
    # z | x, y has sd 1 / sqrt(11); y_cf = 9 - 5 z draw by draw. Resampled draws: n / 2.
    assert abs(results["importance_z"] - z) < 4 * math.sqrt(2 / (11 * n))
    assert abs(results["importance_y"] - y) < 4 * 5 * math.sqrt(2 / (11 * n))
    assert abs(results["svi_z"] - z) < 0.1
    assert results["svi_y"] == pytest.approx(9 - 5 * results["svi_z"], abs=1e-3)
