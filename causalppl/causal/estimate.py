"""Effect estimates from observational samples: regression adjustment and IV.

These are what an analyst computes from data once :mod:`identify` has said
which variables to adjust for (backdoor) or which instrument to use; the
examples compare them with the effect simulated under ``do``.

>>> import causalppl as cp
>>> cp.set_rng_seed(0)
>>> data = cp.graphs.load("confounded").sample(20000)
>>> estimate = adjusted_slope(data, "x", "y", adjustment=["z"])
>>> abs(estimate.value - 2.0) < 4 * estimate.stderr
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Estimate:
    """A point estimate with its (asymptotic) standard error."""

    value: float
    stderr: float

    def __str__(self):
        return f"{self.value:.4g} ± {self.stderr:.2g}"


def _column(samples, name):
    if name not in samples:
        raise KeyError(f"no samples of '{name}' (columns: {', '.join(samples)})")
    return torch.as_tensor(samples[name]).double().reshape(-1)


def _least_squares(y, columns):
    design = torch.stack([torch.ones_like(y), *columns], -1)
    beta = torch.linalg.lstsq(design, y.unsqueeze(-1)).solution.squeeze(-1)
    residual = y - design @ beta
    sigma2 = residual.pow(2).sum() / (len(y) - design.shape[1])
    stderr = (sigma2 * torch.linalg.inv(design.T @ design).diagonal()).sqrt()
    return beta, stderr


def adjusted_slope(samples, treatment, outcome, adjustment=()):
    """The least-squares coefficient of ``treatment`` in ``outcome ~ treatment + adjustment``.

    In a linear SCM, adjusting for a valid backdoor set makes it the causal
    effect; adjusting for nothing gives the (possibly confounded) association.
    """
    y = _column(samples, outcome)
    columns = [_column(samples, treatment)] + [_column(samples, name) for name in adjustment]
    beta, stderr = _least_squares(y, columns)
    return Estimate(float(beta[1]), float(stderr[1]))


def iv_slope(samples, instrument, treatment, outcome):
    """The two-stage least-squares effect of ``treatment`` on ``outcome`` with ``instrument``."""
    z, x, y = (_column(samples, name) for name in (instrument, treatment, outcome))
    first, _ = _least_squares(x, [z])
    fitted = first[0] + first[1] * z
    second, _ = _least_squares(y, [fitted])
    residual = y - second[0] - second[1] * x  # residuals use the real treatment, not the fitted one
    stderr = math.sqrt(float(residual.var()) / (len(y) * float(fitted.var())))
    return Estimate(float(second[1]), stderr)
