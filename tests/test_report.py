"""Tests of causalppl.causal.report: FitResult.summary() and str(FitResult), in the data's units."""

import math
import sys

import pytest
import torch

import causalppl as cp
from causalppl.causal.fit import FitResult
from causalppl.causal.learnable import CategoricalTable, LinearGaussian
from causalppl.causal.report import Row, summary_rows

pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def labelled_tables():
    return (cp.SCM()
            .add("a", CategoricalTable("a", [], num_categories=2, labels=("lo", "hi")))
            .add("c", CategoricalTable("c", ["a"], num_categories=3, parent_cardinalities=[2],
                                       labels=("red", "green", "blue"))))


def test_table_rows_name_their_states_and_carry_binomial_standard_errors():
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 2, (400,), generator=generator)
    c = torch.randint(0, 3, (400,), generator=generator)
    scm = labelled_tables()
    result = scm.fit({"a": a, "c": c})
    table = result.summary().set_index("parameter")
    count = int((a == 1).sum())
    p = float(((c == 2) & (a == 1)).sum()) / count
    row = table.loc["P(c=blue | a=hi)"]
    assert row["estimate"] == pytest.approx(p, abs=1e-6)
    assert row["sd"] == pytest.approx(math.sqrt(p * (1 - p) / count), rel=1e-5)
    assert table.loc["P(a=lo)", "estimate"] == pytest.approx(float((a == 0).float().mean()), abs=1e-6)
    assert len(table) == 2 + 6
    assert "c ~ P(c | a): a table of 2 rows, 3 states" in str(result)


def test_bayesian_rows_come_from_the_posterior_draws_in_data_units():
    scm = cp.SCM().add("x", LinearGaussian("x", [])).add(
        "y", LinearGaussian("y", ["x"], bayesian=True, standardization={"y": (10.0, 3.0), "x": (1.0, 2.0)}))
    draws = torch.tensor([0.5, 1.0, 1.5, 2.0])
    scm._state.posterior = {"y.weight": draws[:, None], "y.bias": torch.zeros(4)}
    scm.params.get_param("y.scale", torch.tensor(0.5), cp.constraints.positive)
    rows = {(r.parameter, r.parent): r for r in summary_rows(FitResult(scm, None, None))}
    weight = rows[("weight", "x")]
    # data-unit weight = 3 * w / 2; bias = 10 + 3 * (b - w * 1 / 2)
    assert weight.estimate == pytest.approx(float(1.5 * draws.mean()))
    assert weight.sd == pytest.approx(float(1.5 * draws.std()))
    assert rows[("bias", "")].estimate == pytest.approx(float((10 - 1.5 * draws).mean()))
    assert rows[("scale", "")].estimate == pytest.approx(1.5, rel=1e-6)
    assert math.isnan(rows[("scale", "")].sd)


def test_str_shows_the_method_and_named_coefficients():
    pytest.importorskip("pandas")
    from causalppl import datasets

    frame = datasets.job_training(n=1000, seed=1)
    scm = cp.SCM.from_graph(datasets.job_training_graph(), frame)
    scm._state.choices = {"training": "a binary column: Logistic"}
    result = scm.fit(frame)
    text = str(result)
    assert text.startswith("FitResult: method mle (exact maximum likelihood, no SVI steps); final loss")
    assert "training ~ Bernoulli(logit = " in text and "·education" in text
    equation = next(line for line in text.splitlines() if line.strip().startswith("earnings ~"))
    assert "·training" in equation and "·hours" in equation and equation.endswith("²)")
    assert "mechanisms chosen:\n  training: a binary column: Logistic" in text


def test_summary_without_pandas_is_a_list_of_named_rows(monkeypatch):
    x = torch.arange(10.0)
    result = cp.SCM.from_graph([("x", "y")]).fit({"x": x, "y": 3 - x})
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    rows = result.summary()
    assert isinstance(rows, list) and all(isinstance(r, Row) for r in rows)
    weight = next(r for r in rows if r.parameter == "weight")
    assert (weight.node, weight.parent) == ("y", "x") and weight.estimate == pytest.approx(-1.0, abs=1e-5)
