"""Special functions: a logarithm with bounded gradients, and fast approximate log Beta / log binomial.

>>> import torch
>>> from causalppl.ops.special import log_beta, log_binomial, safe_log
>>> round(log_binomial(torch.tensor(10.0), torch.tensor(3.0)).exp().item())  # choose(10, 3)
120
>>> exact = log_beta(torch.tensor(0.3), torch.tensor(2.0))
>>> fast = log_beta(torch.tensor(0.3), torch.tensor(2.0), tol=0.05)
>>> bool(fast <= exact < fast + 0.05)
True
"""

from __future__ import annotations

import math

import torch

__all__ = ["log_beta", "log_binomial", "safe_log"]

_HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


class _BoundedGradLog(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, floor):
        ctx.save_for_backward(x)
        ctx.floor = floor
        return x.log()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / x.clamp(min=ctx.floor), None


def log_bounded_grad(x, floor):
    """``x.log()`` whose gradient ``1 / x`` is capped at ``1 / floor`` (finite at ``x = 0``)."""
    return _BoundedGradLog.apply(x, floor)


def safe_log(x):
    """``x.log()`` whose gradient ``1 / x`` is capped at ``1 / eps`` (finite at ``x = 0``)."""
    return log_bounded_grad(x, torch.finfo(x.dtype).eps)


def _stirling_lgamma(z):
    # Stirling's series cut after its first terms: lgamma(z) minus this is in (0, 1 / (12 z)).
    return (z - 0.5) * z.log() - z + _HALF_LOG_TWO_PI


def log_beta(x, y, tol=0.0):
    """``log B(x, y) = lgamma(x) + lgamma(y) - lgamma(x + y)`` for positive ``x``, ``y``.

    With ``tol < 0.02`` this is exact (``torch.lgamma``). Otherwise each
    ``lgamma(z)`` is Stirling's approximation at ``z + n`` shifted back by
    ``lgamma(z) = lgamma(z + n) - sum_{i<n} log(z + i)``; with
    ``n = ceil(0.082 / tol)`` the result is at most ``tol`` below the exact
    value and never above it (the error is about ``1 / (12 (z + n))``).
    """
    if not isinstance(tol, (int, float)) or tol < 0:
        raise ValueError(f"log_beta: tol must be a non-negative number, got {tol!r}")
    if tol < 0.02:
        return x.lgamma() + y.lgamma() - (x + y).lgamma()
    shift = int(math.ceil(0.082 / tol))
    xy = x + y
    correction = 0.0
    for i in range(shift):
        correction = correction + (xy + i).log() - (x + i).log() - (y + i).log()
    return (correction + _stirling_lgamma(x + shift) + _stirling_lgamma(y + shift)
            - _stirling_lgamma(xy + shift))


@torch.no_grad()
def log_binomial(n, k, tol=0.0):
    """``log choose(n, k)`` for ``0 <= k <= n``; within ``tol`` of it via :func:`log_beta` when ``tol >= 0.02``."""
    if not isinstance(tol, (int, float)) or tol < 0:
        raise ValueError(f"log_binomial: tol must be a non-negative number, got {tol!r}")
    if tol < 0.02:
        return (n + 1).lgamma() - (k + 1).lgamma() - (n - k + 1).lgamma()
    return -(n + 1).log() - log_beta(k + 1, n - k + 1, tol=tol)
