"""``TraceEnum_ELBO``: the ELBO with discrete latents summed out exactly by enumeration.

Sites enumerated **in the model** (``infer={"enumerate": "parallel"}``, or the
model wrapped in :func:`~causalppl.infer.config_enumerate`) and absent from
the guide are summed out of the model's joint density: every model log
density that depends on them becomes a factor, and one plated tensor
contraction (:func:`causalppl.contract.sum_product_tree`, log-sum-exp
einsums in a min-fill order, each plate multiplied out once its local
variables are summed) turns them into exact log marginal terms. With a guide
that has no continuous latents the loss is ``-log p(x)`` itself.

Sites enumerated **in the guide** are replayed into the model with all their
values at once, and every ELBO term is averaged over them exactly, weighted
by their guide probabilities. Guide sites enumerated ``"sequential"`` rerun
the guide (and model) once per value. Other non-reparameterised guide sites
get score-function gradients, each weighted only by the terms in its plates
(DiCE, Foerster et al. 2018, as in Pyro's ``TraceEnum_ELBO``).

The dims: the guide enumerates from ``-max_plate_nesting - 1`` leftwards,
the model goes on left of the guide's dims. ``max_plate_nesting`` is found
from a first run when not given; a plate left of it is an error naming the
site. As in Pyro, a variable outside a plate may not depend on a variable
inside it, and model enumeration may not be more global than guide
enumeration (both raise ``ValueError``).

>>> import torch, causalppl as cp
>>> data = torch.tensor([0.0, 1.0, 10.0])
>>> @cp.infer.config_enumerate
... def model():
...     with cp.plate("data", 3):
...         z = cp.sample("z", cp.dist.Bernoulli(0.5))
...         cp.sample("x", cp.dist.Normal(10.0 * z, 1.0), obs=data)
>>> loss = cp.infer.TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)
>>> exact = -torch.logsumexp(torch.stack([cp.dist.Normal(0.0, 1.0).log_prob(data),
...                                       cp.dist.Normal(10.0, 1.0).log_prob(data)]) + torch.tensor(0.5).log(), 0).sum()
>>> abs(loss - exact.item()) < 1e-5
True
"""

from __future__ import annotations

import math
import warnings

import torch

from causalppl.contract import LOG, PROB, Factor, align, contract, sum_product, sum_product_tree
from causalppl.enumeration import EnumMessenger, enumerate_site
from causalppl.handlers import block, replay, trace
from causalppl.infer.elbo import ELBO, check_pair_shapes, refuse_or_warn
from causalppl.infer.enum_requirements import check_traceenum_requirements
from causalppl.infer.predictive import max_plate_nesting as _plate_nesting_of
from causalppl.runtime import Messenger, is_validation_enabled, plate
from causalppl.trace import contributes_log_prob, log_prob_of

# -- site log densities as named factors --------------------------------------------------------------


def plate_var(frame):
    """The contraction variable of a plate: its copies are multiplied, never summed."""
    return ("plate", frame.name)


def enum_var(id_):
    """The contraction variable of an enumerated site (its unique id from the allocator)."""
    return ("enum", id_)


def is_plate_var(variable):
    return variable[0] == "plate"


def site_frames(site):
    """A site's vectorised plates (sequential plates broadcast nothing)."""
    return [frame for frame in site["cond_indep_stack"] if frame.dim is not None]


def site_factor(site, tensor, role="model"):
    """A batch-shaped tensor of ``site`` (its log density, say) as a :class:`Factor`.

    Each dim of size > 1 is named: a plate dim by its plate, a dim left of the
    plates by the enumerated variable the site's ``infer["_dim_to_id"]`` says it
    stands for. Size-1 dims are dropped, and a plate of the site with more than
    one copy is always a variable (broadcast if the tensor does not vary along
    it). Any other dim is an error naming the site.
    """
    frames = {frame.dim: frame for frame in site_frames(site)}
    dim_to_id = site["infer"].get("_dim_to_id", {})
    variables, squeeze, expand = [], [], list(tensor.shape)
    for axis in range(tensor.dim()):
        dim = axis - tensor.dim()
        size = tensor.shape[axis]
        frame = frames.get(dim)
        if frame is not None and (size > 1 or frame.subsample_size > 1):
            variables.append(plate_var(frame))
            if size == 1:
                expand[axis] = frame.subsample_size  # counted once per copy of the plate
        elif size == 1:
            squeeze.append(axis)
        elif dim in dim_to_id:
            variables.append(enum_var(dim_to_id[dim]))
        else:
            raise ValueError(
                f"{role} site '{site['name']}': its log density has shape {tuple(tensor.shape)}, with size {size} at "
                f"dim {dim}, which neither a plate nor an enumerated site declares; enclose the site in a plate "
                "for that dim, make the dims event dims with .to_event(...), or raise max_plate_nesting"
            )
    if expand != list(tensor.shape):
        tensor = tensor.expand(expand)
    table = tensor.squeeze(squeeze) if squeeze else tensor
    shape = list(table.shape)
    for frame in frames.values():
        if frame.subsample_size > 1 and plate_var(frame) not in variables:
            variables.append(plate_var(frame))
            table = table.unsqueeze(-1)
            shape.append(frame.subsample_size)
    if len(shape) != table.dim() or list(table.shape) != shape:
        table = table.expand(shape)
    return Factor(table, tuple(variables))


def unpack(factor, var_to_dim):
    """A factor over plate variables as a positional tensor: each variable at its dim, size 1 elsewhere.

    >>> unpack(Factor(torch.arange(6).reshape(2, 3), ("a", "b")), {"a": -1, "b": -3}).shape
    torch.Size([3, 1, 2])
    """
    if not factor.variables:
        return factor.table
    order = sorted(factor.variables, key=lambda v: var_to_dim[v])
    width = -var_to_dim[order[0]]
    table = align(factor, tuple(order))
    shape = [1] * width
    for v, size in zip(order, table.shape):
        shape[width + var_to_dim[v]] = size
    return table.reshape(shape)


def _ordinal(factor):
    return frozenset(v for v in factor.variables if is_plate_var(v))


def _names(traces):
    """Contraction variable -> how an error message should call it."""
    names = {}
    for tr in traces:
        for name, site in tr.nodes.items():
            if site["type"] != "sample":
                continue
            for frame in site_frames(site):
                names[plate_var(frame)] = f"plate '{frame.name}'"
            if "_enumerate_id" in site["infer"]:
                names[enum_var(site["infer"]["_enumerate_id"])] = f"site '{name}'"
    return names


def plate_scales(traces):
    """Plate variable -> ``size / subsample_size`` (the exponent of its product) for subsampled plates."""
    scales = {}
    for tr in traces:
        for site in tr.nodes.values():
            if site["type"] == "sample":
                for frame in site_frames(site):
                    if frame.size > 0 and frame.subsample_size > 0 and frame.subsample_size < frame.size:
                        scales[plate_var(frame)] = frame.size / frame.subsample_size
    return scales


def _common_scale(pool, scales):
    """The scale of the enumerated factors beyond their plates' (the ``scale`` handler's): one for all."""
    found = {}
    for factor, site in pool:
        scale = site["scale"]
        if isinstance(scale, torch.Tensor):
            if scale.numel() != 1:
                raise ValueError(f"model site '{site['name']}' depends on enumerated sites, and its scale is a "
                                 f"tensor of shape {tuple(scale.shape)}; enumeration supports scalar scales only")
            scale = float(scale)
        for v in factor.variables:
            if v in scales:
                scale = scale / scales[v]
        found[site["name"]] = scale
    values = list(found.values())
    if values and any(not math.isclose(v, values[0], rel_tol=1e-6) for v in values):
        shown = ", ".join(f"'{name}': {scale:g}" for name, scale in found.items())
        raise ValueError(
            "Expected all enumerated sample sites to share a common poutine.scale: "
            "the model sites that depend on enumerated sites must share one scale beyond their plates' "
            f"subsampling, but they have {shown}; apply cp.handlers.scale to all of them or none"
        )
    return values[0] if values else 1.0


def _is_latent(site):
    return contributes_log_prob(site) and not site["is_observed"]


def model_enumerated(model_trace, guide_trace):
    """The model's enumerated sites (not in the guide): name -> contraction variable."""
    found = {}
    for name, site in model_trace.nodes.items():
        if _is_latent(site) and "_enumerate_id" in site["infer"]:
            guide_site = guide_trace.nodes.get(name) if guide_trace is not None else None
            if guide_site is None or not _is_latent(guide_site):
                found[name] = enum_var(site["infer"]["_enumerate_id"])
    return found


def model_factors(model_trace, enumerated, scaled_costs=True):
    """Split the model's log densities: ``(pool, costs)``.

    ``pool`` holds ``(factor, site)`` for every density that depends on an
    enumerated variable (unscaled, masked); ``costs`` holds the others as
    ``(factor, ordinal)``, scaled and masked.
    """
    enum_vars = set(enumerated.values())
    pool, costs = [], []
    for site in model_trace.nodes.values():
        if not contributes_log_prob(site):
            continue
        log_prob = log_prob_of(site, scaled=False)
        factor = site_factor(site, log_prob)
        if enum_vars.intersection(factor.variables):
            pool.append((factor, site))
            continue
        scale = site["scale"]
        if scaled_costs and not (isinstance(scale, float) and scale == 1.0):
            factor = site_factor(site, log_prob * scale)
        costs.append((factor, _ordinal(factor)))
    return pool, costs


# -- sequential enumeration of guide sites --------------------------------------------------------------


class _NewSequentialSite(Exception):
    def __init__(self, msg):
        super().__init__(msg["name"])
        self.msg = msg


class _SequentialEnum(Messenger):
    """Give sites marked ``"sequential"`` the values in ``fixed``; escape at the first one not there yet."""

    def __init__(self, fn=None, fixed=None):
        super().__init__(fn)
        self.fixed = fixed or {}

    def process_message(self, msg):
        if (msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None
                or msg["infer"].get("enumerate") != "sequential"):
            return
        if msg["name"] not in self.fixed:
            raise _NewSequentialSite(msg)
        value, total = self.fixed[msg["name"]]
        if msg["infer"].get("expand", False):  # Pyro's expand=True: the value fills the site's batch shape
            fn = msg["fn"]
            value = value.expand(torch.broadcast_shapes(value.shape, tuple(fn.batch_shape) + tuple(fn.event_shape)))
        msg["value"] = value
        msg["infer"] = {**msg["infer"], "_enum_total": total}


# -- the ELBO ---------------------------------------------------------------------------------------


class TraceEnum_ELBO(ELBO):
    """The ELBO with enumerated discrete sites summed out exactly (Pyro's ``TraceEnum_ELBO``).

    See the module docstring. ``max_plate_nesting`` (the number of nested
    plates, so enumeration goes left of them) is found from a first run when
    not given. ``num_particles`` and ``vectorize_particles`` are as in
    :class:`~causalppl.infer.Trace_ELBO` (vectorised particles take the dim
    left of the plates, enumeration goes left of that).
    :meth:`compute_marginals` gives the posterior marginals of the model's
    enumerated sites; :meth:`sample_posterior` a joint posterior draw.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._warned_no_enumeration = False

    # -- running -------------------------------------------------------------------------------------

    def _plate_nesting(self, model, guide, args, kwargs):
        if self.max_plate_nesting is None:
            with torch.no_grad(), block(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                guide_trace = trace(guide).get_trace(*args, **kwargs)
                model_trace = trace(replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
            self.max_plate_nesting = _plate_nesting_of(model_trace, guide_trace)
        return self.max_plate_nesting

    def _particle_traces(self, model, guide, args, kwargs):
        nesting = self._plate_nesting(model, guide, args, kwargs)
        particle_dim = None
        if self.vectorize_particles and self.num_particles > 1:
            particle_dim = -nesting - 1
            particles = plate("num_particles_vectorized", self.num_particles, dim=particle_dim)
            model, guide = particles(model), particles(guide)
            nesting += 1
        self._nesting = nesting
        self.last_traces = []
        for _ in range(1 if self.vectorize_particles else self.num_particles):
            for model_trace, guide_trace in self._branches(model, guide, args, kwargs, -nesting - 1):
                self.last_traces += [("model", model_trace), ("guide", guide_trace)]
                yield model_trace, guide_trace, particle_dim

    def _branches(self, model, guide, args, kwargs, first_dim):
        """(model trace, guide trace) per assignment of the guide's sequentially enumerated sites."""
        pending = [(None, {})]
        while pending:
            prefix, fixed = pending.pop()
            guide_run = EnumMessenger(guide, first_available_dim=first_dim)
            if prefix is not None:
                guide_run = replay(guide_run, trace=prefix)
            tracer = trace(_SequentialEnum(guide_run, fixed))
            try:
                guide_trace = tracer.get_trace(*args, **kwargs)
            except _NewSequentialSite as new:
                # As Pyro's queue: every value gets a branch that replays the sites drawn so far.
                values = enumerate_site(new.msg)
                total = values.shape[0]
                pending += [(tracer.trace, {**fixed, new.msg["name"]: (values[k], total)})
                            for k in reversed(range(total))]
                continue
            model_trace = trace(EnumMessenger(replay(model, trace=guide_trace))).get_trace(*args, **kwargs)
            if not self._checked:
                self._check(model_trace, guide_trace)
                self._checked = True
            yield model_trace, guide_trace

    def _check(self, model_trace, guide_trace):
        """Pyro's checks, once: shapes, sites in one trace only, something enumerated at all."""
        if is_validation_enabled():
            check_pair_shapes(model_trace, guide_trace, self._nesting, check_traceenum_requirements)
        enumerated = model_enumerated(model_trace, guide_trace)
        for name, site in model_trace.nodes.items():
            if not _is_latent(site) or name in enumerated:
                continue
            guide_site = guide_trace.nodes.get(name)
            if guide_site is not None and _is_latent(guide_site):
                continue
            if site["infer"].get("enumerate") == "sequential":
                raise ValueError(
                    f"Found vars in model but not guide: model site '{name}' is marked for sequential enumeration, "
                    "which TraceEnum_ELBO does for guide sites only; enumerate model sites in parallel")
            message = (f"Found vars in model but not guide: model samples latent site '{name}', which the guide "
                       "does not and which is not enumerated; it would be drawn from its prior and scored, so the "
                       "loss is not an ELBO (guide it, or enumerate it)")
            refuse_or_warn(message, stacklevel=5)
        for name in guide_trace.stochastic_nodes:
            if not guide_trace.nodes[name]["infer"].get("is_auxiliary") and name not in model_trace.nodes:
                warnings.warn(f"guide samples site '{name}', which the model does not have", stacklevel=5)
        if self.strict_enumeration_warning and not self._warned_no_enumeration:
            marked = any(site["type"] == "sample" and site["infer"].get("enumerate")
                         for tr in (model_trace, guide_trace) for site in tr.nodes.values())
            if not marked:
                self._warned_no_enumeration = True
                warnings.warn("TraceEnum_ELBO found no sample sites configured for enumeration; mark discrete "
                              "sites with cp.infer.config_enumerate or infer={'enumerate': 'parallel'}, or use "
                              "Trace_ELBO", stacklevel=5)

    # -- the loss ------------------------------------------------------------------------------------

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """Backpropagate the loss once, over every particle and sequential branch (branches share the
        values the guide drew before their site), and return it as a float."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return loss.item()

    def _particle_loss(self, model_trace, guide_trace, particle_dim):
        elbo = self._dice_elbo(model_trace, guide_trace)
        if particle_dim is not None:
            elbo = elbo / self.num_particles
        loss = -elbo
        return loss, loss.detach()

    def _dice_elbo(self, model_trace, guide_trace):
        traces = (model_trace, guide_trace)
        names = _names(traces)
        weights, denominators, costs = self._guide_terms(guide_trace)
        enumerated = model_enumerated(model_trace, guide_trace)
        pool, model_costs = model_factors(model_trace, enumerated)
        costs += model_costs
        if pool:
            scales = plate_scales(traces)
            extra = _common_scale(pool, scales)
            plates = {v for factor, _ in pool for v in factor.variables if is_plate_var(v)}
            results = sum_product_tree([factor for factor, _ in pool], set(enumerated.values()), plates,
                                       LOG, scales, names)
            for factor, ordinal in results:
                scale = extra * math.prod(scales.get(p, 1.0) for p in ordinal)
                if scale != 1.0:
                    factor = Factor(factor.table * scale, factor.variables)
                costs.append((factor, ordinal))
        return self._expectation(costs, weights, denominators, names)

    @staticmethod
    def _guide_terms(guide_trace):
        """The guide's weights (probabilities of enumerated values, DiCE factors of sampled sites),
        the sequential sites' counts, and its costs ``-log q`` (scaled, masked)."""
        weights, denominators, costs = [], [], []
        for site in guide_trace.nodes.values():
            if not _is_latent(site):
                continue
            fn, value = site["fn"], site["value"]
            enumerated = "_enumerate_dim" in site["infer"] or "_enum_total" in site["infer"]
            cost = site_factor(site, -log_prob_of(site), "guide")
            costs.append((cost, _ordinal(cost)))
            if enumerated:
                weight = site_factor(site, fn.log_prob(value).exp(), "guide")
            elif not fn.has_rsample:
                log_q = fn.log_prob(value)  # unscaled and unmasked, as the score is in Trace_ELBO
                weight = site_factor(site, (log_q - log_q.detach()).exp(), "guide")
            else:
                continue
            weights.append((weight, _ordinal(weight)))
            if "_enum_total" in site["infer"]:
                denominators.append((_ordinal(weight), site["infer"]["_enum_total"]))
        return weights, denominators, costs

    @staticmethod
    def _expectation(costs, weights, denominators, names):
        """``sum over costs c of E_q[c]``: each cost weighted by the guide factors of its plates and above."""
        grouped = {}  # (variables) -> summed table: costs over the same variables share one contraction
        for factor, _ in costs:
            key = frozenset(factor.variables)
            if key in grouped:
                previous = grouped[key]
                grouped[key] = Factor(previous.table + align(factor, previous.variables), previous.variables)
            else:
                grouped[key] = factor
        elbo = None
        for cost in grouped.values():
            ordinal = _ordinal(cost)
            upstream = [w for w, o in weights if o <= ordinal]
            covered = {v for w in upstream for v in w.variables} | ordinal
            stray = [v for v in cost.variables if v not in covered]
            if stray:
                shown = ", ".join(names.get(v, str(v)) for v in stray)
                raise ValueError(
                    f"an ELBO term in plates [{', '.join(sorted(names.get(p, str(p)) for p in ordinal))}] depends "
                    f"on the enumerated {shown} from a plate it is not in; a variable outside a plate may not "
                    "depend on one inside it (and model enumeration may not be more global than guide "
                    "enumeration)"
                )
            if upstream:
                cost = _masked_where_impossible(cost, upstream)
                value = contract(upstream + [cost], keep=(), semiring=PROB)
            else:
                value = cost.table.sum()
            denominator = math.prod(total for o, total in denominators if not o <= ordinal)
            if denominator != 1:
                value = value / denominator
            elbo = value if elbo is None else elbo + value
        return torch.zeros(()) if elbo is None else elbo

    # -- discrete posteriors -----------------------------------------------------------------------------

    def compute_marginals(self, model, guide, *args, **kwargs):
        """The posterior marginal of each model-enumerated site given the guide's sample of the rest:
        a dict name -> ``Categorical`` (``Bernoulli`` for a Bernoulli site), batched over the site's plates.
        """
        if self.num_particles != 1:
            raise NotImplementedError("TraceEnum_ELBO.compute_marginals needs num_particles=1")
        model_trace, guide_trace, _ = next(iter(self._particle_traces(model, guide, args, kwargs)))
        for name, site in guide_trace.nodes.items():
            if "_enumerate_dim" in site["infer"] or "_enum_total" in site["infer"]:
                raise NotImplementedError(f"TraceEnum_ELBO.compute_marginals: guide site '{name}' is enumerated; "
                                          "marginals are computed for model enumeration only")
        from causalppl.infer.discrete import enumerated_marginals

        return enumerated_marginals(model_trace, guide_trace)

    def sample_posterior(self, model, guide, *args, **kwargs):
        """A joint posterior draw of the model's enumerated sites, given a guide draw of the rest: the
        model's return value, from a run with those values (``infer_discrete`` at temperature 1)."""
        from causalppl.infer.discrete import infer_discrete

        nesting = self._plate_nesting(model, guide, args, kwargs)
        with block():
            guide_trace = trace(guide).get_trace(*args, **kwargs)
        return infer_discrete(replay(model, trace=guide_trace), first_available_dim=-nesting - 1,
                              temperature=1)(*args, **kwargs)


def _masked_where_impossible(cost, weights):
    """``cost`` with 0 wherever an enumerated guide weight over a subset of its variables is 0.

    Such a value has probability 0, so its cost (often ``-log 0 = inf``)
    must contribute nothing rather than ``0 * inf = nan``.
    """
    table = cost.table
    for weight in weights:
        variables = set(weight.variables)
        if variables <= set(cost.variables):
            table = torch.where(align(weight, cost.variables) == 0, torch.zeros((), dtype=table.dtype,
                                                                                 device=table.device), table)
    return cost if table is cost.table else Factor(table, cost.variables)


class JitTraceEnum_ELBO(TraceEnum_ELBO):
    """Pyro's name for a compiled ``TraceEnum_ELBO``: accepted for Pyro scripts, it runs uncompiled."""


def enumerated_log_joint(model, args=(), kwargs=None, max_plate_nesting=None):
    """``log p`` of one run of ``model`` with its enumerated sites summed out (scaled like the ELBO).

    The density a sampler over the continuous latents (e.g. NUTS on a
    mixture) should target: run it under ``replay`` or ``substitute`` to fix
    the continuous values.

    >>> import torch, causalppl as cp
    >>> def model():
    ...     z = cp.sample("z", cp.dist.Bernoulli(0.25), infer={"enumerate": "parallel"})
    ...     cp.sample("x", cp.dist.Normal(2.0 * z, 1.0), obs=torch.tensor(2.0))
    >>> value = enumerated_log_joint(model)
    >>> exact = torch.logsumexp(torch.stack([0.75 * cp.dist.Normal(0., 1.).log_prob(torch.tensor(2.)).exp(),
    ...                                      0.25 * cp.dist.Normal(2., 1.).log_prob(torch.tensor(2.)).exp()]).log(), 0)
    >>> torch.allclose(value, exact)
    True
    """
    kwargs = kwargs or {}
    if max_plate_nesting is None:
        with torch.no_grad(), block():
            max_plate_nesting = _plate_nesting_of(trace(model).get_trace(*args, **kwargs))
    model_trace = trace(EnumMessenger(model, first_available_dim=-max_plate_nesting - 1)).get_trace(*args, **kwargs)
    return trace_enumerated_log_joint(model_trace)


def trace_enumerated_log_joint(model_trace):
    """:func:`enumerated_log_joint` of a model trace already run under enumeration."""
    enumerated = model_enumerated(model_trace, None)
    pool, costs = model_factors(model_trace, enumerated)
    total = sum((factor.table.sum() for factor, _ in costs), torch.zeros(()))
    if pool:
        scales = plate_scales((model_trace,))
        extra = _common_scale(pool, scales)
        plates = {v for factor, _ in pool for v in factor.variables if is_plate_var(v)}
        total = total + extra * sum_product([factor for factor, _ in pool], set(enumerated.values()), plates, LOG,
                                            scales, _names((model_trace,)))
    return total


__all__ = ["JitTraceEnum_ELBO", "TraceEnum_ELBO", "enumerated_log_joint"]
