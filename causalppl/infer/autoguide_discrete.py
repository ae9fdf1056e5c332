"""A guide for discrete latent sites that TraceEnum_ELBO enumerates in parallel.

:class:`AutoDiscreteParallel` learns, for each discrete latent site
(Bernoulli, Categorical or OneHotCategorical), its own probabilities at the
site's full plate shape, and marks the site for parallel enumeration, so
that ``TraceEnum_ELBO`` sums it out exactly. Pair it with a continuous
autoguide in an :class:`~causalppl.infer.autoguide.AutoGuideList`.

>>> import torch, causalppl as cp
>>> cp.clear_param_store()
>>> def model():
...     with cp.plate("rows", 3):
...         cp.sample("c", cp.dist.Categorical(torch.ones(2) / 2))
>>> guide = AutoDiscreteParallel(model)
>>> tr = cp.handlers.trace(guide).get_trace()
>>> tr.nodes["c"]["infer"]["enumerate"], tuple(cp.param("AutoDiscreteParallel.c_probs").shape)
('parallel', (3, 2))
"""

from __future__ import annotations

from contextlib import ExitStack

import torch

from causalppl.distributions import Bernoulli, Categorical, OneHotCategorical
from causalppl.enumeration import config_enumerate
from causalppl.handlers import block, trace
from causalppl.infer.autoguide import AutoGuide
from causalppl.runtime import sample

_SUPPORTED = ("Bernoulli", "Categorical", "OneHotCategorical")


class AutoDiscreteParallel(AutoGuide):
    """``AutoDiscreteParallel(model)``: learnable probabilities per discrete latent site, enumerated in parallel.

    Its params are ``{prefix}.{site}_probs``; a continuous latent site is an error naming it.
    """

    def _setup_prototype(self, *args, **kwargs):
        tracer = trace(config_enumerate(self.model))
        with torch.no_grad():
            block(tracer)(*args, **kwargs)
        self.prototype_trace = tracer.trace
        self._discrete = []
        for name in self.prototype_trace.stochastic_nodes:
            site = self.prototype_trace.nodes[name]
            if site["infer"].get("is_auxiliary"):
                continue
            fn = site["fn"]
            while isinstance(fn, torch.distributions.Independent):
                fn = fn.base_dist
            kind = next((k for k in _SUPPORTED if type(fn).__name__ == k), None)
            if not site["fn"].support.is_discrete or kind is None:
                raise NotImplementedError(
                    f"AutoDiscreteParallel: expected sample site '{name}' to be discrete (Bernoulli, Categorical "
                    f"or OneHotCategorical) and configured for parallel enumeration, got {type(site['fn']).__name__}"
                )
            frames = tuple(f for f in site["cond_indep_stack"] if f.dim is not None)
            for frame in frames:
                self._frames.setdefault(frame.name, frame)
            probs = fn.probs.detach()
            batch = site["value"].shape[: site["value"].dim() - (1 if kind == "OneHotCategorical" else 0)]
            event = probs.shape[-1:] if kind != "Bernoulli" else ()
            probs = probs.expand(tuple(batch) + tuple(event)).clone()
            self._discrete.append((name, kind, probs, fn.arg_constraints["probs"], frames))
            self._sites[name] = {"frames": frames, "event_dim": 0, "site_event_dim": len(site["fn"].event_shape)}
        for name, _, probs, constraint, _ in self._discrete:
            self._guide_param(f"{name}_probs", probs, constraint)

    def site_param_names(self, name):
        """The name of site ``name``'s probabilities."""
        return (f"{self.prefix}.{name}_probs",)

    def _sample_sites(self, indices):
        values = {}
        makers = {"Bernoulli": Bernoulli, "Categorical": Categorical, "OneHotCategorical": OneHotCategorical}
        for name, kind, init, constraint, _ in self._discrete:
            probs = self._guide_param(f"{name}_probs", init, constraint)
            with ExitStack() as stack:
                self._plates_for(self._sites[name], indices, stack)
                values[name] = sample(name, makers[kind](probs=probs), infer={"enumerate": "parallel"})
        return values

    def median(self, *args, **kwargs):
        raise NotImplementedError("AutoDiscreteParallel: a discrete site has no median")

    def quantiles(self, qs, *args, **kwargs):
        raise NotImplementedError("AutoDiscreteParallel: a discrete site has no quantiles")


__all__ = ["AutoDiscreteParallel"]
