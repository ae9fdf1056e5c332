"""Tests of causalppl.causal.mle: exact maximum likelihood and its standard errors.

Every estimate is checked against what defines it (least squares, a zero
score, empirical frequencies), computed here independently in the data's
raw units, and against the truth within 4 standard errors.
"""

import math
import time

import pytest
import torch

import causalppl as cp
from causalppl import datasets
from causalppl.causal.learnable import CategoricalTable, LinearGaussian, Logistic, MultinomialLogistic
from causalppl.causal.mle import SeparationWarning, fit_mle, fit_node, why_not_exact
from causalppl.causal.report import summary_rows

pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def coefficients(scm, node):
    return scm.mechanism(node).fn.coefficients(scm.params)


def mixed_linear_data(n=4000, seed=0):
    """y = 5 + 0.3 x + (g == 1) * 2 - (g == 2) * 1 + 1.5 e, with x on a raw scale (mean 40, sd 10)."""
    g = torch.Generator().manual_seed(seed)
    x = 40 + 10 * torch.randn(n, generator=g, dtype=torch.float64)
    group = torch.randint(0, 3, (n,), generator=g)
    y = 5 + 0.3 * x + 2.0 * (group == 1) - 1.0 * (group == 2) + 1.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return {"x": x, "g": group, "y": y}


def test_linear_gaussian_is_least_squares_in_the_data_units():
    data = mixed_linear_data()
    scm = cp.SCM.from_graph([("x", "y"), ("g", "y")], data)
    mechanism = scm.mechanism("y").fn
    assert mechanism.standardization["x"][0] == pytest.approx(40, abs=1)  # fitted in standardised units
    estimates = fit_mle(scm, data)
    # Least squares on the raw one-hot design, independently.
    n = len(data["y"])
    design = torch.stack([torch.ones(n, dtype=torch.float64), data["x"],
                          (data["g"] == 1).double(), (data["g"] == 2).double()], dim=1)
    coef = torch.linalg.lstsq(design, data["y"][:, None]).solution[:, 0]
    rss = float(((data["y"] - design @ coef) ** 2).sum())
    fitted = coefficients(scm, "y")
    assert fitted["bias"] == pytest.approx(float(coef[0]), abs=1e-4)
    assert fitted["weights"] == pytest.approx({"x": float(coef[1]), "g=1": float(coef[2]), "g=2": float(coef[3])},
                                              abs=1e-4)
    assert fitted["scale"] == pytest.approx(math.sqrt(rss / n), rel=1e-5)  # the ML scale, not RSS/(n-p)
    # Standard errors: s^2 (X'X)^-1 in raw units equals the standardised covariance carried back.
    raw_se = (rss / (n - 4) * torch.linalg.inv(design.T @ design)).diagonal().sqrt()
    rows = {(r.parameter, r.parent): r for r in summary_rows(_Result(scm, estimates))}
    assert rows[("bias", "")].sd == pytest.approx(float(raw_se[0]), rel=1e-4)
    assert rows[("weight", "x")].sd == pytest.approx(float(raw_se[1]), rel=1e-4)
    assert rows[("weight", "g=2")].sd == pytest.approx(float(raw_se[3]), rel=1e-4)
    # And the truth is within 4 standard errors.
    for (key, truth), se in zip((("bias", 5.0), ("x", 0.3), ("g=1", 2.0), ("g=2", -1.0)), raw_se, strict=True):
        value = fitted["bias"] if key == "bias" else fitted["weights"][key]
        assert abs(value - truth) < 4 * float(se), key
    assert estimates["y"].nll == pytest.approx(n / 2 * (1 + math.log(2 * math.pi * rss / n)), rel=1e-6)


class _Result:
    """The parts of a FitResult that report.summary_rows reads."""

    def __init__(self, scm, estimates):
        self.scm, self.estimates = scm, estimates


def logistic_data(n=5000, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = 50 + 10 * torch.randn(n, generator=g, dtype=torch.float64)
    t = torch.bernoulli(torch.sigmoid(-4.0 + 0.08 * x), generator=g)
    return {"x": x, "t": t}


def test_logistic_zeroes_the_score_and_its_sd_is_the_inverse_fisher_information():
    data = logistic_data()
    scm = cp.SCM.from_graph([("x", "t")], data)
    assert isinstance(scm.mechanism("t").fn, Logistic)
    estimates = fit_mle(scm, data)
    fitted = coefficients(scm, "t")
    beta = torch.tensor([fitted["bias"], fitted["weights"]["x"]], dtype=torch.float64)
    design = torch.stack([torch.ones_like(data["x"]), data["x"]], dim=1)
    p = torch.sigmoid(design @ beta)
    score = design.T @ (data["t"] - p)
    # At the MLE the score is zero: relative to its scale sqrt(diag(Fisher)).
    fisher = design.T @ (design * (p * (1 - p))[:, None])
    assert (score.abs() / fisher.diagonal().sqrt()).max() < 1e-3
    se = torch.linalg.inv(fisher).diagonal().sqrt()
    rows = {(r.parameter, r.parent): r for r in summary_rows(_Result(scm, estimates))}
    assert rows[("weight", "x")].sd == pytest.approx(float(se[1]), rel=1e-3)
    assert rows[("bias", "")].sd == pytest.approx(float(se[0]), rel=1e-3)
    assert abs(fitted["weights"]["x"] - 0.08) < 4 * float(se[1])
    assert abs(fitted["bias"] + 4.0) < 4 * float(se[0])


def test_separated_classes_get_a_small_ridge_and_a_warning_naming_the_node():
    x = torch.linspace(-1, 1, 200, dtype=torch.float64)
    data = {"x": x, "t": (x > 0).double()}
    mechanism = Logistic("t", ["x"])
    with pytest.warns(SeparationWarning, match="node 't': its features separate its classes"):
        estimate = fit_node(mechanism, data)
    assert torch.isfinite(estimate.params["weight"]).all() and float(estimate.params["weight"][0]) > 5
    assert "ridge" in estimate.notes[0]


def test_multinomial_logistic_zeroes_the_score():
    n = 6000
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    logits = torch.stack([torch.zeros(n, dtype=torch.float64), 0.5 + 1.0 * x, -0.5 - 2.0 * x], dim=1)
    c = torch.multinomial(torch.softmax(logits, 1), 1, generator=g)[:, 0]
    mechanism = MultinomialLogistic("c", ["x"], num_categories=3)
    estimate = fit_node(mechanism, {"x": x, "c": c})
    bias, weight = estimate.params["bias"].double(), estimate.params["weight"].double()
    fitted = torch.cat([torch.zeros(n, 1, dtype=torch.float64), bias + x[:, None] * weight[:, 0]], dim=1)
    residual = torch.nn.functional.one_hot(c, 3).double() - torch.softmax(fitted, 1)
    design = torch.stack([torch.ones(n, dtype=torch.float64), x], dim=1)
    assert (design.T @ residual[:, 1:]).abs().max() < 1e-2  # the score, on a scale of sqrt(n) ~ 77
    se_bias, se_weight = estimate.standard_errors["bias"], estimate.standard_errors["weight"][:, 0]
    assert (se_bias > 0).all() and (se_weight < 0.1).all()
    for k, (b, w) in enumerate(((0.5, 1.0), (-0.5, -2.0))):
        assert abs(float(bias[k]) - b) < 4 * float(se_bias[k])
        assert abs(float(weight[k, 0]) - w) < 4 * float(se_weight[k])


def table_data(n=3000, seed=3):
    g = torch.Generator().manual_seed(seed)
    a = torch.multinomial(torch.tensor([0.6, 0.4, 0.0]), n, replacement=True, generator=g)  # a=2 never occurs
    table = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.3, 0.4]])
    c = torch.multinomial(table[a], 1, generator=g)[:, 0]
    return {"a": a, "c": c}, table


def test_categorical_table_counts_and_its_pseudo_count():
    data, truth = table_data()
    mechanism = CategoricalTable("c", ["a"], num_categories=3, parent_cardinalities=[3])
    estimate = fit_node(mechanism, data)
    probs, se = estimate.params["probs"], estimate.standard_errors["probs"]
    for row in (0, 1):
        counts = torch.bincount(data["c"][data["a"] == row], minlength=3).float()
        assert torch.allclose(probs[row], counts / counts.sum(), atol=1e-6)
        expected_se = (probs[row] * (1 - probs[row]) / counts.sum()).sqrt()
        assert torch.allclose(se[row], expected_se, atol=1e-6)
        assert ((probs[row] - truth[row]).abs() < 4 * expected_se).all()
    # The empty configuration a=2: the uniform row, NaN standard errors, and a note that says so.
    assert torch.allclose(probs[2], torch.full((3,), 1 / 3))
    assert torch.isnan(se[2]).all()
    assert estimate.notes == ["node 'c': 1 of 3 parent configurations have no rows; their table rows are uniform"]
    smoothed = fit_node(mechanism, data, alpha=1.0).params["probs"]
    counts = torch.bincount(data["c"][data["a"] == 1], minlength=3).float()
    assert torch.allclose(smoothed[1], (counts + 1) / (counts.sum() + 3), atol=1e-6)


def test_what_cannot_be_fitted_exactly_says_why():
    known = {"x", "y"}
    assert why_not_exact(LinearGaussian("y", ["x"], bayesian=True), "y", known).startswith("its mechanism is Bayesian")
    assert why_not_exact(LinearGaussian("u", []), "u", known) == "it is latent (no data column)"
    assert why_not_exact(cp.causal.learnable.MLPGaussian("y", ["x"]), "y", known) == (
        "MLPGaussian has no closed-form maximum likelihood")
    scm = cp.SCM.from_graph([("u", "y")])
    with pytest.raises(ValueError, match="node 'y': cannot fit it by maximum likelihood: its parent 'u'"):
        fit_mle(scm, {"y": torch.zeros(3)}, nodes=["y"])
    table = CategoricalTable("c", ["a"], num_categories=2, parent_cardinalities=[2])
    with pytest.raises(ValueError, match=r"node 'c': parent 'a' must take integer values in 0..1, got .*0..2"):
        fit_node(table, {"a": torch.tensor([0.0, 2.0]), "c": torch.tensor([0.0, 1.0])})


def test_a_37_node_discrete_network_learns_exactly_and_fast():
    net = datasets.random_discrete_network(37, seed=0)
    frame = net.sample(5000, seed=1)
    scm = cp.SCM.from_graph(net.graph, frame, mechanisms="categorical")
    start = time.perf_counter()
    result = scm.fit(frame, method="mle")
    elapsed = time.perf_counter() - start
    assert result.method == "mle" and len(result.losses) == 1
    assert elapsed < 3.0  # about 0.05 s on one idle CPU thread; generous for a loaded machine
    codes = {name: torch.tensor(frame[name].to_numpy()) if hasattr(frame, "columns") else frame[name]
             for name in net.graph}
    node = max(net.graph, key=lambda n: net.graph.in_degree(n))
    parents = list(net.graph.predecessors(node))
    learned = scm.params[f"{node}.probs"].detach().reshape(-1, net.cardinality[node])
    truth = net.cpts[node].reshape(-1, net.cardinality[node])
    row = torch.zeros(5000, dtype=torch.long)
    for parent in parents:
        row = row * net.cardinality[parent] + codes[parent]
    for config in range(learned.shape[0]):
        rows = codes[node][row == config]
        if len(rows) >= 30:
            empirical = torch.bincount(rows, minlength=net.cardinality[node]).float() / len(rows)
            assert torch.allclose(learned[config], empirical, atol=1e-6)
            se = (truth[config] * (1 - truth[config]) / len(rows)).sqrt()
            assert ((learned[config] - truth[config]).abs() < 5 * se + 1e-3).all(), config
