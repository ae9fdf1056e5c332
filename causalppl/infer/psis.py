"""Pareto-smoothed importance sampling diagnostics (Vehtari, Gelman & Gabry 2017; Yao et al. 2018).

:func:`fit_generalized_pareto` fits a generalised Pareto distribution to
positive exceedances by the Zhang & Stephens (2009) empirical-Bayes method,
with Vehtari et al.'s weakly informative prior on the shape ``k``.
:func:`psis_diagnostic` fits it to the largest importance weights ``p / q``
of a guide: ``k < 0.5`` is a good fit, ``k > 0.7`` a poor one.

>>> import torch
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<...>
>>> exceedances = torch.distributions.Pareto(1.0, 2.0).sample((20000,)) - 1.0  # shape k = 1/2
>>> k, sigma = fit_generalized_pareto(exceedances)
>>> round(k, 1), round(sigma, 1)
(0.5, 0.5)
"""

from __future__ import annotations

import math
import warnings

import torch

from causalppl.handlers import replay, trace
from causalppl.infer.elbo import _per_particle
from causalppl.infer.predictive import max_plate_nesting
from causalppl.runtime import plate
from causalppl.trace import contributes_log_prob, log_prob_of


def fit_generalized_pareto(x, prior_bs=3.0, prior_k=10.0):
    """``(k, sigma)`` of a generalised Pareto fit to the positive values ``x`` (a 1-d tensor).

    Zhang & Stephens' estimate averages the profile likelihood over a grid of
    ``30 + sqrt(n)`` values of ``b = -k / sigma``; ``k`` is then shrunk towards
    0.5 with the weight of ``prior_k`` pseudo-observations.
    """
    x = torch.as_tensor(x, dtype=torch.float64).flatten().sort().values
    if x.numel() == 0 or not bool((x > 0).all()):
        raise ValueError("fit_generalized_pareto: expected a non-empty tensor of positive values")
    n = x.numel()
    m = 30 + int(math.sqrt(n))
    grid = 1.0 - torch.sqrt(m / (torch.arange(1, m + 1, dtype=x.dtype) - 0.5))
    grid = grid / (prior_bs * x[int(n / 4 + 0.5) - 1]) + 1.0 / x[-1]
    ks = torch.log1p(-grid[:, None] * x).mean(-1)
    profile = n * (torch.log(-grid / ks) - ks - 1.0)
    weights = 1.0 / torch.exp(profile - profile[:, None]).sum(-1)
    keep = weights >= 10 * torch.finfo(x.dtype).eps
    grid, weights = grid[keep], weights[keep] / weights[keep].sum()
    b = (grid * weights).sum()
    k = torch.log1p(-b * x).mean()
    sigma = -k / b
    k = (n * k + prior_k * 0.5) / (n + prior_k)
    return k.item(), sigma.item()


def _log_weights(model, guide, num, args, kwargs):
    """``log p(x, z) - log q(z)`` for ``num`` guide draws, in one vectorised run."""
    with torch.no_grad():
        guide_tr = trace(guide).get_trace(*args, **kwargs)
        model_tr = trace(replay(model, trace=guide_tr)).get_trace(*args, **kwargs)
        dim = -(max_plate_nesting(model_tr, guide_tr) + 1)
        particles = plate("num_particles_vectorized", num, dim=dim)
        guide_tr = trace(particles(guide)).get_trace(*args, **kwargs)
        model_tr = trace(replay(particles(model), trace=guide_tr)).get_trace(*args, **kwargs)
        log_w = torch.zeros(num)
        for sign, tr in ((1.0, model_tr), (-1.0, guide_tr)):
            for site in tr.nodes.values():
                if contributes_log_prob(site) and (sign > 0 or not site["is_observed"]):
                    log_w = log_w + sign * _per_particle(log_prob_of(site), dim)
    return log_w


def psis_diagnostic(model, guide, *args, num_particles=1000, max_simultaneous_particles=10000, **kwargs):
    """The PSIS shape ``k`` of the guide's importance weights (Pyro's ``psis_diagnostic``).

    ``num_particles`` draws are made, at most ``max_simultaneous_particles``
    at a time; the generalised Pareto is fitted to the largest
    ``min(0.2 n, 3 sqrt(n))`` weights. Returns ``inf`` (with a warning) when
    fewer than 10 weights are in the tail.
    """
    if num_particles % max_simultaneous_particles != 0:
        raise ValueError("psis_diagnostic: num_particles must be divisible by max_simultaneous_particles")
    chunks = [_log_weights(model, guide, max_simultaneous_particles, args, kwargs)
              for _ in range(num_particles // max_simultaneous_particles)]
    log_w = torch.cat(chunks)
    log_w = (log_w - log_w.max()).sort().values
    cutoff_index = -int(math.ceil(min(0.2 * num_particles, 3.0 * math.sqrt(num_particles)))) - 1
    cutoff = max(math.log(1.0e-15), log_w[cutoff_index].item())
    tail = log_w[log_w > cutoff]
    if tail.numel() < 10:
        warnings.warn("psis_diagnostic: fewer than 10 weights in the tail; returning inf", stacklevel=2)
        return float("inf")
    k, _ = fit_generalized_pareto(tail.double().exp() - math.exp(cutoff))
    return k


__all__ = ["fit_generalized_pareto", "psis_diagnostic"]
