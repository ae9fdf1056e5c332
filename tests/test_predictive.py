"""Predictive: prior predictive, posterior samples, guides, vectorised draws."""

import math

import pytest
import torch

import causalppl as cp
from causalppl.infer import Predictive
from causalppl.infer.autoguide import AutoNormal

POST_LOC = (9.5 + 0.75**2 * 8.5) / (1 + 0.75**2)
POST_SD = math.sqrt(0.75**2 / (1 + 0.75**2))


pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def scale(guess=8.5):
    weight = cp.sample("weight", cp.dist.Normal(guess, 1.0))
    cp.deterministic("pounds", 2.2 * weight)
    return cp.sample("measurement", cp.dist.Normal(weight, 0.75))


def check_moments(samples, mean, var):
    """Mean and variance within 5 standard errors (normal data: sd(var) = var sqrt(2 / n))."""
    n = samples.shape[0]
    assert abs(samples.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(samples.var().item() - var) < 5 * var * math.sqrt(2 / n)


@pytest.mark.parametrize("parallel", [False, True])
def test_prior_predictive_moments(parallel):
    n = 2000 if not parallel else 20000
    out = Predictive(scale, num_samples=n, parallel=parallel)(8.5)
    assert set(out) == {"weight", "pounds", "measurement"}
    assert out["measurement"].shape == (n,)
    check_moments(out["measurement"], 8.5, 1 + 0.75**2)
    check_moments(out["weight"], 8.5, 1.0)
    assert torch.allclose(out["pounds"], 2.2 * out["weight"])


@pytest.fixture
def trained_guide():
    model = cp.condition(scale, {"measurement": torch.tensor(9.5)})
    guide = AutoNormal(model)
    steps = 600
    optim = cp.optim.ClippedAdam({"lr": 0.1, "lrd": 0.02 ** (1 / steps)})
    svi = cp.infer.SVI(model, guide, optim, cp.infer.Trace_ELBO(num_particles=8, vectorize_particles=True))
    for _ in range(steps):
        svi.step(8.5)
    return guide


@pytest.mark.parametrize("parallel", [False, True])
def test_guide_samples_have_the_posterior_moments(trained_guide, parallel):
    n = 4000
    out = Predictive(scale, guide=trained_guide, num_samples=n, parallel=parallel)(8.5)
    assert set(out) == {"weight", "pounds", "measurement"}
    weight = out["weight"]
    # Tolerances: the fitted guide's own error (see test_autoguide) plus sampling error.
    assert abs(weight.mean().item() - POST_LOC) < 0.1 + 4 * POST_SD / math.sqrt(n)
    assert abs(weight.std().item() - POST_SD) < 0.08 + 4 * POST_SD / math.sqrt(2 * n)
    # Posterior predictive of a new measurement: variance POST_SD^2 + 0.75^2.
    sd = math.sqrt(POST_SD**2 + 0.75**2)
    assert abs(out["measurement"].std().item() - sd) < 0.08 + 4 * sd / math.sqrt(2 * n)


def test_posterior_samples_are_substituted():
    weights = torch.tensor([7.0, 8.0, 9.0, 10.0])
    out = Predictive(scale, posterior_samples={"weight": weights})()
    assert set(out) == {"pounds", "measurement"}
    assert torch.allclose(out["pounds"], 2.2 * weights)
    parallel = Predictive(scale, posterior_samples={"weight": weights}, parallel=True,
                          return_sites=["weight", "pounds"])()
    assert torch.equal(parallel["weight"], weights)
    assert torch.allclose(parallel["pounds"], 2.2 * weights)


def test_observed_sites_and_plates_keep_their_shapes():
    # Pyro's layout: a global latent of a model with one plate is padded to (num_samples, 1).
    data = torch.tensor([0.0, 1.0, 2.0])

    def model(data=None):
        mu = cp.sample("mu", cp.dist.Normal(0.0, 1.0))
        with cp.plate("rows", 3):
            cp.sample("x", cp.dist.Normal(mu, 1.0), obs=data)

    for parallel in (False, True):
        prior = Predictive(model, num_samples=6, parallel=parallel)()
        assert prior["mu"].shape == (6, 1) and prior["x"].shape == (6, 3)
        observed = Predictive(model, num_samples=6, parallel=parallel)(data)
        assert torch.equal(observed["x"], data.expand(6, 3))
        given = Predictive(model, posterior_samples={"mu": torch.zeros(6, )}, parallel=parallel)()
        assert set(given) == {"x"} and given["x"].shape == (6, 3)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="num_samples"):
        Predictive(scale)
    with pytest.warns(UserWarning, match="using 3"):
        out = Predictive(scale, posterior_samples={"weight": torch.ones(3)}, num_samples=5)()
    assert out["measurement"].shape == (3,)
    with pytest.raises(KeyError, match="'wieght'.*weight"):
        Predictive(scale, posterior_samples={"wieght": torch.ones(3)})()
    with pytest.raises(KeyError, match="nope"):
        Predictive(scale, num_samples=2, return_sites=["nope"])()
    with pytest.raises(ValueError, match="samples"):
        Predictive(scale, posterior_samples={"weight": torch.ones(3), "pounds": torch.ones(4)})


def test_return_sites_can_ask_for_the_models_return_value():
    def model():
        w = cp.sample("w", cp.dist.Normal(0.0, 1.0))
        return 2.0 * w

    for parallel in (False, True):
        out = cp.infer.Predictive(model, num_samples=5, return_sites=["w", "_RETURN"], parallel=parallel)()
        assert sorted(out) == ["_RETURN", "w"] and out["_RETURN"].shape == (5,)
        assert torch.allclose(out["_RETURN"], 2.0 * out["w"])
    assert "_RETURN" not in cp.infer.Predictive(model, num_samples=2)()  # only when asked for
