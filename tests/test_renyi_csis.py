"""RenyiELBO against the exact evidence; CSIS learns the posterior mean map; InitMessenger."""

import math

import pytest
import torch

import causalppl as cp
from causalppl.infer import CSIS, RenyiELBO
from causalppl.infer.initialization import InitMessenger, init_to_generated, init_to_value

pytestmark = pytest.mark.usefixtures("one_thread_seeded")

LOG_EVIDENCE = -0.5 * math.log(2 * math.pi * 2.0)  # z ~ N(0, 1), x | z ~ N(z, 1), x = 0: p(x) = N(0; 0, 2)


def model():
    z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
    cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.tensor(0.0))


def test_renyi_bound_is_exact_with_the_exact_posterior_and_its_gradient_is_unbiased():
    def guide():
        loc = cp.param("loc", torch.tensor(0.0))
        cp.sample("z", cp.dist.Normal(loc, math.sqrt(0.5)))  # the posterior z | x = 0

    for alpha in (0.0, 0.5):
        for vectorize in (False, True):
            elbo = RenyiELBO(alpha=alpha, num_particles=5, vectorize_particles=vectorize)
            # Every weight p(x, z) / q(z) is p(x): the bound is exact for any number of particles.
            assert elbo.loss(model, guide) == pytest.approx(-LOG_EVIDENCE, abs=1e-5)
            assert elbo.loss_and_grads(model, guide) == pytest.approx(-LOG_EVIDENCE, abs=1e-5)
            cp.param("loc").unconstrained().grad = None
        # Each particle's gradient is -eps_k / sigma (mean 0, variance 1 / sigma^2): 5 standard errors.
        k = 20000
        RenyiELBO(alpha=alpha, num_particles=k, vectorize_particles=True).loss_and_grads(model, guide)
        leaf = cp.param("loc").unconstrained()
        assert abs(leaf.grad.item()) < 5 * math.sqrt(2.0 / k)
        leaf.grad = None


def test_iwae_bound_tightens_with_more_particles():
    def prior_guide():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))

    losses = [RenyiELBO(num_particles=k, vectorize_particles=True).loss(model, prior_guide) for k in (1, 5000)]
    # One particle: the ELBO with q = prior, E[-log p(x | z)] = 0.5 log(2 pi) + 0.5; many: -log p(x).
    assert losses[1] == pytest.approx(-LOG_EVIDENCE, abs=0.03)
    with pytest.raises(ValueError, match="Trace_ELBO"):
        RenyiELBO(alpha=1)


def test_csis_learns_the_posterior_mean_of_a_linear_gaussian_model():
    def joint(observations=None):
        observations = observations or {"y": 0.0}
        x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
        cp.sample("y", cp.dist.Normal(x, 1.0), obs=observations["y"])

    def guide(observations=None):
        observations = observations or {"y": 0.0}
        w = cp.param("w", torch.tensor(0.0))
        cp.sample("x", cp.dist.Normal(w * torch.as_tensor(observations["y"]), math.sqrt(0.5)))

    csis = CSIS(joint, guide, cp.optim.Adam({"lr": 0.05}), num_inference_samples=200, training_batch_size=20,
                validation_batch_size=10)
    before = csis.validation_loss()
    assert csis.validation_loss() == before  # a fixed validation batch
    for _ in range(200):
        csis.step()
    assert abs(cp.param("w").item() - 0.5) < 0.1  # E[x | y] = y / 2
    assert csis.validation_loss() < before
    posterior = csis.run({"y": torch.tensor(2.0)})
    assert len(posterior.exec_traces) == 200
    mean = cp.infer.EmpiricalMarginal(posterior, "x").mean
    assert abs(mean.item() - 1.0) < 0.15  # posterior sd 0.71 over 200 weighted draws


def test_init_messenger_sets_latents_and_generated_strategies_refresh_per_run():
    def three():
        return [cp.sample(name, cp.dist.Normal(0.0, 1.0)) for name in "abc"]

    with InitMessenger(init_to_value(values={"a": torch.tensor(2.0)})):
        a, b, c = three()
    assert a.item() == 2.0 and b.item() != 2.0
    calls = []

    def generate():
        calls.append(1)
        return init_to_value(values={"a": torch.tensor(float(len(calls)))})

    with InitMessenger(init_to_generated(generate=generate)):
        values = [three()[0].item() for _ in range(3)]
    assert values == [1.0, 2.0, 3.0] and len(calls) == 3
    observed = cp.handlers.trace(InitMessenger(init_to_value(values={"x": torch.tensor(5.0)}))(model)).get_trace()
    assert observed.nodes["x"]["value"].item() == 0.0  # observed sites keep their data
