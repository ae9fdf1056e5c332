"""Weighed predictive samples: posterior predictive draws from a guide, each with its importance weight.

:class:`WeighedPredictive` draws like :class:`~causalppl.infer.Predictive`
and also returns, per draw, ``log p(x_obs, z) - log q(z)`` (the model the
guide was fitted to, ``model_guide``, against the guide). The weights make
the draws exact in the limit (:func:`causalppl.ops.stats.weighed_quantile`);
:class:`MHResampler` turns them into equally weighted draws by independent
Metropolis-Hastings, one accept/reject per draw and call.

>>> import torch, causalppl as cp
>>> def model():
...     z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
...     cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.tensor(1.0))
>>> def guide():
...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
>>> out = WeighedPredictive(model, guide=guide, num_samples=4, parallel=True)()
>>> tuple(out.samples["z"].shape), tuple(out.log_weights.shape)
((4,), (4,))
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from causalppl.infer.predictive import _VECTORIZE_PLATE, Predictive, predictive_run
from causalppl.trace import Trace, contributes_log_prob, log_prob_of


class LogWeightsMixin:
    """Summaries of a ``.log_weights`` attribute (one unnormalised log weight per draw)."""

    def _log_w(self):
        log_w = self.log_weights
        return log_w if isinstance(log_w, torch.Tensor) else torch.as_tensor(log_w)

    def get_log_normalizer(self):
        """``log mean(exp(log_weights))``: an estimate of the target's log normalising constant."""
        log_w = self._log_w()
        return torch.logsumexp(log_w, 0) - torch.log(torch.tensor(float(log_w.numel())))

    def get_normalized_weights(self, log_scale=False):
        """The weights normalised to sum to one (their logs with ``log_scale=True``)."""
        log_w = self._log_w()
        normalized = log_w - torch.logsumexp(log_w, 0)
        return normalized if log_scale else normalized.exp()

    def get_ESS(self):
        """Kish's effective sample size, ``1 / sum(w_i^2)`` for normalised weights ``w``."""
        log_w = self._log_w()
        return torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0))


class CloneMixin:
    """``.clone()`` for dataclasses whose fields are tensors or dicts of tensors."""

    def clone(self):
        copied = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, dict):
                copied[field.name] = {key: item.clone() for key, item in value.items()}
            else:
                copied[field.name] = value.clone() if isinstance(value, torch.Tensor) else value
        return type(self)(**copied)


@dataclass(frozen=True, eq=False)
class WeighedPredictiveResults(LogWeightsMixin, CloneMixin):
    """What :class:`WeighedPredictive` returns: ``samples`` and, per draw, ``log_weights`` =
    ``model_log_prob - guide_log_prob``."""

    samples: dict | tuple
    log_weights: torch.Tensor
    guide_log_prob: torch.Tensor
    model_log_prob: torch.Tensor


def per_sample_log_prob(run, num_samples):
    """The joint log density of each of the ``num_samples`` draws of a predictive run (shape ``(num_samples,)``)."""
    if isinstance(run.trace, list):
        return torch.stack([torch.as_tensor(tr.log_prob_sum()) for tr in run.trace])
    total = torch.zeros(num_samples)
    tr: Trace = run.trace
    for site in tr.nodes.values():
        if not contributes_log_prob(site):
            continue
        log_prob = torch.as_tensor(log_prob_of(site))
        dim = next((f.dim for f in site["cond_indep_stack"] if f.name == _VECTORIZE_PLATE), None)
        if dim is not None and log_prob.dim() >= -dim and log_prob.shape[dim] == num_samples:
            log_prob = log_prob.movedim(dim, 0).reshape(num_samples, -1).sum(-1)
        else:
            log_prob = log_prob.sum().expand(num_samples)
        total = total.to(log_prob) + log_prob
    return total


class WeighedPredictive(Predictive):
    """:class:`~causalppl.infer.Predictive` with a guide, plus one importance weight per draw.

    Call it as a Predictive, with one more keyword, ``model_guide``: the
    model the guide was fitted to (the observed model, by default
    ``self.model``). Returns :class:`WeighedPredictiveResults`.
    """

    def forward(self, *args, **kwargs):
        if self.guide is None:
            raise ValueError("WeighedPredictive: a guide is needed (the weights compare the model to it)")
        model_guide = kwargs.pop("model_guide", self.model)
        self._check_names(args, kwargs)
        return_sites = self.return_sites or None
        guide_run = predictive_run(self.guide, self.posterior_samples, self.num_samples, return_sites=None,
                                   parallel=self.parallel, args=args, kwargs=kwargs, masked=False)
        with torch.no_grad():
            guide_log_prob = per_sample_log_prob(guide_run, self.num_samples)
        model_run = predictive_run(model_guide, guide_run.samples, self.num_samples, return_sites=return_sites,
                                   parallel=self.parallel, args=args, kwargs=kwargs, masked=False)
        with torch.no_grad():
            model_log_prob = per_sample_log_prob(model_run, self.num_samples)
        samples = model_run.samples
        if model_guide is not self.model:
            samples = predictive_run(self.model, guide_run.samples, self.num_samples, return_sites=return_sites,
                                     parallel=self.parallel, args=args, kwargs=kwargs).samples
        return WeighedPredictiveResults(samples=samples, log_weights=model_log_prob - guide_log_prob,
                                        guide_log_prob=guide_log_prob, model_log_prob=model_log_prob)

    def call(self, *args, **kwargs):
        """As :meth:`forward`, with the samples as a tuple ordered by site name."""
        result = self.forward(*args, **kwargs)
        return WeighedPredictiveResults(samples=tuple(value for _, value in sorted(result.samples.items())),
                                        log_weights=result.log_weights, guide_log_prob=result.guide_log_prob,
                                        model_log_prob=result.model_log_prob)


class MHResampler(torch.nn.Module):
    """Turn weighed draws into equally weighted ones by independent Metropolis-Hastings.

    Each call draws a fresh weighed set from ``sampler`` (e.g. a
    :class:`WeighedPredictive`) and, draw by draw, accepts the new one with
    probability ``min(1, w_new / w_current)``. The first call returns the
    sampler's (guide-distributed) draws; later calls move towards the target.
    ``source_samples_slice`` / ``stored_samples_slice`` pick which inputs and
    outputs to keep (none by default).

    >>> import torch, causalppl as cp
    >>> def model():
    ...     z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
    ...     cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.tensor(1.0))
    >>> guide = lambda: cp.sample("z", cp.dist.Normal(0.0, 1.0))
    >>> resampler = MHResampler(WeighedPredictive(model, guide=guide, num_samples=5, parallel=True))
    >>> tuple(resampler().samples["z"].shape)
    (5,)
    """

    def __init__(self, sampler, source_samples_slice=slice(0), stored_samples_slice=slice(0)):
        super().__init__()
        self.sampler = sampler
        self.samples = None
        self.transition_count = torch.tensor(0, dtype=torch.long)
        self.source_samples = []
        self.source_samples_slice = source_samples_slice
        self.stored_samples = []
        self.stored_samples_slice = stored_samples_slice

    def forward(self, *args, **kwargs):
        """One resampling step; returns the current :class:`WeighedPredictiveResults`."""
        with torch.no_grad():
            new = self.sampler(*args, **kwargs)
            self.source_samples = (self.source_samples + [new])[self.source_samples_slice]
            if self.samples is None:
                self.samples = new.clone()
                self.transition_count = torch.zeros_like(new.log_weights, dtype=torch.long)
            else:
                accept_prob = (new.log_weights - self.samples.log_weights).clamp(max=0.0).exp()
                accepted = torch.rand(accept_prob.shape, device=accept_prob.device) <= accept_prob
                self.transition_count[accepted] += 1
                for field in fields(self.samples):
                    current, proposed = getattr(self.samples, field.name), getattr(new, field.name)
                    if isinstance(current, dict):
                        for key in current:
                            current[key][accepted] = proposed[key][accepted]
                    else:
                        current[accepted] = proposed[accepted]
        self.stored_samples = (self.stored_samples + [self.samples.clone()])[self.stored_samples_slice]
        return self.samples

    def get_min_sample_transition_count(self):
        """The fewest accepted moves any one draw has made."""
        return self.transition_count.min()

    def get_total_transition_count(self):
        """All accepted moves so far."""
        return self.transition_count.sum()

    def get_source_samples(self):
        """The kept input draws, concatenated."""
        return self.get_samples(self.source_samples)

    def get_stored_samples(self):
        """The kept output draws, concatenated."""
        return self.get_samples(self.stored_samples)

    def get_samples(self, samples):
        """``samples`` (a list of results) concatenated along the draw dim, as one result."""
        joined = {}
        for field in fields(self.samples):
            value = getattr(self.samples, field.name)
            if isinstance(value, dict):
                joined[field.name] = {key: torch.cat([getattr(s, field.name)[key] for s in samples]) for key in value}
            else:
                joined[field.name] = torch.cat([getattr(s, field.name) for s in samples])
        return type(self.samples)(**joined)


__all__ = ["CloneMixin", "LogWeightsMixin", "MHResampler", "WeighedPredictive", "WeighedPredictiveResults",
           "per_sample_log_prob"]
