"""Predictive: samples of a model's sites under the prior, a guide, or posterior samples.

Shapes follow Pyro: a site's samples have a leading ``num_samples`` dim,
then as many size-1 dims as it takes to put the site's batch dims under the
model's plates (``max_plate_nesting`` of them), then the site's own value
shape. So a global latent of a model with one plate comes back as
``(num_samples, 1)``, exactly as a vectorised run (``parallel=True``) lays it
out.

>>> import torch, causalppl as cp
>>> def model():
...     w = cp.sample("weight", cp.dist.Normal(8.5, 1.0))
...     return cp.sample("measurement", cp.dist.Normal(w, 0.75))
>>> out = cp.infer.Predictive(model, num_samples=100)()
>>> {k: tuple(v.shape) for k, v in out.items()}
{'weight': (100,), 'measurement': (100,)}
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from causalppl.handlers import block, mask, trace
from causalppl.handlers.util import prune_subsample_sites
from causalppl.runtime import Messenger, plate
from causalppl.trace import Trace

_VECTORIZE_PLATE = "_num_predictive_samples"


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


class _Given(Messenger):
    """Fix the value of every sample site named in ``samples`` (names that no site has are ignored)."""

    def __init__(self, fn=None, samples=None):
        super().__init__(fn)
        self.samples = samples or {}

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.samples:
            msg["value"] = self.samples[msg["name"]]


@dataclass(frozen=True, eq=False)
class PredictiveRun:
    """What one predictive pass produced: ``samples`` (name -> tensor) and its ``trace`` (one
    vectorised :class:`Trace`, or a list of traces, one per sample, for a sequential pass)."""

    samples: dict
    trace: Trace | list


def _reference_trace(model, given, args, kwargs):
    """One plain run of ``model``, hidden from outer handlers, for the sites' unbatched shapes.

    As in Pyro it draws from the model itself; only if that fails (a model that needs the given
    values to run) is it retried with the first row of ``given``.
    """
    with block():
        try:
            return trace(model).get_trace(*args, **kwargs)
        except Exception:
            if not given:
                raise
            first = {name: value[0] for name, value in given.items()}
            return trace(_Given(model, samples=first)).get_trace(*args, **kwargs)


def _site_shapes(reference, nesting, num_samples, return_sites, given):
    """``{name: shape}`` of the sites to report (Pyro's padding), chosen as :func:`predictive_run` says."""
    shapes = {}
    for name, site in reference.nodes.items():
        if site["type"] != "sample":
            continue
        pad = max(0, nesting - len(site["fn"].batch_shape))
        shape = (num_samples,) + (1,) * pad + tuple(torch.as_tensor(site["value"]).shape)
        if return_sites:
            if name in return_sites:
                shapes[name] = shape
        elif return_sites is None or name not in given:
            shapes[name] = shape
    if return_sites and "_RETURN" in return_sites and "_RETURN" in reference.nodes:
        value = reference.nodes["_RETURN"]["value"]
        shapes["_RETURN"] = (num_samples,) + tuple(value.shape) if torch.is_tensor(value) else None
    return shapes


def _fit(value, shape):
    """``value`` (from a vectorised run) laid out as ``shape``: repeated if it did not get the sample dims."""
    value = torch.as_tensor(value)
    if value.numel() < math.prod(shape):
        return value.expand(shape)
    return value.reshape(shape)


def predictive_run(model, given, num_samples, return_sites=(), parallel=False, args=(), kwargs=None,
                   masked=True):
    """Run ``model`` ``num_samples`` times with the sites in ``given`` fixed (row ``i`` in run ``i``).

    ``return_sites``: a non-empty collection names the sites to report (``"_RETURN"`` is the model's
    return value); ``None`` reports every sample site; an empty one every sample site not in ``given``.
    ``masked=True`` runs the model under ``mask(False)`` (no log densities are needed).

    >>> import torch, causalppl as cp
    >>> def model():
    ...     return cp.sample("x", cp.dist.Normal(0.0, 1.0))
    >>> run = predictive_run(model, {"x": torch.arange(3.0)}, 3, return_sites=["x", "_RETURN"])
    >>> run.samples["_RETURN"].tolist()
    [0.0, 1.0, 2.0]
    """
    kwargs = kwargs or {}
    if masked:
        model = mask(model, mask=False)
    with torch.no_grad():
        reference = prune_subsample_sites(_reference_trace(model, given, args, kwargs))
        nesting = max_plate_nesting(reference)
        shapes = _site_shapes(reference, nesting, num_samples, return_sites, given)
        if not parallel:
            traces = [trace(_Given(model, samples={name: value[i] for name, value in given.items()}))
                      .get_trace(*args, **kwargs) for i in range(num_samples)]
            samples = {}
            for name, shape in shapes.items():
                values = [tr.nodes[name]["value"] for tr in traces]
                samples[name] = values if shape is None else torch.stack(
                    [torch.as_tensor(value) for value in values]).reshape(shape)
            return PredictiveRun(samples, traces)
        laid_out = {}
        for name, value in given.items():
            site = reference.nodes.get(name)
            if site is None or site["type"] != "sample":
                continue
            pad = max(0, nesting - len(site["fn"].batch_shape))
            ref_shape = tuple(torch.as_tensor(site["value"]).shape)
            laid_out[name] = value.reshape((num_samples,) + (1,) * pad + ref_shape)
        vectorize = plate(_VECTORIZE_PLATE, num_samples, dim=-nesting - 1)
        tr = trace(_Given(vectorize(model), samples=laid_out)).get_trace(*args, **kwargs)
        samples = {
            name: tr.nodes[name]["value"] if shape is None else _fit(tr.nodes[name]["value"], shape)
            for name, shape in shapes.items()
        }
        return PredictiveRun(samples, tr)


def _check_posterior_samples(posterior_samples, num_samples):
    checked, batch = {}, None
    for name, value in (posterior_samples or {}).items():
        value = torch.as_tensor(value)
        if value.dim() == 0:
            raise ValueError(f"Predictive: posterior_samples['{name}'] is a scalar; expected a leading sample dim")
        if batch is None:
            batch = value.shape[0]
        elif value.shape[0] != batch:
            raise ValueError(
                f"Predictive: posterior_samples['{name}'] has {value.shape[0]} samples, the others have {batch}"
            )
        checked[name] = value
    if batch is not None:
        if num_samples is not None and num_samples != batch:
            warnings.warn(
                f"Predictive: num_samples={num_samples} differs from the {batch} posterior samples; using {batch}",
                UserWarning,
                stacklevel=3,
            )
        num_samples = batch
    if num_samples is None:
        raise ValueError("Predictive: give num_samples (or posterior_samples to take it from)")
    if int(num_samples) < 1:
        raise ValueError(f"Predictive: num_samples must be at least 1, got {num_samples}")
    return checked, int(num_samples)


class Predictive(torch.nn.Module):
    """Draw ``num_samples`` joint samples of a model's sites.

    - ``guide`` given: each sample runs the guide and gives its latent values
      to the model (posterior predictive); every model site is returned.
    - ``posterior_samples`` given (dict name -> tensor with a leading sample
      dim): each sample fixes one row of them in the model; by default the
      sites *not* in ``posterior_samples`` are returned.
    - neither: the prior predictive.

    As in Pyro the second positional argument is ``posterior_samples`` (a
    callable there is taken as the guide). ``return_sites`` picks the sites to
    return (``"_RETURN"`` is the model's return value). ``parallel=True``
    draws all samples in one vectorised run (an outer plate); the model must
    then be batch-safe. The result is a dict name -> tensor with a leading
    ``num_samples`` dim, shaped as the module docstring says.

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

    def __init__(self, model, posterior_samples=None, guide=None, num_samples=None, return_sites=(),
                 parallel=False):
        super().__init__()
        if not callable(model):
            raise TypeError(f"Predictive: model must be callable, got {model!r}")
        if callable(posterior_samples) and guide is None:
            posterior_samples, guide = None, posterior_samples
        if guide is not None and posterior_samples:
            raise ValueError("Predictive: give posterior_samples or a guide, not both")
        if return_sites is not None and not isinstance(return_sites, (list, tuple, set)):
            raise TypeError(f"Predictive: return_sites must be a list, tuple or set, got {return_sites!r}")
        self.posterior_samples, self.num_samples = _check_posterior_samples(posterior_samples, num_samples)
        self.model = model
        self.guide = guide
        self.return_sites = return_sites
        self.parallel = parallel

    def _guide_samples(self, args, kwargs, masked=True):
        if self.guide is None:
            return self.posterior_samples, None
        run = predictive_run(self.guide, self.posterior_samples, self.num_samples, return_sites=None,
                             parallel=self.parallel, args=args, kwargs=kwargs, masked=masked)
        return run.samples, run

    def _check_names(self, args, kwargs):
        """Strictness (not in Pyro): posterior_samples and return_sites must name sites of the model."""
        with torch.no_grad():
            reference = _reference_trace(mask(self.model, mask=False), self.posterior_samples, args, kwargs)
        known = [name for name, site in reference.nodes.items() if site["type"] == "sample"]
        for name in self.posterior_samples:
            if name not in reference.nodes:
                raise KeyError(
                    f"Predictive: posterior_samples has '{name}', which names no site of the model "
                    f"(its sample sites are: {', '.join(known) or 'none'})"
                )
        unknown = [name for name in self.return_sites or () if name not in reference.nodes]
        if unknown:
            raise KeyError(
                f"Predictive: return_sites {unknown} name no site of the model "
                f"(its sample sites are: {', '.join(known) or 'none'})"
            )

    def _model_return_sites(self):
        # With a guide every site is returned unless return_sites says otherwise.
        if self.guide is not None:
            return self.return_sites or None
        return self.return_sites

    def forward(self, *args, **kwargs):
        """Run the draws; return a dict name -> tensor of shape ``(num_samples, ...)``."""
        self._check_names(args, kwargs)
        given, _ = self._guide_samples(args, kwargs)
        return predictive_run(self.model, given, self.num_samples, return_sites=self._model_return_sites(),
                              parallel=self.parallel, args=args, kwargs=kwargs).samples

    def get_samples(self, *args, **kwargs):
        """The same as calling the Predictive (Pyro's older name)."""
        return self.forward(*args, **kwargs)

    def get_vectorized_trace(self, *args, **kwargs):
        """One vectorised :class:`Trace` of the model (all samples at once, under an outer plate)."""
        given, _ = self._guide_samples(args, kwargs)
        return predictive_run(self.model, given, self.num_samples, parallel=True, args=args, kwargs=kwargs).trace

    def call(self, *args, **kwargs):
        """The samples as a tuple ordered by site name (Pyro's JIT-friendly form of :meth:`forward`)."""
        return tuple(value for _, value in sorted(self.forward(*args, **kwargs).items()))


__all__ = ["Predictive", "PredictiveRun", "max_plate_nesting", "predictive_run"]
