"""Continuous distributions Pyro has and torch lacks.

SoftLaplace, AffineBeta, FoldedDistribution, LKJ (correlation matrices; the
deprecated LKJCorrCholesky alias) and MixtureOfDiagNormals.

>>> import torch
>>> round(SoftLaplace(0.0, 1.0).log_prob(torch.tensor(0.0)).item(), 4)  # log(1 / pi)
-1.1447
>>> AffineBeta(2.0, 2.0, -1.0, 2.0).mean
tensor(0.)
"""

import math
import warnings

import torch
from torch.distributions.utils import broadcast_all

from causalppl.distributions import (
    Beta,
    Categorical,
    LKJCholesky,
    TorchDistribution,
    TransformedDistribution,
    constraints,
)
from causalppl.distributions.transforms import AbsTransform, AffineTransform, CorrMatrixCholeskyTransform

__all__ = ["AffineBeta", "FoldedDistribution", "LKJ", "LKJCorrCholesky", "MixtureOfDiagNormals", "SoftLaplace"]


class SoftLaplace(TorchDistribution):
    r"""A smooth, log-concave density with Laplace-like (exponential) tails.

    .. math:: z = \frac{x - \mathrm{loc}}{\mathrm{scale}}, \qquad
              p(x) = \frac{2}{\pi\, \mathrm{scale}} \frac{1}{e^{z} + e^{-z}}
                   = \frac{1}{\pi\, \mathrm{scale} \cosh z}

    (a scaled hyperbolic secant distribution). Unlike the Laplace it is
    infinitely differentiable, so it suits Laplace approximations and HMC.
    CDF ``(2 / pi) atan(e^z)``; mean ``loc``; variance ``(pi scale / 2)^2``.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, *, validate_args=None):
        self.loc, self.scale = broadcast_all(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(SoftLaplace, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        super(SoftLaplace, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        if "has_rsample" in self.__dict__:  # a has_rsample_() choice
            new.has_rsample = self.has_rsample
        return new

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        return (0.5 * math.pi * self.scale).pow(2)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) / self.scale
        return math.log(2 / math.pi) - self.scale.log() - torch.logaddexp(z, -z)

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) / self.scale
        return z.exp().atan() * (2 / math.pi)

    def icdf(self, value):
        return self.loc + self.scale * torch.tan(value * (math.pi / 2)).log()

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        finfo = torch.finfo(self.loc.dtype)
        u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(finfo.tiny, 1 - finfo.eps)
        return self.icdf(u)


class AffineBeta(TransformedDistribution):
    """``loc + scale * X`` with ``X ~ Beta(concentration1, concentration0)``: a Beta on ``(loc, loc + scale)``.

    Draws are kept a relative ``eps`` inside the interval so that log
    densities and their gradients stay finite.
    """

    arg_constraints = {
        "concentration1": constraints.positive,
        "concentration0": constraints.positive,
        "loc": constraints.real,
        "scale": constraints.positive,
    }

    def __init__(self, concentration1, concentration0, loc, scale, validate_args=None):
        concentration1, concentration0, loc, scale = broadcast_all(concentration1, concentration0, loc, scale)
        base = Beta(concentration1, concentration0, validate_args=validate_args)
        super().__init__(base, AffineTransform(loc=loc, scale=scale), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(AffineBeta, _instance)
        return super().expand(batch_shape, _instance=new)

    @property
    def concentration1(self):
        return self.base_dist.concentration1

    @property
    def concentration0(self):
        return self.base_dist.concentration0

    @property
    def sample_size(self):
        return self.concentration1 + self.concentration0

    @property
    def loc(self):
        return torch.as_tensor(self.transforms[0].loc)

    @property
    def scale(self):
        return torch.as_tensor(self.transforms[0].scale)

    @property
    def low(self):
        return self.loc

    @property
    def high(self):
        return self.loc + self.scale

    @constraints.dependent_property
    def support(self):
        return constraints.interval(self.low, self.high)

    @property
    def mean(self):
        return self.loc + self.scale * self.base_dist.mean

    @property
    def variance(self):
        return self.scale.pow(2) * self.base_dist.variance

    def _inside(self, x):
        eps = torch.finfo(x.dtype).eps * self.scale
        return torch.maximum(torch.minimum(x, self.high - eps), self.low + eps)

    def rsample(self, sample_shape=torch.Size()):
        return self._inside(self.loc + self.scale * self.base_dist.rsample(sample_shape))

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.rsample(sample_shape)


class FoldedDistribution(TransformedDistribution):
    """``|X|`` for a univariate ``X ~ base_dist``, with a log density: ``p(y) = p_X(y) + p_X(-y)`` for ``y >= 0``."""

    support = constraints.nonnegative

    def __init__(self, base_dist, validate_args=None):
        if base_dist.event_shape:
            raise ValueError(f"FoldedDistribution: only univariate distributions can be folded, "
                             f"but base_dist has event_shape {tuple(base_dist.event_shape)}")
        super().__init__(base_dist, AbsTransform(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return torch.logaddexp(self.base_dist.log_prob(value), self.base_dist.log_prob(-value))


class LKJ(TransformedDistribution):
    r"""The LKJ distribution over ``dim`` by ``dim`` correlation matrices: :math:`p(C) \propto \det(C)^{\eta - 1}`.

    ``concentration`` (:math:`\eta` > 0) of 1 is uniform over correlation
    matrices; larger values favour matrices near the identity. It is
    ``LKJCholesky(dim, concentration)`` pushed through ``L -> L L^T``. Each
    off-diagonal entry is marginally ``2 B - 1`` with
    ``B ~ Beta(eta - 1 + dim / 2, eta - 1 + dim / 2)``, hence variance
    ``1 / (2 eta + dim - 1)``.

    Lewandowski, Kurowicka and Joe (2009), *Generating random correlation
    matrices based on vines and extended onion method*.
    """

    arg_constraints = {"concentration": constraints.positive}
    support = constraints.corr_matrix

    def __init__(self, dim, concentration=1.0, validate_args=None):
        base = LKJCholesky(dim, concentration, validate_args=validate_args)
        self.dim, self.concentration = base.dim, base.concentration
        # cache_size=1: log_prob of a fresh draw reuses its Cholesky factor instead of recomputing it.
        super().__init__(base, CorrMatrixCholeskyTransform(cache_size=1).inv, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LKJ, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.dim, new.concentration = new.base_dist.dim, new.base_dist.concentration
        return new

    @property
    def mean(self):
        eye = torch.eye(self.dim, dtype=self.concentration.dtype, device=self.concentration.device)
        return eye.expand(self.batch_shape + (self.dim, self.dim))

    @property
    def variance(self):
        off = 1 / (2 * self.concentration + self.dim - 1)
        eye = torch.eye(self.dim, dtype=off.dtype, device=off.device)
        return (off[..., None, None] * (1 - eye)).expand(self.batch_shape + (self.dim, self.dim))


class LKJCorrCholesky(LKJCholesky):
    """Deprecated: ``LKJCholesky(d, concentration=eta)``."""

    def __init__(self, d, eta, validate_args=None):
        warnings.warn("LKJCorrCholesky(d, eta) is deprecated; use LKJCholesky(dim, concentration)",
                      FutureWarning, stacklevel=2)
        super().__init__(d, concentration=eta, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LKJCorrCholesky, _instance)
        return super().expand(batch_shape, _instance=new)


class MixtureOfDiagNormals(TorchDistribution):
    r"""A mixture of ``K`` diagonal Normals in ``D`` dims with reparameterised draws.

    :math:`p(x) = \sum_k \pi_k \prod_d N(x_d; \mu_{kd}, \sigma_{kd})`, with
    :math:`\pi = \mathrm{softmax}(\mathrm{component\_logits})`.

    ``rsample`` is pathwise through the component choice too (implicit
    reparameterisation): the draw is a fixed point of the Rosenblatt map
    :math:`u_d = F_d(x_d \mid x_{<d})` (each a mixture CDF with weights
    updated by :math:`x_{<d}`), and its gradient is that of the map's
    inverse, :math:`dx_d = -(\partial F_d / \partial\theta + \ldots) / p_d(x_d \mid x_{<d})`.

    :param locs: ``batch + (K, D)`` component means.
    :param coord_scale: ``batch + (K, D)`` component standard deviations.
    :param component_logits: ``batch + (K,)`` unnormalised log mixture weights.
    """

    arg_constraints = {
        "locs": constraints.independent(constraints.real, 2),
        "coord_scale": constraints.independent(constraints.positive, 2),
        "component_logits": constraints.real_vector,
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, locs, coord_scale, component_logits, validate_args=None):
        if locs.dim() < 2 or coord_scale.dim() < 2 or component_logits.dim() < 1:
            raise ValueError("MixtureOfDiagNormals: locs and coord_scale need shape batch + (K, D), "
                             "component_logits batch + (K,)")
        k, d = locs.shape[-2:]
        if coord_scale.shape[-2:] != (k, d) or component_logits.shape[-1] != k:
            raise ValueError(f"MixtureOfDiagNormals: shapes disagree: locs {tuple(locs.shape)}, coord_scale "
                             f"{tuple(coord_scale.shape)}, component_logits {tuple(component_logits.shape)}")
        batch_shape = torch.broadcast_shapes(locs.shape[:-2], coord_scale.shape[:-2], component_logits.shape[:-1])
        self.locs = locs.expand(batch_shape + (k, d))
        self.coord_scale = coord_scale.expand(batch_shape + (k, d))
        self.component_logits = component_logits.expand(batch_shape + (k,))
        super().__init__(batch_shape, torch.Size((d,)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(MixtureOfDiagNormals, _instance)
        batch_shape = torch.Size(batch_shape)
        k, d = self.locs.shape[-2:]
        new.locs = self.locs.expand(batch_shape + (k, d))
        new.coord_scale = self.coord_scale.expand(batch_shape + (k, d))
        new.component_logits = self.component_logits.expand(batch_shape + (k,))
        super(MixtureOfDiagNormals, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        if "has_rsample" in self.__dict__:  # a has_rsample_() choice
            new.has_rsample = self.has_rsample
        return new

    @classmethod
    def infer_shapes(cls, locs, coord_scale, component_logits):
        batch = torch.broadcast_shapes(torch.Size(locs)[:-2], torch.Size(coord_scale)[:-2],
                                       torch.Size(component_logits)[:-1])
        return batch, torch.Size(locs)[-1:]

    def _log_weights(self):
        return self.component_logits.log_softmax(-1)

    @property
    def mean(self):
        return (self._log_weights().exp().unsqueeze(-1) * self.locs).sum(-2)

    @property
    def variance(self):
        w = self._log_weights().exp().unsqueeze(-1)
        second = (w * (self.locs.pow(2) + self.coord_scale.pow(2))).sum(-2)
        return second - self.mean.pow(2)

    def _component_log_probs(self, value):
        z = (value.unsqueeze(-2) - self.locs) / self.coord_scale
        return (-0.5 * z.pow(2) - self.coord_scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return (self._log_weights() + self._component_log_probs(value)).logsumexp(-1)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self._draw(sample_shape)

    def _draw(self, sample_shape):
        shape = self._extended_shape(sample_shape)
        which = Categorical(logits=self.component_logits, validate_args=False).sample(sample_shape)
        index = which[..., None, None].expand(shape[:-1] + (1, shape[-1]))
        locs = self.locs.expand(shape[:-1] + self.locs.shape[-2:]).gather(-2, index).squeeze(-2)
        scales = self.coord_scale.expand(shape[:-1] + self.locs.shape[-2:]).gather(-2, index).squeeze(-2)
        return locs + scales * torch.randn(shape, dtype=locs.dtype, device=locs.device)

    def rsample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            x = self._draw(sample_shape)
        log_w = self._log_weights().expand(x.shape[:-1] + self.component_logits.shape[-1:])
        out = []
        for d in range(x.shape[-1]):
            loc, scale = self.locs[..., d], self.coord_scale[..., d]
            w = log_w.softmax(-1)
            z = (x[..., d:d + 1] - loc) / scale
            cdf = (w * torch.special.ndtr(z)).sum(-1)
            density = (w * torch.exp(-0.5 * z.pow(2)) / (scale * math.sqrt(2 * math.pi))).sum(-1)
            # Same value as x_d; its gradient is -(dF_d) / p_d(x_d | x_<d).
            x_d = x[..., d] - (cdf - cdf.detach()) / density.detach()
            out.append(x_d)
            zd = (x_d.unsqueeze(-1) - loc) / scale
            log_w = log_w + (-0.5 * zd.pow(2) - scale.log())
        return torch.stack(out, -1)
