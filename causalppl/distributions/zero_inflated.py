r"""Zero-inflated distributions: with probability ``gate`` an extra zero, otherwise a draw of the base.

.. math:: p(0) = g + (1 - g)\, p_{base}(0), \qquad p(x) = (1 - g)\, p_{base}(x) \quad (x \ne 0)

Give exactly one of ``gate`` (a probability) or ``gate_logits`` (its
log-odds); the log density is computed in the one given, so logits stay
stable far into the tails.

>>> import torch
>>> d = ZeroInflatedPoisson(torch.tensor(2.0), gate=torch.tensor(0.25))
>>> round(d.log_prob(torch.tensor(0.0)).exp().item(), 4)  # 0.25 + 0.75 * exp(-2)
0.3515
"""

import torch
import torch.nn.functional as F
from torch.distributions.utils import lazy_property, logits_to_probs, probs_to_logits

from causalppl.distributions import NegativeBinomial, Poisson, TorchDistribution, constraints

__all__ = ["ZeroInflatedDistribution", "ZeroInflatedNegativeBinomial", "ZeroInflatedPoisson"]


def _as_param(x, like):
    if torch.is_tensor(x):
        return x
    dtype = like.dtype if torch.is_tensor(like) and like.is_floating_point() else torch.get_default_dtype()
    return torch.as_tensor(x, dtype=dtype, device=like.device if torch.is_tensor(like) else None)


def _base_param(dist):
    for name in ("rate", "total_count", "loc", "probs", "logits", "concentration"):
        if name in dist.__dict__ and torch.is_tensor(dist.__dict__[name]):
            return dist.__dict__[name]
    return None


class ZeroInflatedDistribution(TorchDistribution):
    """``base_dist`` with extra zeros: a zero with probability ``gate``, else a draw of ``base_dist``.

    :param base_dist: a univariate distribution (empty event shape).
    :param gate: probability of an extra zero, in [0, 1] (keyword only).
    :param gate_logits: log-odds of an extra zero (keyword only; instead of ``gate``).

    Mean ``(1 - g) mu``; variance ``(1 - g) (sigma^2 + mu^2) - ((1 - g) mu)^2``.
    """

    arg_constraints = {"gate": constraints.unit_interval, "gate_logits": constraints.real}

    def __init__(self, base_dist, *, gate=None, gate_logits=None, validate_args=None):
        if (gate is None) == (gate_logits is None):
            raise ValueError(f"{type(self).__name__}: give exactly one of gate= or gate_logits= "
                             f"(got {'both' if gate is not None else 'neither'})")
        if base_dist.event_shape:
            raise ValueError(f"{type(self).__name__}: base_dist must be univariate, "
                             f"but its event_shape is {tuple(base_dist.event_shape)}")
        like = _base_param(base_dist)
        given = _as_param(gate if gate is not None else gate_logits, like)
        batch_shape = torch.broadcast_shapes(given.shape, base_dist.batch_shape)
        if gate is not None:
            self.gate = given.expand(batch_shape)
        else:
            self.gate_logits = given.expand(batch_shape)
        self.base_dist = base_dist.expand(batch_shape) if base_dist.batch_shape != batch_shape else base_dist
        super().__init__(batch_shape, torch.Size(), validate_args=validate_args)

    @lazy_property
    def gate(self):
        return logits_to_probs(self.gate_logits, is_binary=True)

    @lazy_property
    def gate_logits(self):
        return probs_to_logits(self.gate, is_binary=True)

    @constraints.dependent_property
    def support(self):
        return self.base_dist.support

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        if "gate" in self.__dict__:
            kwargs = {"gate": self.gate.expand(batch_shape)}
        else:
            kwargs = {"gate_logits": self.gate_logits.expand(batch_shape)}
        ZeroInflatedDistribution.__init__(new, self.base_dist.expand(batch_shape), validate_args=False, **kwargs)
        new._validate_args = self._validate_args
        return new

    def _log_gates(self):
        """``(log g, log(1 - g))`` computed from whichever parameter was given."""
        if "gate" in self.__dict__:
            return self.gate.log(), torch.log1p(-self.gate)
        return F.logsigmoid(self.gate_logits), F.logsigmoid(-self.gate_logits)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        log_gate, log_keep = self._log_gates()
        from_base = log_keep + self.base_dist.log_prob(value)
        return torch.where(value == 0, torch.logaddexp(log_gate, from_base), from_base)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            extra_zero = torch.bernoulli(self.gate.expand(shape)).bool()
            value = self.base_dist.sample(sample_shape)
            return torch.where(extra_zero, value.new_zeros(()), value)

    @property
    def mean(self):
        return (1 - self.gate) * self.base_dist.mean

    @property
    def variance(self):
        # (1 - g)(sigma^2 + mu^2) - ((1 - g) mu)^2, written without the cancellation and in an
        # order that cannot overflow before the result does (mu may be 1e20 in float32).
        keep, mu = 1 - self.gate, self.base_dist.mean
        return keep * self.base_dist.variance + keep * self.gate * mu * mu


class ZeroInflatedPoisson(ZeroInflatedDistribution):
    """A Poisson(``rate``) count with extra zeros (``gate`` or ``gate_logits``, keyword only)."""

    arg_constraints = {"rate": constraints.positive, "gate": constraints.unit_interval,
                       "gate_logits": constraints.real}
    support = constraints.nonnegative_integer

    def __init__(self, rate, *, gate=None, gate_logits=None, validate_args=None):
        base = Poisson(rate, validate_args=validate_args)
        super().__init__(base, gate=gate, gate_logits=gate_logits, validate_args=validate_args)

    @property
    def rate(self):
        return self.base_dist.rate


class ZeroInflatedNegativeBinomial(ZeroInflatedDistribution):
    """A NegativeBinomial(``total_count``, ``probs`` or ``logits``) count with extra zeros.

    ``probs``/``logits`` follow ``torch.distributions.NegativeBinomial``
    (``probs`` is the success probability; the mean is ``total_count * probs / (1 - probs)``).
    All but ``total_count`` are keyword only.
    """

    arg_constraints = {
        "total_count": constraints.greater_than_eq(0),
        "probs": constraints.half_open_interval(0.0, 1.0),
        "logits": constraints.real,
        "gate": constraints.unit_interval,
        "gate_logits": constraints.real,
    }
    support = constraints.nonnegative_integer

    def __init__(self, total_count, *, probs=None, logits=None, gate=None, gate_logits=None, validate_args=None):
        base = NegativeBinomial(total_count, probs=probs, logits=logits, validate_args=validate_args)
        super().__init__(base, gate=gate, gate_logits=gate_logits, validate_args=validate_args)
        # Only the parameterisation given is checked (the other is derived, like torch's lazy ones).
        self.__dict__["probs" if probs is not None else "logits"] = (
            self.base_dist.probs if probs is not None else self.base_dist.logits)

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, _instance)
        name = "probs" if "probs" in self.__dict__ else "logits"
        new.__dict__[name] = getattr(new.base_dist, name)
        return new

    @property
    def total_count(self):
        return self.base_dist.total_count

    @lazy_property
    def probs(self):
        return self.base_dist.probs

    @lazy_property
    def logits(self):
        return self.base_dist.logits
