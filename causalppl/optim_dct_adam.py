"""DCTAdam: ClippedAdam with a second, frequency-domain view of time-series params.

A param with the attribute ``_pyro_dct_dim`` (a negative dim: its time
axis) is optimised as the pair (its values, their orthonormal DCT-II along
that axis): Adam keeps moments for both halves, and the step is the sum of
the time-domain step and the inverse DCT of the frequency-domain step, so
slow trends and fast wiggles get step sizes of their own. With
``subsample_aware=True`` a param read inside subsampled plates (attribute
``_pyro_subsample``: dim -> indices) updates only the entries of this
step's rows, each with its own step count.

>>> import torch
>>> x = torch.zeros(4, requires_grad=True)
>>> opt = DCTAdam([x], lr=0.1)
>>> x.grad = torch.ones(4); opt.step(); [round(v, 3) for v in x.tolist()]
[-0.1, -0.1, -0.1, -0.1]
"""

from __future__ import annotations

import math

import torch
from torch.optim.optimizer import Optimizer


def _dct_matrix(n, dtype, device):
    """The orthonormal DCT-II matrix ``C`` (``n x n``): ``dct(x) = C @ x``, ``idct(y) = C.T @ y``."""
    k = torch.arange(n, dtype=dtype, device=device).unsqueeze(-1)
    t = torch.arange(n, dtype=dtype, device=device).unsqueeze(0)
    c = torch.cos(math.pi * (t + 0.5) * k / n) * math.sqrt(2.0 / n)
    c[0] = c[0] / math.sqrt(2.0)
    return c


def _along(x, dim, matrix):
    """``matrix`` applied along dim ``dim`` of ``x``."""
    moved = x.movedim(dim, -1)
    return (moved @ matrix.transpose(0, 1)).movedim(-1, dim)


def _forward(grad, dim):
    c = _dct_matrix(grad.size(dim), grad.dtype, grad.device)
    return torch.cat([grad, _along(grad, dim, c)], dim=dim)


def _inverse(step, dim, duration):
    time, freq = step.split([duration, step.size(dim) - duration], dim=dim)
    c = _dct_matrix(duration, step.dtype, step.device)
    return time + _along(freq, dim, c.transpose(0, 1))


def _mask(p, subsample):
    mask = torch.ones(p.shape, dtype=torch.bool, device=p.device)
    for dim, idx in subsample.items():
        keep = torch.zeros(p.size(dim), dtype=torch.bool, device=p.device)
        keep[idx] = True
        shape = [1] * p.dim()
        shape[dim] = p.size(dim)
        mask = mask & keep.reshape(shape)
    return mask


class DCTAdam(Optimizer):
    """``DCTAdam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, clip_norm=10.0, lrd=1.0, subsample_aware=False)``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, clip_norm=10.0, lrd=1.0,
                 subsample_aware=False):
        if lr < 0:
            raise ValueError(f"DCTAdam: lr must be non-negative, got {lr}")
        defaults = dict(lr=lr, betas=betas, eps=eps, clip_norm=clip_norm, lrd=lrd, subsample_aware=subsample_aware)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            group["lr"] *= group["lrd"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                subsample = getattr(p, "_pyro_subsample", None) or {}
                mask = _mask(p, subsample) if subsample and group["subsample_aware"] else None
                self._update(group, p, mask)
        return loss

    def _update(self, group, p, mask):
        grad = p.grad.clamp(-group["clip_norm"], group["clip_norm"])
        if mask is not None:
            grad = torch.where(mask, grad, torch.zeros_like(grad))
        time_dim = getattr(p, "_pyro_dct_dim", None)
        duration = p.size(time_dim) if time_dim is not None else None
        if time_dim is not None:
            grad = _forward(grad, time_dim)
            if mask is not None:
                mask = torch.cat([mask, mask], dim=time_dim)
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros_like(grad)
            state["exp_avg"] = torch.zeros_like(grad)
            state["exp_avg_sq"] = torch.zeros_like(grad)
        beta1, beta2 = group["betas"]
        live = torch.ones_like(grad, dtype=torch.bool) if mask is None else mask
        steps = state["step"].add_(live.to(grad.dtype))
        exp_avg = state["exp_avg"]
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg.copy_(torch.where(live, exp_avg * beta1 + grad * (1 - beta1), exp_avg))
        exp_avg_sq.copy_(torch.where(live, exp_avg_sq * beta2 + grad * grad * (1 - beta2), exp_avg_sq))
        safe = steps.clamp(min=1)
        step_size = group["lr"] * (1 - beta2 ** safe).sqrt() / (1 - beta1 ** safe)
        update = torch.where(live, step_size * exp_avg / (exp_avg_sq.sqrt() + group["eps"]), torch.zeros_like(grad))
        if time_dim is not None:
            update = _inverse(update, time_dim, duration)
        p.sub_(update)


__all__ = ["DCTAdam"]
