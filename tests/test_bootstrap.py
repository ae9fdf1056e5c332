"""Tests of causalppl.causal.bootstrap: refits on resampled data, against least squares."""

import math

import pytest
import torch

import causalppl as cp
from causalppl.causal import ate
from causalppl.causal import bootstrap as bootstrap_module
from causalppl.causal.bootstrap import fit_record, refit, resample_rows


def line_data(n=500, seed=0):
    """y = 2 x + 0.5 + N(0, 1) noise."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=generator)
    return {"x": x, "y": 2 * x + 0.5 + torch.randn(n, generator=generator)}


def least_squares(data):
    """The least-squares slope of y on x and its standard error."""
    design = torch.stack([torch.ones_like(data["x"]), data["x"]], 1).double()
    y = data["y"].double()
    beta = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
    residual = y - design @ beta
    variance = float(residual @ residual) / (len(y) - 2)
    return float(beta[1]), math.sqrt(variance * float(torch.linalg.inv(design.T @ design)[1, 1]))


@pytest.fixture
def fitted(one_thread_seeded):
    data = line_data()
    scm = cp.SCM.from_graph([("x", "y")], data)
    scm.fit(data, steps=300, lr=0.05, progress=False)
    return scm, data


def test_bootstrap_spread_matches_the_least_squares_standard_error(fitted):
    scm, data = fitted
    slope, se = least_squares(data)
    B = 40
    effect = ate(scm, "x", "y", n=200, bootstrap=B, bootstrap_steps=30)
    # Shared noise makes each refit's effect its slope exactly, so the draws are bootstrap slopes;
    # the sd of B draws is itself uncertain by about 1 / sqrt(2B) = 11%.
    assert effect.ate == pytest.approx(slope, abs=0.2 * se)
    assert len(effect.draws) == B and effect.sd == pytest.approx(float(effect.draws.std()))
    assert 0.6 * se < effect.sd < 1.4 * se
    low, high = effect.interval()
    assert low < 2.0 < high
    tails = torch.tensor([0.025, 0.975], dtype=torch.double)
    assert [low, high] == pytest.approx(torch.quantile(effect.draws, tails).tolist())
    assert effect.covers == f"bootstrap over the data (B={B} refits: parameter uncertainty) and Monte Carlo error"
    assert "sd " in str(effect)


def test_bootstrap_leaves_the_fitted_scm_as_it_was(fitted):
    scm, _ = fitted
    before = {name: value.clone() for name, value in scm.params.items()}
    record = scm._state.fit
    ate(scm, "x", "y", n=50, bootstrap=3, bootstrap_steps=5)
    assert scm._state.fit is record
    for name, value in before.items():
        assert torch.equal(scm.params[name], value), name


def test_refits_start_from_the_fitted_params(fitted):
    scm, _ = fitted
    copy, result = refit(scm, fit_record(scm), steps=0)
    assert result.losses == []
    assert copy.params is not scm.params
    for name, value in scm.params.items():
        assert torch.equal(copy.params[name], value), name


def test_refits_reuse_the_recorded_options(fitted, monkeypatch):
    scm, data = fitted
    seen = {}

    def fake_fit(copy, data, progress, **options):
        seen.update(options, rows=len(data["y"]))
        return type("Result", (), {"converged": True})()

    monkeypatch.setattr(bootstrap_module, "fit", fake_fit)
    record = {"data": data, "options": {**fit_record(scm)["options"], "method": "mle"}}
    refit(scm, record, steps=7)
    assert seen["method"] == "mle" and seen["steps"] == 7 and seen["lr"] == 0.05 and seen["rows"] == 500


def test_resampled_rows_are_drawn_with_replacement(one_thread_seeded):
    data = {"x": torch.arange(100.0), "y": -torch.arange(100.0)}
    rows, inputs = resample_rows(data, {"offset": torch.arange(100.0), "scale": 2.0})
    assert torch.equal(rows["y"], -rows["x"]) and torch.equal(inputs["offset"], rows["x"])
    assert inputs["scale"] == 2.0
    assert len(rows["x"].unique()) < 100  # some rows twice (all distinct: chance 100!/100^100)


def test_bootstrap_needs_a_fitted_scm():
    with pytest.raises(ValueError, match="bootstrap needs an SCM fitted to data: call scm.fit"):
        ate(cp.graphs.load("confounded"), "x", "y", n=10, bootstrap=5)
    conditioned = cp.SCM.from_graph([("x", "y")]).condition(x=1.0, y=2.0)
    conditioned.fit(steps=3, progress=False, tol=1.0)
    with pytest.raises(ValueError, match="that fit had no data"):
        ate(conditioned, "x", "y", n=10, bootstrap=5)


def test_bootstrap_needs_at_least_two_refits(fitted):
    scm, _ = fitted
    with pytest.raises(ValueError, match="at least 2, got 1"):
        ate(scm, "x", "y", n=10, bootstrap=1)
