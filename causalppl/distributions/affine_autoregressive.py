"""The affine autoregressive bijection of inverse autoregressive flows (Kingma et al. 2016).

``y = exp(log_scale(x)) * x + mean(x)`` with ``(mean, log_scale)`` from an
:class:`~causalppl.nn.auto_reg_nn.AutoRegressiveNN`, so the Jacobian is
triangular and ``log|det J| = sum(log_scale)``. Drawing (the forward map)
is one pass of the network; the inverse takes ``D`` passes.

>>> import torch
>>> from causalppl.nn.auto_reg_nn import AutoRegressiveNN
>>> t = AffineAutoregressive(AutoRegressiveNN(3, [9]))
>>> x = torch.randn(3)
>>> bool(torch.allclose(t.inv(t(x).detach()), x, atol=1e-5))
True
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import constraints
from torch.distributions.transforms import Transform


class AffineAutoregressive(Transform, nn.Module):
    """``AffineAutoregressive(autoregressive_nn, log_scale_min_clip=-5.0, log_scale_max_clip=3.0)``.

    A torch ``Transform`` that is also an ``nn.Module`` (its network's weights
    are the module's parameters). The log-scale is clamped to the clip range
    in the forward value while gradients pass as if unclamped.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    sign = +1

    def __init__(self, autoregressive_nn, log_scale_min_clip=-5.0, log_scale_max_clip=3.0):
        Transform.__init__(self, cache_size=1)
        nn.Module.__init__(self)
        self.arn = autoregressive_nn
        self.log_scale_min_clip = log_scale_min_clip
        self.log_scale_max_clip = log_scale_max_clip
        self._cached_log_scale = None

    __hash__ = nn.Module.__hash__

    def _clamped(self, log_scale):
        clamped = log_scale.clamp(self.log_scale_min_clip, self.log_scale_max_clip)
        return log_scale + (clamped - log_scale).detach()

    def _call(self, x):
        mean, log_scale = self.arn(x)
        log_scale = self._clamped(log_scale)
        self._cached_log_scale = log_scale
        return torch.exp(log_scale) * x + mean

    def _inverse(self, y):
        x = torch.zeros_like(y)
        log_scale = torch.zeros_like(y)
        for idx in self.arn.get_permutation().tolist():  # entry k needs the entries before it
            mean, log_scale = self.arn(x)
            log_scale = self._clamped(log_scale)
            x = x.clone()
            x[..., idx] = (y[..., idx] - mean[..., idx]) * torch.exp(-log_scale[..., idx])
        self._cached_log_scale = log_scale
        return x

    def log_abs_det_jacobian(self, x, y):
        x_old, y_old = self._cached_x_y
        if self._cached_log_scale is not None and x is x_old and y is y_old:
            log_scale = self._cached_log_scale
        else:
            _, log_scale = self.arn(x)
            log_scale = self._clamped(log_scale)
        return log_scale.sum(-1)


__all__ = ["AffineAutoregressive"]
