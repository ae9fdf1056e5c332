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


def test_mismatched_model_and_guide_are_refused_naming_the_sites():
    def model():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))
        cp.sample("u", cp.dist.Normal(0.0, 1.0))

    def guide():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))
        cp.sample("extra", cp.dist.Normal(0.0, 1.0))

    # A model latent the guide lacks would be scored at a prior draw: not an ELBO. Refused under validation.
    with pytest.raises(ValueError, match=r"Found vars in model but not guide: .*\['u'\]"):
        cp.infer.Trace_ELBO().loss(model, guide)
    with cp.validation_enabled(False):
        elbo = cp.infer.Trace_ELBO()
        with pytest.warns(UserWarning) as record:
            elbo.loss(model, guide)
        messages = [str(w.message) for w in record]
        assert any("'extra', which the model does not have" in m for m in messages)
        assert any("latent site(s) ['u'], which the guide does not" in m for m in messages)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            elbo.loss(model, guide)  # checked once: no second round of warnings


@pytest.mark.parametrize("subsample_size", [None, 5])
def test_a_plate_in_the_guide_but_not_the_model_is_refused_with_its_name(subsample_size):
    def model():
        cp.sample("x", cp.dist.Bernoulli(torch.tensor(0.5)))

    def guide():
        p = cp.param("p", torch.tensor(0.5), constraint=cp.dist.constraints.unit_interval)
        for _ in cp.plate("rows", 10, subsample_size):
            pass
        cp.sample("x", cp.dist.Bernoulli(p))

    for elbo in (cp.infer.Trace_ELBO(), cp.infer.TraceEnum_ELBO(max_plate_nesting=0)):
        with pytest.raises(ValueError, match=r"Found plate statements in guide but not model: \['rows'\]"):
            elbo.loss(model, guide)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with cp.validation_enabled(False):
            cp.infer.Trace_ELBO().loss(model, guide)


# ---------------------------------------------------------------------------
# Score-function gradients: closed forms under scale, subsampling and big plates
# ---------------------------------------------------------------------------
#
# Model: z_i ~ Bernoulli(0.3), x_i ~ Normal(3 z_i, 1) observed; guide:
# z_i ~ Bernoulli(sigmoid(logit)), one shared logit. Bernoulli has no rsample,
# so d loss / d logit comes from score terms only. With q = sigmoid(logit) and
# c_i(z) = log p(z) + log N(x_i; 3z, 1) - log q(z), row i's estimate is
# -(z_i - q) * scale * c_i(z_i): its mean and variance are exact sums over z_i.

PRIOR = 0.3


def row_cost(x, z, logit):
    q = torch.sigmoid(torch.tensor(logit)).item()
    log_prior = math.log(PRIOR if z else 1 - PRIOR)
    log_q = math.log(q if z else 1 - q)
    return log_prior - 0.5 * math.log(2 * math.pi) - 0.5 * (x - 3.0 * z) ** 2 - log_q


def row_gradient_moments(x, logit=0.0, scale=1.0):
    """(mean, variance) of one row's Rao-Blackwellised score estimate of d loss / d logit."""
    q = torch.sigmoid(torch.tensor(logit)).item()
    on = -scale * (1 - q) * row_cost(x, 1, logit)
    off = scale * q * row_cost(x, 0, logit)
    mean = q * on + (1 - q) * off
    return mean, q * on**2 + (1 - q) * off**2 - mean**2


def exact_gradient(data, logit=0.0, scale=1.0):
    """d loss / d logit in closed form, and the sd of the per-row (Rao-Blackwellised) estimator."""
    moments = [row_gradient_moments(x, logit, scale) for x in data.tolist()]
    return sum(m for m, _ in moments), math.sqrt(sum(v for _, v in moments))


def rows_model_and_guide(data, subsample_size=None):
    size = len(data)

    def model():
        with cp.plate("rows", size, subsample_size=subsample_size) as idx:
            z = cp.sample("z", cp.dist.Bernoulli(PRIOR))
            cp.sample("x", cp.dist.Normal(3.0 * z, 1.0), obs=data[idx])

    def guide():
        logit = cp.param("logit", torch.tensor(0.0))
        with cp.plate("rows", size, subsample_size=subsample_size):
            cp.sample("z", cp.dist.Bernoulli(logits=logit))

    return model, guide


def logit_gradients(elbo, model, guide, repeats, name="logit"):
    grads = []
    for _ in range(repeats):
        loss = elbo.differentiable_loss(model, guide)
        (grad,) = torch.autograd.grad(loss, [cp.get_param_store().leaf(name)])
        grads.append(grad)
    return torch.stack(grads)


def mixture_data(n, seed):
    generator = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=generator) < PRIOR
    return 3.0 * z + torch.randn(n, generator=generator)


def test_score_gradient_under_scale_counts_the_scale_once():
    data = torch.tensor([0.0, 1.0, 2.5])
    model, guide = rows_model_and_guide(data)
    particles = 20000
    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=True)
    grad = logit_gradients(elbo, cp.handlers.scale(model, scale=2.0), cp.handlers.scale(guide, scale=2.0), 1)
    exact, sd = exact_gradient(data, scale=2.0)
    # Twice the unscaled gradient (scale counted twice would give four times it).
    assert exact == pytest.approx(2 * exact_gradient(data)[0])
    assert abs(grad.item() - exact) < 5 * sd / math.sqrt(particles)


def test_score_gradient_under_plate_subsampling_is_unbiased_for_the_full_data():
    data = mixture_data(100, seed=2)
    model, guide = rows_model_and_guide(data, subsample_size=10)
    repeats = 1000
    grads = logit_gradients(Trace_ELBO(), model, guide, repeats)
    exact, _ = exact_gradient(data)  # the full-data gradient: all 100 rows, no subsampling
    assert abs(grads.mean().item() - exact) < 5 * grads.std().item() / math.sqrt(repeats)
    # Scaling the score as well as the cost would make the mean ten times too large.
    assert grads.std().item() < 3 * abs(exact)


def test_score_gradient_in_a_plate_of_1000_is_rao_blackwellised():
    data = mixture_data(1000, seed=1)
    model, guide = rows_model_and_guide(data)
    repeats = 200
    grads = logit_gradients(Trace_ELBO(), model, guide, repeats)
    exact, exact_sd = exact_gradient(data)  # about 700 and 65
    assert abs(grads.mean().item() - exact) < 4 * grads.std().item() / math.sqrt(repeats)
    # Each row's score sees only its own row's cost: the sd is that of a sum of
    # 1,000 independent rows. Weighting by the whole ELBO gives an sd near 60,000.
    assert 0.75 * exact_sd < grads.std().item() < 1.3 * exact_sd


def test_vectorized_particles_average_the_rao_blackwellised_score():
    data = mixture_data(1000, seed=1)
    model, guide = rows_model_and_guide(data)
    repeats, particles = 60, 10
    grads = logit_gradients(Trace_ELBO(num_particles=particles, vectorize_particles=True), model, guide, repeats)
    exact, exact_sd = exact_gradient(data)
    assert abs(grads.mean().item() - exact) < 4 * grads.std().item() / math.sqrt(repeats)
    assert grads.std().item() < 1.5 * exact_sd / math.sqrt(particles)


def test_mean_field_score_gradient_counts_the_scale_once():
    data = torch.tensor([0.0, 1.0, 2.5])
    model, guide = rows_model_and_guide(data)
    particles = 20000
    elbo = TraceMeanField_ELBO(num_particles=particles, vectorize_particles=True)
    grad = logit_gradients(elbo, cp.handlers.scale(model, scale=2.0), cp.handlers.scale(guide, scale=2.0), 1)
    # With KL(Bernoulli || Bernoulli) analytic, only log N(x_i; 3 z_i, 1) is sampled; same mean.
    exact, sd = exact_gradient(data, scale=2.0)
    assert abs(grad.item() - exact) < 5 * sd / math.sqrt(particles)


# ---------------------------------------------------------------------------
# TraceGraph_ELBO: downstream costs only, and baselines
# ---------------------------------------------------------------------------

X_OBS = 4.0  # far from both components' means, so costs have a large common offset


def one_row_model():
    z = cp.sample("z", cp.dist.Bernoulli(PRIOR))
    cp.sample("x", cp.dist.Normal(3.0 * z, 1.0), obs=torch.tensor(X_OBS))


def one_row_guide(baseline=None, net=None):
    if net is not None:
        cp.module("baseline", net)
    logit = cp.param("logit", torch.tensor(0.0))
    cp.sample("z", cp.dist.Bernoulli(logits=logit), infer={"baseline": baseline} if baseline else {})


def test_tracegraph_drops_upstream_costs():
    # An upstream, unrelated latent u (scored before z in both model and guide)
    # adds noise to Trace_ELBO's weight for z but not to TraceGraph_ELBO's.
    def model():
        u = cp.sample("u", cp.dist.Normal(0.0, 3.0))
        cp.sample("y", cp.dist.Normal(u, 1.0), obs=torch.tensor(2.0))
        one_row_model()

    def guide():
        cp.sample("u", cp.dist.Normal(cp.param("u_loc", torch.tensor(0.0)), 2.0))
        one_row_guide()

    repeats = 400
    trace_grads = logit_gradients(Trace_ELBO(), model, guide, repeats)
    graph_grads = logit_gradients(cp.infer.TraceGraph_ELBO(), model, guide, repeats)
    exact, exact_sd = exact_gradient(torch.tensor([X_OBS]))
    for grads in (trace_grads, graph_grads):
        assert abs(grads.mean().item() - exact) < 4 * grads.std().item() / math.sqrt(repeats)
    assert graph_grads.std().item() == pytest.approx(exact_sd, rel=0.2)
    assert graph_grads.std() < trace_grads.std() / 2


def test_decaying_average_baseline_reduces_variance_and_keeps_the_mean():
    repeats, warmup = 400, 50
    exact, exact_sd = exact_gradient(torch.tensor([X_OBS]))  # about -1.66 and 2.6
    plain = logit_gradients(cp.infer.TraceGraph_ELBO(), one_row_model, one_row_guide, repeats)
    assert plain.std().item() == pytest.approx(exact_sd, rel=0.15)

    def guide():
        one_row_guide({"use_decaying_avg_baseline": True, "baseline_beta": 0.9})

    with_baseline = logit_gradients(cp.infer.TraceGraph_ELBO(), one_row_model, guide, repeats)[warmup:]
    # At q = 1/2 the baseline E[cost] would remove all variance; a running average gets close.
    assert with_baseline.std() < plain.std() / 3
    tol = 4 * with_baseline.std().item() / math.sqrt(repeats - warmup)
    assert abs(with_baseline.mean().item() - exact) < tol


def test_nn_baseline_is_trained_by_its_squared_error_and_reduces_variance():
    net = torch.nn.Linear(1, 1)
    torch.nn.init.zeros_(net.weight)
    torch.nn.init.zeros_(net.bias)

    def guide():
        one_row_guide({"nn_baseline": net, "nn_baseline_input": torch.ones(1)}, net=net)

    elbo = cp.infer.TraceGraph_ELBO()
    # Train only the baseline: the logit stays at 0, where the closed forms hold.
    optim = cp.optim.Adam(lambda name: {"lr": 0.0 if name == "logit" else 0.1})
    svi = cp.infer.SVI(one_row_model, guide, optim, elbo)
    for _ in range(300):
        svi.step()
    assert cp.param("logit").item() == 0.0
    # The net learns E[cost] = (c(1) + c(0)) / 2 at q = 1/2 (about -5.3).
    expected = 0.5 * (row_cost(X_OBS, 1, 0.0) + row_cost(X_OBS, 0, 0.0))
    output = net(torch.ones(1)).item()
    assert output == pytest.approx(expected, abs=0.7)
    repeats = 300
    grads = logit_gradients(elbo, one_row_model, guide, repeats)
    exact, exact_sd = exact_gradient(torch.tensor([X_OBS]))
    assert grads.std().item() < exact_sd / 3
    assert abs(grads.mean().item() - exact) < 4 * grads.std().item() / math.sqrt(repeats) + 1e-6


def test_tracegraph_loss_equals_trace_elbo_loss_and_rejects_bad_baselines():
    cp.set_rng_seed(3)
    trace_loss = Trace_ELBO().loss(one_row_model, one_row_guide)
    cp.set_rng_seed(3)
    graph_loss = cp.infer.TraceGraph_ELBO().loss(one_row_model, one_row_guide)
    assert graph_loss == trace_loss

    def typo_guide():
        one_row_guide({"use_decaying_average": True})

    with pytest.raises(ValueError, match=r"site 'z'.*use_decaying_average"):
        cp.infer.TraceGraph_ELBO().differentiable_loss(one_row_model, typo_guide)

    def wrong_shape_guide():
        one_row_guide({"baseline_value": torch.zeros(3)})

    with pytest.raises(ValueError, match=r"site 'z'.*shape \(3,\)"):
        cp.infer.TraceGraph_ELBO().differentiable_loss(one_row_model, wrong_shape_guide)


@pytest.mark.parametrize("loss", [Trace_ELBO, TraceMeanField_ELBO, cp.infer.TraceGraph_ELBO])
def test_pyro_elbo_keywords_are_accepted(loss):
    elbo = loss(num_particles=2, max_plate_nesting=1, max_iarange_nesting=1, vectorize_particles=True,
                strict_enumeration_warning=False, retain_graph=True, ignore_jit_warnings=True, jit_options={})
    assert elbo.max_plate_nesting == 1 and elbo.num_particles == 2
    assert loss(max_plate_nesting=float("inf")).max_plate_nesting is None
    cp.clear_param_store()
    elbo.loss_and_grads(gauss_model, gauss_guide)
    elbo.loss_and_grads(gauss_model, gauss_guide)  # retain_graph: a second backward is fine
    assert cp.get_param_store().leaf("loc").grad is not None


def test_vectorized_particles_go_left_of_a_plate_with_an_explicit_dim():
    def model():
        with cp.plate("rows", 3, dim=-2):
            cp.sample("x", cp.dist.Normal(0.0, 1.0).expand([3, 1]), obs=torch.zeros(3, 1))

    elbo = Trace_ELBO(num_particles=4, vectorize_particles=True)
    assert elbo.loss(model, lambda: None) == pytest.approx(3 * 0.5 * math.log(2 * math.pi))
    assert elbo.max_plate_nesting == 2


# ---------------------------------------------------------------------------
# Shape validation (Pyro's check_model_guide_match and check_site_shape), once per ELBO
# ---------------------------------------------------------------------------


def test_event_dims_that_disagree_between_model_and_guide_name_the_site():
    def model():
        cp.sample("w", cp.dist.Normal(torch.zeros(3), 1.0).to_event(1))

    def guide():
        cp.sample("w", cp.dist.Normal(torch.zeros(3), 1.0))

    with pytest.raises(ValueError, match=r"event_dims disagree at site 'w': 1 in the model.*0 in the guide"):
        Trace_ELBO().loss(model, guide)


def test_shapes_that_disagree_between_model_and_guide_name_the_site():
    def model():
        with cp.plate("rows", 4):
            cp.sample("z", cp.dist.Normal(0.0, 1.0))

    def guide():
        cp.sample("z", cp.dist.Normal(torch.zeros(3), 1.0).to_event(1))

    with pytest.raises(ValueError, match=r"event_dims disagree at site 'z'"):
        TraceMeanField_ELBO().loss(model, guide)

    def guide2():
        with cp.plate("rows", 4):
            cp.sample("z", cp.dist.Normal(torch.zeros(2, 1), 1.0))

    with pytest.raises(ValueError, match=r"shapes disagree at site 'z': \(4,\) in the model, \(2, 4\) in the guide"):
        Trace_ELBO().loss(model, guide2)


def test_batch_dims_that_no_plate_declares_name_the_site():
    def model():
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.zeros(5))

    def guide():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"model site 'x'.*shape \(5,\).*dim -1, which no plate declares"):
        Trace_ELBO().loss(model, guide)

    def plated_model():
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        with cp.plate("rows", 5, dim=-1):
            cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.zeros(2, 5))

    with pytest.raises(ValueError, match=r"model site 'x'.*size 2 at dim -2, which no plate declares"):
        cp.infer.TraceGraph_ELBO().loss(plated_model, guide)
    # A guide site can be at fault too.
    def rows_model():
        with cp.plate("rows", 3):
            cp.sample("z", cp.dist.Normal(0.0, 1.0))

    def batched_guide():  # the right shape, but no plate declares its dim
        cp.sample("z", cp.dist.Normal(torch.zeros(3), 1.0))

    with pytest.raises(ValueError, match=r"guide site 'z'.*size 3 at dim -1, which no plate declares"):
        Trace_ELBO().loss(rows_model, batched_guide)


def test_declared_dims_size_less_plates_and_max_plate_nesting_pass_the_check():
    data = torch.zeros(2, 5)

    def model():
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        with cp.plate("cols", 5, dim=-1), cp.plate("rows", dim=-2):
            cp.sample("x", cp.dist.Normal(z, 1.0), obs=data)

    def guide():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))

    assert math.isfinite(Trace_ELBO().loss(model, guide))  # "rows" has no size: any size at dim -2

    def loose_model():
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        with cp.plate("cols", 5, dim=-1):
            cp.sample("x", cp.dist.Normal(z, 1.0), obs=data)

    assert math.isfinite(Trace_ELBO(max_plate_nesting=1).loss(loose_model, guide))  # dim -2 is left of it
    with cp.validation_enabled(False):
        assert math.isfinite(Trace_ELBO().loss(loose_model, guide))
    assert cp.runtime.is_validation_enabled()


def test_shape_checks_run_once_per_elbo(monkeypatch):
    from causalppl.infer import elbo as elbo_module

    calls = []
    check = elbo_module.check_site_shape
    monkeypatch.setattr(elbo_module, "check_site_shape", lambda *a, **k: calls.append(a[1]["name"]) or check(*a, **k))
    loss = Trace_ELBO()
    cp.clear_param_store()
    for _ in range(3):
        loss.loss(gauss_model, gauss_guide)
    assert sorted(calls) == ["x", "z", "z"]  # model x, z and guide z, on the first run only


def test_svi_loss_and_grads_accumulates_the_closed_form_gradient_without_a_step():
    # z_i ~ N(0, 1), x_i ~ N(z_i, 1); guide N(loc_i, scale) at loc = 0, scale = 1:
    # d(-ELBO)/d loc_i = -x_i and d(-ELBO)/d scale = sum_i (2 scale - 1 / scale) = 2.
    cp.clear_param_store()
    cp.set_rng_seed(0)
    data = torch.tensor([-0.5, 2.0])

    def model(rows):
        with cp.plate("data", 2, subsample=rows) as ind:
            z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
            cp.sample("x", cp.dist.Normal(z, 1.0), obs=data[ind])

    def guide(rows):
        loc = cp.param("loc", lambda: torch.zeros(2))
        scale = cp.param("scale", lambda: torch.ones(1), constraint=cp.dist.constraints.positive)
        with cp.plate("data", 2, subsample=rows) as ind:
            cp.sample("z", cp.dist.Normal(loc[ind], scale))

    elbo = Trace_ELBO(num_particles=20000, vectorize_particles=True, max_plate_nesting=1)
    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.1}), elbo)
    svi.loss_and_grads(model, guide, torch.tensor([0]))
    svi.loss_and_grads(model, guide, torch.tensor([1]))  # grads add up over the two halves
    store = cp.get_param_store()
    assert store["loc"].tolist() == [0.0, 0.0]  # no optimiser step was taken
    loc_grad = store.leaf("loc").grad / 2
    scale_grad = store.leaf("scale").grad / 2  # the unconstrained (log) scale: chain rule times scale = 1
    assert torch.allclose(loc_grad, torch.tensor([0.5, -2.0]), atol=0.06)
    assert scale_grad.item() == pytest.approx(2.0, abs=0.06)
