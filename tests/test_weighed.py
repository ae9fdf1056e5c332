"""Predictive's Pyro layout, WeighedPredictive's weights, MHResampler and weighed_quantile, against closed forms."""

import math

import pytest
import torch

import causalppl as cp
from causalppl.infer import MHResampler, Predictive, WeighedPredictive
from causalppl.ops.stats import weighed_quantile

pytestmark = pytest.mark.usefixtures("one_thread_seeded")

X_OBS = 1.0  # z ~ N(0, 1), x | z ~ N(z, 1): z | x ~ N(x / 2, 1 / 2), p(x) = N(x; 0, 2)


def model(x=None):
    z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
    return cp.sample("x", cp.dist.Normal(z, 1.0), obs=x)


def observed():
    return model(torch.tensor(X_OBS))


def prior_guide(x=None):
    cp.sample("z", cp.dist.Normal(0.0, 1.0))


@pytest.mark.parametrize("parallel", [False, True])
def test_weights_are_the_likelihood_when_the_guide_is_the_prior(parallel):
    n = 400 if not parallel else 4000
    out = WeighedPredictive(model, guide=prior_guide, num_samples=n, parallel=parallel)(model_guide=observed)
    z = out.samples["z"]
    assert z.shape == (n,) and out.log_weights.shape == (n,)
    expected = torch.distributions.Normal(z, 1.0).log_prob(torch.tensor(X_OBS))
    assert torch.allclose(out.log_weights, expected, atol=1e-5)
    assert torch.allclose(out.model_log_prob - out.guide_log_prob, out.log_weights)
    if parallel:
        # The mean weight estimates p(x); the weighted mean of z the posterior mean x / 2.
        assert abs(out.get_log_normalizer().item() - torch.distributions.Normal(0.0, math.sqrt(2)).log_prob(
            torch.tensor(X_OBS)).item()) < 0.05
        w = out.get_normalized_weights()
        assert abs((w * z).sum().item() - X_OBS / 2) < 0.1
        assert 0.5 * n < out.get_ESS().item() < n


def test_mh_resampler_moves_guide_draws_to_the_posterior():
    sampler = WeighedPredictive(model, guide=prior_guide, num_samples=4000, parallel=True)
    resampler = MHResampler(sampler)
    first = resampler(model_guide=observed).samples["z"].clone()
    assert abs(first.mean().item()) < 0.1  # the guide's (prior) draws
    for _ in range(15):
        last = resampler(model_guide=observed)
    z = last.samples["z"]
    # Posterior N(0.5, 0.5); 4000 draws after 15 independence-MH rounds: tolerance ~ 5 sd of the mean.
    assert abs(z.mean().item() - X_OBS / 2) < 0.08
    assert abs(z.var().item() - 0.5) < 0.08
    assert resampler.get_total_transition_count() > 0


def test_weighed_quantile_is_the_weighted_inverse_cdf():
    values = torch.tensor([3.0, 1.0, 2.0, 4.0])
    log_w = torch.tensor([1.0, 1.0, 2.0, 0.0]).log()  # weights 0.25, 0.25, 0.5, 0 after sorting 1,2,3,4
    q = weighed_quantile(values, [0.2, 0.3, 0.6, 0.9], log_w)
    # sorted values 1, 2, 3, 4 with weights 0.25, 0.5, 0.25, 0 -> cdf 0.25, 0.75, 1.0, 1.0
    assert q.tolist() == [1.0, 2.0, 2.0, 3.0]
    equal = weighed_quantile(torch.arange(10.0), [0.5], torch.zeros(10))
    assert equal.item() == 4.0


def test_predictive_pads_sites_to_the_plates_as_pyro_does():
    def plated(y=None):
        mu = cp.sample("mu", cp.dist.Normal(0.0, 1.0))
        with cp.plate("rows", 3):
            x = cp.sample("x", cp.dist.Normal(mu, 1.0))
            cp.deterministic("x2", x**2, event_dim=0)
        cp.deterministic("all", x)  # event_dim defaults to the value's dims: outside the plate
        return cp.sample("y", cp.dist.Normal(x.sum(), 1.0), obs=y)

    for parallel in (False, True):
        out = Predictive(plated, num_samples=7, parallel=parallel, return_sites=["mu", "x", "x2", "all", "_RETURN"])()
        shapes = {name: tuple(value.shape) for name, value in out.items()}
        assert shapes == {"mu": (7, 1), "x": (7, 3), "x2": (7, 3), "all": (7, 1, 3), "_RETURN": (7,)}
        assert torch.allclose(out["x2"], out["x"] ** 2)
    trace = Predictive(plated, num_samples=7).get_vectorized_trace()
    assert trace.nodes["x"]["value"].shape == (7, 3)
    # Pyro's positional order: Predictive(model, posterior_samples).
    given = Predictive(plated, {"mu": torch.arange(4.0).reshape(4, 1)}, parallel=True)()
    assert set(given) == {"x", "x2", "all", "y"} and given["x"].shape == (4, 3)


def test_predictive_runs_model_and_guide_without_log_densities():
    seen = []

    def masked_model():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))
        seen.append(cp.handlers.get_mask())

    Predictive(masked_model, guide=lambda: cp.sample("z", cp.dist.Normal(0.0, 1.0)), num_samples=3)()
    assert seen and all(mask is False for mask in seen)
    with pytest.raises(ValueError, match="not both"):
        Predictive(masked_model, posterior_samples={"z": torch.zeros(2)}, guide=prior_guide)
