"""Posterior predictive energy distance: a likelihood-free loss (Pyro's ``EnergyDistance``).

With ``Z, Z' ~ q`` and ``X ~ p(x | Z)``, ``X' ~ p(x | Z')`` drawn in pairs of
particles, the loss is ``E||X - x||^beta - 1/2 E||X - X'||^beta - prior_scale * E log p(Z)``.
Observed sites are *re-drawn* from the model (their log density is never
needed), so it works for likelihoods without a density, e.g. ``Stable``.
The guide and the likelihoods must be reparameterised.

>>> import torch, causalppl as cp
>>> cp.set_rng_seed(0)
>>> def model():
...     loc = cp.sample("loc", cp.dist.Normal(0.0, 10.0))
...     with cp.plate("data", 3):
...         cp.sample("obs", cp.dist.Normal(loc, 1.0), obs=torch.tensor([1.0, 2.0, 3.0]))
>>> def guide():
...     cp.sample("loc", cp.dist.Delta(torch.tensor(2.0)))
>>> loss = EnergyDistance(num_particles=8)(model, guide)
>>> bool(loss > 0)
True
"""

from __future__ import annotations

import torch

from causalppl.handlers import replay, trace, uncondition
from causalppl.handlers.util import prune_subsample_sites
from causalppl.infer.predictive import max_plate_nesting as guess_max_plate_nesting
from causalppl.runtime import plate, validation_enabled
from causalppl.trace import contributes_log_prob, log_prob_of


class EnergyDistance:
    """The energy distance between the posterior predictive and the data, plus an optional prior term.

    ``beta`` in (0, 2) is the exponent; ``prior_scale >= 0`` weights
    ``-E log p(Z)`` (0: the model's latent densities are never computed);
    ``num_particles >= 2`` particles are drawn in one vectorised pass.
    Only the surrogate loss exists: ``loss`` raises ``NotImplementedError``.
    """

    def __init__(self, beta=1.0, prior_scale=0.0, num_particles=2, max_plate_nesting=float("inf")):
        if not (isinstance(beta, (float, int)) and 0 < beta < 2):
            raise ValueError(f"Expected beta in (0,2), actual {beta}")
        if not (isinstance(prior_scale, (float, int)) and prior_scale >= 0):
            raise ValueError(f"Expected prior_scale >= 0, actual {prior_scale}")
        if not (isinstance(num_particles, int) and num_particles >= 2):
            raise ValueError(f"Expected num_particles >= 2, actual {num_particles}")
        self.beta = beta
        self.prior_scale = prior_scale
        self.num_particles = num_particles
        self.vectorize_particles = True
        self.max_plate_nesting = max_plate_nesting

    def _power(self, squared):
        return squared.sqrt() if self.beta == 1 else squared.pow(self.beta / 2)

    def _traces(self, model, guide, args, kwargs):
        if self.max_plate_nesting == float("inf"):
            with validation_enabled(False), torch.no_grad():  # a Stable likelihood has no log_prob
                guide_tr = trace(guide).get_trace(*args, **kwargs)
                model_tr = trace(uncondition(replay(model, trace=guide_tr))).get_trace(*args, **kwargs)
            self.max_plate_nesting = guess_max_plate_nesting(model_tr, guide_tr)
        particles = plate("num_particles_vectorized", self.num_particles, dim=-(self.max_plate_nesting + 1))
        guide_trace = trace(particles(guide)).get_trace(*args, **kwargs)
        model_trace = trace(uncondition(replay(particles(model), trace=guide_trace))).get_trace(*args, **kwargs)
        guide_trace, model_trace = prune_subsample_sites(guide_trace), prune_subsample_sites(model_trace)
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and not site["fn"].has_rsample:
                raise ValueError(f"EnergyDistance requires fully reparametrized guides (site '{name}')")
        for name, site in model_trace.nodes.items():
            if _was_observed(site) and not site["fn"].has_rsample:
                raise ValueError(f"EnergyDistance requires reparametrized likelihoods (site '{name}')")
        return guide_trace, model_trace

    def __call__(self, model, guide, *args, **kwargs):
        """The differentiable loss (a tensor)."""
        guide_trace, model_trace = self._traces(model, guide, args, kwargs)
        observed = [site for site in model_trace.nodes.values() if _was_observed(site)]
        if not observed:
            raise ValueError("Found no observations")
        n = self.num_particles
        first, second = torch.tril_indices(n, n, -1)
        error = entropy = 0.0
        for site in observed:
            obs = site["infer"]["obs"]
            event_dim = site["fn"].event_dim
            batch_shape = obs.shape[:obs.dim() - event_dim]
            obs = obs.reshape(batch_shape.numel(), -1)
            draws = site["value"].reshape(n, batch_shape.numel(), -1)
            weight = _row_weight(site, batch_shape)
            error = error + _weighted_squares(draws - obs, weight)
            entropy = entropy + _weighted_squares(draws[first] - draws[second], weight)
        energy = self._power(error).mean() - 0.5 * self._power(entropy).mean()
        log_prior = 0.0
        if self.prior_scale > 0:
            for site in model_trace.nodes.values():
                if contributes_log_prob(site) and not _was_observed(site):
                    log_prior = log_prior + log_prob_of(site).sum() / n
        return energy - self.prior_scale * log_prior

    differentiable_loss = __call__

    def loss(self, *args, **kwargs):
        """Not available: EnergyDistance has only a surrogate loss."""
        raise NotImplementedError("EnergyDistance implements only surrogate loss")


def _was_observed(site):
    return site["type"] == "sample" and site["infer"].get("was_observed", False)


def _row_weight(site, batch_shape):
    """Per data row: the site's scale times its mask (1 where neither is set)."""
    weight = torch.ones(batch_shape)
    scale, mask = site["scale"], site["mask"]
    if scale is not None:
        weight = weight * torch.as_tensor(scale, dtype=weight.dtype)
    if mask is not None:
        weight = weight * torch.as_tensor(mask, dtype=weight.dtype)
    return weight.expand(batch_shape).reshape(-1)


def _weighted_squares(diff, weight):
    """Sum over data rows and event entries of ``weight * diff**2`` (the particle dims stay)."""
    return (diff.pow(2).sum(-1) * weight).sum(-1)
