"""Tensor Monte Carlo (TraceTMC_ELBO, config_enumerate(num_samples=...)) and vectorized importance weights.

Exact answers: Gaussian marginals in closed form, and discrete marginals by
exhaustive enumeration (TraceEnum_ELBO, itself checked by brute force in
tests/test_enum.py). Monte Carlo tolerances are several standard errors of
the estimate at the given number of draws.
"""

import math

import pytest
import torch

import causalppl as cp
from causalppl.distributions.testing.fakes import NonreparameterizedNormal
from causalppl.infer import TraceEnum_ELBO, TraceTMC_ELBO, config_enumerate
from causalppl.infer.importance import vectorized_importance_weights


@pytest.fixture(autouse=True)
def seeded():
    cp.clear_param_store()
    cp.set_rng_seed(0)


def gaussian_model(loc, normal=cp.dist.Normal):
    def model():
        x = cp.sample("x", normal(loc, 1.0))
        cp.sample("y", normal(x, 1.0), obs=torch.tensor(1.0))
    return model


def test_prior_draws_estimate_the_gaussian_marginal():
    # y ~ N(loc, 2): the estimate averages p(y | x) over K prior draws, relative sd about 1 / sqrt(K).
    loc = torch.tensor(0.3)
    loss = TraceTMC_ELBO(max_plate_nesting=0).differentiable_loss(
        config_enumerate(gaussian_model(loc), num_samples=4000), lambda: None)
    exact = -cp.dist.Normal(loc, math.sqrt(2.0)).log_prob(torch.tensor(1.0))
    assert abs(loss.item() - exact.item()) < 0.05


@pytest.mark.parametrize("normal", [cp.dist.Normal, NonreparameterizedNormal], ids=["reparam", "score"])
def test_gradient_of_the_estimate_is_the_marginals_gradient(normal):
    # d/dloc p(y) = p(y) (y - loc) / 2; the estimate of p(y) is unbiased and so is its gradient.
    loc = torch.tensor(0.3, requires_grad=True)
    tmc = TraceTMC_ELBO(max_plate_nesting=0)
    estimate = (-tmc.differentiable_loss(config_enumerate(gaussian_model(loc, normal), num_samples=20000),
                                         lambda: None)).exp()
    (grad,) = torch.autograd.grad(estimate, [loc])
    marginal = cp.dist.Normal(0.3, math.sqrt(2.0)).log_prob(torch.tensor(1.0)).exp()
    assert abs(grad.item() - (marginal * (1.0 - 0.3) / 2).item()) < 0.02


def plated_chain():
    p0 = torch.tensor([0.3, 0.7])
    trans = torch.tensor([[0.8, 0.2], [0.3, 0.7]])
    emit = torch.tensor([0.1, 0.85])
    data = torch.tensor([1.0, 0.0, 1.0])

    def model():
        x0 = cp.sample("x0", cp.dist.Categorical(p0))
        with cp.plate("rows", 3):
            x1 = cp.sample("x1", cp.dist.Categorical(trans[x0]))
            cp.sample("y", cp.dist.Bernoulli(emit[x1]), obs=data)
    return model


@pytest.mark.parametrize("strategy", ["diagonal", "mixture"])
def test_sampled_discrete_chain_in_a_plate_matches_exact_enumeration(strategy):
    model = plated_chain()
    exact = TraceEnum_ELBO(max_plate_nesting=1).loss(config_enumerate(model), lambda: None)
    tmc = TraceTMC_ELBO(max_plate_nesting=1)
    losses = [tmc.loss(config_enumerate(model, num_samples=300, tmc=strategy), lambda: None) for _ in range(5)]
    assert abs(math.exp(-sum(losses) / 5) / math.exp(-exact) - 1) < 0.05


def test_exhaustive_enumeration_under_tmc_is_exact():
    model = plated_chain()
    exact = TraceEnum_ELBO(max_plate_nesting=1).loss(config_enumerate(model), lambda: None)
    assert TraceTMC_ELBO(max_plate_nesting=1).loss(config_enumerate(model), lambda: None) == pytest.approx(exact,
                                                                                                         abs=1e-5)


def test_a_guide_proposal_is_importance_weighted():
    # q = N(0.5, 1) for x: the weights p(x) p(y | x) / q(x) still average to p(y) = N(1; 0, 2).
    def guide():
        cp.sample("x", cp.dist.Normal(0.5, 1.0))

    tmc = TraceTMC_ELBO(max_plate_nesting=0)
    loss = tmc.loss(config_enumerate(gaussian_model(torch.tensor(0.0)), num_samples=4000),
                    config_enumerate(guide, num_samples=4000))
    assert loss == pytest.approx(-cp.dist.Normal(0.0, math.sqrt(2.0)).log_prob(torch.tensor(1.0)).item(), abs=0.05)


def test_draws_take_their_own_dim_and_keep_plate_dims():
    def model():
        x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
        with cp.plate("rows", 3):
            cp.sample("z", cp.dist.Normal(x, 1.0))

    tr = cp.trace(cp.handlers.enum(config_enumerate(model, num_samples=7), first_available_dim=-2)).get_trace()
    assert tr.nodes["x"]["value"].shape == (7, 1)
    assert tr.nodes["z"]["value"].shape == (7, 1, 3)   # at dim -3; x's dim -2 collapsed: 7 draws per row


def test_bad_tmc_settings_are_refused():
    model = gaussian_model(torch.tensor(0.0))
    with pytest.raises(ValueError, match="num_samples"):
        config_enumerate(model, num_samples=0)
    with pytest.raises(ValueError, match="tmc"):
        config_enumerate(model, num_samples=3, tmc="stratified")


def test_vectorized_importance_weights_are_log_p_minus_log_q_per_draw():
    def model():
        with cp.plate("rows", 2):
            x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
            cp.sample("y", cp.dist.Normal(x, 1.0), obs=torch.tensor([0.5, -1.0]))

    def guide():
        with cp.plate("rows", 2):
            cp.sample("x", cp.dist.Normal(0.2, 1.0))

    log_w, model_trace, guide_trace = vectorized_importance_weights(model, guide, num_samples=6, max_plate_nesting=1)
    x = guide_trace.nodes["x"]["value"]
    assert x.shape == (6, 2)
    expected = (cp.dist.Normal(0.0, 1.0).log_prob(x) + cp.dist.Normal(x, 1.0).log_prob(torch.tensor([0.5, -1.0]))
                - cp.dist.Normal(0.2, 1.0).log_prob(x)).sum(-1)
    assert torch.allclose(log_w, expected, atol=1e-5)
    normalized, _, _ = vectorized_importance_weights(model, guide, num_samples=6, max_plate_nesting=1,
                                                     normalized=True)
    assert torch.logsumexp(normalized, 0).abs() < 1e-5
    with pytest.raises(ValueError, match="max_plate_nesting"):
        vectorized_importance_weights(model, guide, num_samples=6)
