"""Evidence lower bounds: the loss SVI minimises.

``Trace_ELBO`` runs the guide, replays its latent values through the model,
and returns ``-(log p(x, z) - log q(z))`` averaged over particles. Gradients
are unbiased for reparameterised sites (pathwise) and for the others
(score function: ``log q(z) * (log p - log q).detach()``).

>>> import torch, causalppl as cp
>>> def model():
...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
>>> def guide():
...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
>>> cp.infer.Trace_ELBO().loss(model, guide)
0.0
"""

from __future__ import annotations

import warnings

import torch

from causalppl.handlers import replay, trace
from causalppl.runtime import plate
from causalppl.trace import contributes_log_prob, log_prob_of


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the site."""


def first_nonfinite_site(*traces):
    """Name and trace role of the first site whose log density is not finite."""
    for role, tr in traces:
        for name, site in tr.nodes.items():
            if contributes_log_prob(site):
                log_prob = site.get("log_prob")
                if log_prob is None:
                    log_prob = log_prob_of(site)
                if not bool(torch.isfinite(log_prob).all()):
                    return f"{role} site '{name}'"
    return None


def _check_match(model_trace, guide_trace):
    """Warn (as Pyro does) where model and guide disagree on the latent sites."""
    for name in guide_trace.stochastic_nodes:
        if guide_trace.nodes[name]["infer"].get("is_auxiliary"):
            continue  # e.g. an autoguide's joint latent: the guide's own business
        if name not in model_trace.nodes:
            warnings.warn(f"guide samples site '{name}', which the model does not have", stacklevel=5)
    for name in model_trace.stochastic_nodes:
        if name not in guide_trace.nodes:
            warnings.warn(
                f"model samples latent site '{name}', which the guide does not; it is drawn from its "
                "prior and scored, so the loss is not an ELBO (guide it, or hide it with block)",
                stacklevel=5,
            )


class ELBO:
    """Shared machinery: running model and guide, particles, the float losses."""

    def __init__(self, num_particles=1, vectorize_particles=False, max_plate_nesting=None):
        if int(num_particles) < 1:
            raise ValueError(f"num_particles must be at least 1, got {num_particles}")
        self.num_particles = int(num_particles)
        self.vectorize_particles = vectorize_particles
        self.max_plate_nesting = max_plate_nesting
        self.last_traces = None
        self._checked = False

    # -- running model and guide -------------------------------------------

    def _run(self, model, guide, args, kwargs):
        guide_trace = trace(guide).get_trace(*args, **kwargs)
        model_trace = trace(replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        if not self._checked:  # the structure is checked once, on the first run
            self._checked = True
            _check_match(model_trace, guide_trace)
        self.last_traces = (("model", model_trace), ("guide", guide_trace))
        return model_trace, guide_trace

    def _guess_max_plate_nesting(self, model, guide, args, kwargs):
        with torch.no_grad():
            model_trace, guide_trace = self._run(model, guide, args, kwargs)
        return max(
            [len(site["cond_indep_stack"]) for tr in (model_trace, guide_trace)
             for site in tr.nodes.values() if site["type"] == "sample"],
            default=0,
        )

    def _particle_traces(self, model, guide, args, kwargs):
        """Yield (model_trace, guide_trace, particle_dim or None) per particle batch."""
        if self.num_particles == 1:
            yield (*self._run(model, guide, args, kwargs), None)
        elif self.vectorize_particles:
            if self.max_plate_nesting is None:
                self.max_plate_nesting = self._guess_max_plate_nesting(model, guide, args, kwargs)
            dim = -(self.max_plate_nesting + 1)
            particles = plate("num_particles_vectorized", self.num_particles, dim=dim)
            yield (*self._run(particles(model), particles(guide), args, kwargs), dim)
        else:
            for _ in range(self.num_particles):
                yield (*self._run(model, guide, args, kwargs), None)

    # -- public losses -------------------------------------------------------

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The loss as a tensor whose gradient is the ELBO's (a surrogate)."""
        loss = 0.0
        for model_trace, guide_trace, particle_dim in self._particle_traces(model, guide, args, kwargs):
            surrogate, _ = self._particle_loss(model_trace, guide_trace, particle_dim)
            loss = loss + surrogate
        if self.num_particles > 1 and not self.vectorize_particles:
            loss = loss / self.num_particles
        return torch.as_tensor(loss)

    def loss(self, model, guide, *args, **kwargs):
        """The loss (negative ELBO estimate) as a float, without gradients."""
        with torch.no_grad():
            total = 0.0
            for model_trace, guide_trace, particle_dim in self._particle_traces(model, guide, args, kwargs):
                total = total + self._particle_loss(model_trace, guide_trace, particle_dim)[1]
            if self.num_particles > 1 and not self.vectorize_particles:
                total = total / self.num_particles
        return float(total)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """Backpropagate the surrogate loss and return the loss as a float."""
        total = None
        for model_trace, guide_trace, particle_dim in self._particle_traces(model, guide, args, kwargs):
            surrogate, loss = self._particle_loss(model_trace, guide_trace, particle_dim)
            if self.num_particles > 1 and not self.vectorize_particles:
                surrogate, loss = surrogate / self.num_particles, loss / self.num_particles
            if surrogate.requires_grad:
                surrogate.backward()
            total = loss if total is None else total + loss
        return total.item()

    def _particle_loss(self, model_trace, guide_trace, particle_dim):
        """(surrogate loss tensor, loss tensor) for one (batch of) particle(s)."""
        raise NotImplementedError


def _add(total, term):
    return term if total is None else total + term


def _site_term(site, particle_dim, log_prob=None):
    """A site's scaled, masked log density summed over all but the particle dim.

    A scalar scale (plate subsampling) multiplies the sum, not every entry.
    """
    if log_prob is None:
        log_prob = log_prob_of(site, scaled=False)
    scale = site["scale"]
    if isinstance(scale, torch.Tensor) and scale.dim() > 0:
        return _per_particle(log_prob * scale, particle_dim)
    log_prob = _per_particle(log_prob, particle_dim)
    return log_prob if isinstance(scale, float) and scale == 1.0 else log_prob * scale


def _per_particle(log_prob, particle_dim):
    """Sum a site's log density over everything but the particle dim."""
    if particle_dim is None:
        return log_prob if log_prob.dim() == 0 else log_prob.sum()
    keep = log_prob.dim() + particle_dim  # index of the particle dim, if present
    if keep < 0:
        return log_prob.sum()  # the site does not vary across particles
    return log_prob.sum(tuple(range(keep + 1, log_prob.dim()))) if keep + 1 < log_prob.dim() else log_prob


class Trace_ELBO(ELBO):
    """The standard ELBO estimator (Pyro's ``Trace_ELBO``).

    ``num_particles`` samples are averaged; with ``vectorize_particles=True``
    they are drawn in one pass along a leading batch dimension.

    >>> import torch, causalppl as cp
    >>> def model():
    ...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
    >>> def guide():
    ...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
    >>> cp.infer.Trace_ELBO(num_particles=10, vectorize_particles=True).loss(model, guide)
    0.0
    """

    def _particle_loss(self, model_trace, guide_trace, particle_dim):
        elbo = None  # differentiable through reparameterised sites
        score = None  # sum of log q(z) over non-reparameterised latent sites
        for site in model_trace.nodes.values():
            if contributes_log_prob(site):
                elbo = _add(elbo, _site_term(site, particle_dim))
        for site in guide_trace.nodes.values():
            if contributes_log_prob(site) and not site["is_observed"]:
                elbo, score = _subtract_log_q(elbo, score, site, _site_term(site, particle_dim))
        return _surrogate_and_loss(elbo, score, particle_dim)


class TraceMeanField_ELBO(Trace_ELBO):
    """``Trace_ELBO`` that uses the analytic KL divergence wherever torch has one.

    For each latent site, if ``torch.distributions.kl.kl_divergence(q, p)`` is
    registered for the guide's and the model's distributions, the sampled term
    ``log p(z) - log q(z)`` is replaced by ``-KL(q || p)``; otherwise the
    sampled term is kept. The expectation is the same (so is the ELBO), the
    variance is lower. The KL is evaluated at the model's distribution *given
    the sampled upstream values*, which is exact for any guide in which each
    site's ``q`` does not depend on downstream samples (e.g. mean-field guides).

    >>> import torch, causalppl as cp
    >>> def model():
    ...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
    >>> def guide():
    ...     cp.sample("z", cp.dist.Normal(1.0, 1.0))
    >>> cp.infer.TraceMeanField_ELBO().loss(model, guide)  # KL(N(1,1) || N(0,1))
    0.5
    """

    def _particle_loss(self, model_trace, guide_trace, particle_dim):
        analytic = {}
        for name, site in guide_trace.nodes.items():
            model_site = model_trace.nodes.get(name)
            if (
                contributes_log_prob(site) and not site["is_observed"]
                and model_site is not None and contributes_log_prob(model_site)
                and not model_site["is_observed"]
            ):
                kl = _analytic_kl(site, model_site)
                if kl is not None:
                    analytic[name] = _site_term(site, particle_dim, log_prob=kl)
        elbo = None
        score = None
        for name, site in model_trace.nodes.items():
            if contributes_log_prob(site) and name not in analytic:
                elbo = _add(elbo, _site_term(site, particle_dim))
        for name, site in guide_trace.nodes.items():
            if not (contributes_log_prob(site) and not site["is_observed"]):
                continue
            if name in analytic:
                elbo = _add(elbo, -analytic[name])
                if not site["fn"].has_rsample:
                    # Downstream sites still saw this sample: keep its score term.
                    score = _add(score, _site_term(site, particle_dim))
            else:
                elbo, score = _subtract_log_q(elbo, score, site, _site_term(site, particle_dim))
        return _surrogate_and_loss(elbo, score, particle_dim)


def _analytic_kl(guide_site, model_site):
    """KL(q || p) of one site, masked like its log density (unscaled); None if unknown."""
    try:
        kl = torch.distributions.kl.kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        return None
    mask = guide_site["mask"]
    if mask is not None:
        kl = torch.where(mask, kl, kl.new_zeros(()))
    return kl


def _subtract_log_q(elbo, score, site, log_q):
    """Add ``-log q`` to the ELBO: pathwise if reparameterised, else as a score term."""
    if site["fn"].has_rsample:
        return _add(elbo, -log_q), score
    # E[grad log q] = 0: drop it from the pathwise part, keep it as a score.
    return _add(elbo, -log_q.detach()), _add(score, log_q)


def _surrogate_and_loss(elbo, score, particle_dim):
    """(surrogate loss, loss): the surrogate's gradient is the ELBO's, its value the loss."""
    elbo = torch.zeros(()) if elbo is None else elbo
    if particle_dim is not None:
        elbo_value = elbo
        elbo = elbo.mean()
    loss = -elbo
    if score is None:
        return loss, loss.detach()
    # Score-function gradients: log q(z) weighted by the per-particle ELBO's
    # value; the surrogate's value stays equal to the loss.
    weight = (elbo_value if particle_dim is not None else elbo).detach()
    score_term = score * weight
    if particle_dim is not None:
        score_term = score_term.mean()
    return loss - (score_term - score_term.detach()), loss.detach()
