"""Counterfactual worlds as a batch dimension (cp.handlers.twin_world / multi_world), and counterfactuals
for mechanisms whose noise is not a function of their value (Poisson, noisy nonlinear functions).

Every answer is checked against a closed form or exact enumeration of the noise posterior.
"""

import importlib
import math

import pytest
import torch

import causalppl as cp
from causalppl.handlers import condition, do, from_world, multi_world, trace, twin_world

counterfactual_module = importlib.import_module("causalppl.causal.counterfactual")


def poisson_cdf(k, rate):
    if k < 0:
        return 0.0
    return sum(math.exp(-rate) * rate**j / math.factorial(j) for j in range(k + 1))


def poisson_pmf(k, rate):
    return math.exp(-rate) * rate**k / math.factorial(k)


def carried(k_factual, rate_factual, k, rate):
    """P(the counterfactual Poisson(rate) is k | the factual Poisson(rate_factual) was k_factual), shared uniform.

    The noise u is uniform on (F(k_factual - 1), F(k_factual)]; the counterfactual value is F'^{-1}(u).
    """
    low, high = poisson_cdf(k_factual - 1, rate_factual), poisson_cdf(k_factual, rate_factual)
    lower, upper = poisson_cdf(k - 1, rate), poisson_cdf(k, rate)
    return max(0.0, min(high, upper) - max(low, lower)) / (high - low)


def frequencies(values, levels):
    values = values.reshape(-1)
    return [float((values == k).double().mean()) for k in levels]


# -- the twin world ------------------------------------------------------------------------


def linear():
    x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    return cp.sample("y", cp.dist.Normal(2 * x, 1.0))


def test_the_twin_world_shares_the_noise_and_scores_only_the_factual_world():
    cp.set_rng_seed(0)
    data = {"x": torch.tensor(1.0), "y": torch.tensor(3.0)}
    with trace() as tr, twin_world() as tw, do(data={"x": torch.tensor(0.0)}), condition(data=data):
        y = linear()
    assert torch.equal(y, torch.tensor([3.0, 1.0]))  # y - 2x = 1 carried to x = 0
    assert torch.equal(tw.factual(y), torch.tensor(3.0)) and torch.equal(tw.counterfactual(y), torch.tensor(1.0))
    assert tw.size == 2 and tw.dim == -1 and tw.worlds == [{}, {"x": torch.tensor(0.0)}]
    plain = trace(condition(linear, data=data)).get_trace()
    assert torch.allclose(tr.trace.log_prob_sum(), plain.log_prob_sum())  # the counterfactual world adds nothing
    assert tr.trace.nodes["y"]["mask"].tolist() == [True, False]


def test_sites_upstream_of_every_intervention_keep_their_shape():
    def model():
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        with cp.plate("rows", 5):
            x = cp.sample("x", cp.dist.Normal(z, 1.0))
            y = cp.sample("y", cp.dist.Normal(x + z, 1.0))
        return z, x, y

    with twin_world() as tw, do(data={"x": torch.zeros(5)}):
        z, x, y = model()
    assert z.shape == () and x.shape == (2, 5) and y.shape == (2, 5) and tw.dim == -2
    assert torch.allclose(tw.counterfactual(y) - tw.factual(y), -tw.factual(x))  # same noise, x moved to 0


def test_importance_on_the_twin_world_gives_the_counterfactual_posterior():
    # x ~ N(0, 1), y ~ N(2x, 1), y = 3 observed: x | y ~ N(6/5, 1/5). Had x been 1: y_cf = 2 + (3 - 2x),
    # so E[y_cf | y = 3] = 5 - 12/5 and sd 2 / sqrt(5).
    cp.set_rng_seed(1)

    def counterfactual_model():
        with twin_world() as tw, do(data={"x": torch.tensor(1.0)}), condition(data={"y": torch.tensor(3.0)}):
            y = linear()
        return cp.deterministic("y_cf", tw.counterfactual(y))

    importance = cp.infer.Importance(counterfactual_model, num_samples=40000).run()
    assert importance.get_samples("x").shape == (40000, 2)  # vectorised: worlds right of the samples
    draws = importance.posterior_samples(40000)["y_cf"]
    assert float(draws.mean()) == pytest.approx(5 - 12 / 5, abs=0.03)
    assert float(draws.std()) == pytest.approx(2 / math.sqrt(5), rel=0.05)
    looped = cp.infer.Importance(counterfactual_model, num_samples=300, vectorize=False).run()
    assert looped.get_samples("x").shape == (300, 2)


def test_a_guide_fitted_by_svi_on_the_factual_model_gives_the_noise_posterior(one_thread_seeded):
    # The confounded SCM's equations by hand: z | x=2, y=9 ~ N(17/11, 1/11); had z been 0,
    # y_cf = 9 - 5z: mean 14/11, sd 5 / sqrt(11).
    def model():
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        x = cp.sample("x", cp.dist.Normal(z, 1.0))
        return cp.sample("y", cp.dist.Normal(2 * x + 3 * z, 1.0))

    evidence = {"x": torch.tensor(2.0), "y": torch.tensor(9.0)}
    factual = condition(model, data=evidence)
    guide = cp.infer.autoguide.AutoNormal(factual)
    svi = cp.infer.SVI(factual, guide, cp.optim.Adam({"lr": 0.02}), cp.infer.Trace_ELBO())
    for _ in range(1500):
        svi.step()

    def counterfactual_model():
        with twin_world() as tw, do(data={"z": torch.tensor(0.0)}), condition(data=evidence):
            y = model()
        return cp.deterministic("y_cf", tw.counterfactual(y))

    draws = cp.infer.Predictive(counterfactual_model, guide=guide, num_samples=4000)()["y_cf"]
    assert float(draws.mean()) == pytest.approx(14 / 11, abs=0.3)
    assert float(draws.std()) == pytest.approx(5 / math.sqrt(11), rel=0.25)


def test_svi_on_the_counterfactual_model_itself(one_thread_seeded):
    # An autoguide of the handled model guides the factual world only (the counterfactual one follows from
    # its noise). Given y = 9 alone, had x been 0: y_cf = 9 - 2x with x | y ~ N(63/30, 11/30).
    def model():
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        x = cp.sample("x", cp.dist.Normal(z, 1.0))
        return cp.sample("y", cp.dist.Normal(2 * x + 3 * z, 1.0))

    def counterfactual_model():
        with twin_world() as tw, do(data={"x": torch.tensor(0.0)}), condition(data={"y": torch.tensor(9.0)}):
            y = model()
        return cp.deterministic("y_cf", tw.counterfactual(y))

    guide = cp.infer.autoguide.AutoMultivariateNormal(counterfactual_model)
    svi = cp.infer.SVI(counterfactual_model, guide, cp.optim.Adam({"lr": 0.02}), cp.infer.Trace_ELBO())
    for _ in range(2000):
        svi.step()
    assert {name: tuple(value.shape) for name, value in guide().items()} == {"z": (), "x": ()}
    draws = cp.infer.Predictive(counterfactual_model, guide=guide, num_samples=4000)()["y_cf"]
    assert float(draws.mean()) == pytest.approx(4.8, abs=0.25)
    assert float(draws.std()) == pytest.approx(2 * math.sqrt(11 / 30), rel=0.15)


def test_a_noisy_nonlinear_mechanism_against_enumerating_its_exogenous_noise():
    # y = tanh(3x + 2u - 1) + 0.3 e with u ~ Bernoulli(0.5) unobserved: u is not recovered from y, its
    # posterior comes from inference. Had x been -0.5: y_cf = tanh(-2.5 + 2u) + (y - tanh(0.5 + 2u)).
    cp.set_rng_seed(2)

    def model():
        u = cp.sample("u", cp.dist.Bernoulli(0.5))
        x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
        return cp.sample("y", cp.dist.Normal(torch.tanh(3 * x + 2 * u - 1), 0.3))

    def counterfactual_model():
        with twin_world() as tw, do(data={"x": torch.tensor(-0.5)}), \
                condition(data={"x": torch.tensor(0.5), "y": torch.tensor(0.4)}):
            y = model()
        return cp.deterministic("y_cf", tw.counterfactual(y))

    likelihood = {u: math.exp(-0.5 * ((0.4 - math.tanh(0.5 + 2 * u)) / 0.3) ** 2) for u in (0, 1)}
    posterior = {u: likelihood[u] / sum(likelihood.values()) for u in (0, 1)}
    expected = sum(posterior[u] * (math.tanh(-2.5 + 2 * u) + 0.4 - math.tanh(0.5 + 2 * u)) for u in (0, 1))
    importance = cp.infer.Importance(counterfactual_model, num_samples=40000).run()
    assert float(importance.weighted_mean("u")) == pytest.approx(posterior[1], abs=0.02)
    assert float(importance.weighted_mean("y_cf")) == pytest.approx(expected, abs=0.02)


# -- many worlds -------------------------------------------------------------------------------


def mediated():
    x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    m = cp.sample("m", cp.dist.Normal(2 * x, 1.0))
    return cp.sample("y", cp.dist.Normal(3 * m + x, 1.0))


def test_multi_world_nests_counterfactuals_for_the_natural_direct_effect():
    # y = 3m + x + e, m = 2x + e': NDE (x: 0 -> 1, m held at m(x=0)) = 1 and NIE = 3 * 2, row by row.
    cp.set_rng_seed(3)
    with cp.plate("rows", 1000):
        with multi_world() as mw, do(data={"x": torch.tensor(0.0)}), \
                do(data={"x": torch.tensor(1.0), "m": from_world(1)}), do(data={"x": torch.tensor(1.0)}):
            y = mediated()
    assert y.shape == (4, 1000) and len(mw.worlds) == 4
    nde = mw.world(y, 2) - mw.world(y, 1)
    nie = mw.world(y, 3) - mw.world(y, 2)
    assert torch.allclose(nde, torch.ones(1000), atol=1e-4)
    assert torch.allclose(nie, torch.full((1000,), 6.0), atol=1e-4)


def test_multi_world_makes_one_world_per_handler_not_one_per_combination():
    def model():
        a = cp.sample("a", cp.dist.Normal(0.0, 1.0))
        b = cp.sample("b", cp.dist.Normal(a, 1.0))
        c = cp.sample("c", cp.dist.Normal(b, 1.0))
        return cp.sample("d", cp.dist.Normal(a + b + c, 1.0))

    with multi_world(), do(data={"a": torch.tensor(1.0)}), do(data={"b": torch.tensor(2.0)}), \
            do(data={"c": torch.tensor(3.0)}):
        d = model()
    assert d.shape == (4,)  # 1 + 3 worlds; every combination would be 2 ** 3
    with twin_world() as tw, do(data={"a": torch.tensor(1.0)}), do(data={"b": torch.tensor(2.0)}):
        d = model()
    assert d.shape == (2,) and tw.worlds[1].keys() == {"a", "b"}  # the twin world holds all of them together


def test_functional_and_stochastic_interventions_in_the_worlds():
    cp.set_rng_seed(4)
    data = {"x": torch.tensor(1.0), "y": torch.tensor(3.0)}
    with twin_world() as tw, do(data={"x": lambda x: x + 1}), condition(data=data):
        y = linear()
    assert torch.equal(y, torch.tensor([3.0, 5.0]))  # the natural x (1) shifted to 2, the noise 1 kept
    with cp.plate("rows", 20000), twin_world() as tw, do(data={"x": cp.dist.Normal(0.0, 1.0)}), \
            condition(data=data):
        y = linear()
    # drawn afresh: y_cf = 2 x' + 1 with x' ~ N(0, 1), whatever the factual x
    assert float(tw.counterfactual(y).mean()) == pytest.approx(1.0, abs=0.06)
    assert float(tw.counterfactual(y).std()) == pytest.approx(2.0, rel=0.05)


def test_world_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="from_world.*multi_world"):
        do(linear, data={"x": from_world(1)})()

    def beta_model():
        x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
        return cp.sample("share", cp.dist.Beta(torch.exp(x), 2.0))

    with pytest.raises(cp.causal.CounterfactualError, match="'share'.*Beta"):
        with twin_world(), do(data={"x": torch.tensor(1.0)}):
            beta_model()

    def late():
        x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
        with do(data={"y": torch.tensor(0.0)}):
            return cp.sample("y", cp.dist.Normal(x, 1.0))

    with pytest.raises(ValueError, match="enter every do handler before"):
        with multi_world(), do(data={"x": torch.tensor(1.0)}):
            late()
    with pytest.raises(ValueError, match="dim must be a negative int"):
        twin_world(dim=1)


# -- SCM counterfactuals with integer-valued nodes ------------------------------------------------


def counts_scm():
    """a ~ Bernoulli(0.3); c ~ Poisson(1 + 2a); y ~ Poisson(0.5 + c + a)."""
    return (cp.SCM()
            .add("a", "Bernoulli(0.3)")
            .add("c", "Poisson(1 + 2*a)")
            .add("y", "Poisson(0.5 + c + a)"))


def posterior_of_a(c=2, y=3):
    joint = {a: (0.3 if a else 0.7) * poisson_pmf(c, 1 + 2 * a) * poisson_pmf(y, 0.5 + c + a) for a in (0, 1)}
    total = sum(joint.values())
    return {a: value / total for a, value in joint.items()}


@pytest.fixture
def spy(monkeypatch):
    calls = []
    original = counterfactual_module._by_worlds

    def wrapped(*args, **kwargs):
        calls.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(counterfactual_module, "_by_worlds", wrapped)
    return calls


@pytest.mark.parametrize("engine", ["auto", "abduction"])
def test_a_poisson_counterfactual_matches_exact_enumeration(engine, spy, one_thread_seeded):
    # Evidence c = 2, y = 3; had c been 0. a's posterior by enumeration; y's noise u is uniform on
    # (F(2; 2.5 + a), F(3; 2.5 + a)], and y_cf = F^{-1}(u; 0.5 + a).
    n = 20000
    world = counts_scm().counterfactual(evidence={"c": 2.0, "y": 3.0}, do={"c": 0.0}, n=n, engine=engine)
    assert spy == ([True] if engine == "auto" else [])  # auto: a Poisson node sends it to the world handlers
    weights = posterior_of_a()
    levels = range(6)
    expected = [sum(weights[a] * carried(3, 2.5 + a, k, 0.5 + a) for a in (0, 1)) for k in levels]
    found = frequencies(world["y"], levels)
    for k, (p, q) in enumerate(zip(expected, found)):
        assert abs(p - q) < 5 * math.sqrt(max(p * (1 - p), 1e-4) * 2 / n), (k, p, q)
    assert float(world["a"].mean()) == pytest.approx(weights[1], abs=0.02)
    assert torch.all(world["c"] == 0) and torch.all(world.factual["y"] == 3)


def test_a_poisson_counterfactual_through_a_changed_count(one_thread_seeded):
    # do(a = 1): c_cf = F^{-1}(u_c; 3) with u_c uniform on (F(1; 1 + 2a), F(2; 1 + 2a)], then
    # y_cf = F^{-1}(u_y; 1.5 + c_cf): two shared noises, each from its own interval.
    n = 20000
    world = counts_scm().counterfactual(evidence={"c": 2.0, "y": 3.0}, do={"a": 1.0}, n=n)
    weights = posterior_of_a()
    levels = range(10)

    def p_count(j, a):
        return carried(2, 1 + 2 * a, j, 3.0)

    expected = [sum(weights[a] * sum(p_count(j, a) * carried(3, 2.5 + a, k, 1.5 + j) for j in range(30))
                    for a in (0, 1)) for k in levels]
    assert sum(expected) == pytest.approx(1.0, abs=1e-3)
    found = frequencies(world["y"], levels)
    for k, (p, q) in enumerate(zip(expected, found)):
        assert abs(p - q) < 5 * math.sqrt(max(p * (1 - p), 1e-4) * 2 / n), (k, p, q)
    c_expected = [sum(weights[a] * p_count(j, a) for a in (0, 1)) for j in range(6)]
    for p, q in zip(c_expected, frequencies(world["c"], range(6))):
        assert abs(p - q) < 5 * math.sqrt(max(p * (1 - p), 1e-4) * 2 / n)


def test_integer_noise_models_reproduce_and_are_monotone():
    from causalppl.noise import abduct, predict

    cp.set_rng_seed(5)
    families = [torch.distributions.Poisson(torch.tensor([0.5, 3.0, 40.0, 2500.0])),
                torch.distributions.Binomial(10, torch.tensor([0.1, 0.5, 0.9, 0.5])),
                torch.distributions.Geometric(torch.tensor([0.2, 0.5, 0.9, 0.05])),
                torch.distributions.NegativeBinomial(torch.tensor(3.0), torch.tensor([0.2, 0.5, 0.7, 0.9]))]
    for fn in families:
        value = fn.sample((200,))
        noise = abduct(fn, value)
        assert torch.equal(predict(fn, noise), value), type(fn).__name__
    fn = torch.distributions.Poisson(torch.tensor(2.0))
    value = fn.sample((1000,))
    noise = abduct(fn, value)
    assert torch.all(predict(torch.distributions.Poisson(torch.tensor(5.0)), noise) >= value)


def test_mediation_and_causation_work_with_count_nodes(one_thread_seeded):
    # m ~ Poisson(1 + x), y ~ Poisson(1 + x + 2m): E[y | x, m] is linear, so NDE = 1 and NIE = 2 * 1.
    scm = cp.SCM().add("x", "Bernoulli(0.5)").add("m", "Poisson(1 + x)").add("y", "Poisson(1 + x + 2*m)")
    effect = cp.causal.mediation(scm, "x", "m", "y", n=40000)
    assert abs(effect.nde - 1.0) < 5 * effect.stderr["nde"] + 0.02
    assert abs(effect.nie - 2.0) < 5 * effect.stderr["nie"] + 0.02


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_worlds_on_cuda(one_thread_seeded):
    with torch.device("cuda"):
        n = 20000
        world = counts_scm().counterfactual(evidence={"c": 2.0, "y": 3.0}, do={"c": 0.0}, n=n)
        assert world["y"].device.type == "cuda"
        weights = posterior_of_a()
        p0 = sum(weights[a] * carried(3, 2.5 + a, 0, 0.5 + a) for a in (0, 1))
        assert abs(frequencies(world["y"], [0])[0] - p0) < 5 * math.sqrt(p0 * (1 - p0) * 2 / n)
        with cp.plate("rows", 100), twin_world(), do(data={"x": torch.tensor(0.0)}), \
                condition(data={"y": torch.tensor(3.0)}):
            y = linear()
        assert y.device.type == "cuda" and y.shape == (2, 100)
        draws = torch.distributions.Poisson(torch.full((1000,), 7.0)).sample()
        from causalppl.noise import abduct, predict

        assert torch.equal(predict(torch.distributions.Poisson(torch.tensor(7.0)),
                                   abduct(torch.distributions.Poisson(torch.tensor(7.0)), draws)), draws)
