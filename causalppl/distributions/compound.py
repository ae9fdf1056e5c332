"""Compound (conjugate-marginal) count distributions: GammaPoisson, BetaBinomial, DirichletMultinomial.

Each is the marginal of a count distribution whose parameter is drawn from its
conjugate prior, with the prior's parameter names:

* ``GammaPoisson(concentration, rate)``: ``lam ~ Gamma(concentration, rate)``, ``x ~ Poisson(lam)``;
* ``BetaBinomial(concentration1, concentration0, total_count)``: ``p ~ Beta(c1, c0)``, ``x ~ Binomial(n, p)``;
* ``DirichletMultinomial(concentration, total_count)``: ``p ~ Dirichlet(a)``, ``x ~ Multinomial(n, p)``.

>>> import torch
>>> BetaBinomial(1.0, 1.0, total_count=3).log_prob(torch.arange(4.0)).exp()  # uniform on 0..3
tensor([0.2500, 0.2500, 0.2500, 0.2500])
"""

import torch
from torch.distributions.utils import broadcast_all

from causalppl.distributions import Beta, Dirichlet, Gamma, TorchDistribution, constraints

__all__ = ["BetaBinomial", "DirichletMultinomial", "GammaPoisson"]


def _log_beta(a, b):
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def _log_binomial(n, k):
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


def _float_count(total_count, *params):
    """``total_count`` as a floating tensor (lgamma and binomial draws need one) of the parameters' dtype."""
    if torch.is_tensor(total_count) and not total_count.is_floating_point():
        dtypes = [p.dtype for p in params if torch.is_tensor(p) and p.is_floating_point()]
        total_count = total_count.to(dtypes[0] if dtypes else torch.get_default_dtype())
    return total_count


def _finish_expand(cls, self, new, batch_shape, event_shape=torch.Size()):
    super(cls, new).__init__(batch_shape, event_shape, validate_args=False)
    new._validate_args = self._validate_args
    return new


class GammaPoisson(TorchDistribution):
    r"""A Poisson count whose rate is Gamma(``concentration``, ``rate``) distributed.

    .. math:: p(x) = \frac{\Gamma(x + \alpha)}{\Gamma(\alpha)\, x!}
              \Big(\frac{\beta}{1 + \beta}\Big)^{\alpha} \Big(\frac{1}{1 + \beta}\Big)^{x}

    It is ``NegativeBinomial(total_count=concentration, probs=1 / (1 + rate))``
    under another name. Mean ``alpha / beta``, variance ``alpha (1 + beta) / beta^2``.

    :param concentration: the Gamma's shape ``alpha`` (> 0).
    :param rate: the Gamma's rate ``beta`` (> 0).
    """

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative_integer

    def __init__(self, concentration, rate, validate_args=None):
        self.concentration, self.rate = broadcast_all(concentration, rate)
        super().__init__(self.concentration.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GammaPoisson, _instance)
        batch_shape = torch.Size(batch_shape)
        new.concentration = self.concentration.expand(batch_shape)
        new.rate = self.rate.expand(batch_shape)
        return _finish_expand(GammaPoisson, self, new, batch_shape)

    @property
    def mean(self):
        return self.concentration / self.rate

    @property
    def variance(self):
        return self.concentration * (1 + self.rate) / self.rate.pow(2)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            lam = Gamma(self.concentration, self.rate, validate_args=False).sample(sample_shape)
            return torch.poisson(lam.expand(shape))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration, self.rate
        return (torch.lgamma(value + a) - torch.lgamma(a) - torch.lgamma(value + 1)
                + a * b.log() - (a + value) * torch.log1p(b))


class BetaBinomial(TorchDistribution):
    r"""A Binomial count whose success probability is Beta(``concentration1``, ``concentration0``) distributed.

    .. math:: p(k) = \binom{n}{k} \frac{B(k + \alpha, n - k + \beta)}{B(\alpha, \beta)}

    Mean ``n alpha / (alpha + beta)``; variance
    ``n alpha beta (alpha + beta + n) / ((alpha + beta)^2 (alpha + beta + 1))``.
    ``enumerate_support`` needs one ``total_count`` across the batch.

    :param concentration1: the Beta's ``alpha`` (> 0), weight on success.
    :param concentration0: the Beta's ``beta`` (> 0), weight on failure.
    :param total_count: the number of trials ``n`` (a nonnegative integer; default 1).
    """

    arg_constraints = {
        "concentration1": constraints.positive,
        "concentration0": constraints.positive,
        "total_count": constraints.nonnegative_integer,
    }
    has_enumerate_support = True

    def __init__(self, concentration1, concentration0, total_count=1, validate_args=None):
        self.concentration1, self.concentration0, self.total_count = broadcast_all(
            concentration1, concentration0, _float_count(total_count, concentration1, concentration0))
        super().__init__(self.concentration1.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(BetaBinomial, _instance)
        batch_shape = torch.Size(batch_shape)
        new.concentration1 = self.concentration1.expand(batch_shape)
        new.concentration0 = self.concentration0.expand(batch_shape)
        new.total_count = self.total_count.expand(batch_shape)
        return _finish_expand(BetaBinomial, self, new, batch_shape)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.total_count)

    @property
    def mean(self):
        a, b = self.concentration1, self.concentration0
        return self.total_count * a / (a + b)

    @property
    def variance(self):
        a, b, n = self.concentration1, self.concentration0, self.total_count
        s = a + b
        return n * a * b * (s + n) / (s.pow(2) * (s + 1))

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            probs = Beta(self.concentration1, self.concentration0, validate_args=False).sample(sample_shape)
            return torch.binomial(self.total_count.expand(shape).to(probs.dtype), probs)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        a, b, n = self.concentration1, self.concentration0, self.total_count
        return _log_binomial(n, value) + _log_beta(value + a, n - value + b) - _log_beta(a, b)

    def enumerate_support(self, expand=True):
        n = int(self.total_count.max()) if self.total_count.numel() else 0
        if self.total_count.numel() and int(self.total_count.min()) != n:
            raise NotImplementedError("BetaBinomial.enumerate_support: total_count differs across the batch")
        values = torch.arange(n + 1, dtype=self.concentration1.dtype, device=self.concentration1.device)
        values = values.reshape((-1,) + (1,) * len(self.batch_shape))
        return values.expand((-1,) + self.batch_shape) if expand else values


class DirichletMultinomial(TorchDistribution):
    r"""A Multinomial count vector whose probabilities are Dirichlet(``concentration``) distributed.

    .. math:: p(x) = \frac{n!\, \Gamma(\alpha_0)}{\Gamma(n + \alpha_0)}
              \prod_k \frac{\Gamma(x_k + \alpha_k)}{x_k!\, \Gamma(\alpha_k)},
              \qquad \alpha_0 = \textstyle\sum_k \alpha_k

    The event is the vector of counts (last dim of ``concentration``). Mean
    ``n alpha / alpha_0``; variance ``n p (1 - p) (n + alpha_0) / (1 + alpha_0)``
    with ``p = alpha / alpha_0``. ``total_count`` may differ across the batch.

    :param concentration: the Dirichlet's ``alpha`` (> 0), shape ``batch + (K,)``.
    :param total_count: the number of draws ``n`` (a nonnegative integer; default 1).
    :param bool is_sparse: compute ``log_prob`` only over the nonzero counts
        (the same value; faster when most counts are zero).
    """

    arg_constraints = {
        "concentration": constraints.independent(constraints.positive, 1),
        "total_count": constraints.nonnegative_integer,
    }

    def __init__(self, concentration, total_count=1, is_sparse=False, validate_args=None):
        concentration = torch.as_tensor(concentration)
        if concentration.dim() < 1:
            raise ValueError("DirichletMultinomial: concentration must have at least one dim (the categories)")
        if not concentration.is_floating_point():
            concentration = concentration.to(torch.get_default_dtype())
        if not torch.is_tensor(total_count):
            total_count = torch.tensor(total_count, dtype=concentration.dtype, device=concentration.device)
        batch_shape = torch.broadcast_shapes(concentration.shape[:-1], total_count.shape)
        self.concentration = concentration.expand(batch_shape + concentration.shape[-1:])
        self.total_count = total_count.to(concentration.dtype).expand(batch_shape)
        self.is_sparse = is_sparse
        super().__init__(batch_shape, concentration.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DirichletMultinomial, _instance)
        batch_shape = torch.Size(batch_shape)
        new.concentration = self.concentration.expand(batch_shape + self.event_shape)
        new.total_count = self.total_count.expand(batch_shape)
        new.is_sparse = self.is_sparse
        return _finish_expand(DirichletMultinomial, self, new, batch_shape, self.event_shape)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.multinomial(self.total_count)

    @property
    def mean(self):
        return self.total_count.unsqueeze(-1) * self.concentration / self.concentration.sum(-1, keepdim=True)

    @property
    def variance(self):
        n = self.total_count.unsqueeze(-1)
        a0 = self.concentration.sum(-1, keepdim=True)
        p = self.concentration / a0
        return n * p * (1 - p) * (n + a0) / (1 + a0)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            probs = Dirichlet(self.concentration, validate_args=False).sample(sample_shape)
            # Category by category: x_k ~ Binomial(what is left, p_k / (p_k + ... + p_K)).
            tail = probs.flip(-1).cumsum(-1).flip(-1)
            conditional = (probs / tail.clamp(min=torch.finfo(probs.dtype).tiny)).clamp(0, 1)
            left = self.total_count.expand(shape[:-1]).clone()
            counts = []
            for k in range(shape[-1] - 1):
                x = torch.binomial(left, conditional[..., k].contiguous())
                counts.append(x)
                left = left - x
            counts.append(left)
            return torch.stack(counts, -1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        alpha = self.concentration
        n, a0 = self.total_count, alpha.sum(-1)
        if self.is_sparse:
            value, alpha = torch.broadcast_tensors(value, alpha)
            nonzero = value != 0
            per_count = torch.zeros_like(value, dtype=alpha.dtype)
            v, a = value[nonzero], alpha[nonzero]
            per_count[nonzero] = torch.lgamma(v + a) - torch.lgamma(v + 1) - torch.lgamma(a)
        else:
            per_count = torch.lgamma(value + alpha) - torch.lgamma(value + 1) - torch.lgamma(alpha)
        return torch.lgamma(n + 1) + torch.lgamma(a0) - torch.lgamma(n + a0) + per_count.sum(-1)
