"""Tensor Monte Carlo: an importance-weighted estimate of ``log p(data)`` over many draws per site.

Sites marked ``infer={"enumerate": "parallel", "num_samples": K}`` (all of
a model's or guide's latent sites with ``config_enumerate(...,
num_samples=K)``) get ``K`` draws along their own enumeration dim, and
discrete sites marked without ``num_samples`` are enumerated exhaustively.
:class:`TraceTMC_ELBO` then averages the importance weight over every
combination of draws at once, by the plated sum-product contraction
(:mod:`causalppl.contract`) of these log factors:

- ``log p`` of each model site (observed or latent);
- ``-log q`` of each sampled guide site (and nothing for an exhaustively
  enumerated one, whose values are summed over);
- for a model site drawn from its own prior, the proposal ``-log q``;
- ``-log K`` for each ``K``-sampled site, and for a non-reparameterised one
  the score term ``log q - log q.detach()`` (value 0), so that the gradient
  of the estimate is unbiased (DiCE).

A ``K``-sampled site whose distribution depends on other sampled sites
draws its ``k``-th value from upstream draw ``k`` (``tmc="diagonal"``) or
from a uniformly chosen upstream draw (``"mixture"``); its proposal density
``q`` is then the density of that draw: the diagonal ``p(x_k | parent_k)``,
or the mixture ``mean_j p(x_k | parent_j)``. Either way the estimate of
``p(data)`` is unbiased.

The loss is minus the log of the estimate (Aitchison, "Tensor Monte Carlo:
particle methods for the GPU era", 2018; Obermeyer et al., "Tensor variable
elimination for plated factor graphs", 2019).

>>> import torch, causalppl as cp
>>> def model():
...     x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
...     cp.sample("y", cp.dist.Normal(x, 1.0), obs=torch.tensor(1.0))
>>> _ = torch.manual_seed(0)
>>> tmc = TraceTMC_ELBO(max_plate_nesting=0)
>>> loss = tmc.differentiable_loss(cp.infer.config_enumerate(model, num_samples=20000), lambda: None)
>>> exact = -cp.dist.Normal(0.0, 2 ** 0.5).log_prob(torch.tensor(1.0))   # y ~ N(0, 2)
>>> bool(abs(loss - exact) < 0.02)
True
"""

from __future__ import annotations

import math

import torch

from causalppl.contract import LOG, sum_product
from causalppl.infer.traceenum import (
    TraceEnum_ELBO,
    _is_latent,
    _names,
    is_plate_var,
    plate_scales,
    site_factor,
)
from causalppl.trace import contributes_log_prob, log_prob_of

__all__ = ["TraceTMC_ELBO", "proposal_log_density", "tmc_factors"]


def _num_samples(site):
    """K for a site drawn K times in parallel, else None."""
    if "_enumerate_id" in site["infer"] and site["infer"].get("num_samples") is not None:
        return int(site["infer"]["num_samples"])
    return None


def _score_term(site, log_density):
    """``log_density - log_density.detach()`` for a site drawn without reparameterisation, else None."""
    if site["fn"].has_rsample:
        return None
    return log_density - log_density.detach()


def proposal_log_density(site, log_density):
    """The log density of the draws of a ``K``-sampled site: ``log_density`` (over the site's own dim and
    upstream dims) reduced over each upstream enumeration dim as the draws chose their upstream values --
    its diagonal with the site's own dim (``"diagonal"``) or its log-mean (``"mixture"``)."""
    own = site["infer"]["_enumerate_dim"]
    upstream = [dim for dim in site["infer"].get("_dim_to_id", {})
                if dim != own and log_density.dim() >= -dim and log_density.shape[dim] > 1]
    if not upstream or site["infer"].get("expand", False):
        return log_density
    diagonal = site["infer"].get("tmc", "diagonal") == "diagonal"
    n = log_density.dim()
    for dim in upstream:
        a, b = n + own, n + dim
        if diagonal:
            taken = torch.diagonal(log_density, dim1=a, dim2=b).unsqueeze(-1)  # (..rest.., diagonal, 1)
            order = [axis for axis in range(n) if axis not in (a, b)] + [a, b]
            log_density = taken.permute([order.index(axis) for axis in range(n)])
        else:
            log_density = torch.logsumexp(log_density, dim=b, keepdim=True) - math.log(log_density.shape[b])
    return log_density


def tmc_factors(model_trace, guide_trace):
    """The log factors of the TMC estimate of one model/guide run (see the module docstring), as
    :class:`~causalppl.contract.Factor` objects over enumeration and plate variables."""
    factors = []
    for site in guide_trace.nodes.values():
        if not _is_latent(site):
            continue
        infer = site["infer"]
        if "_enumerate_id" in infer and infer.get("num_samples") is None:
            continue  # exhaustively enumerated: every value is summed over, with weight 1
        log_q = log_prob_of(site)
        if "_enum_total" in infer:  # one branch of a sequentially enumerated site
            factors.append(site_factor(site, torch.full_like(log_q, -math.log(infer["_enum_total"])), "guide"))
            continue
        num_samples = _num_samples(site)
        unscaled = site["fn"].log_prob(site["value"])
        if num_samples is not None:
            log_q = proposal_log_density(site, log_q)
            unscaled = proposal_log_density(site, unscaled)
            factors.append(site_factor(site, torch.full_like(log_q, -math.log(num_samples)), "guide"))
        factors.append(site_factor(site, -log_q, "guide"))
        score = _score_term(site, unscaled)
        if score is not None:
            factors.append(site_factor(site, score, "guide"))
    for name, site in model_trace.nodes.items():
        if not contributes_log_prob(site):
            continue
        guided = name in guide_trace.nodes and _is_latent(guide_trace.nodes[name])
        num_samples = _num_samples(site)
        log_p = log_prob_of(site)
        factors.append(site_factor(site, log_p))
        if _is_latent(site) and not guided and num_samples is not None:  # drawn from its own prior
            log_q = proposal_log_density(site, log_p)
            factors.append(site_factor(site, -log_q - math.log(num_samples)))
            score = _score_term(site, proposal_log_density(site, site["fn"].log_prob(site["value"])))
            if score is not None:
                factors.append(site_factor(site, score))
    return factors


class TraceTMC_ELBO(TraceEnum_ELBO):
    """Tensor Monte Carlo (Pyro's ``TraceTMC_ELBO``): the loss is ``-log`` of an importance-sampling
    estimate of ``p(data)`` that averages over all combinations of each site's parallel draws.

    Mark sites with ``infer={"enumerate": "parallel", "num_samples": K}`` or
    wrap the model and guide in ``config_enumerate(..., num_samples=K)``; a
    model site not in the guide is drawn from its prior. Sites outside a
    plate may not depend on sites inside it. ``exp(-loss)`` is unbiased for
    ``p(data)``, and so is its gradient. Keywords as for
    :class:`~causalppl.infer.TraceEnum_ELBO`.
    """

    def _particle_loss(self, model_trace, guide_trace, particle_dim):
        traces = (model_trace, guide_trace)
        factors = tmc_factors(model_trace, guide_trace)
        if not factors:
            zero = torch.zeros(())
            return zero, zero
        variables = {v for factor in factors for v in factor.variables}
        plates = {v for v in variables if is_plate_var(v)}
        sum_vars = variables - plates
        log_estimate = sum_product(factors, sum_vars, plates, LOG, plate_scales(traces), _names(traces))
        if particle_dim is not None:
            log_estimate = log_estimate / self.num_particles
        loss = -log_estimate
        return loss, loss.detach()


