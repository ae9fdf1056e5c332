"""Posteriors as collections of weighted execution traces (Pyro's ``TracePosterior``).

A :class:`TracePosterior` runs ``_traces(*args, **kwargs)`` -- pairs of a
model trace and its log weight -- and keeps them as ``exec_traces`` and
``log_weights``. :meth:`~TracePosterior.information_criterion` computes WAIC
from the log likelihood of the single observed site in each trace.

>>> import torch, causalppl as cp
>>> def model():
...     mu = cp.sample("mu", cp.dist.Normal(0.0, 1.0))
...     with cp.plate("data", 3):
...         cp.sample("y", cp.dist.Normal(mu, 1.0), obs=torch.zeros(3))
>>> post = GuidePosterior(model, lambda: cp.sample("mu", cp.dist.Normal(0.0, 0.01)), num_samples=50).run()
>>> sorted(post.information_criterion())
['p_waic', 'waic']
"""

from __future__ import annotations

import torch

from causalppl.handlers import replay, trace
from causalppl.ops.stats import waic


class TracePosterior:
    """Base class: subclasses yield ``(model_trace, log_weight)`` from ``_traces(*args, **kwargs)``."""

    def __init__(self, num_chains=1):
        self.num_chains = num_chains
        self._reset()

    def _reset(self):
        self.log_weights = []
        self.exec_traces = []

    def _traces(self, *args, **kwargs):
        raise NotImplementedError

    def run(self, *args, **kwargs):
        """Collect the traces; returns ``self``."""
        self._reset()
        with torch.no_grad():
            for model_trace, log_weight in self._traces(*args, **kwargs):
                self.exec_traces.append(model_trace)
                self.log_weights.append(torch.as_tensor(log_weight, dtype=torch.get_default_dtype()))
        return self

    def information_criterion(self, pointwise=False):
        """``{"waic": ..., "p_waic": ...}`` from the one observed site's log likelihood (pointwise if asked)."""
        if not self.exec_traces:
            return {}
        observed = None
        log_likelihoods = []
        for tr in self.exec_traces:
            names = [name for name in tr.observation_nodes if not tr.nodes[name]["infer"].get("_deterministic")]
            if len(names) != 1:
                raise ValueError(
                    f"information_criterion needs a model with exactly one observed site, found {names or 'none'}"
                )
            if observed is None:
                observed = names[0]
            elif names[0] != observed:
                raise ValueError(f"information_criterion: traces observe different sites ({observed}, {names[0]})")
            site = tr.nodes[observed]
            log_likelihoods.append(site["fn"].log_prob(site["value"]))
        value, p_waic = waic(torch.stack(log_likelihoods), torch.stack(self.log_weights), pointwise)
        return {"waic": value, "p_waic": p_waic}


class GuidePosterior(TracePosterior):
    """``num_samples`` draws of a guide, each replayed into the model (equal weights): what ``SVI.run`` gives."""

    def __init__(self, model, guide, num_samples):
        super().__init__()
        self.model = model
        self.guide = guide
        self.num_samples = int(num_samples)

    def _traces(self, *args, **kwargs):
        for _ in range(self.num_samples):
            guide_trace = trace(self.guide).get_trace(*args, **kwargs)
            yield trace(replay(self.model, trace=guide_trace)).get_trace(*args, **kwargs), 0.0


__all__ = ["GuidePosterior", "TracePosterior"]
