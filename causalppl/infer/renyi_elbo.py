"""Renyi's alpha-divergence bound (Li & Turner 2016); ``alpha=0`` is the importance-weighted bound (IWAE).

With ``w_k = p(x, z_k) / q(z_k)`` for ``K = num_particles`` draws from the
guide, the bound is ``1 / (1 - alpha) * log mean_k w_k^(1 - alpha)``; it
tightens to ``log p(x)`` as ``K`` grows (for ``alpha < 1``) and is the ELBO at
``alpha = 1`` (use :class:`~causalppl.infer.Trace_ELBO` then). The loss is its
negative.

>>> import torch, causalppl as cp
>>> def model():
...     z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
...     cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.tensor(0.0))
>>> def guide():
...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
>>> loss = RenyiELBO(num_particles=20000, vectorize_particles=True).loss(model, guide)
>>> round(loss, 1)  # -log p(x) = -log N(0; 0, 2)
1.3
"""

from __future__ import annotations

import math

import torch

from causalppl.infer.elbo import ELBO, _site_term
from causalppl.trace import contributes_log_prob, log_prob_of


class RenyiELBO(ELBO):
    """``RenyiELBO(alpha=0, num_particles=2, max_plate_nesting=None, vectorize_particles=False)``.

    Gradients: reparameterised guide sites through the weights; a guide site
    without ``rsample`` adds its score term scaled by ``alpha / (1 - alpha)``
    (zero for IWAE), as in Li & Turner's estimator.
    """

    def __init__(self, alpha=0, num_particles=2, max_plate_nesting=None, max_iarange_nesting=None,
                 vectorize_particles=False, strict_enumeration_warning=True, **kwargs):
        if alpha == 1:
            raise ValueError("RenyiELBO: alpha = 1 is the ordinary ELBO; use Trace_ELBO instead")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         max_iarange_nesting=max_iarange_nesting, vectorize_particles=vectorize_particles,
                         strict_enumeration_warning=strict_enumeration_warning, **kwargs)
        self.alpha = alpha

    def _elbo_particles(self, model, guide, args, kwargs):
        """``(log w, surrogate)``: one entry per particle (a vector of length ``num_particles``)."""
        weights, surrogates = [], []
        for model_trace, guide_trace, particle_dim in self._particle_traces(model, guide, args, kwargs):
            log_w, surrogate = 0.0, 0.0
            for site in model_trace.nodes.values():
                if contributes_log_prob(site):
                    term = _site_term(site, particle_dim)
                    log_w, surrogate = log_w + term, surrogate + term
            for site in guide_trace.nodes.values():
                if not contributes_log_prob(site) or site["is_observed"]:
                    continue
                term = _site_term(site, particle_dim, log_prob_of(site, scaled=False))
                log_w = log_w - term
                if site["fn"].has_rsample:
                    surrogate = surrogate - term
                else:
                    surrogate = surrogate + self.alpha / (1.0 - self.alpha) * term
            weights.append(torch.as_tensor(log_w).reshape(-1))
            surrogates.append(torch.as_tensor(surrogate).reshape(-1))
        log_w, surrogate = torch.cat(weights), torch.cat(surrogates)
        if log_w.numel() == 1 and self.num_particles > 1:  # every site constant across particles
            log_w, surrogate = log_w.expand(self.num_particles), surrogate.expand(self.num_particles)
        return log_w, surrogate

    def _bound_and_surrogate(self, model, guide, args, kwargs):
        log_w, surrogate = self._elbo_particles(model, guide, args, kwargs)
        scaled = (1.0 - self.alpha) * log_w
        log_mean = torch.logsumexp(scaled, 0) - math.log(scaled.numel())
        bound = log_mean / (1.0 - self.alpha)
        weights = (scaled - log_mean).exp().detach()  # self-normalised, sum to num_particles
        return bound, (weights * surrogate).sum() / scaled.numel()

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            bound, _ = self._bound_and_surrogate(model, guide, args, kwargs)
        return -float(bound)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        bound, surrogate = self._bound_and_surrogate(model, guide, args, kwargs)
        return -(bound.detach() + surrogate - surrogate.detach())

    def loss_and_grads(self, model, guide, *args, **kwargs):
        bound, surrogate = self._bound_and_surrogate(model, guide, args, kwargs)
        if surrogate.requires_grad:
            (-surrogate).backward(retain_graph=self.retain_graph)
        return -float(bound.detach())


__all__ = ["RenyiELBO"]
