"""Every query on learned SCMs (point and Bayesian): numbers, and no query or fit changes another SCM."""

import math

import pytest
import torch

import causalppl as cp
from causalppl.causal import ate, interventional

EDGES = [("z", "x"), ("z", "y"), ("x", "y")]


def linear_data(n, seed=0):
    """z ~ N(0,1); x = 1.5 z + N(0,1); y = 2 x - z + 0.5 + N(0, 0.5^2)."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=generator)
    x = 1.5 * z + torch.randn(n, generator=generator)
    y = 2 * x - z + 0.5 + 0.5 * torch.randn(n, generator=generator)
    return {"z": z, "x": x, "y": y}


@pytest.fixture(scope="module")
def learned():
    """A point-estimate linear SCM fitted to 4,000 rows, with its own params."""
    cp.set_rng_seed(0)
    data = linear_data(4000)
    scm = cp.SCM.from_graph(EDGES, data)
    scm.fit(data, steps=800, lr=0.05, progress=False)
    return scm


def coefficients(scm, node):
    return scm.mechanism(node).fn.coefficients(scm.params)


def test_condition_then_sample_on_a_learned_scm(learned, one_thread_seeded):
    # E[y | z=1] = 2 * 1.5 - 1 + 0.5 = 2.5 under the fitted coefficients (close to the truth).
    x, y = coefficients(learned, "x"), coefficients(learned, "y")
    expected = y["weights"]["x"] * (x["weights"]["z"] + x["bias"]) + y["weights"]["z"] + y["bias"]
    assert expected == pytest.approx(2.5, abs=0.1)
    draws = learned.condition(z=1.0).sample(4000)["y"]
    sd = math.sqrt(y["weights"]["x"] ** 2 * x["scale"] ** 2 + y["scale"] ** 2)
    assert abs(float(draws.mean()) - expected) < 4 * sd / math.sqrt(4000) + 0.02


def test_interventional_and_ate_with_evidence_on_a_learned_scm(learned, one_thread_seeded):
    # do(x=1), z observed at 1: E[y] = 2 - 1 + 0.5 = 1.5; the effect is 2 whatever the evidence.
    result = interventional(learned, do={"x": 1.0}, evidence={"z": 1.0}, n=4000)
    assert result.mean("y") == pytest.approx(1.5, abs=0.1)
    effect = ate(learned, "x", "y", evidence={"z": 1.0}, n=4000)
    assert effect.ate == pytest.approx(2.0, abs=0.05)
    # With evidence on y (a descendant of z), z's posterior moves: E[z | do(x=0), y=1.5] > 0.
    shifted = interventional(learned, do={"x": 0.0}, evidence={"y": 1.5}, n=4000)
    # y | do(x=0) = -z + 0.5 + noise(0.5): E[z | y] = -(y - 0.5) / (1 + 0.25) = -0.8
    assert shifted.mean("z") == pytest.approx(-0.8, abs=0.1)


def test_default_counterfactual_on_a_learned_scm(learned, one_thread_seeded):
    # Fully observed factual world: y's noise is recovered exactly, so
    # y_cf = y + w_yx (x_cf - x) = 4 + w_yx * (0 - 2).
    world = learned.counterfactual(evidence={"z": 1.0, "x": 2.0, "y": 4.0}, do={"x": 0.0}, n=500)
    expected = 4.0 - 2 * coefficients(learned, "y")["weights"]["x"]
    assert world.mean("y") == pytest.approx(expected, abs=1e-4)
    assert expected == pytest.approx(0.0, abs=0.1)


def test_queries_never_change_the_scm_they_ask(learned, one_thread_seeded):
    before = {name: value.clone() for name, value in learned.params.items()}
    learned.counterfactual(evidence={"x": 2.0, "y": 4.0}, do={"x": 0.0}, n=200, method="svi", steps=200)
    learned.counterfactual(evidence={"x": 2.0, "y": 4.0}, do={"x": 0.0}, n=200)
    ate(learned, "x", "y", n=500, evidence={"z": 0.5})
    after = dict(learned.params.items())
    assert set(after) == set(before)
    for name, value in before.items():
        assert torch.equal(after[name], value), name


def test_fitting_one_scm_leaves_another_with_the_same_nodes_unchanged(one_thread_seeded):
    data_a = linear_data(1000, seed=1)
    data_b = {k: -3 * v for k, v in linear_data(1000, seed=2).items()}
    a = cp.SCM.from_graph(EDGES, data_a)
    fit_a = a.fit(data_a, steps=500, lr=0.05, progress=False)
    effect_a = ate(a, "x", "y", n=2000).ate
    params_a = {name: value.clone() for name, value in a.params.items()}
    b = cp.SCM.from_graph(EDGES, data_b)
    fit_b = b.fit(data_b, steps=500, lr=0.05, progress=False)
    for name, value in params_a.items():
        assert torch.equal(a.params[name], value), name
    assert ate(a, "x", "y", n=2000).ate == pytest.approx(effect_a, abs=1e-6)
    assert len(cp.get_param_store()) == 0
    # Each FitResult holds its own fit's params only.
    assert coefficients(a, "y")["weights"]["x"] == pytest.approx(2.0, abs=0.1)
    assert set(fit_a.params) == set(fit_b.params) == set(a.params)
    assert coefficients(a, "y")["bias"] == pytest.approx(0.5, abs=0.1)
    assert coefficients(b, "y")["bias"] == pytest.approx(-1.5, abs=0.3)
    # Surgery shares the params (a do'ed model is the same fitted model); copy() does not.
    copy = a.copy()
    copy.params["y.bias"] = torch.tensor(10.0)
    assert a.do(x=1.0).params is a.params and float(a.params["y.bias"].detach()) != 10.0


def test_bayesian_fit_answers_from_the_posterior(one_thread_seeded):
    data = linear_data(2000, seed=3)
    scm = cp.SCM.from_graph(EDGES, data, bayesian=True)
    prior_effect = ate(scm, "x", "y", n=4000)
    # Before any fit: the prior N(0, 1) on the weight, so a wide spread around 0.
    assert prior_effect.sd == pytest.approx(1.0, abs=0.2) or prior_effect.sd is None
    scm.fit(data, steps=1500, lr=0.05, progress=False)
    effect = ate(scm, "x", "y", n=4000)
    # The least-squares standard error of the x coefficient is 0.5 / sqrt(n Var(x | z)) ~ 0.011.
    se = 0.5 / math.sqrt(2000)
    assert effect.ate == pytest.approx(2.0, abs=4 * se)
    assert 0.3 * se < effect.sd < 3 * se
    low, high = effect.interval()
    assert low < 2.0 < high or abs(effect.ate - 2.0) < 4 * se
    assert high - low == pytest.approx(2 * 1.96 * effect.sd, rel=0.3)
    assert "posterior" in effect.covers
    # Evidence queries and counterfactuals work on the Bayesian SCM too.
    given = ate(scm, "x", "y", evidence={"z": 1.0}, n=2000)
    assert given.ate == pytest.approx(2.0, abs=0.1)
    world = scm.counterfactual(evidence={"z": 1.0, "x": 2.0, "y": 4.0}, do={"x": 0.0}, n=2000)
    assert world.mean("y") == pytest.approx(0.0, abs=0.15)


def test_unfitted_bayesian_scm_samples_its_prior_per_row(one_thread_seeded):
    scm = cp.SCM.from_graph([("x", "y")], bayesian=True, mechanisms="linear")
    effect = ate(scm, "x", "y", n=20_000)
    # weight ~ N(0, 1) a priori: the effect's spread over prior draws is 1.
    assert effect.ate == pytest.approx(0.0, abs=0.1)
    assert effect.sd is None  # no fitted posterior: Monte Carlo over the prior only
    assert float(effect.treated_result["y"].var()) == pytest.approx(1 + 1 + 1, rel=0.1)


def test_hand_built_categorical_table_answers_evidence_queries(one_thread_seeded):
    # a ~ Categorical(0.2, 0.8); c | a from a table; P(a=1 | c=1) by Bayes' rule.
    from causalppl.causal import CategoricalTable

    scm = (cp.SCM()
           .add("a", CategoricalTable("a", [], num_categories=2))
           .add("c", CategoricalTable("c", ["a"], num_categories=2, parent_cardinalities=[2])))
    scm.params["a.probs"] = torch.tensor([0.2, 0.8])
    scm.params["c.probs"] = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
    exact = 0.8 * 0.6 / (0.8 * 0.6 + 0.2 * 0.1)
    n = 20_000
    draws = scm.condition(c=1).sample(n)["a"].double()
    assert abs(float(draws.mean()) - exact) < 4 * math.sqrt(exact * (1 - exact) / n) + 0.01
    effect = ate(scm, "a", "c", n=n)
    assert effect.ate == pytest.approx(0.6 - 0.1, abs=4 * math.sqrt(0.5 / n))
    world = scm.counterfactual(evidence={"a": 0, "c": 1}, do={"a": 1}, n=4000)
    # Gumbel-max noise is counterfactually stable: c was 1 when it was unlikely (0.1 under a=0),
    # and a=1 makes it likelier (0.6) and its rival less likely, so it stays 1 in every world.
    assert world.mean("c") == 1.0


def test_bayesian_effect_on_a_discrete_outcome_has_the_posterior_spread(one_thread_seeded):
    # a -> c, both categorical, Dirichlet tables. The effect of a on P(c=0) is a difference of two
    # table entries, so its posterior sd is that of the kept posterior draws of those entries;
    # the outcome's own noise must not widen it.
    generator = torch.Generator().manual_seed(4)
    a = torch.multinomial(torch.tensor([0.5, 0.5]), 1000, replacement=True, generator=generator)
    table = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    c = torch.multinomial(table[a], 1, generator=generator).squeeze(-1)
    data = {"a": a, "c": c}
    scm = cp.SCM.from_graph([("a", "c")], data, bayesian=True)
    scm.fit(data, steps=600, lr=0.05, progress=False)
    effect = ate(scm, "a", "c", treated=1, control=0, outcome_level=0, n=4000)
    draws = scm._state.posterior["c.probs"]
    exact = draws[:, 1, 0] - draws[:, 0, 0]
    assert effect.ate == pytest.approx(float(exact.mean()), abs=0.01)
    assert effect.sd == pytest.approx(float(exact.std()), rel=0.3)
    assert effect.ate == pytest.approx(0.4, abs=4 * 0.03)
