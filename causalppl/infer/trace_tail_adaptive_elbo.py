"""Tail-adaptive f-divergence gradients (Wang, Liu & Liu, NeurIPS 2018; Pyro's ``TraceTailAdaptive_ELBO``).

The particles' log weights ``log p - log q`` are ranked; particle ``i``'s
weight is ``rank_i ** tail_adaptive_beta`` (normalised), and the surrogate
is ``-sum(w_i * log_w_i)``. Only gradients exist (``loss`` raises
``NotImplementedError``); it needs ``vectorize_particles=True`` and a fully
reparameterised guide.

>>> import torch, causalppl as cp
>>> def model():
...     cp.sample("x", cp.dist.Normal(0.0, 1.0))
>>> def guide():
...     cp.sample("x", cp.dist.Normal(0.0, 2.0))
>>> elbo = TraceTailAdaptive_ELBO(num_particles=4, vectorize_particles=True)
>>> elbo.differentiable_loss(model, guide).dim()
0
"""

from __future__ import annotations

import warnings

import torch

from causalppl.infer.elbo import Trace_ELBO, _is_latent, _per_particle
from causalppl.infer.util import check_fully_reparametrized
from causalppl.runtime import is_validation_enabled
from causalppl.trace import contributes_log_prob, log_prob_of


class TraceTailAdaptive_ELBO(Trace_ELBO):
    """Rank-weighted importance gradients; ``tail_adaptive_beta`` (default -1) sets the weights' tail."""

    tail_adaptive_beta = -1.0

    def __init__(self, *args, tail_adaptive_beta=-1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.tail_adaptive_beta = tail_adaptive_beta

    def loss(self, model, guide, *args, **kwargs):
        """Not available: only the gradient of the tail-adaptive divergence is computed."""
        raise NotImplementedError("Loss method for TraceTailAdaptive_ELBO not implemented")

    def _particle_loss(self, model_trace, guide_trace, particle_dim):
        if not self.vectorize_particles:
            raise NotImplementedError("TraceTailAdaptive_ELBO only implemented for vectorize_particles==True")
        if self.num_particles == 1:
            warnings.warn("For num_particles==1 TraceTailAdaptive_ELBO uses the same loss function as "
                          "Trace_ELBO. Increase num_particles to get an adaptive f-divergence.", stacklevel=4)
        dim = -1 if particle_dim is None else particle_dim
        log_w = 0.0
        for site in model_trace.nodes.values():
            if contributes_log_prob(site):
                log_w = log_w + _per_particle(log_prob_of(site), dim)
        for site in guide_trace.nodes.values():
            if _is_latent(site):
                if is_validation_enabled():
                    check_fully_reparametrized(site)
                log_w = log_w - _per_particle(log_prob_of(site), dim)
        log_w = torch.as_tensor(log_w).reshape(-1)
        if log_w.numel() != self.num_particles:
            log_w = log_w.expand(self.num_particles) if log_w.numel() == 1 else log_w
        order = torch.argsort(log_w)
        rank = torch.empty_like(log_w)
        rank[order] = torch.arange(1, log_w.numel() + 1, dtype=log_w.dtype, device=log_w.device)
        gamma = rank.pow(self.tail_adaptive_beta)
        surrogate = -(log_w * gamma).sum() / gamma.sum()
        return surrogate, surrogate.detach()
