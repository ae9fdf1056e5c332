"""Pyro's distributions that torch lacks, and the cp.dist submodules (issue 15, Pyro parity).

Densities are checked against closed forms, against numerical integrals of
the hierarchical model they marginalise, and by summing to one over their
support; moments against exact sums and Monte Carlo (tolerances from the
sample size); shapes through expand / to_event / mask and inside cp.sample.
"""

import itertools
import math

import pytest
import torch

import causalppl as cp
from causalppl import distributions as dist
from causalppl.distributions import constraints

pytestmark = pytest.mark.usefixtures("one_thread_seeded")


# ---------------------------------------------------------------- helpers

def assert_moments(samples, mean, variance, sigmas=5.0):
    """Sample mean and variance agree with ``mean``/``variance`` within ``sigmas`` standard errors.

    The standard error of the mean is sqrt(var / n); that of the variance is
    estimated from the spread of the squared deviations.
    """
    n = samples.shape[0]
    samples = samples.double()
    mean, variance = torch.as_tensor(mean).double(), torch.as_tensor(variance).double()
    se_mean = (variance / n).sqrt()
    assert ((samples.mean(0) - mean).abs() <= sigmas * se_mean + 1e-9).all(), (samples.mean(0), mean, se_mean)
    squared = (samples - mean).pow(2)
    se_var = squared.std(0) / math.sqrt(n)
    assert ((squared.mean(0) - variance).abs() <= sigmas * se_var + 1e-9).all(), (squared.mean(0), variance)


def trapezoid_over_t(log_integrand, lo, hi, steps=200_001):
    """``int exp(log_integrand(t)) dt`` on [lo, hi] in float64 (smooth, fast-decaying integrands)."""
    t = torch.linspace(lo, hi, steps, dtype=torch.float64)
    return torch.trapezoid(log_integrand(t).exp(), t, dim=0)


def exact_moments(d, support):
    """Mean and variance of a univariate discrete ``d`` by summing over ``support`` (dim 0)."""
    p = d.log_prob(support).exp()
    mean = (p * support).sum(0)
    return mean, (p * (support - mean).pow(2)).sum(0)


# ---------------------------------------------------------------- GammaPoisson

def test_gamma_poisson_is_the_gamma_mixture_of_poissons():
    a, b = torch.tensor([0.7, 3.0], dtype=torch.float64), torch.tensor([0.4, 2.5], dtype=torch.float64)
    d = dist.GammaPoisson(a, b)
    for k in range(0, 25, 3):
        # lam = exp(t): int Poisson(k | lam) Gamma(lam | a, b) lam dt
        def log_integrand(t, k=k):
            lam = t.exp()[:, None]
            return (torch.distributions.Poisson(lam).log_prob(torch.tensor(float(k), dtype=torch.float64))
                    + torch.distributions.Gamma(a, b).log_prob(lam) + t[:, None])
        integral = trapezoid_over_t(log_integrand, -60.0, 8.0)
        assert torch.allclose(d.log_prob(torch.tensor(float(k), dtype=torch.float64)).exp(), integral, rtol=1e-6)


def test_gamma_poisson_matches_negative_binomial_and_its_moments():
    a, b = torch.tensor([0.5, 2.0, 7.0]), torch.tensor([0.3, 1.0, 4.0])
    d = dist.GammaPoisson(a, b)
    k = torch.arange(400.0)[:, None]
    nb = torch.distributions.NegativeBinomial(a, probs=1 / (1 + b))
    assert torch.allclose(d.log_prob(k), nb.log_prob(k), atol=1e-4)
    assert torch.allclose(d.log_prob(k).exp().sum(0), torch.ones(3), atol=1e-4)
    mean, var = exact_moments(d, k.double())
    assert torch.allclose(mean.float(), d.mean, rtol=1e-3) and torch.allclose(var.float(), d.variance, rtol=1e-3)
    assert torch.allclose(d.mean, a / b) and torch.allclose(d.variance, a / b + a / b**2)
    assert_moments(d.sample((40_000,)), d.mean, d.variance)


# ---------------------------------------------------------------- BetaBinomial

def test_beta_binomial_is_the_beta_mixture_of_binomials():
    a = torch.tensor([0.6, 2.0, 5.0], dtype=torch.float64)
    b = torch.tensor([0.8, 3.0, 1.5], dtype=torch.float64)
    n = torch.tensor([7.0, 7.0, 12.0], dtype=torch.float64)
    d = dist.BetaBinomial(a, b, total_count=n)
    for k in range(0, 8):
        k_ = torch.tensor(float(k), dtype=torch.float64)

        # p = sigmoid(t): int Binomial(k | n, p) Beta(p | a, b) p (1 - p) dt, all in log space.
        def log_integrand(t, k_=k_):
            t = t[:, None]
            log_p, log_q = torch.nn.functional.logsigmoid(t), torch.nn.functional.logsigmoid(-t)
            log_beta_ab = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
            return (torch.distributions.Binomial(n, logits=t).log_prob(k_)
                    + a * log_p + b * log_q - log_beta_ab)
        integral = trapezoid_over_t(log_integrand, -80.0, 80.0)
        assert torch.allclose(d.log_prob(k_).exp(), integral, rtol=1e-6)


def test_beta_binomial_sums_to_one_and_moments_agree():
    d = dist.BetaBinomial(torch.tensor([1.0, 0.5, 4.0]), torch.tensor([1.0, 2.0, 0.7]), total_count=9)
    support = d.enumerate_support()
    assert support.shape == (10, 3) and d.enumerate_support(expand=False).shape == (10, 1)
    assert torch.allclose(d.log_prob(support).exp().sum(0), torch.ones(3), atol=1e-5)
    # Beta(1, 1): uniform on 0..n.
    assert torch.allclose(d.log_prob(support)[:, 0].exp(), torch.full((10,), 0.1), atol=1e-6)
    mean, var = exact_moments(d, support)
    assert torch.allclose(mean, d.mean, rtol=1e-4) and torch.allclose(var, d.variance, rtol=1e-4)
    assert_moments(d.sample((40_000,)), d.mean, d.variance)
    with pytest.raises(NotImplementedError, match="total_count"):
        dist.BetaBinomial(1.0, 1.0, total_count=torch.tensor([2.0, 3.0])).enumerate_support()


def test_beta_binomial_integer_total_count_and_support():
    d = dist.BetaBinomial(2.0, 3.0, total_count=torch.tensor([4, 6]))
    assert d.total_count.dtype == torch.float32 and d.concentration1.dtype == torch.float32
    assert d.support.check(torch.tensor([4.0, 6.0])).all() and not d.support.check(torch.tensor([5.0, 7.0])).any()
    assert (d.sample((200,)) <= torch.tensor([4.0, 6.0])).all()


# ---------------------------------------------------------------- DirichletMultinomial

def compositions(n, k):
    """All count vectors of length k summing to n."""
    for cuts in itertools.combinations(range(n + k - 1), k - 1):
        edges = (-1,) + cuts + (n + k - 1,)
        yield [edges[i + 1] - edges[i] - 1 for i in range(k)]


def test_dirichlet_multinomial_sums_to_one_and_reduces_to_beta_binomial():
    alpha = torch.tensor([0.5, 1.5, 3.0])
    d = dist.DirichletMultinomial(alpha, total_count=5)
    values = torch.tensor(list(compositions(5, 3)), dtype=torch.float32)
    p = d.log_prob(values).exp()
    assert torch.allclose(p.sum(), torch.tensor(1.0), atol=1e-5)
    mean = (p[:, None] * values).sum(0)
    var = (p[:, None] * (values - mean).pow(2)).sum(0)
    assert torch.allclose(mean, d.mean, atol=1e-4) and torch.allclose(var, d.variance, atol=1e-4)
    # Two categories: the count of the first is BetaBinomial(a1, a0, n).
    two = dist.DirichletMultinomial(torch.tensor([2.0, 0.7]), total_count=6)
    k = torch.arange(7.0)
    bb = dist.BetaBinomial(2.0, 0.7, total_count=6)
    assert torch.allclose(two.log_prob(torch.stack([k, 6 - k], -1)), bb.log_prob(k), atol=1e-5)
    sparse = dist.DirichletMultinomial(alpha, total_count=5, is_sparse=True)
    assert torch.allclose(sparse.log_prob(values), d.log_prob(values), atol=1e-5)


def test_dirichlet_multinomial_is_the_dirichlet_mixture_of_multinomials():
    alpha = torch.tensor([1.2, 0.4, 2.0], dtype=torch.float64)
    x = torch.tensor([2.0, 0.0, 3.0], dtype=torch.float64)
    probs = torch.distributions.Dirichlet(alpha).sample((200_000,))
    pmf = torch.distributions.Multinomial(5, probs=probs).log_prob(x).exp()
    se = pmf.std() / math.sqrt(len(pmf))
    exact = dist.DirichletMultinomial(alpha, total_count=5).log_prob(x).exp()
    assert abs(pmf.mean() - exact) < 5 * se


def test_dirichlet_multinomial_draws_with_a_total_count_per_row():
    d = dist.DirichletMultinomial(torch.tensor([[1.0, 2.0, 3.0]]), total_count=torch.tensor([4.0, 11.0]))
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    x = d.sample((20_000,))
    assert x.shape == (20_000, 2, 3) and (x.sum(-1) == torch.tensor([4.0, 11.0])).all()
    assert (x >= 0).all() and (x == x.round()).all()
    assert_moments(x, d.mean, d.variance)


# ---------------------------------------------------------------- zero inflation

def test_zero_inflated_poisson_closed_form():
    rate, gate = torch.tensor([0.5, 3.0]), torch.tensor([0.2, 0.6])
    d = dist.ZeroInflatedPoisson(rate, gate=gate)
    poisson = torch.distributions.Poisson(rate)
    assert torch.allclose(d.log_prob(torch.tensor(0.0)).exp(), gate + (1 - gate) * (-rate).exp())
    for k in (1.0, 2.0, 7.0):
        k = torch.tensor(k)
        assert torch.allclose(d.log_prob(k), (1 - gate).log() + poisson.log_prob(k))
    by_logits = dist.ZeroInflatedPoisson(rate, gate_logits=gate.logit())
    k = torch.arange(30.0)[:, None]
    assert torch.allclose(by_logits.log_prob(k), d.log_prob(k), atol=1e-5)
    assert torch.allclose(d.log_prob(k).exp().sum(0), torch.ones(2), atol=1e-5)
    mean, var = exact_moments(d, k)
    assert torch.allclose(mean, d.mean, rtol=1e-4) and torch.allclose(var, d.variance, rtol=1e-4)
    assert torch.allclose(by_logits.gate, gate) and torch.allclose(d.gate_logits, gate.logit(), atol=1e-5)
    assert_moments(d.sample((40_000,)), d.mean, d.variance)
    assert torch.equal(d.rate, rate)


def test_zero_inflation_edge_gates_and_far_logits():
    rate = torch.tensor(2.0)
    k = torch.arange(6.0)
    none = dist.ZeroInflatedPoisson(rate, gate=torch.tensor(0.0))
    assert torch.allclose(none.log_prob(k), torch.distributions.Poisson(rate).log_prob(k))
    every = dist.ZeroInflatedPoisson(rate, gate=torch.tensor(1.0))
    assert every.log_prob(k)[0] == 0 and torch.isinf(every.log_prob(k)[1:]).all()
    # Logits far in the tail keep a finite, exact log density.
    far = dist.ZeroInflatedPoisson(rate, gate_logits=torch.tensor(-60.0))
    assert torch.allclose(far.log_prob(torch.tensor(3.0)), torch.distributions.Poisson(rate).log_prob(
        torch.tensor(3.0)) - 60.0 * 0 - torch.nn.functional.softplus(torch.tensor(-60.0)))


def test_zero_inflated_negative_binomial_and_generic_base():
    gate = torch.tensor(0.35)
    d = dist.ZeroInflatedNegativeBinomial(torch.tensor(2.5), logits=torch.tensor(0.4), gate=gate)
    nb = torch.distributions.NegativeBinomial(torch.tensor(2.5), logits=torch.tensor(0.4))
    k = torch.arange(300.0)
    assert torch.allclose(d.log_prob(k[1:]), (1 - gate).log() + nb.log_prob(k[1:]))
    assert torch.allclose(d.log_prob(k).exp().sum(), torch.tensor(1.0), atol=1e-5)
    mean, var = exact_moments(d, k)
    assert torch.allclose(mean, d.mean, rtol=1e-3) and torch.allclose(var, d.variance, rtol=1e-3)
    assert torch.allclose(d.probs, nb.probs) and torch.allclose(d.total_count, torch.tensor(2.5))
    assert_moments(d.sample((40_000,)), d.mean, d.variance)
    generic = dist.ZeroInflatedDistribution(dist.GammaPoisson(2.5, torch.tensor(0.4).neg().exp()), gate=gate)
    assert torch.allclose(generic.log_prob(k[:50]), d.log_prob(k[:50]), atol=1e-5)
    assert generic.support is constraints.nonnegative_integer


# ---------------------------------------------------------------- continuous families

def test_soft_laplace_density_cdf_and_draws():
    d = dist.SoftLaplace(torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))
    total = trapezoid_over_t(d.log_prob, -200.0, 200.0)
    assert torch.allclose(total, torch.tensor(1.0, dtype=torch.float64), atol=1e-8)
    z = torch.tensor([-3.0, 0.0, 2.5], dtype=torch.float64)
    assert torch.allclose(d.log_prob(1 + 2 * z), -math.log(2 * math.pi) - torch.cosh(z).log())
    assert torch.allclose(d.icdf(d.cdf(1 + 2 * z)), 1 + 2 * z)
    var = trapezoid_over_t(lambda t: d.log_prob(t) + 2 * (t - 1).abs().clamp(min=1e-300).log(), -400.0, 400.0)
    assert torch.allclose(var, d.variance, rtol=1e-6)
    loc = torch.tensor(0.5, requires_grad=True)
    x = dist.SoftLaplace(loc, 1.5).rsample((40_000,))
    assert_moments(x.detach(), 0.5, (1.5 * math.pi / 2) ** 2)
    x.sum().backward()
    assert loc.grad.item() == pytest.approx(40_000)


def test_affine_beta_is_a_shifted_scaled_beta():
    d = dist.AffineBeta(torch.tensor([2.0, 0.5]), torch.tensor([3.0, 0.5]), torch.tensor(-1.0), torch.tensor(4.0))
    y = torch.tensor([[0.2, 2.9], [-0.5, -0.99]])
    beta = torch.distributions.Beta(torch.tensor([2.0, 0.5]), torch.tensor([3.0, 0.5]))
    assert torch.allclose(d.log_prob(y), beta.log_prob((y + 1) / 4) - math.log(4.0), atol=1e-5)
    assert torch.equal(d.low, torch.tensor([-1.0, -1.0])) and torch.equal(d.high, torch.tensor([3.0, 3.0]))
    x = d.rsample((40_000,))
    assert (x > -1).all() and (x < 3).all() and torch.isfinite(d.log_prob(x)).all()
    assert_moments(x, d.mean, d.variance)
    assert d.support.check(torch.tensor([0.0, 2.0])).all() and not d.support.check(torch.tensor([3.5])).any()
    assert d.expand((5, 2)).sample().shape == (5, 2) and d.sample_size.tolist() == [5.0, 1.0]


def test_folded_normal_density_and_draws():
    mu, sigma = 0.7, 1.3
    d = dist.FoldedDistribution(dist.Normal(torch.tensor(mu, dtype=torch.float64), sigma))
    y = torch.tensor([0.0, 0.4, 2.5], dtype=torch.float64)
    closed = (torch.exp(-(y - mu) ** 2 / (2 * sigma**2)) + torch.exp(-(y + mu) ** 2 / (2 * sigma**2))) / (
        sigma * math.sqrt(2 * math.pi))
    assert torch.allclose(d.log_prob(y).exp(), closed)
    assert torch.allclose(trapezoid_over_t(d.log_prob, 0.0, 30.0), torch.tensor(1.0, dtype=torch.float64))
    x = d.sample((20_000,))
    assert (x >= 0).all() and d.support is constraints.nonnegative
    phi = torch.distributions.Normal(0.0, 1.0).cdf(torch.tensor(-mu / sigma)).item()
    mean = sigma * math.sqrt(2 / math.pi) * math.exp(-mu**2 / (2 * sigma**2)) + mu * (1 - 2 * phi)
    assert_moments(x, mean, mu**2 + sigma**2 - mean**2)
    assert d.expand((3,)).batch_shape == (3,) and isinstance(d.expand((3,)), dist.FoldedDistribution)


def test_lkj_matches_its_closed_forms():
    # dim 2: the correlation r has density (1 - r^2)^(eta - 1) / (2^(2 eta - 1) B(eta, eta)).
    for eta in (0.5, 1.0, 3.0):
        d = dist.LKJ(2, torch.tensor(eta, dtype=torch.float64))
        r = torch.tensor([-0.9, 0.0, 0.4], dtype=torch.float64)
        corr = torch.stack([torch.stack([torch.ones_like(r), r], -1), torch.stack([r, torch.ones_like(r)], -1)], -2)
        log_b = 2 * math.lgamma(eta) - math.lgamma(2 * eta)
        expected = (eta - 1) * torch.log1p(-r**2) - (2 * eta - 1) * math.log(2) - log_b
        assert torch.allclose(d.log_prob(corr), expected)
    # dim 3, eta = 1: uniform over a set of volume pi^2 / 2.
    assert dist.LKJ(3, 1.0).log_prob(torch.eye(3)).exp().item() == pytest.approx(2 / math.pi**2, rel=1e-5)


def test_lkj_draws_are_correlation_matrices_with_the_right_spread():
    d = dist.LKJ(4, torch.tensor([0.5, 2.0]))
    assert d.batch_shape == (2,) and d.event_shape == (4, 4) and d.support is constraints.corr_matrix
    c = d.sample((20_000,))
    assert constraints.corr_matrix.check(c).all()
    off = c[..., 0, 1]
    assert_moments(off, torch.zeros(2), d.variance[..., 0, 1])
    assert torch.allclose(d.variance[..., 0, 1], 1 / (2 * torch.tensor([0.5, 2.0]) + 3))
    assert torch.equal(d.mean, torch.eye(4).expand(2, 4, 4))
    # Its density is the LKJCholesky density of the Cholesky factor less log |d C / d L|.
    chol = torch.linalg.cholesky(c[:5])
    jac = sum((4 - 1 - i) * chol[..., i, i].log() for i in range(4))
    assert torch.allclose(d.log_prob(c[:5]), dist.LKJCholesky(4, torch.tensor([0.5, 2.0])).log_prob(chol) - jac,
                          atol=1e-4)
    assert d.expand((3, 2)).batch_shape == (3, 2) and d.expand((3, 2)).sample().shape == (3, 2, 4, 4)
    with pytest.warns(FutureWarning, match="LKJCholesky"):
        old = dist.LKJCorrCholesky(3, torch.tensor(1.5))
    assert isinstance(old, dist.LKJCholesky) and old.expand((2,)).batch_shape == (2,)


def test_mixture_of_diag_normals_density_and_pathwise_gradients():
    torch.manual_seed(1)
    locs = torch.tensor([[-1.0, 0.5], [2.0, -0.3], [0.0, 1.5]], requires_grad=True)
    scales = torch.tensor([[0.6, 1.0], [0.8, 0.4], [1.2, 0.7]], requires_grad=True)
    logits = torch.tensor([0.2, -0.5, 0.4], requires_grad=True)
    d = dist.MixtureOfDiagNormals(locs, scales, logits)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits),
        torch.distributions.Independent(torch.distributions.Normal(locs, scales), 1))
    x = torch.randn(7, 2)
    assert torch.allclose(d.log_prob(x), reference.log_prob(x), atol=1e-5)
    assert torch.allclose(d.mean, reference.mean) and torch.allclose(d.variance, reference.variance, atol=1e-5)
    # E[f(x)] with f(x) = x0^2 + x0 x1 + 3 x1 in closed form, differentiated exactly vs by pathwise draws.
    w = logits.softmax(-1)
    exact = (w * (locs[:, 0] ** 2 + scales[:, 0] ** 2 + locs[:, 0] * locs[:, 1] + 3 * locs[:, 1])).sum()
    exact_grads = torch.autograd.grad(exact, (locs, scales, logits))
    n = 200_000
    y = d.rsample((n,))
    f = y[:, 0] ** 2 + y[:, 0] * y[:, 1] + 3 * y[:, 1]
    mc_grads = torch.autograd.grad(f.mean(), (locs, scales, logits))
    for g_mc, g_exact in zip(mc_grads, exact_grads):
        assert torch.allclose(g_mc, g_exact, atol=0.06), (g_mc, g_exact)
    assert_moments(y.detach(), d.mean.detach(), d.variance.detach())
    assert d.expand((4,)).rsample((2,)).shape == (2, 4, 2)


# ---------------------------------------------------------------- ImproperUniform, MaskedMixture, Empirical

def test_improper_uniform_is_flat_and_cannot_be_drawn():
    d = dist.ImproperUniform(constraints.positive, (3,), (2,))
    assert d.batch_shape == (3,) and d.event_shape == (2,) and d.support is constraints.positive
    assert torch.equal(d.log_prob(torch.ones(5, 3, 2)), torch.zeros(5, 3))
    assert d.expand((4, 3)).log_prob(torch.ones(3, 2)).shape == (4, 3)
    with pytest.raises(NotImplementedError, match="cannot be sampled"):
        d.sample()
    with pytest.raises(TypeError, match="Constraint"):
        dist.ImproperUniform("positive")
    with cp.validation_enabled(True), pytest.raises(ValueError, match="support"):
        d.log_prob(-torch.ones(3, 2))

    # A factor graph: the flat latent gets its density from observed sites on it.
    def model():
        z = cp.sample("z", dist.ImproperUniform(constraints.real, (), (2,)))
        cp.sample("a", dist.Normal(0.0, 1.0), obs=z[0])
        cp.sample("b", dist.Normal(z[0], 1.0), obs=z[1])

    tr = cp.trace(cp.condition(model, data={"z": torch.tensor([0.0, 1.0])})).get_trace()
    assert tr.log_prob_sum().item() == pytest.approx(-math.log(2 * math.pi) - 0.5)


def test_masked_mixture_picks_a_component_per_entry():
    mask = torch.tensor([True, False, True, False])
    c0, c1 = dist.Poisson(torch.tensor(1.0)), dist.Poisson(torch.tensor([20.0, 20.0, 20.0, 20.0]))
    d = dist.MaskedMixture(mask, c0, c1)
    assert d.batch_shape == (4,) and not d.has_rsample
    value = torch.tensor([18.0, 0.0, 25.0, 3.0])
    assert torch.allclose(d.log_prob(value), torch.where(mask, c1.log_prob(value), c0.log_prob(value)))
    x = d.sample((2000,))
    assert x[:, mask].float().mean() > 15 and x[:, ~mask].float().mean() < 2
    assert torch.allclose(d.mean, torch.where(mask, 20.0, 1.0))
    # An enumerated mask (a dim on the left) broadcasts.
    both = dist.MaskedMixture(torch.tensor([[False], [True]]), c0, c1)
    assert both.batch_shape == (2, 4) and both.log_prob(value).shape == (2, 4)
    cont = dist.MaskedMixture(mask, dist.Normal(0.0, 1.0), dist.Normal(torch.zeros(4), 2.0))
    assert cont.has_rsample and cont.rsample().shape == (4,) and cont.expand((3, 4)).sample().shape == (3, 4)
    with pytest.raises(ValueError, match="event shapes"):
        dist.MaskedMixture(mask, dist.Normal(0.0, 1.0), dist.Normal(torch.zeros(2), 1.0).to_event(1))
    with pytest.raises(TypeError, match="bool"):
        dist.MaskedMixture(torch.tensor([1, 0]), c0, c1)


def test_masked_mixture_change_point_marginal_by_enumeration():
    data = torch.tensor([0.0, 1.0, 0.0, 5.0, 6.0])
    rates = torch.tensor([0.5, 5.0])
    total = torch.tensor(0.0)
    for t in range(len(data) + 1):
        mask = torch.arange(len(data)) >= t
        d = dist.MaskedMixture(mask, dist.Poisson(rates[0]), dist.Poisson(rates[1]))
        total = total + d.log_prob(data).sum().exp() / (len(data) + 1)
    direct = sum(torch.distributions.Poisson(rates[(torch.arange(5) >= t).long()]).log_prob(data).sum().exp()
                 for t in range(6)) / 6
    assert torch.allclose(total, direct)


def test_empirical_weights_moments_and_draws():
    atoms = torch.tensor([0.0, 1.0, 1.0, 3.0])
    log_w = torch.tensor([0.5, 0.5, 1.5, 0.0]).log()
    d = dist.Empirical(atoms, log_w)
    assert d.batch_shape == () and d.event_shape == () and d.sample_size == 4
    assert d.log_prob(torch.tensor(1.0)).exp().item() == pytest.approx(2.0 / 2.5)
    assert d.log_prob(torch.tensor(2.0)).item() == -math.inf
    mean = (0.5 * 0 + 2.0 * 1 + 0.0 * 3) / 2.5
    assert d.mean.item() == pytest.approx(mean)
    assert d.variance.item() == pytest.approx((0.5 * mean**2 + 2.0 * (1 - mean) ** 2) / 2.5)
    x = d.sample((20_000,))
    assert_moments(x, d.mean, d.variance)
    assert torch.equal(d.enumerate_support(), atoms)


def test_empirical_batched_vector_atoms():
    samples = torch.randn(2, 6, 3)
    d = dist.Empirical(samples, torch.zeros(2, 6))
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    assert d.sample().shape == (2, 3) and d.sample((5,)).shape == (5, 2, 3)
    pick = samples[:, 4]
    assert torch.allclose(d.log_prob(pick).exp(), torch.full((2,), 1 / 6))
    assert torch.allclose(d.mean, samples.mean(1), atol=1e-6)
    with cp.validation_enabled(True), pytest.raises(ValueError, match="batch_shape"):
        d.log_prob(d.sample((7,)))
    with cp.validation_enabled(False):
        unchecked = dist.Empirical(samples, torch.zeros(2, 6))
        assert unchecked.log_prob(d.sample((7,))).shape == (7, 2)
        assert torch.isfinite(unchecked.log_prob(d.sample((7,)))).all()
    assert d.enumerate_support().shape == (6, 2, 3)
    with pytest.raises(ValueError, match="leftmost"):
        dist.Empirical(torch.randn(6, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="integer"):
        _ = dist.Empirical(torch.tensor([1, 2]), torch.zeros(2)).mean


# ---------------------------------------------------------------- shapes through the mixin, for every new family

NEW_FAMILIES = {
    "GammaPoisson": lambda: dist.GammaPoisson(torch.tensor([1.0, 2.0]), 0.5),
    "BetaBinomial": lambda: dist.BetaBinomial(torch.tensor([1.0, 2.0]), 3.0, total_count=6),
    "DirichletMultinomial": lambda: dist.DirichletMultinomial(torch.ones(2, 3), total_count=4),
    "ZeroInflatedPoisson": lambda: dist.ZeroInflatedPoisson(torch.tensor([1.0, 4.0]), gate=torch.tensor(0.3)),
    "ZeroInflatedNegativeBinomial": lambda: dist.ZeroInflatedNegativeBinomial(
        2.0, probs=torch.tensor([0.3, 0.6]), gate_logits=torch.tensor(0.0)),
    "ZeroInflatedDistribution": lambda: dist.ZeroInflatedDistribution(
        dist.Binomial(5, torch.tensor([0.2, 0.7])), gate=torch.tensor(0.1)),
    "SoftLaplace": lambda: dist.SoftLaplace(torch.zeros(2), 1.0),
    "AffineBeta": lambda: dist.AffineBeta(torch.tensor([1.0, 2.0]), 2.0, -1.0, 2.0),
    "FoldedDistribution": lambda: dist.FoldedDistribution(dist.Normal(torch.zeros(2), 1.0)),
    "LKJ": lambda: dist.LKJ(3, torch.tensor([1.0, 2.0])),
    "MixtureOfDiagNormals": lambda: dist.MixtureOfDiagNormals(torch.zeros(2, 3, 2), torch.ones(3, 2), torch.zeros(3)),
    "MaskedMixture": lambda: dist.MaskedMixture(torch.tensor([True, False]), dist.Normal(0.0, 1.0),
                                                dist.Normal(torch.ones(2), 1.0)),
    "Empirical": lambda: dist.Empirical(torch.randn(2, 5), torch.zeros(2, 5)),
}


def test_every_new_family_is_exported():
    for name in NEW_FAMILIES:
        assert name in dist.__all__ and isinstance(getattr(cp.dist, name), type)
        assert issubclass(getattr(cp.dist, name), dist.TorchDistributionMixin)


@pytest.mark.parametrize("name", sorted(NEW_FAMILIES))
def test_new_family_shapes_expand_to_event_and_mask(name):
    d = NEW_FAMILIES[name]()
    assert d.batch_shape == (2,), d.batch_shape
    x = d.sample()
    assert x.shape == d.shape() and d.event_dim == len(d.event_shape)
    assert d.support.check(x).all()
    assert d.log_prob(x).shape == (2,) and torch.isfinite(d.log_prob(x)).all()
    assert d.sample((3,)).shape == d.shape((3,)) == (3, 2) + d.event_shape
    e = d.expand_by([4])
    assert e.batch_shape == (4, 2) and type(e) in (type(d), dist.ExpandedDistribution)
    xs = e.sample()
    assert xs.shape == (4, 2) + d.event_shape and e.log_prob(xs).shape == (4, 2)
    assert torch.allclose(e.log_prob(xs)[1], d.log_prob(xs[1]))
    assert e.to_event(1).log_prob(xs).shape == (4,) and e.to_event().log_prob(xs).shape == ()
    mask = torch.tensor([True, False])
    masker = (lambda m: dist.MaskedDistribution(d, m)) if name == "MaskedMixture" else d.mask  # .mask is data there
    masked = masker(mask)
    assert masked.log_prob(x)[1] == 0 and masked.log_prob(x)[0] == d.log_prob(x)[0]
    assert masker(False).log_prob(x).abs().sum() == 0
    if d.has_rsample:  # a has_rsample_(False) choice survives expand, as for torch's families
        assert not NEW_FAMILIES[name]().has_rsample_(False).expand_by([3]).has_rsample

    # Inside a plate, and as an observed site.
    def model():
        with cp.plate("rows", 5, dim=-2):
            return cp.sample("v", d)

    tr = cp.trace(model).get_trace()
    assert tr.nodes["v"]["value"].shape == (5, 2) + d.event_shape
    assert torch.isfinite(tr.log_prob_sum())
    obs = cp.trace(cp.condition(model, data={"v": x})).get_trace()
    assert obs.log_prob_sum().item() == pytest.approx(5 * d.log_prob(x).sum().item(), rel=1e-5)


# ---------------------------------------------------------------- every torch family through the mixin

def _torch_examples():
    z, o = torch.zeros(2, 3), torch.ones(2, 3)
    p = torch.full((2, 3), 0.3)
    eye = torch.eye(3).expand(2, 3, 3)
    return {
        "Bernoulli": lambda: dist.Bernoulli(p),
        "Beta": lambda: dist.Beta(o, 2 * o),
        "Binomial": lambda: dist.Binomial(5, p),
        "Categorical": lambda: dist.Categorical(o),
        "Cauchy": lambda: dist.Cauchy(z, o),
        "Chi2": lambda: dist.Chi2(2 * o),
        "ContinuousBernoulli": lambda: dist.ContinuousBernoulli(p),
        "Dirichlet": lambda: dist.Dirichlet(o),
        "Exponential": lambda: dist.Exponential(o),
        "FisherSnedecor": lambda: dist.FisherSnedecor(3 * o, 4 * o),
        "Gamma": lambda: dist.Gamma(o, o),
        "GeneralizedPareto": lambda: dist.GeneralizedPareto(z, o, 0.1 * o),
        "Geometric": lambda: dist.Geometric(p),
        "Gumbel": lambda: dist.Gumbel(z, o),
        "HalfCauchy": lambda: dist.HalfCauchy(o),
        "HalfNormal": lambda: dist.HalfNormal(o),
        "Independent": lambda: dist.Independent(dist.Normal(z, o), 1),
        "InverseGamma": lambda: dist.InverseGamma(2 * o, o),
        "Kumaraswamy": lambda: dist.Kumaraswamy(o, 2 * o),
        "LKJCholesky": lambda: dist.LKJCholesky(3, torch.ones(2)),
        "Laplace": lambda: dist.Laplace(z, o),
        "LogNormal": lambda: dist.LogNormal(z, o),
        "LogisticNormal": lambda: dist.LogisticNormal(z, o),
        "LowRankMultivariateNormal": lambda: dist.LowRankMultivariateNormal(z, 0.1 * torch.ones(2, 3, 1), o),
        "MixtureSameFamily": lambda: dist.MixtureSameFamily(dist.Categorical(o), dist.Normal(z, o)),
        "Multinomial": lambda: dist.Multinomial(4, o),
        "MultivariateNormal": lambda: dist.MultivariateNormal(z, eye),
        "NegativeBinomial": lambda: dist.NegativeBinomial(3 * o, p),
        "Normal": lambda: dist.Normal(z, o),
        "OneHotCategorical": lambda: dist.OneHotCategorical(o),
        "OneHotCategoricalStraightThrough": lambda: dist.OneHotCategoricalStraightThrough(o),
        "Pareto": lambda: dist.Pareto(o, 2 * o),
        "Poisson": lambda: dist.Poisson(o),
        "RelaxedBernoulli": lambda: dist.RelaxedBernoulli(torch.tensor(0.5), p),
        "RelaxedOneHotCategorical": lambda: dist.RelaxedOneHotCategorical(torch.tensor(0.5), o),
        "StudentT": lambda: dist.StudentT(3 * o, z, o),
        "TransformedDistribution": lambda: dist.TransformedDistribution(
            dist.Normal(z, o), [dist.transforms.ExpTransform()]),
        "Uniform": lambda: dist.Uniform(z, o),
        "VonMises": lambda: dist.VonMises(z, o),
        "Weibull": lambda: dist.Weibull(o, 2 * o),
        "Wishart": lambda: dist.Wishart(torch.tensor([6.0, 7.0]), covariance_matrix=eye),
    }


TORCH_EXAMPLES = _torch_examples()


def test_the_torch_examples_cover_every_torch_family():
    families = {name for name in torch.distributions.__all__
                if isinstance(getattr(torch.distributions, name), type)
                and issubclass(getattr(torch.distributions, name), torch.distributions.Distribution)}
    assert families - {"Distribution", "ExponentialFamily"} <= set(TORCH_EXAMPLES)


@pytest.mark.filterwarnings("ignore:Singular sample detected")  # torch's Wishart in float32
@pytest.mark.parametrize("name", sorted(TORCH_EXAMPLES))
def test_torch_family_through_the_mixin(name):
    d = TORCH_EXAMPLES[name]()
    assert isinstance(d, dist.TorchDistributionMixin) and isinstance(d, getattr(torch.distributions, name))
    batch = d.batch_shape
    assert d.event_dim == len(d.event_shape) and d.shape((5,)) == (5,) + batch + d.event_shape
    e = d.expand_by([4])
    assert type(e) is type(d) and e.batch_shape == (4,) + batch
    x = e.sample()
    assert x.shape == e.shape() and e.log_prob(x).shape == e.batch_shape
    mask = torch.zeros(e.batch_shape, dtype=torch.bool)
    mask[0] = True
    lp = e.mask(mask).log_prob(x)
    assert lp.shape == e.batch_shape and (lp[1:] == 0).all() and torch.allclose(lp[0], e.log_prob(x)[0])
    t = e.to_event(1)
    assert t.event_shape == e.batch_shape[-1:] + d.event_shape and t.log_prob(x).shape == e.batch_shape[:-1]
    assert t.to_event(-1).batch_shape == e.batch_shape
    assert d.has_rsample_(False)().requires_grad is False


# ---------------------------------------------------------------- validation

def test_bad_parameters_and_values_raise_clear_errors():
    with cp.validation_enabled(True):
        cases = [
            (lambda: dist.GammaPoisson(torch.tensor(-1.0), 1.0), "concentration"),
            (lambda: dist.GammaPoisson(1.0, torch.tensor([1.0, 0.0])), "rate"),
            (lambda: dist.GammaPoisson(1.0, 1.0).log_prob(torch.tensor(1.5)), "support"),
            (lambda: dist.BetaBinomial(1.0, 1.0, total_count=2.5), "total_count"),
            (lambda: dist.BetaBinomial(0.0, 1.0), "concentration1"),
            (lambda: dist.BetaBinomial(1.0, 1.0, total_count=3).log_prob(torch.tensor(4.0)), "support"),
            (lambda: dist.DirichletMultinomial(torch.tensor([1.0, -1.0])), "concentration"),
            (lambda: dist.DirichletMultinomial(torch.ones(3), 2).log_prob(torch.tensor([1.0, 1.0, 1.0])), "support"),
            (lambda: dist.ZeroInflatedPoisson(torch.tensor(-1.0), gate=torch.tensor(0.5)), "rate"),
            (lambda: dist.ZeroInflatedPoisson(torch.tensor(1.0), gate=torch.tensor(1.5)), "gate"),
            (lambda: dist.ZeroInflatedPoisson(torch.tensor(1.0)), "exactly one of gate"),
            (lambda: dist.ZeroInflatedPoisson(torch.tensor(1.0), gate=0.5, gate_logits=0.0), "exactly one of gate"),
            (lambda: dist.ZeroInflatedPoisson(torch.tensor(1.0), gate=0.5).log_prob(torch.tensor(-1.0)), "support"),
            (lambda: dist.ZeroInflatedNegativeBinomial(torch.tensor(-2.0), probs=torch.tensor(0.5), gate=0.1),
             "total_count"),
            (lambda: dist.ZeroInflatedDistribution(dist.MultivariateNormal(torch.zeros(2), torch.eye(2)), gate=0.1),
             "univariate"),
            (lambda: dist.SoftLaplace(0.0, torch.tensor(-1.0)), "scale"),
            (lambda: dist.AffineBeta(1.0, 1.0, 0.0, torch.tensor(-2.0)), "scale"),
            (lambda: dist.AffineBeta(1.0, 1.0, 0.0, 2.0).log_prob(torch.tensor(2.5)), "support"),
            (lambda: dist.LKJ(3, torch.tensor(-1.0)), "concentration"),
            (lambda: dist.LKJ(2).log_prob(torch.tensor([[1.0, 2.0], [2.0, 1.0]])), "support"),
            (lambda: dist.FoldedDistribution(dist.MultivariateNormal(torch.zeros(2), torch.eye(2))), "univariate"),
            (lambda: dist.FoldedDistribution(dist.Normal(0.0, 1.0)).log_prob(torch.tensor(-1.0)), "support"),
            (lambda: dist.MixtureOfDiagNormals(torch.zeros(3, 2), torch.ones(2, 2), torch.zeros(3)), "disagree"),
            (lambda: dist.MixtureOfDiagNormals(torch.zeros(3, 2), -torch.ones(3, 2), torch.zeros(3)), "coord_scale"),
        ]
        for make, phrase in cases:
            with pytest.raises(ValueError, match=phrase):
                make()


def test_validation_off_accepts_what_it_would_reject():
    with cp.validation_enabled(False):
        dist.GammaPoisson(torch.tensor(-1.0), 1.0)
        dist.ZeroInflatedPoisson(torch.tensor(1.0), gate=torch.tensor(1.5))
        assert dist.BetaBinomial(1.0, 1.0, total_count=3).log_prob(torch.tensor(4.0)).isnan()
    assert cp.dist.is_validation_enabled() and cp.dist.enable_validation is cp.enable_validation


# ---------------------------------------------------------------- inference with the new families

def test_zero_inflated_poisson_regression_recovers_gate_and_rate():
    n = 3000
    x = torch.randn(n)
    true_a, true_b, true_gate = 0.5, 0.8, 0.3
    rate = (true_a + true_b * x).exp()
    y = torch.where(torch.rand(n) < true_gate, torch.tensor(0.0), torch.poisson(rate))

    def model(x, y):
        a = cp.param("a", torch.tensor(0.0))
        b = cp.param("b", torch.tensor(0.0))
        gate = cp.param("gate", torch.tensor(0.5), constraint=constraints.unit_interval)
        with cp.plate("data", len(x)):
            cp.sample("y", dist.ZeroInflatedPoisson((a + b * x).exp(), gate=gate), obs=y)

    def guide(x, y):
        pass

    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.1}), cp.infer.Trace_ELBO())
    for _ in range(250):
        svi.step(x, y)
    store = cp.get_param_store()
    a, b, gate = (store[k].item() for k in ("a", "b", "gate"))
    # Standard errors at n = 3000 are about 0.02 (a), 0.015 (b), 0.012 (gate).
    assert a == pytest.approx(true_a, abs=0.1) and b == pytest.approx(true_b, abs=0.08)
    assert gate == pytest.approx(true_gate, abs=0.05)


def test_zero_inflated_poisson_with_latent_gate_logits_and_autoguide():
    n = 2000
    y = torch.where(torch.rand(n) < 0.4, torch.tensor(0.0), torch.poisson(torch.full((n,), 3.0)))

    def model(y):
        logit = cp.sample("logit", dist.Normal(0.0, 3.0))
        rate = cp.sample("rate", dist.Gamma(2.0, 0.5))
        with cp.plate("data", len(y)):
            cp.sample("y", dist.ZeroInflatedPoisson(rate, gate_logits=logit), obs=y)

    guide = cp.infer.autoguide.AutoNormal(model)
    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.1}), cp.infer.Trace_ELBO())
    for _ in range(300):
        svi.step(y)
    median = guide.median(y)
    assert torch.sigmoid(median["logit"]).item() == pytest.approx(0.4, abs=0.05)
    assert median["rate"].item() == pytest.approx(3.0, abs=0.25)


def test_nonreparameterized_fakes_take_the_score_function_path():
    from causalppl.distributions.testing import fakes

    loc = torch.tensor(0.3, requires_grad=True)
    for d in (fakes.NonreparameterizedNormal(loc, 1.0), fakes.NonreparameterizedGamma(loc.exp(), 1.0),
              fakes.NonreparameterizedBeta(loc.exp(), 1.0), fakes.NonreparameterizedDirichlet(loc.exp().expand(3))):
        assert not d.has_rsample and not d().requires_grad
        assert not d.expand_by([2]).has_rsample
        assert isinstance(d, torch.distributions.Distribution)
    # A non-reparameterised guide gets the score-function gradient. The posterior is N(1, 1/2), so with
    # q = N(m, 1/2) the loss -ELBO = KL(q || posterior) + const has gradient 2 (m - 1): -2 at m = 0.
    data = torch.tensor(2.0)

    def model():
        z = cp.sample("z", dist.Normal(0.0, 1.0))
        cp.sample("x", dist.Normal(z, 1.0), obs=data)

    def guide():
        m = cp.param("m", torch.tensor(0.0))
        cp.sample("z", fakes.NonreparameterizedNormal(m, math.sqrt(0.5)))

    elbo = cp.infer.Trace_ELBO(num_particles=20_000, vectorize_particles=True)
    elbo.loss_and_grads(model, guide)
    guide_z = dict(elbo.last_traces)["guide"].nodes["z"]["value"]
    assert guide_z.shape == (20_000,) and not guide_z.requires_grad
    # Spread of this estimator at 20,000 particles: about 0.03.
    assert cp.get_param_store()["m"].unconstrained().grad.item() == pytest.approx(-2.0, abs=0.15)


# ---------------------------------------------------------------- submodules: transforms, constraints, util

def test_transforms_and_constraints_submodules():
    assert cp.dist.transforms.ExpTransform is torch.distributions.transforms.ExpTransform
    assert cp.dist.constraints.positive is torch.distributions.constraints.positive
    assert set(torch.distributions.transforms.__all__) <= set(dir(cp.dist.transforms))
    assert set(torch.distributions.constraints.__all__) <= set(dir(cp.dist.constraints))
    import causalppl.distributions.transforms as T  # importable as a module too

    assert T is cp.dist.transforms
    # Round trips and log-determinants by autograd.
    x = torch.randn(4, 3, dtype=torch.float64)
    for constraint in (constraints.corr_matrix, constraints.ordered_vector, constraints.positive_ordered_vector,
                       constraints.softplus_positive):
        t = torch.distributions.biject_to(constraint)
        y = t(x)
        assert constraint.check(y).all(), constraint
        assert torch.allclose(t.inv(y), x, atol=1e-6), constraint
    ordered = T.OrderedTransform()
    v = torch.randn(3, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(ordered, v)
    assert torch.allclose(ordered.log_abs_det_jacobian(v, ordered(v)), jac.det().abs().log())
    # CorrMatrixCholeskyTransform's log-determinant on the free (lower) entries, by autograd.
    lower = torch.tril_indices(3, 3, -1)
    chol = T.CorrCholeskyTransform()(torch.randn(3, dtype=torch.float64))

    def c_of_l(free):
        rows = torch.zeros(3, 3, dtype=torch.float64)
        rows = rows.index_put((lower[0], lower[1]), free)
        diag = (1 - rows.pow(2).sum(-1)).sqrt()
        return (T.CorrMatrixCholeskyTransform().inv(rows + torch.diag(diag)))[lower[0], lower[1]]

    jac = torch.autograd.functional.jacobian(c_of_l, chol[lower[0], lower[1]])
    corr = chol @ chol.T
    assert torch.allclose(T.CorrMatrixCholeskyTransform().log_abs_det_jacobian(corr, chol), -jac.det().abs().log())
    assert constraints.integer.check(torch.tensor([-2.0, 3.0])).all() and not constraints.integer.check(
        torch.tensor(0.5))
    assert not constraints.corr_matrix.check(torch.tensor([[1.0, 0.2], [0.3, 1.0]]))


def test_util_helpers():
    from causalppl.distributions import util

    assert util.broadcast_shape((3, 1), (1, 4), (4,)) == (3, 4) and util.broadcast_shape() == ()
    with pytest.raises(ValueError, match="shape mismatch"):
        util.broadcast_shape((2,), (3,))
    with pytest.raises(ValueError, match="shape mismatch"):
        util.broadcast_shape((1,), (3,), strict=True)
    assert util.broadcast_shape((3,), (2, 3), strict=True) == (2, 3)
    x = torch.ones(2, 3, 4)
    assert util.sum_rightmost(x, 1).shape == (2, 3) and util.sum_rightmost(x, -1).shape == (2,)
    assert util.sum_rightmost(x, 0) is x and util.sum_rightmost(x, 5).shape == () and util.sum_rightmost(2.0, 1) == 2.0
    assert util.sum_leftmost(x, 1).shape == (3, 4) and util.sum_leftmost(x, -1).shape == (4,)
    assert util.sum_leftmost(x, float("inf")).item() == 24
    assert util.is_identically_zero(0) and not util.is_identically_zero(torch.tensor(0.0))
    assert util.is_identically_zero(torch.tensor(0)) and util.is_identically_one(1.0)
    assert not util.is_identically_one(torch.ones(1))
    t = torch.tensor([1.0, 2.0])
    assert util.scale_and_mask(t) is t and util.scale_and_mask(0, 3.0) == 0
    assert util.scale_and_mask(t, 2.0).tolist() == [2.0, 4.0]
    assert util.scale_and_mask(t, 2.0, torch.tensor([False, True])).tolist() == [0.0, 4.0]
    assert torch.equal(util.eye_like(t, 2), torch.eye(2)) and util.scalar_like(t, 3).dtype == torch.float32
    w = torch.tensor(1.0, requires_grad=True)
    copied = util.detach({"a": [w * 2], "b": dist.Normal(w, 1.0)})
    assert not copied["a"][0].requires_grad and not copied["b"].loc.requires_grad
    with util.validation_enabled(False):
        assert not util.is_validation_enabled()
    assert util.is_validation_enabled()


def test_kl_of_delta_and_the_mask_and_expand_wrappers():
    q = dist.Normal(torch.tensor([0.0, 1.0]), 2.0)
    v = torch.tensor([0.5, -1.0])
    assert torch.allclose(dist.kl_divergence(dist.Delta(v), q), -q.log_prob(v))
    assert torch.allclose(dist.kl_divergence(dist.Delta(v, event_dim=1), q.to_event(1)), -q.log_prob(v).sum())
    mask = torch.tensor([True, False])
    p = dist.Normal(torch.tensor([1.0, 3.0]), 1.0)
    masked = dist.kl_divergence(p.mask(mask), q.mask(mask))
    assert torch.allclose(masked, torch.where(mask, torch.distributions.kl_divergence(p, q), torch.tensor(0.0)))
    with pytest.raises(NotImplementedError, match="different masks"):
        dist.kl_divergence(p.mask(mask), q.mask(~mask))

    class Shifted(dist.TorchDistribution):  # no expand of its own: .expand gives an ExpandedDistribution
        arg_constraints = {}

        def __init__(self, loc):
            self.loc = loc
            super().__init__(loc.shape, validate_args=False)

    @dist.register_kl(Shifted, Shifted)
    def _kl_shifted(a, b):
        return (a.loc - b.loc).pow(2) / 2

    kl = dist.kl_divergence(Shifted(torch.tensor(1.0)).expand((3,)), Shifted(torch.tensor(0.0)).expand((3,)))
    assert kl.tolist() == [0.5, 0.5, 0.5]
    assert cp.dist.kl.kl_divergence is torch.distributions.kl_divergence


def test_permute_and_lower_cholesky_affine_transforms():
    T = cp.dist.transforms
    x = torch.randn(4, 3, dtype=torch.float64)
    perm = T.Permute(torch.tensor([2, 0, 1]))
    assert torch.equal(perm(x), x[:, [2, 0, 1]]) and torch.equal(perm.inv(perm(x)), x)
    ladj = perm.log_abs_det_jacobian(x, perm(x))
    assert ladj.shape == (4,) and ladj.abs().sum() == 0
    loc = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    tril = torch.tensor([[2.0, 0, 0], [0.3, 0.5, 0], [-1.0, 0.2, 1.5]], dtype=torch.float64)
    affine = T.LowerCholeskyAffine(loc, tril)
    assert torch.allclose(affine(x), loc + x @ tril.T) and torch.allclose(affine.inv(affine(x)), x)
    assert torch.allclose(affine.log_abs_det_jacobian(x, affine(x)), torch.full((4,), math.log(2 * 0.5 * 1.5),
                                                                                 dtype=torch.float64))
    # Pushing a standard normal through it gives MultivariateNormal(loc, scale_tril).
    pushed = dist.TransformedDistribution(dist.Normal(torch.zeros(3, dtype=torch.float64), 1.0).to_event(1), affine)
    mvn = dist.MultivariateNormal(loc, scale_tril=tril)
    assert torch.allclose(pushed.log_prob(x), mvn.log_prob(x))
    assert T.CorrLCholeskyTransform is torch.distributions.transforms.CorrCholeskyTransform
    assert constraints.corr_cholesky_constraint is constraints.corr_cholesky


def test_infer_shapes_agrees_with_the_instances():
    cases = [
        (dist.Normal, {"loc": torch.zeros(3, 1), "scale": torch.ones(4)}),
        (dist.Dirichlet, {"concentration": torch.ones(2, 5)}),
        (dist.Categorical, {"logits": torch.zeros(2, 5)}),
        (dist.OneHotCategorical, {"probs": torch.ones(2, 5) / 5}),
        (dist.MultivariateNormal, {"loc": torch.zeros(3), "covariance_matrix": torch.eye(3).expand(4, 1, 3, 3)}),
        (dist.GammaPoisson, {"concentration": torch.ones(3), "rate": torch.ones(2, 1)}),
        (dist.BetaBinomial, {"concentration1": torch.ones(3), "concentration0": torch.ones(()),
                             "total_count": torch.full((2, 1), 4.0)}),
        (dist.DirichletMultinomial, {"concentration": torch.ones(2, 5), "total_count": torch.full((7, 1), 3.0)}),
        (dist.ZeroInflatedPoisson, {"rate": torch.ones(3), "gate": torch.full((2, 1), 0.5)}),
        (dist.SoftLaplace, {"loc": torch.zeros(2, 1), "scale": torch.ones(3)}),
        (dist.Empirical, {"samples": torch.randn(2, 10, 3), "log_weights": torch.zeros(2, 10)}),
        (dist.MixtureOfDiagNormals, {"locs": torch.zeros(4, 3, 2), "coord_scale": torch.ones(3, 2),
                                     "component_logits": torch.zeros(3)}),
    ]
    for cls, args in cases:
        d = cls(**args)
        shapes = cls.infer_shapes(**{k: v.shape for k, v in args.items()})
        assert shapes == (d.batch_shape, d.event_shape), cls.__name__
    with pytest.raises(NotImplementedError):
        dist.LKJ.infer_shapes(dim=(), concentration=(2,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(NEW_FAMILIES))
def test_new_family_on_cuda(name):
    torch.set_default_device("cuda")
    try:
        d = NEW_FAMILIES[name]()
        x = d.sample((3,))
        assert x.device.type == "cuda" and d.log_prob(x).device.type == "cuda"
        assert torch.isfinite(d.log_prob(x)).all()
        e = d.expand_by([4])
        assert e.log_prob(e.sample()).shape == (4, 2)
        if d.has_rsample:
            assert d.rsample().device.type == "cuda"
    finally:
        torch.set_default_device("cpu")


def test_top_level_constraints_are_the_extended_module():
    assert cp.constraints is cp.dist.constraints
    assert cp.constraints.positive is torch.distributions.constraints.positive
