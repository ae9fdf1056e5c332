"""Importance sampling: weighted samples of the latent sites, and the evidence.

Each sample draws the latent sites from the guide (or, with no guide, from
the model's own prior) and is weighted by ``log p(x, z) - log q(z)``.

>>> import torch, causalppl as cp
>>> def model():
...     w = cp.sample("weight", cp.dist.Normal(8.5, 1.0))
...     cp.sample("measurement", cp.dist.Normal(w, 0.75), obs=torch.tensor(9.5))
>>> imp = cp.infer.Importance(model, num_samples=1000).run()
>>> tuple(imp.get_samples("weight").shape)
(1000,)
"""

from __future__ import annotations

import math

import torch

from causalppl.handlers import replay, trace
from causalppl.infer.elbo import _per_particle
from causalppl.infer.predictive import max_plate_nesting, unbatch
from causalppl.runtime import plate
from causalppl.trace import contributes_log_prob, log_prob_of


def _is_latent(site):
    return contributes_log_prob(site) and not site["is_observed"]


def _recorded_sites(tr):
    """Latent and deterministic sample sites: what :meth:`Importance.get_samples` offers."""
    return [
        name for name, site in tr.nodes.items()
        if site["type"] == "sample" and not site["infer"].get("is_auxiliary")
        and (_is_latent(site) or site["infer"].get("_deterministic") or site["intervened"])
    ]


class Importance:
    """Self-normalised importance sampling with ``num_samples`` draws.

    ``guide=None`` proposes from the prior (the model's own draws), so each
    weight is the likelihood of the observed sites. ``run(*args, **kwargs)``
    draws the samples and returns ``self``. Samples are drawn in one
    vectorised run (an outer plate) when the model allows it; models that are
    not batch-safe fall back to a Python loop when the vectorised run raises,
    or can ask for it with ``vectorize=False``.

    >>> import torch, causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> def model():
    ...     w = cp.sample("weight", cp.dist.Normal(8.5, 1.0))
    ...     cp.sample("measurement", cp.dist.Normal(w, 0.75), obs=torch.tensor(9.5))
    >>> imp = cp.infer.Importance(model, num_samples=20000).run()
    >>> round(imp.log_evidence().item(), 1), round(imp.weighted_mean("weight").item(), 1)
    (-1.5, 9.1)
    """

    def __init__(self, model, guide=None, num_samples=None, vectorize=None):
        if not callable(model):
            raise TypeError(f"Importance: model must be callable, got {model!r}")
        if guide is not None and not callable(guide):
            raise TypeError(f"Importance: guide must be callable or None, got {guide!r}")
        if num_samples is None or int(num_samples) < 1:
            raise ValueError(f"Importance: num_samples must be a positive integer, got {num_samples!r}")
        self.model = model
        self.guide = guide
        self.num_samples = int(num_samples)
        self.vectorize = vectorize
        self.log_weights = None
        self.samples = {}
        self.exec_traces = []

    # -- running -------------------------------------------------------------

    def _traces(self, model, guide, args, kwargs):
        if guide is None:
            return trace(model).get_trace(*args, **kwargs), None
        guide_trace = trace(guide).get_trace(*args, **kwargs)
        return trace(replay(model, trace=guide_trace)).get_trace(*args, **kwargs), guide_trace

    def _log_weight(self, model_trace, guide_trace, dim=None):
        log_w = 0.0
        for site in model_trace.nodes.values():
            if contributes_log_prob(site) and (guide_trace is not None or site["is_observed"]):
                log_w = log_w + _per_particle(log_prob_of(site), dim)
        if guide_trace is not None:
            for site in guide_trace.nodes.values():
                if _is_latent(site):
                    log_w = log_w - _per_particle(log_prob_of(site), dim)
        return torch.as_tensor(log_w)

    def run(self, *args, **kwargs):
        """Draw and weigh ``num_samples`` samples; returns ``self``."""
        with torch.no_grad():
            reference = self._traces(self.model, self.guide, args, kwargs)
            if self.vectorize is not False:
                try:
                    self._run_vectorized(reference, args, kwargs)
                    return self
                except (ValueError, RuntimeError, IndexError):
                    if self.vectorize:
                        raise
            self._run_loop(reference, args, kwargs)
        return self

    def _run_loop(self, reference, args, kwargs):
        runs = [reference] + [
            self._traces(self.model, self.guide, args, kwargs) for _ in range(self.num_samples - 1)
        ]
        self.log_weights = torch.stack([self._log_weight(m, g) for m, g in runs])
        self.exec_traces = [m for m, _ in runs]  # Pyro's name: the model trace of each draw
        self.samples = {
            name: torch.stack([m.nodes[name]["value"] for m, _ in runs])
            for name in _recorded_sites(reference[0])
        }
        if all(isinstance(m.nodes["_RETURN"]["value"], torch.Tensor) for m, _ in runs):
            self.samples["_RETURN"] = torch.stack([m.nodes["_RETURN"]["value"] for m, _ in runs])

    def _run_vectorized(self, reference, args, kwargs):
        model_ref, guide_ref = reference
        nesting = max_plate_nesting(*(tr for tr in reference if tr is not None))
        for tr in reference:
            for name, site in (tr.nodes.items() if tr is not None else ()):
                # A batch dim that no plate declares (a data vector outside a plate)
                # would collide with the sample dim and silently pair sample i
                # with row i: such a model is not safe to vectorise.
                if contributes_log_prob(site) and log_prob_of(site).dim() > nesting:
                    raise ValueError(f"site '{name}' has batch dims outside its plates")
        dim = -(nesting + 1)
        particles = plate("_num_importance_samples", self.num_samples, dim=dim)
        guide = None if self.guide is None else particles(self.guide)
        model_trace, guide_trace = self._traces(particles(self.model), guide, args, kwargs)
        log_w = self._log_weight(model_trace, guide_trace, dim)
        if log_w.shape != (self.num_samples,):
            raise ValueError(f"log weights of shape {tuple(log_w.shape)}, expected ({self.num_samples},)")
        samples = {
            name: unbatch(model_trace.nodes[name]["value"], self.num_samples,
                          model_ref.nodes[name]["value"].shape)
            for name in _recorded_sites(model_ref)
        }
        returned, reference_return = model_trace.nodes["_RETURN"]["value"], model_ref.nodes["_RETURN"]["value"]
        if isinstance(returned, torch.Tensor) and isinstance(reference_return, torch.Tensor):
            try:
                samples["_RETURN"] = unbatch(returned, self.num_samples, reference_return.shape)
            except ValueError:
                pass  # a return value that does not carry the sample dim: not offered
        self.log_weights, self.samples = log_w, samples

    # -- results -------------------------------------------------------------

    def _check_run(self):
        if self.log_weights is None:
            raise RuntimeError("Importance: call .run(*args, **kwargs) first")

    def normalized_weights(self):
        """The self-normalised weights (sum to 1), shape ``(num_samples,)``."""
        self._check_run()
        return torch.softmax(self.log_weights, 0)

    def log_evidence(self):
        """``log mean(exp(log_weights))``: the log marginal likelihood estimate (a tensor).

        >>> import torch, causalppl as cp
        >>> model = lambda: cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))
        >>> round(cp.infer.Importance(model, num_samples=10).run().log_evidence().item(), 4)
        -0.9189
        """
        self._check_run()
        return torch.logsumexp(self.log_weights, 0) - math.log(self.num_samples)

    get_log_normalizer = log_evidence

    def effective_sample_size(self):
        """Kish's effective sample size ``(sum w)^2 / sum w^2`` (a tensor).

        >>> import torch, causalppl as cp
        >>> model = lambda: cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))
        >>> cp.infer.Importance(model, num_samples=10).run().effective_sample_size().item()
        10.0
        """
        self._check_run()
        lw = self.log_weights
        return torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))

    get_ESS = effective_sample_size

    def get_samples(self, site):
        """The raw (unweighted) draws of ``site``: shape ``(num_samples, ...)``.

        >>> import causalppl as cp
        >>> model = lambda: cp.sample("z", cp.dist.Normal(0.0, 1.0))
        >>> tuple(cp.infer.Importance(model, num_samples=5).run().get_samples("z").shape)
        (5,)
        """
        self._check_run()
        if site not in self.samples:
            raise KeyError(
                f"Importance: no latent site '{site}' (the recorded sites are: "
                f"{', '.join(self.samples) or 'none'})"
            )
        return self.samples[site]

    def weighted_mean(self, site):
        """The self-normalised importance estimate of ``E[site | data]``.

        >>> import causalppl as cp
        >>> model = lambda: cp.sample("z", cp.dist.Normal(3.0, 1e-6))
        >>> round(cp.infer.Importance(model, num_samples=5).run().weighted_mean("z").item(), 3)
        3.0
        """
        values = self.get_samples(site)
        weights = self.normalized_weights().to(values.dtype)
        return torch.tensordot(weights, values, dims=1)

    def posterior_samples(self, num_samples=None):
        """``num_samples`` draws resampled by weight: a dict name -> ``(num_samples, ...)``.

        >>> import causalppl as cp
        >>> model = lambda: cp.sample("z", cp.dist.Normal(0.0, 1.0))
        >>> tuple(cp.infer.Importance(model, num_samples=5).run().posterior_samples(8)["z"].shape)
        (8,)
        """
        self._check_run()
        num_samples = self.num_samples if num_samples is None else int(num_samples)
        weights = self.normalized_weights()
        index = torch.multinomial(weights, num_samples, replacement=True)
        return {name: value.index_select(0, index.to(value.device)) for name, value in self.samples.items()}


def vectorized_importance_weights(model, guide, *args, num_samples=1, max_plate_nesting=None, normalized=False,
                                  **kwargs):
    """``(log_weights, model_trace, guide_trace)``: ``num_samples`` importance weights ``log p - log q``
    drawn in one vectorised run (a plate left of the model's ``max_plate_nesting`` plates), as Pyro's.

    ``normalized=True`` makes the weights sum to one (in log space).

    >>> import torch, causalppl as cp
    >>> model = lambda: cp.sample("x", cp.dist.Normal(0.0, 1.0))
    >>> guide = lambda: cp.sample("x", cp.dist.Normal(0.0, 1.0))
    >>> w, _, _ = vectorized_importance_weights(model, guide, num_samples=5, max_plate_nesting=0)
    >>> w.shape, bool((w.abs() < 1e-6).all())   # q = p: every weight is 1
    (torch.Size([5]), True)
    """
    if max_plate_nesting is None:
        raise ValueError("vectorized_importance_weights: max_plate_nesting must be given (the number of nested "
                         "plates in the model), so the samples can go left of them")
    particle_dim = -max_plate_nesting - 1
    particles = plate("num_particles_vectorized", num_samples, dim=particle_dim)
    guide_trace = trace(particles(guide)).get_trace(*args, **kwargs)
    model_trace = trace(replay(particles(model), trace=guide_trace)).get_trace(*args, **kwargs)
    log_weights = 0.0
    for sign, tr in ((1.0, model_trace), (-1.0, guide_trace)):
        for site in tr.nodes.values():
            if contributes_log_prob(site) and not (sign < 0 and site["is_observed"]):
                log_weights = log_weights + sign * _per_particle(log_prob_of(site), particle_dim if num_samples > 1
                                                                 else None)
    log_weights = torch.as_tensor(log_weights)
    if num_samples > 1:
        log_weights = log_weights.reshape(-1).expand(num_samples) if log_weights.numel() == 1 else \
            log_weights.reshape(num_samples)
    if normalized:
        log_weights = log_weights - torch.logsumexp(log_weights, -1)
    return log_weights, model_trace, guide_trace


from causalppl.infer.psis import psis_diagnostic  # noqa: E402  (Pyro keeps it here)

__all__ = ["Importance", "psis_diagnostic", "vectorized_importance_weights"]
