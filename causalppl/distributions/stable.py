"""The Levy alpha-stable distribution (Pyro's ``Stable``), sampled by Chambers-Mallows-Stuck.

Its density has no closed form, so ``log_prob`` raises ``NotImplementedError``;
use it as a likelihood with a likelihood-free loss (``EnergyDistance``) or as a
latent through :class:`causalppl.infer.reparam.LatentStableReparam`.
Parameters are in Nolan's S0 coordinates (continuous in ``stability`` at 1).

>>> import torch
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<...>
>>> x = Stable(torch.tensor(2.0), torch.tensor(0.0)).sample((20000,))
>>> round(float(x.var()), 0)  # stability 2 is Normal(0, sqrt(2))
2.0
"""

import math

import torch
from torch.distributions import constraints

from causalppl.distributions import TorchDistribution

_HOLE_RADIUS = 0.01  # the S0 formula cancels badly near stability 1; interpolate across it


def _unsafe_standard_stable(alpha, beta, uniform, exponential):
    """Chambers-Mallows-Stuck (Weron's correction, Nolan's S0 shift); inaccurate near alpha = 1."""
    half_pi = math.pi / 2
    eps = torch.finfo(uniform.dtype).eps
    uniform = uniform.clamp(min=2 * eps - half_pi, max=half_pi - 2 * eps)
    ha = half_pi * alpha
    b = beta * ha.tan()
    v = b.atan() - ha + alpha * (uniform + half_pi)
    z = (v.sin() / ((1 + b * b).rsqrt() * uniform.cos()).pow(alpha.reciprocal())
         * ((v - uniform).cos().clamp(min=eps) / exponential).pow(alpha.reciprocal() - 1))
    return torch.nan_to_num(z, nan=0.0) - b


def standard_stable(alpha, beta, uniform, exponential):
    """A standard S0 ``Stable(alpha, beta)`` draw from ``uniform ~ U(-pi/2, pi/2)`` and ``exponential ~ Exp(1)``.

    Differentiable in ``alpha`` and ``beta``; near ``alpha = 1`` the draw is
    interpolated linearly between ``1 - 0.01`` and ``1 + 0.01``.
    """
    alpha, beta, uniform, exponential = torch.broadcast_tensors(alpha, beta, uniform, exponential)
    near = (alpha.detach() - 1).abs() <= _HOLE_RADIUS
    if not near.any():
        return _unsafe_standard_stable(alpha, beta, uniform, exponential)
    low = torch.where(near, torch.full_like(alpha, 1 - _HOLE_RADIUS), alpha)
    high = torch.where(near, torch.full_like(alpha, 1 + _HOLE_RADIUS), alpha)
    weight = torch.where(near, (alpha - low) / (2 * _HOLE_RADIUS), torch.zeros_like(alpha))
    return ((1 - weight) * _unsafe_standard_stable(low, beta, uniform, exponential)
            + weight * _unsafe_standard_stable(high, beta, uniform, exponential))


class Stable(TorchDistribution):
    """``Stable(stability, skew, scale=1, loc=0)``: reparameterised sampling, no density."""

    arg_constraints = {"stability": constraints.interval(0, 2), "skew": constraints.interval(-1, 1),
                       "scale": constraints.positive, "loc": constraints.real}
    support = constraints.real
    has_rsample = True

    def __init__(self, stability, skew, scale=1.0, loc=0.0, coords="S0", validate_args=None):
        if coords != "S0":
            raise ValueError(f"Stable: only coords='S0' is implemented, got {coords!r}")
        self.stability, self.skew, self.scale, self.loc = torch.broadcast_tensors(
            *(torch.as_tensor(x, dtype=torch.get_default_dtype()) for x in (stability, skew, scale, loc)))
        self.coords = coords
        super().__init__(self.stability.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        return Stable(self.stability.expand(shape), self.skew.expand(shape), self.scale.expand(shape),
                      self.loc.expand(shape), self.coords)

    def log_prob(self, value):
        raise NotImplementedError("Stable.log_prob() is not implemented (no closed form); use "
                                  "LatentStableReparam or a likelihood-free loss such as EnergyDistance")

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        proto = self.stability
        half_pi = math.pi / 2
        uniform = torch.empty(shape, dtype=proto.dtype, device=proto.device).uniform_(-half_pi, half_pi)
        exponential = torch.empty(shape, dtype=proto.dtype, device=proto.device).exponential_()
        return self.loc + self.scale * standard_stable(self.stability, self.skew, uniform, exponential)

    @property
    def mean(self):
        return torch.where(self.stability <= 1, torch.full_like(self.loc, math.nan), self.loc)

    @property
    def variance(self):
        return torch.where(self.stability == 2, 2 * self.scale.pow(2), torch.full_like(self.scale, math.inf))
