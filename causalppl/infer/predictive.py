"""Predictive: samples of a model's sites under the prior, a guide, or posterior samples.

>>> import torch, causalppl as cp
>>> def model():
...     w = cp.sample("weight", cp.dist.Normal(8.5, 1.0))
...     return cp.sample("measurement", cp.dist.Normal(w, 0.75))
>>> out = cp.infer.Predictive(model, num_samples=100)()
>>> {k: tuple(v.shape) for k, v in out.items()}
{'weight': (100,), 'measurement': (100,)}
"""

from __future__ import annotations

import warnings

import torch

from causalppl.handlers import replay, substitute, trace
from causalppl.runtime import plate


def max_plate_nesting(*traces):
    """How many batch dims the vectorised plates of ``traces`` take (their leftmost dim, negated)."""
    return max(
        (-frame.dim for tr in traces for site in tr.nodes.values() if site["type"] == "sample"
         for frame in site["cond_indep_stack"] if frame.dim is not None),
        default=0,
    )


def unbatch(value, num, shape):
    """A value from a run vectorised over ``num`` samples, as ``(num, *shape)``.

    ``shape`` is the value's shape in an ordinary (unvectorised) run. Values
    that did not get the sample dim (an observed value, say) are repeated.
    """
    shape = torch.Size(shape)
    if value.shape == shape:
        return value.expand((num,) + shape)
    if value.numel() == num * shape.numel():
        return value.reshape((num,) + shape)
    if value.numel() == shape.numel():
        return value.reshape(shape).expand((num,) + shape)
    raise ValueError(
        f"a value of shape {tuple(value.shape)} does not fit {num} samples of shape {tuple(shape)}; "
        "the model is not safe to vectorise (use parallel=False / vectorize=False)"
    )


def batch_for_plate(value, site, nesting):
    """``(num, *shape)`` samples of ``site`` laid out for an outer plate at ``-(nesting + 1)``."""
    batch_dims = len(site["fn"].batch_shape)
    pad = max(0, nesting - batch_dims)
    return value.reshape(value.shape[:1] + (1,) * pad + value.shape[1:])


def _sample_sites(tr):
    """Names of the sites Predictive can report: latent, observed and deterministic samples."""
    return [
        name for name, site in tr.nodes.items()
        if site["type"] == "sample" and not site["infer"].get("is_auxiliary")
    ]


class Predictive(torch.nn.Module):
    """Draw ``num_samples`` joint samples of a model's sites.

    - ``guide`` given: each sample runs the guide and replays its latent
      values into the model (posterior predictive); every site is returned.
    - ``posterior_samples`` given (dict name -> tensor with a leading sample
      dim): each sample substitutes one row of them into the model; by default
      the sites *not* in ``posterior_samples`` are returned.
    - neither: the prior predictive.

    ``return_sites`` picks the sites to return. ``parallel=True`` draws all
    samples in one vectorised run (an outer plate); the model must then be
    batch-safe (plates for its batch dims, no reductions across them).
    The result is a dict name -> tensor with a leading ``num_samples`` dim.
    As in Pyro it is an ``nn.Module`` (holding the model and guide), and
    :meth:`call` gives the values as a tuple for ``torch.jit.trace_module``.

    >>> import torch, causalppl as cp
    >>> def model():
    ...     w = cp.sample("weight", cp.dist.Normal(8.5, 1.0))
    ...     cp.deterministic("double", 2 * w)
    ...     return cp.sample("measurement", cp.dist.Normal(w, 0.75))
    >>> samples = {"weight": torch.tensor([9.0, 9.5])}
    >>> out = cp.infer.Predictive(model, posterior_samples=samples)()
    >>> sorted(out), out["double"].tolist()
    (['double', 'measurement'], [18.0, 19.0])
    """

    def __init__(self, model, guide=None, posterior_samples=None, num_samples=None,
                 return_sites=None, parallel=False):
        super().__init__()
        if not callable(model):
            raise TypeError(f"Predictive: model must be callable, got {model!r}")
        posterior_samples = dict(posterior_samples or {})
        batch = None
        for name, value in posterior_samples.items():
            value = torch.as_tensor(value)
            if value.dim() == 0:
                raise ValueError(
                    f"Predictive: posterior_samples['{name}'] is a scalar; expected a leading sample dim"
                )
            posterior_samples[name] = value
            if batch is None:
                batch = value.shape[0]
            elif value.shape[0] != batch:
                raise ValueError(
                    f"Predictive: posterior_samples['{name}'] has {value.shape[0]} samples, "
                    f"the others have {batch}"
                )
        if batch is not None:
            if num_samples is not None and num_samples != batch:
                warnings.warn(
                    f"Predictive: num_samples={num_samples} differs from the {batch} posterior samples; "
                    f"using {batch}",
                    stacklevel=2,
                )
            num_samples = batch
        if num_samples is None:
            raise ValueError("Predictive: give num_samples (or posterior_samples to take it from)")
        if int(num_samples) < 1:
            raise ValueError(f"Predictive: num_samples must be at least 1, got {num_samples}")
        self.model = model
        self.guide = guide
        self.posterior_samples = posterior_samples
        self.num_samples = int(num_samples)
        self.return_sites = None if return_sites is None else list(return_sites)
        self.parallel = parallel

    def _one_run(self, i, args, kwargs, samples):
        """Traces (model, guide or None) of one sample: row ``i`` of ``samples``."""
        model = self.model
        if samples:
            model = substitute(model, data={name: value[i] for name, value in samples.items()})
        guide_trace = None
        if self.guide is not None:
            guide_trace = trace(self.guide).get_trace(*args, **kwargs)
            model = replay(model, trace=guide_trace)
        return trace(model).get_trace(*args, **kwargs), guide_trace

    def _sites_to_return(self, model_trace):
        known = _sample_sites(model_trace)
        for name in self.posterior_samples:
            if name not in model_trace.nodes:
                raise KeyError(
                    f"Predictive: posterior_samples has '{name}', which names no site of the model "
                    f"(its sample sites are: {', '.join(known) or 'none'})"
                )
        if self.return_sites is not None:
            unknown = [name for name in self.return_sites if name not in model_trace.nodes]
            if unknown:
                raise KeyError(
                    f"Predictive: return_sites {unknown} name no site of the model "
                    f"(its sample sites are: {', '.join(known) or 'none'})"
                )
            return self.return_sites
        if self.guide is not None:
            return known
        return [name for name in known if name not in self.posterior_samples]

    def call(self, *args, **kwargs):
        """The draws as a tuple, sorted by site name (what ``torch.jit.trace_module`` can trace)."""
        return tuple(value for _, value in sorted(self(*args, **kwargs).items()))

    def forward(self, *args, **kwargs):
        """Run the draws; return a dict name -> tensor of shape ``(num_samples, ...)``."""
        with torch.no_grad():
            reference, _ = self._one_run(0, args, kwargs, self.posterior_samples)
            names = self._sites_to_return(reference)
            if self.parallel:
                return self._vectorized(reference, names, args, kwargs)
            runs = [reference] + [
                self._one_run(i, args, kwargs, self.posterior_samples)[0] for i in range(1, self.num_samples)
            ]
            return {
                name: torch.stack([torch.as_tensor(tr.nodes[name]["value"]) for tr in runs])
                for name in names
            }

    def _vectorized(self, reference, names, args, kwargs):
        nesting = max_plate_nesting(reference)
        samples = plate("_num_predictive_samples", self.num_samples, dim=-(nesting + 1))
        model = self.model
        if self.posterior_samples:
            data = {
                name: batch_for_plate(value, reference.nodes[name], nesting)
                for name, value in self.posterior_samples.items()
            }
            model = substitute(model, data=data)
        if self.guide is not None:
            guide_trace = trace(samples(self.guide)).get_trace(*args, **kwargs)
            model = replay(model, trace=guide_trace)
        model_trace = trace(samples(model)).get_trace(*args, **kwargs)
        return {
            name: unbatch(torch.as_tensor(model_trace.nodes[name]["value"]), self.num_samples,
                          torch.as_tensor(reference.nodes[name]["value"]).shape)
            for name in names
        }


__all__ = ["Predictive"]
