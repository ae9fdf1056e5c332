"""Parallel enumeration of discrete sample sites: the ``enum`` and ``markov`` handlers, ``config_enumerate``.

A sample site marked ``infer={"enumerate": "parallel"}`` (or every discrete
site of a function wrapped in :func:`config_enumerate`) is not sampled under
:class:`enum`: its value is the distribution's whole support, laid along a new
tensor dimension to the left of the plates. The first such site gets dim
``first_available_dim`` (``-max_plate_nesting - 1``), the next one the dim to
its left, and so on, as in Pyro. Downstream sites broadcast against these
values, so their log densities hold one entry per joint assignment of the
enumerated sites they depend on, and an inference algorithm
(:class:`causalppl.infer.TraceEnum_ELBO`, :func:`causalppl.infer.infer_discrete`)
sums (or maximises) them out exactly with a tensor contraction
(:mod:`causalppl.contract`).

Each site records ``infer["_dim_to_id"]``: which enumerated variable (a
unique id) each enumeration dim of its log density stands for. Under
:func:`markov`, a dim whose site has gone out of the Markov context is used
again, so a chain of ``T`` enumerated sites needs only ``history + 1`` dims;
the ids still tell the variables apart.

>>> import torch, causalppl as cp
>>> @cp.infer.config_enumerate
... def model():
...     z = cp.sample("z", cp.dist.Categorical(torch.tensor([0.2, 0.3, 0.5])))
...     with cp.plate("rows", 4):
...         return cp.sample("x", cp.dist.Normal(z.float(), 1.0), obs=torch.zeros(4))
>>> tr = cp.trace(cp.handlers.enum(model, first_available_dim=-2)).get_trace()
>>> tuple(tr.nodes["z"]["value"].shape), tuple(tr.nodes["x"]["fn"].batch_shape)
((3, 1), (3, 4))
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack

import torch

from causalppl.runtime import Messenger


class _EnumAllocator:
    """Hands out enumeration dims (negative, from ``first_available_dim`` leftwards) and unique variable ids.

    One allocator is shared by a guide's and then its model's ``enum``
    handlers (the model continues where the guide stopped), as Pyro's is.
    """

    def __init__(self):
        self.set_first_available_dim(None)

    def set_first_available_dim(self, first_available_dim):
        if first_available_dim is not None and first_available_dim >= 0:
            raise ValueError(f"first_available_dim must be negative (counted from the right), "
                             f"got {first_available_dim}")
        self.first_available_dim = first_available_dim
        self.next_available_dim = first_available_dim
        self.next_available_id = 0
        self.dim_to_id = {}  # global (never recycled) dims only

    def allocate(self, scope_dims=None):
        """``(dim, id)`` for a new enumerated variable; a global dim when ``scope_dims`` is None, else the
        rightmost dim not in ``scope_dims`` (the dims of the variables still in the Markov context)."""
        if self.next_available_dim is None:
            raise ValueError("parallel enumeration needs first_available_dim (TraceEnum_ELBO sets it from "
                             "max_plate_nesting; standalone, use cp.handlers.enum(fn, first_available_dim=-k))")
        id_ = self.next_available_id
        self.next_available_id += 1
        dim = self.next_available_dim
        if scope_dims is None:
            self.next_available_dim -= 1
            self.dim_to_id[dim] = id_
        else:
            while dim in scope_dims:
                dim -= 1
        return dim, id_


_ENUM_ALLOCATOR = _EnumAllocator()


def enumerate_site(msg):
    """The support of a site's distribution as a tensor ``(K, 1, ..., 1, *event_shape)``; a ``ValueError``
    naming the site when the distribution has no finite support to enumerate.

    A site with ``infer["num_samples"] = K`` gets ``K`` draws instead (any
    distribution): see :func:`sample_site`.
    """
    if msg["infer"].get("num_samples") is not None:
        return sample_site(msg)
    fn = msg["fn"]
    name = msg["name"]
    if not getattr(fn, "has_enumerate_support", False):
        raise ValueError(
            f"sample site '{name}' is marked for enumeration (infer={{'enumerate': ...}}), but its distribution "
            f"{type(fn).__name__} has no finite support to enumerate; only discrete distributions such as "
            "Bernoulli, Categorical, OneHotCategorical and Binomial can be enumerated"
        )
    try:
        return fn.enumerate_support(expand=False)
    except NotImplementedError as err:
        raise ValueError(f"sample site '{name}': {type(fn).__name__} cannot enumerate its support ({err})") from err


def _draw(fn, sample_shape):
    return fn.rsample(sample_shape) if fn.has_rsample else fn.sample(sample_shape)


def sample_site(msg):
    """``K = infer["num_samples"]`` draws of a site for Tensor Monte Carlo: ``(K, *batch, *event)``.

    With ``infer["expand"]`` each draw has the distribution's whole batch
    shape. Otherwise only the site's plate dims keep their size, and each
    dim that comes from an upstream enumerated or sampled site is collapsed:
    draw ``k`` uses that site's value ``k`` (``infer["tmc"] = "diagonal"``,
    the default) or a value chosen uniformly at random (``"mixture"``), so
    the site gets its own dim of ``K`` values (Aitchison 2018).
    """
    fn, infer, name = msg["fn"], msg["infer"], msg["name"]
    num_samples = int(infer["num_samples"])
    if num_samples < 1:
        raise ValueError(f"sample site '{name}': infer['num_samples'] must be a positive integer, got {num_samples}")
    strategy = infer.get("tmc", "diagonal")
    if strategy not in ("diagonal", "mixture"):
        raise ValueError(f"sample site '{name}': {strategy!r} is not a TMC strategy; use 'diagonal' or 'mixture'")
    draws = _draw(fn, torch.Size([num_samples]))
    if infer.get("expand", False):
        return draws
    batch_shape = fn.batch_shape
    target = [1] * len(batch_shape)
    for frame in msg["cond_indep_stack"]:
        if frame.dim is not None and -frame.dim <= len(batch_shape):
            target[frame.dim] = batch_shape[frame.dim]
    collapsed = [axis for axis, size in enumerate(batch_shape) if size > 1 and target[axis] == 1]
    if not collapsed:
        return draws
    # Index every batch axis by a tensor shaped (K, *target): plate axes by their positions, collapsed axes by
    # the upstream value each draw uses (in every copy of the plates independently, for "mixture").
    device = draws.device
    shape = (num_samples,) + tuple(target)
    index = [torch.arange(num_samples, device=device).reshape((-1,) + (1,) * len(target))]
    for axis, size in enumerate(batch_shape):
        if axis in collapsed:
            if strategy == "diagonal":
                if size != num_samples:
                    raise ValueError(
                        f"sample site '{name}': the diagonal TMC strategy pairs draw k with upstream value k, but "
                        f"an upstream dim has {size} values and the site {num_samples} draws; use tmc='mixture'"
                    )
                chosen = torch.arange(size, device=device).reshape((-1,) + (1,) * len(target))
            else:
                chosen = torch.randint(size, shape, device=device)
        elif size > 1:
            chosen = torch.arange(size, device=device).reshape((size,) + (1,) * (len(target) - 1 - axis))
        else:
            chosen = torch.zeros((), dtype=torch.long, device=device)
        index.append(chosen)
    index += [slice(None)] * len(fn.event_shape)
    from causalppl.ops.indexing import Vindex

    return Vindex(draws)[tuple(index)].reshape(shape + tuple(fn.event_shape))


def _is_enumerable_site(msg):
    return (msg["type"] == "sample" and not msg["is_observed"] and not msg["intervened"]
            and not msg["infer"].get("_deterministic"))


class EnumMessenger(Messenger):
    """Enumerate sites marked ``infer={"enumerate": "parallel"}`` in parallel (Pyro's ``poutine.enum``).

    ``first_available_dim`` (negative) is the rightmost dim enumeration may use,
    left of every plate: ``-max_plate_nesting - 1``. Without it the allocator
    goes on from where the last ``enum`` left it (a model after its guide).
    A plate at or left of ``first_available_dim`` is an error naming the site
    and the plate (``max_plate_nesting`` too small).
    """

    def __init__(self, fn=None, first_available_dim=None):
        super().__init__(fn)
        if first_available_dim is not None and first_available_dim >= 0:
            raise ValueError(f"enum: first_available_dim must be negative, got {first_available_dim}")
        self.first_available_dim = first_available_dim

    def __enter__(self):
        if self.first_available_dim is not None:
            _ENUM_ALLOCATOR.set_first_available_dim(self.first_available_dim)
        self._first = _ENUM_ALLOCATOR.first_available_dim
        self._markov_depths = {}  # site name -> markov depth
        self._param_dims = {}  # site name -> {enum dim: id} visible to its distribution
        self._value_dims = {}  # site name -> {enum dim: id} carried by its value
        return super().__enter__()

    def process_message(self, msg):
        if msg["type"] != "sample":
            return
        msg["infer"] = dict(msg["infer"])  # never write into a dict the model may reuse
        scope = msg["infer"].get("_markov_scope")
        param_dims = dict(_ENUM_ALLOCATOR.dim_to_id)
        if scope is not None:
            for name, depth in scope.items():
                if self._markov_depths.get(name) == depth:  # sites whose markov context has exited are hidden
                    param_dims.update(self._value_dims.get(name, {}))
            self._markov_depths[msg["name"]] = msg["infer"]["_markov_depth"]
        self._param_dims[msg["name"]] = param_dims
        self._check_plates(msg)
        if (msg["value"] is not None or not _is_enumerable_site(msg)
                or msg["infer"].get("enumerate") != "parallel"):
            return
        fn = msg["fn"]
        value = enumerate_site(msg)
        target_dim, id_ = _ENUM_ALLOCATOR.allocate(None if scope is None else set(param_dims))
        batch_shape = fn.batch_shape
        if len(batch_shape) >= -target_dim and batch_shape[target_dim] != 1:
            raise ValueError(
                f"sample site '{msg['name']}': Enumeration dim conflict (invalid log_prob shape): dim {target_dim} "
                f"is already used by its distribution's batch shape {tuple(batch_shape)} (batch dims that no "
                "plate declares, or a markov context shorter than the model's dependencies?)"
            )
        event_shape = tuple(fn.event_shape)
        if msg["infer"].get("num_samples") is not None:
            value = self._place_draws(msg, value, target_dim)
        else:
            value = value.reshape((value.shape[0],) + (1,) * (-1 - target_dim) + event_shape)
        if msg["infer"].get("expand", False) and msg["infer"].get("num_samples") is None:
            value = value.expand(torch.broadcast_shapes(value.shape, tuple(batch_shape) + event_shape))
        value_dims = {target_dim: id_}
        msg["infer"]["_enumerate_dim"] = target_dim
        msg["infer"]["_enumerate_id"] = id_
        msg["infer"]["_dim_to_id"] = value_dims
        msg["value"] = value

    @staticmethod
    def _place_draws(msg, value, target_dim):
        """Put the draws' dim at ``target_dim``: ``(K, *batch, *event)`` with the batch right-aligned."""
        event_dim = len(msg["fn"].event_shape)
        batch = value.shape[1:value.dim() - event_dim]
        room = -1 - target_dim  # dims between the draws' dim and the event dims
        if len(batch) > room:
            extra = batch[:len(batch) - room]
            if any(size != 1 for size in extra):
                raise ValueError(f"sample site '{msg['name']}': its draws of shape {tuple(value.shape)} vary along "
                                 f"dims left of enumeration dim {target_dim}")
            batch = batch[len(batch) - room:]
        return value.reshape((value.shape[0],) + (1,) * (room - len(batch)) + tuple(batch)
                             + tuple(value.shape[value.dim() - event_dim:]))

    def _check_plates(self, msg):
        first = self._first
        if first is None:
            return
        for frame in msg["cond_indep_stack"]:
            if frame.dim is not None and frame.dim <= first:
                raise ValueError(
                    f"sample site '{msg['name']}': plate '{frame.name}' uses dim {frame.dim}, but enumeration "
                    f"starts at dim {first} (max_plate_nesting={-first - 1}); set max_plate_nesting to at "
                    f"least {-frame.dim} (the number of nested plates), or give the plate a dim right of {first}"
                )

    def postprocess_message(self, msg):
        # Every site's log density is read with the dims of the variables in
        # scope when it was sampled, and of its own value.
        if msg["type"] != "sample" or msg["value"] is None or not isinstance(msg["value"], torch.Tensor):
            return
        value = msg["value"]
        event_dim = len(msg["fn"].event_shape)
        shape = value.shape[: value.dim() - event_dim]
        dim_to_id = dict(msg["infer"].get("_dim_to_id", {}))
        dim_to_id.update(self._param_dims.get(msg["name"], {}))
        msg["infer"]["_dim_to_id"] = dim_to_id
        self._value_dims[msg["name"]] = {dim: id_ for dim, id_ in dim_to_id.items()
                                         if len(shape) >= -dim and shape[dim] > 1}


def enum(fn=None, first_available_dim=None):
    """Parallel enumeration of the sites marked for it: see :class:`EnumMessenger`.

    >>> import torch, causalppl as cp
    >>> def model():
    ...     return cp.sample("z", cp.dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
    >>> cp.handlers.enum(model, first_available_dim=-1)()
    tensor([0., 1.])
    """
    return EnumMessenger(fn, first_available_dim=first_available_dim)


class MarkovMessenger(Messenger):
    """Markov dependency declaration (Pyro's ``poutine.markov``): see :func:`markov`."""

    def __init__(self, fn=None, history=1, keep=False):
        super().__init__(fn)
        if int(history) < 0:
            raise ValueError(f"markov: history must be non-negative, got {history}")
        self.history = int(history)
        self.keep = bool(keep)
        self._iterable = None
        self._pos = -1
        self._stack = []
        self._entered = 0

    def generator(self, iterable):
        self._iterable = iterable
        return self

    def __iter__(self):
        if self._iterable is None:
            raise TypeError("markov: iterate over markov(iterable), e.g. `for t in cp.markov(range(T)):`")
        with ExitStack() as stack:
            for value in self._iterable:
                stack.enter_context(self)
                yield value

    def __enter__(self):
        self._pos += 1
        if len(self._stack) <= self._pos:
            self._stack.append(set())
        self._entered += 1
        if self._entered == 1:  # re-entrant: on the handler stack once however deep
            super().__enter__()
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if not self.keep:
            self._stack.pop()
        self._pos -= 1
        self._entered -= 1
        if self._entered == 0:
            return super().__exit__(exc_type, exc_value, traceback)
        return False

    def process_message(self, msg):
        if msg["type"] != "sample":
            return
        infer = msg["infer"] = dict(msg["infer"])
        scope = Counter(infer.get("_markov_scope", ()))  # site name -> markov depth
        for pos in range(max(0, self._pos - self.history), self._pos + 1):
            scope.update(self._stack[pos])
        infer["_markov_scope"] = scope
        infer["_markov_depth"] = 1 + infer.get("_markov_depth", 0)
        self._stack[self._pos].add(msg["name"])


def markov(fn=None, history=1, keep=False, dim=None, name=None):
    """Declare that sites depend only on the last ``history`` steps (Pyro's ``pyro.markov``).

    ``for t in cp.markov(range(T)):`` (or ``with cp.markov():`` per step, or
    ``cp.markov(fn)``): a site sampled in step ``t`` may depend on the sites of
    steps ``t - history .. t``. Enumeration then reuses the dims of older
    steps' sites, so a chain of any length needs ``history + 1`` dims.
    ``keep=True`` keeps a step's sites visible to sibling branches.

    >>> import torch, causalppl as cp
    >>> @cp.infer.config_enumerate
    ... def chain():
    ...     x = 0
    ...     for t in cp.markov(range(10)):
    ...         x = cp.sample(f"x_{t}", cp.dist.Bernoulli(0.2 + 0.6 * torch.as_tensor(x, dtype=torch.float)))
    >>> tr = cp.trace(cp.handlers.enum(chain, first_available_dim=-1)).get_trace()
    >>> sorted({tr.nodes[f"x_{t}"]["infer"]["_enumerate_dim"] for t in range(10)})
    [-2, -1]
    """
    if dim is not None or name is not None:
        raise NotImplementedError("markov: vectorized markov (dim=, name=) is not implemented; leave them None")
    if fn is None:
        return MarkovMessenger(history=history, keep=keep)
    if not callable(fn):
        return MarkovMessenger(history=history, keep=keep).generator(fn)
    return MarkovMessenger(fn, history=history, keep=keep)


# -- configuring sites ----------------------------------------------------------------------------


def _config_fn(default, expand, num_samples, tmc, msg):
    if msg["type"] != "sample" or msg["is_observed"] or msg["infer"].get("_deterministic"):
        return {}
    infer = msg["infer"]
    if num_samples is not None:  # Monte Carlo draws: any distribution
        return {"enumerate": infer.get("enumerate", default), "num_samples": infer.get("num_samples", num_samples),
                "expand": infer.get("expand", expand), "tmc": infer.get("tmc", tmc)}
    if not getattr(msg["fn"], "has_enumerate_support", False):
        return {}
    return {"enumerate": infer.get("enumerate", default), "expand": infer.get("expand", expand)}


def config_enumerate(guide=None, default="parallel", expand=False, num_samples=None, tmc="diagonal"):
    """Mark every discrete sample site of ``guide`` (a model or a guide) for enumeration.

    Sites whose distribution has a finite support (``has_enumerate_support``:
    Bernoulli, Categorical, OneHotCategorical, Binomial, ...) get
    ``infer={"enumerate": default}`` unless they already say otherwise.
    ``default`` is ``"parallel"`` (a batch dim per site, summed out by
    :class:`~causalppl.infer.TraceEnum_ELBO`) or ``"sequential"`` (the guide is
    rerun once per value; guide sites only), or None. Usable as a decorator,
    with or without arguments. With ``num_samples=K`` every latent site
    (continuous ones too) is marked for ``K`` parallel draws instead, as
    :class:`~causalppl.infer.TraceTMC_ELBO` uses them; ``tmc`` says how a
    draw picks its upstream values (see :func:`sample_site`).

    >>> import causalppl as cp
    >>> @cp.infer.config_enumerate(default="sequential")
    ... def guide():
    ...     cp.sample("z", cp.dist.Bernoulli(0.5))
    ...     cp.sample("w", cp.dist.Normal(0.0, 1.0))
    >>> tr = cp.trace(guide).get_trace()
    >>> tr.nodes["z"]["infer"], tr.nodes["w"]["infer"]
    ({'enumerate': 'sequential', 'expand': False}, {})
    """
    if default not in ("sequential", "parallel", None):
        raise ValueError(f"config_enumerate: default must be 'sequential', 'parallel' or None, got {default!r}")
    if expand not in (True, False):
        raise ValueError(f"config_enumerate: expand must be True or False, got {expand!r}")
    if num_samples is not None and (int(num_samples) != num_samples or num_samples < 1):
        raise ValueError(f"config_enumerate: num_samples must be a positive integer or None, got {num_samples!r}")
    if tmc not in ("diagonal", "mixture", None):
        raise ValueError(f"config_enumerate: tmc must be 'diagonal' or 'mixture', got {tmc!r}")
    if guide is None:
        return lambda fn: config_enumerate(fn, default=default, expand=expand, num_samples=num_samples, tmc=tmc)
    from causalppl.handlers import infer_config

    return infer_config(guide, config_fn=lambda msg: _config_fn(default, expand, num_samples, tmc, msg))


__all__ = ["EnumMessenger", "MarkovMessenger", "config_enumerate", "enum", "enumerate_site", "markov",
           "sample_site"]
