"""``infer_discrete``: MAP values or posterior draws of a model's enumerated discrete sites.

``infer_discrete(model, first_available_dim=-k, temperature=t)`` returns a
function that runs ``model`` with every site marked for parallel
enumeration set to a draw from its joint posterior given the observations
(``temperature=1``) or to a maximum a posteriori assignment
(``temperature=0``), as Pyro's ``infer_discrete`` does. The other latent
sites keep the values of one ordinary run (replay a guide's trace into the
model to fix them at fitted values).

How: the model runs once under :class:`~causalppl.enumeration.EnumMessenger`;
its log densities become factors over the enumerated variables and plates.
Variables are then drawn one at a time, outermost plates first: each one's
conditional given those drawn before is a plated contraction
(:func:`causalppl.contract.posterior_marginal`, log-sum-exp for sampling,
max-product for MAP), one value per copy of its plates, and the factors are
sliced at what was drawn. Finally the model is replayed with the drawn values.

>>> import torch, causalppl as cp
>>> data = torch.tensor([0.1, 9.8, 10.3, -0.4])
>>> @cp.infer.config_enumerate
... def model(data):
...     with cp.plate("data", len(data)):
...         z = cp.sample("z", cp.dist.Bernoulli(0.5))
...         cp.sample("x", cp.dist.Normal(10.0 * z, 1.0), obs=data)
>>> tr = cp.trace(cp.infer.infer_discrete(model, first_available_dim=-2, temperature=0)).get_trace(data)
>>> tr.nodes["z"]["value"]
tensor([0., 1., 1., 0.])
"""

from __future__ import annotations

import functools

import torch

from causalppl.contract import LOG, MAX, Factor, align, posterior_marginal
from causalppl.enumeration import EnumMessenger
from causalppl.handlers import _ENUM_KEYS, block, replay, trace
from causalppl.infer.predictive import max_plate_nesting
from causalppl.infer.traceenum import (
    TraceEnum_ELBO,
    _names,
    enum_var,
    is_plate_var,
    model_enumerated,
    model_factors,
    plate_var,
    site_frames,
    unpack,
)
from causalppl.trace import Trace


def infer_discrete(fn=None, first_available_dim=None, temperature=1, *, strict_enumeration_warning=True):
    """``fn`` with its enumerated discrete sites drawn from their joint posterior (see the module docstring).

    ``first_available_dim`` is the rightmost dim enumeration may use, left
    of every plate (``-max_plate_nesting - 1``); found from a first run when
    not given. ``temperature`` is 1 (posterior samples) or 0 (MAP). Usable
    as a decorator.
    """
    if temperature not in (0, 1):
        raise ValueError(f"infer_discrete: temperature must be 0 (MAP) or 1 (posterior samples), got {temperature!r}")
    if first_available_dim is not None and first_available_dim >= 0:
        raise ValueError(f"infer_discrete: first_available_dim must be negative, got {first_available_dim}")
    if fn is None:
        return functools.partial(infer_discrete, first_available_dim=first_available_dim, temperature=temperature,
                                 strict_enumeration_warning=strict_enumeration_warning)
    if not callable(fn):
        raise TypeError(f"infer_discrete needs a callable model, got {fn!r}")

    @functools.wraps(fn)
    def sampler(*args, **kwargs):
        return _sample_posterior(fn, first_available_dim, temperature, strict_enumeration_warning, args, kwargs)

    return sampler


def _enum_trace(model, first_available_dim, args, kwargs):
    with block():
        if first_available_dim is None:
            with torch.no_grad():
                first_available_dim = -max_plate_nesting(trace(model).get_trace(*args, **kwargs)) - 1
        enum_trace = trace(EnumMessenger(model, first_available_dim=first_available_dim)).get_trace(*args, **kwargs)
    return enum_trace, first_available_dim


def _sample_posterior(model, first_available_dim, temperature, strict, args, kwargs):
    enum_trace, first_available_dim = _enum_trace(model, first_available_dim, args, kwargs)
    return _sample_posterior_from_trace(model, enum_trace, temperature, strict, args, kwargs)


def _sample_posterior_from_trace(model, enum_trace, temperature, strict, args, kwargs):
    """Draw the enumerated sites of ``enum_trace`` (a trace of ``model`` under ``EnumMessenger``) and replay
    ``model`` with them, its other latent sites at their values in ``enum_trace``."""
    enumerated = model_enumerated(enum_trace, None)
    if not enumerated and strict:
        import warnings

        warnings.warn("infer_discrete found no sample sites configured for enumeration; mark discrete sites "
                      "with cp.infer.config_enumerate or infer={'enumerate': 'parallel'}", stacklevel=3)
    values = draw_enumerated(enum_trace, enumerated, temperature)
    collapsed = Trace()
    for name, site in enum_trace.nodes.items():
        if site["type"] == "plate" or (site["type"] == "sample" and not site["is_observed"]):
            infer = {key: value for key, value in site["infer"].items() if key not in _ENUM_KEYS}
            collapsed.nodes[name] = {**site, "value": values.get(name, site["value"]), "infer": infer}
    return replay(model, trace=collapsed)(*args, **kwargs)


def _order(enum_trace, enumerated):
    """Enumerated sites, those in fewer plates first (then in the model's order): the drawing order."""
    position = {name: i for i, name in enumerate(enum_trace.nodes)}
    return sorted(enumerated, key=lambda name: (len(site_frames(enum_trace.nodes[name])), position[name]))


def condition_factor(factor, variable, index):
    """``factor`` sliced at ``variable = index`` (a Factor of codes over plates), per copy of those plates."""
    if variable not in factor.variables:
        return factor
    out = tuple(v for v in factor.variables if v != variable)
    out += tuple(v for v in index.variables if v not in out)
    table = align(factor, out + (variable,))
    codes = align(index, out)
    shape = torch.broadcast_shapes(table.shape[:-1], codes.shape)
    table = table.expand(shape + (table.shape[-1],))
    codes = codes.expand(shape).unsqueeze(-1)
    return Factor(table.gather(-1, codes).squeeze(-1), out)


def draw_enumerated(enum_trace, enumerated, temperature):
    """Site name -> its drawn (or MAP) value, for every enumerated site and every latent site whose value
    depends on one (gathered at the drawn codes)."""
    pool, _ = model_factors(enum_trace, enumerated, scaled_costs=False)
    factors = [factor for factor, _ in pool]
    sum_vars = set(enumerated.values())
    plates = {v for f in factors for v in f.variables if is_plate_var(v)}
    names = _names((enum_trace,))
    semiring = LOG if temperature == 1 else MAX
    dims = {}
    for site in enum_trace.nodes.values():
        if site["type"] == "sample":
            dims.update({plate_var(frame): frame.dim for frame in site_frames(site)})
    codes, values = {}, {}
    for name in _order(enum_trace, enumerated):
        site, variable = enum_trace.nodes[name], enumerated[name]
        support = site["fn"].enumerate_support(expand=False)
        support = support.reshape((support.shape[0],) + tuple(site["fn"].event_shape))
        if not any(variable in f.variables for f in factors):  # a support of one value
            code = Factor(torch.zeros((), dtype=torch.long, device=support.device), ())
        else:
            marginal = posterior_marginal(factors, sum_vars, plates, variable, semiring, names)
            weights = marginal.table.clamp(min=0)
            if temperature == 1:
                table = torch.distributions.Categorical(probs=weights).sample()
            else:
                table = weights.argmax(-1)
            code = Factor(table, marginal.variables[:-1])
            factors = [condition_factor(f, variable, code) for f in factors]
            sum_vars.discard(variable)
        codes[variable] = code
        values[name] = support[unpack(code, dims)]
    for name, site in enum_trace.nodes.items():
        if name in values or site["type"] != "sample" or site["is_observed"]:
            continue
        value = _gather_value(site, codes, dims)
        if value is not None:
            values[name] = value
    return values


def _gather_value(site, codes, dims):
    """A latent value that varies along enumeration dims, at the drawn codes (None if it does not vary)."""
    value = site["value"]
    if not isinstance(value, torch.Tensor):
        return None
    event_dim = len(site["fn"].event_shape)
    batch = value.dim() - event_dim
    changed = False
    for dim, id_ in site["infer"].get("_dim_to_id", {}).items():
        code = codes.get(enum_var(id_))
        if code is None or batch < -dim or value.shape[dim - event_dim] == 1:
            continue
        index = unpack(code, dims)
        index = index.reshape(index.shape + (1,) * event_dim)
        axis = value.dim() + dim - event_dim
        index = index.reshape((1,) * max(0, value.dim() - index.dim()) + tuple(index.shape))
        shape = list(torch.broadcast_shapes(value.shape, index.shape))
        value = value.expand(shape)
        shape[axis] = 1
        value = value.gather(axis, index.expand(shape))
        changed = True
    if not changed:
        return None
    while value.dim() > event_dim and value.shape[0] == 1:
        value = value.squeeze(0)
    return value


def enumerated_marginals(model_trace, guide_trace):
    """The posterior marginals of a model trace's enumerated sites: name -> ``Categorical`` / ``Bernoulli``."""
    enumerated = model_enumerated(model_trace, guide_trace)
    pool, _ = model_factors(model_trace, enumerated, scaled_costs=False)
    factors = [factor for factor, _ in pool]
    sum_vars = set(enumerated.values())
    plates = {v for f in factors for v in f.variables if is_plate_var(v)}
    names = _names((model_trace,))
    dims = {}
    for site in model_trace.nodes.values():
        if site["type"] == "sample":
            dims.update({plate_var(frame): frame.dim for frame in site_frames(site)})
    marginals = {}
    for name, variable in enumerated.items():
        site = model_trace.nodes[name]
        if not any(variable in f.variables for f in factors):
            continue
        marginal = posterior_marginal(factors, sum_vars, plates, variable, LOG, names)
        copies = marginal.variables[:-1]
        probs = torch.stack([unpack(Factor(marginal.table[..., k], copies), dims)
                             for k in range(marginal.table.shape[-1])], -1)
        fn = site["fn"]
        if isinstance(fn, torch.distributions.Bernoulli):
            marginals[name] = torch.distributions.Bernoulli(probs=probs[..., 1])
        elif isinstance(fn, torch.distributions.OneHotCategorical):
            marginals[name] = torch.distributions.OneHotCategorical(probs=probs)
        else:
            marginals[name] = torch.distributions.Categorical(probs=probs)
    return marginals


__all__ = ["infer_discrete"]


class TraceEnumSample_ELBO(TraceEnum_ELBO):
    """:class:`~causalppl.infer.TraceEnum_ELBO` that keeps its last model run, so that
    :meth:`sample_saved` draws the model's enumerated sites from their posterior without enumerating again.

    ``elbo.loss(model, guide, *args)`` then ``elbo.sample_saved()`` is
    ``infer_discrete(replay(model, guide_trace), temperature=1)(*args)`` for
    the guide trace that loss used.

    >>> import torch, causalppl as cp
    >>> @cp.infer.config_enumerate
    ... def model():
    ...     z = cp.sample("z", cp.dist.Bernoulli(0.5))
    ...     cp.sample("x", cp.dist.Normal(10.0 * z, 1.0), obs=torch.tensor(9.0))
    ...     return z
    >>> elbo = TraceEnumSample_ELBO(max_plate_nesting=0)
    >>> _ = elbo.loss(model, lambda: None)
    >>> elbo.sample_saved().item()
    1.0
    """

    def _particle_traces(self, model, guide, args, kwargs):
        for model_trace, guide_trace, particle_dim in super()._particle_traces(model, guide, args, kwargs):
            self._saved_state = model, model_trace, guide_trace, args, kwargs
            yield model_trace, guide_trace, particle_dim

    def sample_saved(self):
        """Run the model of the last ``loss`` call once more, its enumerated sites drawn from their joint
        posterior (its guided sites at the guide's values), and return what it returns."""
        if getattr(self, "_saved_state", None) is None:
            raise RuntimeError("TraceEnumSample_ELBO.sample_saved: call loss (or loss_and_grads, or SVI.step) first")
        model, model_trace, guide_trace, args, kwargs = self._saved_state
        return _sample_posterior_from_trace(replay(model, trace=guide_trace), model_trace, 1,
                                            self.strict_enumeration_warning, args, kwargs)
