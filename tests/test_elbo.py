"""ELBO estimators: Trace_ELBO (pathwise + score function), particles, TraceMeanField_ELBO."""

import math
import warnings

import pytest
import torch

import causalppl as cp
from causalppl.infer import NonFiniteLossError, Trace_ELBO, TraceMeanField_ELBO

pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def gauss_model(x=2.0):
    z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
    cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.tensor(x))


def gauss_guide(x=2.0, loc=0.0, scale=0.5):
    loc = cp.param("loc", torch.tensor(loc))
    scale = cp.param("scale", torch.tensor(scale), constraint=cp.constraints.positive)
    cp.sample("z", cp.dist.Normal(loc, scale))


def grad_samples(elbo, repeats, name="loc"):
    """``repeats`` independent estimates of d loss / d param ``name``."""
    grads = []
    for _ in range(repeats):
        loss = elbo.differentiable_loss(gauss_model, gauss_guide)
        leaf = cp.get_param_store().leaf(name)
        (grad,) = torch.autograd.grad(loss, [leaf])
        grads.append(grad)
    return torch.stack(grads)


def test_loss_is_zero_when_guide_equals_prior():
    def model():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))

    assert Trace_ELBO().loss(model, model) == 0.0
    assert Trace_ELBO(num_particles=5, vectorize_particles=True).loss(model, model) == 0.0


def test_gradient_is_unbiased_against_the_analytic_value():
    # -ELBO(loc, s) = KL(N(loc, s) || N(0, 1)) - E log N(2; z, 1); d/dloc = loc - (2 - loc) = -2 at 0.
    repeats = 400
    grads = grad_samples(Trace_ELBO(num_particles=10, vectorize_particles=True), repeats)
    tol = 5 * grads.std() / math.sqrt(repeats)
    assert abs(grads.mean().item() + 2.0) < tol


def test_vectorized_particles_lower_gradient_variance_and_match_the_loop():
    repeats = 300
    single = grad_samples(Trace_ELBO(), repeats)
    vectorized = grad_samples(Trace_ELBO(num_particles=10, vectorize_particles=True), repeats)
    loop = grad_samples(Trace_ELBO(num_particles=10), repeats)
    # Ten particles: a tenth of the variance, in expectation.
    assert vectorized.var() < single.var() / 5
    assert loop.var() < single.var() / 5
    tol = 5 * math.sqrt((vectorized.var() + loop.var()).item() / repeats)
    assert abs(vectorized.mean().item() - loop.mean().item()) < tol


def test_vectorized_particles_inside_plates():
    data = torch.tensor([0.0, 1.0, 2.0])

    def model():
        mu = cp.sample("mu", cp.dist.Normal(0.0, 1.0))
        with cp.plate("rows", 3):
            cp.sample("x", cp.dist.Normal(mu, 1.0), obs=data)

    def guide():
        cp.sample("mu", cp.dist.Normal(cp.param("m", torch.tensor(0.0)), 1.0))

    elbo = Trace_ELBO(num_particles=4000, vectorize_particles=True)
    # Exact: q is the prior, so -ELBO = -E sum_i log N(x_i; mu, 1) = 3/2 log 2pi + (sum x_i^2 + 3) / 2;
    # its per-particle sd is about 2, so 4000 particles give a standard error near 0.03.
    exact = 3 * 0.5 * math.log(2 * math.pi) + 0.5 * float((data**2).sum() + 3)
    assert abs(elbo.loss(model, guide) - exact) < 0.25
    assert elbo.max_plate_nesting == 1


def bernoulli_model():
    z = cp.sample("z", cp.dist.Bernoulli(0.3))
    cp.sample("x", cp.dist.Normal(3 * z, 1.0), obs=torch.tensor(1.0))


def bernoulli_guide():
    cp.sample("z", cp.dist.Bernoulli(logits=cp.param("logit", torch.tensor(0.0))))


@pytest.mark.parametrize("loss", [Trace_ELBO, TraceMeanField_ELBO])
def test_score_function_reaches_the_exact_bernoulli_posterior(loss):
    # p(z=1 | x=1) by Bayes: 0.3 N(1; 3, 1) / (0.3 N(1; 3, 1) + 0.7 N(1; 0, 1)).
    on, off = 0.3 * math.exp(-2.0), 0.7 * math.exp(-0.5)
    exact = on / (on + off)
    steps = 1000
    svi = cp.infer.SVI(
        bernoulli_model, bernoulli_guide,
        cp.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / steps)}),
        loss(num_particles=20, vectorize_particles=True),
    )
    tail = []
    for step in range(steps):
        svi.step()
        if step >= steps - 200:
            tail.append(torch.sigmoid(cp.param("logit")).item())
    # Tail-averaged estimate; the guide's optimum is the exact posterior.
    assert abs(sum(tail) / len(tail) - exact) < 0.02


def test_mean_field_loss_is_the_analytic_kl():
    def prior_only():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))

    def guide():
        cp.sample("z", cp.dist.Normal(cp.param("loc", torch.tensor(0.7)), 0.5))

    kl = torch.distributions.kl_divergence(cp.dist.Normal(0.7, 0.5), cp.dist.Normal(0.0, 1.0))
    assert TraceMeanField_ELBO().loss(prior_only, guide) == pytest.approx(kl.item(), abs=1e-6)
    assert TraceMeanField_ELBO(num_particles=3, vectorize_particles=True).loss(prior_only, guide) == (
        pytest.approx(kl.item(), abs=1e-6)
    )
    # With data: -ELBO = KL - E_q log N(x; z, 1), whose expectation is closed form.
    cp.clear_param_store()
    loc, scale, x = 0.0, 0.5, 2.0
    kl = torch.distributions.kl_divergence(cp.dist.Normal(loc, scale), cp.dist.Normal(0.0, 1.0)).item()
    exact = kl + 0.5 * math.log(2 * math.pi) + 0.5 * ((x - loc) ** 2 + scale**2)
    n = 4000
    estimate = TraceMeanField_ELBO(num_particles=n, vectorize_particles=True).loss(gauss_model, gauss_guide)
    # The only random term is 0.5 (x - z)^2, with sd (x - loc) * scale = 1 per particle.
    assert abs(estimate - exact) < 5 / math.sqrt(n)


def test_mean_field_gradient_has_lower_variance_and_the_same_mean():
    repeats = 300
    trace = grad_samples(Trace_ELBO(), repeats)
    mean_field = grad_samples(TraceMeanField_ELBO(), repeats)
    # d/dloc: Trace_ELBO's estimate x + 2z - 4 loc (var 4 s^2 = 1); mean field x - z - loc (var s^2).
    assert mean_field.var() < trace.var() / 2
    tol = 5 * math.sqrt((trace.var() + mean_field.var()).item() / repeats)
    assert abs(trace.mean().item() - mean_field.mean().item()) < tol


def test_mean_field_falls_back_to_sampling_without_a_registered_kl():
    def model():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))

    def guide():
        cp.sample("z", cp.dist.Delta(cp.param("v", torch.tensor(0.5))))

    # No KL(Delta || Normal): the sampled term log q - log p = 0 - log N(0.5; 0, 1).
    expected = -cp.dist.Normal(0.0, 1.0).log_prob(torch.tensor(0.5)).item()
    assert TraceMeanField_ELBO().loss(model, guide) == pytest.approx(expected, abs=1e-6)


def test_auxiliary_guide_sites_do_not_warn():
    def model():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))

    def guide():
        u = cp.sample("u", cp.dist.Normal(0.0, 1.0), infer={"is_auxiliary": True})
        cp.sample("z", cp.dist.Delta(u))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trace_ELBO().loss(model, guide)

    def stray_guide():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))
        cp.sample("typo", cp.dist.Normal(0.0, 1.0))

    with pytest.warns(UserWarning, match="typo"):
        Trace_ELBO().loss(model, stray_guide)


def test_nan_factor_stops_svi_naming_step_and_site():
    def model():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))
        cp.factor("bad", torch.tensor(float("nan")))

    def guide():
        cp.sample("z", cp.dist.Normal(cp.param("loc", torch.tensor(0.0)), 1.0))

    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.1}), Trace_ELBO())
    with pytest.raises(NonFiniteLossError, match=r"step 1\b.*'bad'"):
        svi.step()
    assert cp.param("loc").item() == 0.0


def test_infinite_observation_at_a_later_step_names_it():
    def model(x):
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        cp.sample("x", cp.dist.Normal(z, 1.0), obs=x)

    def guide(x):
        cp.sample("z", cp.dist.Normal(cp.param("loc", torch.tensor(0.0)), 1.0))

    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.1}), Trace_ELBO())
    svi.step(torch.tensor(1.0))
    svi.step(torch.tensor(1.0))
    with pytest.raises(NonFiniteLossError, match=r"step 3\b.*model site 'x'"):
        svi.step(torch.tensor(float("inf")))


def test_mismatched_model_and_guide_warn_once_naming_the_sites():
    def model():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))
        cp.sample("u", cp.dist.Normal(0.0, 1.0))

    def guide():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))
        cp.sample("extra", cp.dist.Normal(0.0, 1.0))

    elbo = cp.infer.Trace_ELBO()
    with pytest.warns(UserWarning) as record:
        elbo.loss(model, guide)
    messages = [str(w.message) for w in record]
    assert any("'extra', which the model does not have" in m for m in messages)
    assert any("latent site 'u', which the guide does not" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        elbo.loss(model, guide)  # checked once: no second round of warnings
