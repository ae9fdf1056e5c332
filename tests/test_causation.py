"""PN, PS and PNS by exact enumeration of a small discrete SCM; Tian-Pearl bounds contain them."""

import itertools
import math

import pytest
import torch

import causalppl as cp

P_U = {"u1": 0.3, "u2": 0.6, "u3": 0.4}


def x_of(u1, u3):
    return max(u1, u3)


def y_of(x, u2, u3):
    return x * u2 + (1 - x) * u3 * (1 - u2)


def discrete_scm():
    """Exogenous u1, u2, u3; x = max(u1, u3) and y = x u2 + (1 - x) u3 (1 - u2): u3 confounds x and y."""
    scm = cp.SCM()
    for name, p in P_U.items():
        scm.add(name, f"Bernoulli({p})")
    return scm.add("x", "Delta(maximum(u1, u3))").add("y", "Delta(x*u2 + (1 - x)*u3*(1 - u2))")


def enumerate_exactly():
    """PN, PS, PNS and the observational / experimental probabilities, summed over the 8 noise states."""
    total = dict.fromkeys(["xy", "xy'", "x'y", "x'y'", "pn", "ps", "pns", "y_x", "y_x'"], 0.0)
    for u1, u2, u3 in itertools.product((0, 1), repeat=3):
        weight = math.prod(P_U[k] if v else 1 - P_U[k] for k, v in zip(P_U, (u1, u2, u3)))
        x = x_of(u1, u3)
        y, y1, y0 = y_of(x, u2, u3), y_of(1, u2, u3), y_of(0, u2, u3)
        total[("x" if x else "x'") + ("y" if y else "y'")] += weight
        total["pn"] += weight * (x == 1 and y == 1 and y0 == 0)
        total["ps"] += weight * (x == 0 and y == 0 and y1 == 1)
        total["pns"] += weight * (y1 == 1 and y0 == 0)
        total["y_x"] += weight * y1
        total["y_x'"] += weight * y0
    total["pn"] /= total["xy"]
    total["ps"] /= total["x'y'"]
    return total


def test_probabilities_of_causation_match_exact_enumeration(one_thread_seeded):
    exact = enumerate_exactly()
    n = 40000
    result = cp.causal.probabilities_of_causation(discrete_scm(), "x", "y", n=n)
    for name in ("pn", "ps", "pns"):
        value, stderr = getattr(result, name), result.stderr[name]
        assert abs(value - exact[name]) < 5 * max(stderr, 1 / n), name
    assert "PNS" in str(result)


def test_tian_pearl_bounds_contain_the_scms_values():
    exact = enumerate_exactly()
    x, y = [], []
    for cell, (xv, yv) in {"xy": (1, 1), "xy'": (1, 0), "x'y": (0, 1), "x'y'": (0, 0)}.items():
        count = round(exact[cell] * 10000)
        x += [xv] * count
        y += [yv] * count
    data = {"x": torch.tensor(x), "y": torch.tensor(y)}
    bounds = cp.causal.causation_bounds(data, "x", "y", experimental=(exact["y_x"], exact["y_x'"]))
    for name in ("pn", "ps", "pns"):
        assert bounds.contains(name, exact[name], tolerance=1e-3), (name, getattr(bounds, name), exact[name])
        low, high = getattr(bounds, name)
        assert 0 <= low <= high <= 1
    loose = cp.causal.causation_bounds(data, "x", "y")
    assert loose.pn == (0.0, 1.0) and loose.contains("pns", exact["pns"], tolerance=1e-3)
    assert "experimental" in str(bounds)


def test_bounds_from_sampled_observational_and_experimental_data(one_thread_seeded):
    scm, exact = discrete_scm(), enumerate_exactly()
    n = 20000
    observational = scm.sample(n)
    trial = scm.do(x=cp.dist.Bernoulli(0.5).sample((n,))).sample(n)
    bounds = cp.causal.causation_bounds(observational, "x", "y", experimental=trial)
    tolerance = 5 / math.sqrt(n) / exact["xy"]
    for name in ("pn", "ps", "pns"):
        assert bounds.contains(name, exact[name], tolerance=tolerance), name


def test_monotone_gumbel_max_outcome_pins_pns_to_the_risk_difference(one_thread_seeded):
    # With a Bernoulli outcome the counterfactuals use Gumbel-max noise, which is monotone here,
    # so PNS = P(y | do(x)) - P(y | do(x')) and the exogenous bounds collapse to it.
    scm = cp.SCM().add("x", "Bernoulli(0.5)").add("y", "Bernoulli(0.2 + 0.5*x)")
    result = cp.causal.probabilities_of_causation(scm, "x", "y", n=40000)
    assert abs(result.pns - 0.5) < 5 * result.stderr["pns"]
    assert abs(result.pn - 0.5 / 0.7) < 5 * result.stderr["pn"]
    bounds = cp.causal.causation_bounds(scm.sample(40000), "x", "y", exogenous=True)
    assert bounds.contains("pns", result.pns, tolerance=0.03)


def test_labels_and_errors():
    scm = cp.SCM().add("t", "Bernoulli(0.5)", labels=("no", "yes"))
    scm = scm.add("y", "Bernoulli(0.1 + 0.8*t)", labels=("well", "ill"))
    result = cp.causal.probabilities_of_causation(scm, "t", "y", treated="yes", control="no",
                                                  outcome_level="ill", n=2000)
    assert abs(result.pns - 0.8) < 5 * result.stderr["pns"]
    with pytest.raises(KeyError, match="no column 'z'"):
        cp.causal.causation_bounds({"x": [0, 1]}, "x", "z")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_probabilities_of_causation_on_cuda(one_thread_seeded):
    with torch.device("cuda"):
        result = cp.causal.probabilities_of_causation(discrete_scm(), "x", "y", n=20000)
        bounds = cp.causal.causation_bounds(discrete_scm().sample(20000), "x", "y")
    assert abs(result.pns - enumerate_exactly()["pns"]) < 0.03 and bounds.pn == (0.0, 1.0)


def test_experimental_probabilities_as_a_dict():
    data = {"x": [1, 1, 1, 0, 0, 0, 1, 0], "y": [1, 1, 0, 0, 0, 1, 1, 0]}
    pair = cp.causal.causation_bounds(data, "x", "y", experimental=(0.7, 0.3))
    mapping = cp.causal.causation_bounds(data, "x", "y", experimental={1: 0.7, 0: 0.3})
    assert pair.pns == mapping.pns and pair["pn"] == mapping.pn
