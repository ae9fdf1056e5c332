"""Effect handlers: one small class each, usable as ``handler(fn, ...)`` or ``with``.

>>> import causalppl as cp
>>> def model():
...     z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
...     return cp.sample("y", cp.dist.Normal(z, 1.0))
>>> tr = cp.handlers.trace(cp.handlers.condition(model, {"y": 1.0})).get_trace()
>>> tr.nodes["y"]["is_observed"]
True
"""

from __future__ import annotations

import sys

import torch

from causalppl import interventions as _interventions
from causalppl import noise as _noise
from causalppl import params as _params
from causalppl import runtime as _runtime
from causalppl.runtime import HANDLER_STACK, Messenger, as_tensor, new_message
from causalppl.trace import Trace


class trace(Messenger):
    """Record every site a run visits into ``self.trace`` (a :class:`Trace`).

    With ``param_only=True`` only ``param`` sites are recorded. Running a
    wrapped function (``trace(fn)(...)``, ``.get_trace(...)``) also records,
    as in Pyro, its arguments as the site ``_INPUT`` (of type ``"args"``,
    with ``args`` and ``kwargs``) and its return value as ``_RETURN`` (of
    type ``"return"``).

    >>> import causalppl as cp
    >>> def model():
    ...     return cp.sample("x", cp.dist.Normal(0.0, 1.0))
    >>> list(cp.handlers.trace(model).get_trace().nodes)
    ['_INPUT', 'x', '_RETURN']
    """

    def __init__(self, fn=None, param_only=False, graph_type="flat"):
        super().__init__(fn)
        self.param_only = param_only
        self.graph_type = graph_type
        self.trace = Trace(graph_type)

    def __enter__(self):
        self.trace = Trace(self.graph_type)
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        if self.graph_type == "dense" and exc_value is None:
            util.identify_dense_edges(self.trace)
        sites = [name for name in self.trace.nodes if name != "_INPUT"]
        if exc_value is not None and sites and not getattr(exc_value, "_causalppl_noted", False):
            exc_value._causalppl_noted = True
            exc_value.add_note(f"(causalppl: raised after the model's last recorded site '{sites[-1]}')")
        return super().__exit__(exc_type, exc_value, traceback)

    def postprocess_message(self, msg):
        if self.param_only and msg["type"] != "param":
            return
        if msg["type"] == "plate":
            self.trace.plate_names.add(msg["name"])
            if len(msg["value"]) == msg["args"][0]:
                # A plate's rows are a site only when they are a subsample; that all
                # were used is noted apart, so a replay can hold a subsampling model to it.
                self.trace.full_plates[msg["name"]] = msg["args"][0]
                return
        self.trace.add_site(msg)

    def __call__(self, *args, **kwargs):
        if self.fn is None:
            return super().__call__(*args, **kwargs)
        with self:
            if not self.param_only:
                # As in Pyro, a traced call records its arguments (``_INPUT``) and what it returned.
                site = new_message("args", "_INPUT", None, None, args=args)
                site["kwargs"] = kwargs
                self.trace.add_site(site)
            value = self.fn(*args, **kwargs)
        if not self.param_only:
            self.trace.add_site(new_message("return", "_RETURN", None, value))
        return value

    def _reset(self):
        """Start the recording afresh, keeping the ``_INPUT`` site (see ``NonlocalExit.reset_stack``)."""
        fresh = Trace(self.graph_type)
        if "_INPUT" in self.trace.nodes:
            fresh.add_site(self.trace.nodes["_INPUT"])
        self.trace = fresh

    def get_trace(self, *args, **kwargs):
        """Run the wrapped function and return its :class:`Trace` (its value is the ``_RETURN`` site)."""
        self(*args, **kwargs)
        return self.trace


TraceMessenger = trace


class UnknownSiteError(KeyError):
    """A ``condition``/``do`` key that names no sample site of the model."""

    def __str__(self):
        return str(self.args[0])


class _FixValues(Messenger):
    """Shared strictness of ``condition`` and ``do``: every key must name a sample site."""

    verb = ""

    def __init__(self, fn=None, data=None):
        super().__init__(fn)
        if data is None:
            data = {}
        if isinstance(data, Trace):  # as in Pyro: the values of a trace's sample sites
            data = {name: site["value"] for name, site in data.nodes.items() if site["type"] == "sample"}
        if not hasattr(data, "items"):
            raise TypeError(f"{self.verb}: data must be a dict of site name -> value, got {type(data).__name__}")
        # A value of None names the site but leaves it alone (Pyro's convention).
        self.data = {name: None if value is None else as_tensor(value) for name, value in data.items()}

    def __enter__(self):
        self._used = set()
        self._seen = []
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        super().__exit__(exc_type, exc_value, traceback)
        if exc_type is None and len(self._used) < len(self.data):
            unknown = [name for name in self.data if name not in self._used]
            known = ", ".join(dict.fromkeys(self._seen)) or "none"
            raise UnknownSiteError(
                f"{self.verb}: no sample site named {', '.join(repr(n) for n in unknown)} "
                f"(the model's sample sites are: {known})"
            )
        return False

    def process_message(self, msg):
        if msg["type"] != "sample":
            return
        name = msg["name"]
        self._seen.append(name)
        if name in self.data:
            self._used.add(name)
            if self.data[name] is not None:
                self.fix(msg, self.data[name])


class condition(_FixValues):
    """Observe sites: ``condition(model, {"y": 1.0})`` fixes ``y`` and scores it.

    Keys that name no sample site are an error (listing the sites that exist).

    >>> import causalppl as cp
    >>> def model():
    ...     return cp.sample("y", cp.dist.Normal(0.0, 1.0))
    >>> cp.condition(model, {"y": 2.0})()
    tensor(2.)
    """

    verb = "condition"

    def fix(self, msg, value):
        msg["value"] = value
        msg["is_observed"] = True


class do(_FixValues):
    """Intervene (Pearl's do): fix sites' values without scoring them.

    The intervened site contributes no log density, and everything
    downstream sees the fixed value, whatever happened upstream.

    >>> import causalppl as cp
    >>> def model():
    ...     x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    ...     return cp.sample("y", cp.dist.Normal(2 * x, 0.001))
    >>> round(cp.do(model, data={"x": 1.0})().item(), 1)
    2.0

    Besides values, ``data`` takes a callable of the site's natural value (a
    shift, ``lambda x: x + 1``), a Distribution (a stochastic intervention,
    drawn afresh) and, in :class:`multi_world`, :func:`from_world` (see
    :mod:`causalppl.interventions`). Inside :class:`twin_world` or
    :class:`multi_world` the interventions hold in a counterfactual world,
    not in the factual one.
    """

    verb = "do"

    def __init__(self, fn=None, data=None):
        super().__init__(fn, {})
        if data is None:
            data = {}
        if not hasattr(data, "items"):
            raise TypeError(f"{self.verb}: data must be a dict of site name -> value, got {type(data).__name__}")
        self.data = {name: None if value is None else _do_value(name, value) for name, value in data.items()}
        self._values = {}

    def __enter__(self):
        self._values = {}
        return super().__enter__()

    def fix(self, msg, value):
        if _enclosing_worlds(self) is not None:
            msg.setdefault("_world_do", []).append((self, value))  # the world handler splits the site
            return
        if not isinstance(value, torch.Tensor):
            if isinstance(value, _interventions.from_world):
                raise ValueError(f"do: site '{msg['name']}': from_world() needs an enclosing multi_world()")
            msg["_do_pending"] = (self, value)  # applied to the natural value once it is drawn
            msg["is_observed"] = False
            msg["intervened"] = True
            return
        msg["value"] = value
        msg["is_observed"] = False
        msg["intervened"] = True

    def postprocess_message(self, msg):
        if msg["type"] != "sample":
            return
        pending = msg.get("_do_pending")
        if pending is not None and pending[0] is self:
            del msg["_do_pending"]
            natural = msg["value"]
            shape = natural.shape
            context = _interventions.Context(
                msg["name"], 0, shape, msg["fn"], None, lambda: natural, self._lookup,
                lambda world: natural)
            msg["value"] = _interventions.fit_shape(msg["name"], pending[1].world_value(context), shape, natural)
        # Broadcast a scalar intervention to the site's shape (e.g. inside a plate).
        elif msg["intervened"] and msg["name"] in self.data and isinstance(msg["value"], torch.Tensor):
            fn = msg["fn"]
            shape = fn.batch_shape + fn.event_shape
            if msg["value"].shape != shape:
                try:
                    msg["value"] = msg["value"].expand(shape)
                except RuntimeError:
                    pass
        self._values[msg["name"]] = msg["value"]

    def _lookup(self, name):
        if name not in self._values:
            raise ValueError(f"do: the intervention reads site '{name}', which has not run yet "
                             f"(sites so far: {', '.join(self._values) or 'none'})")
        return self._values[name]


def _do_value(name, value):
    """A ``do`` value: a tensor for a plain value, else an intervention object."""
    if hasattr(value, "world_value") or isinstance(value, torch.distributions.Distribution) or \
            (callable(value) and not isinstance(value, torch.Tensor)):
        return _interventions.as_world_intervention(name, value)
    return as_tensor(value)


def _enclosing_worlds(handler):
    """The world handler (twin_world/multi_world) outside ``handler`` on the stack, or ``None``."""
    stack = _runtime.HANDLER_STACK
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] is handler:
            for outer in range(index - 1, -1, -1):
                if isinstance(stack[outer], _Worlds):
                    return stack[outer]
            return None
    return None


class _Worlds(Messenger):
    """Factual and counterfactual worlds as one batch dimension that shares exogenous noise.

    Shared by :class:`twin_world` and :class:`multi_world`, which differ only
    in how ``do`` handlers inside them map to worlds. World 0 is the factual
    world; a site that an inner ``do`` names, or whose distribution differs
    between worlds (a descendant of an intervention), gets a world
    dimension of size ``W`` at :attr:`dim` (by default just left of the plates
    inside the handler, fixed at the first split). Its factual value is drawn
    (or observed, or replayed) as without the handler and scored as usual;
    the other worlds' values are predicted from the noise recovered from it
    (:mod:`causalppl.noise`), so every world shares the noise, and they
    contribute no log density (a mask). Sites upstream of every intervention
    keep their shape and are shared by broadcasting. Observations
    (``condition``, ``obs=``) hold in the factual world.

    The posterior over the noise is therefore the posterior over the factual
    world's latent sites, from any inference method: likelihood weighting
    (``cp.infer.Importance`` on the handled model), SVI with an autoguide of
    the handled model (it guides the factual world only), or a guide fitted
    on the factual model and replayed (``cp.handlers.replay``, ``Predictive``).
    Noise models: :mod:`causalppl.noise` (a site whose family has none, and
    that an intervention reaches, raises ``CounterfactualError`` naming it).
    """

    _takes_dim = True

    def __init__(self, fn=None, dim=None):
        super().__init__(fn)
        if dim is not None and (not isinstance(dim, int) or dim >= 0):
            raise ValueError(f"{type(self).__name__}: dim must be a negative int (counted from the right), got {dim!r}")
        self._given_dim = dim
        self.dim = dim
        self.size = None
        self.values = {}
        self._handlers = None

    def __enter__(self):
        self.dim, self.size, self.values, self._handlers = self._given_dim, None, {}, None
        return super().__enter__()

    # -- which worlds ------------------------------------------------------------------------

    def _position(self):
        stack = _runtime.HANDLER_STACK
        for index in range(len(stack) - 1, -1, -1):
            if stack[index] is self:
                return index
        return len(stack)

    def _do_handlers(self):
        return [h for h in _runtime.HANDLER_STACK[self._position() + 1:] if isinstance(h, do)]

    def _count(self, handlers):
        raise NotImplementedError

    def _world_of(self, handler, handlers):
        raise NotImplementedError

    @property
    def worlds(self):
        """The interventions of each world, world 0 (factual) first: a list of dicts site -> value."""
        handlers = self._handlers if self._handlers is not None else self._do_handlers()
        worlds = [{} for _ in range(self._count(handlers))]
        for handler in reversed(handlers):  # inner handlers win, as at the sites
            for name, value in handler.data.items():
                if value is None:
                    continue  # names the site but leaves it alone
                worlds[self._world_of(handler, handlers)].setdefault(name, value)
        return worlds

    # -- reading worlds ------------------------------------------------------------------------

    def _has_worlds(self, value, event_dim=0):
        if self.dim is None or self.size is None or not isinstance(value, torch.Tensor):
            return False
        position = self.dim - event_dim
        return value.dim() >= -position and value.shape[position] == self.size

    def _select(self, value, world, event_dim=0):
        """``value`` in ``world`` with the world dim kept (size 1); values without one are shared."""
        if self._has_worlds(value, event_dim):
            return value.narrow(self.dim - event_dim, world, 1)
        return value

    def world(self, value, world, event_dim=0):
        """``value`` (a site's value, or anything computed from them) in world ``world``, the world dim dropped.

        A value without a world dim is the same in every world and comes back as it is.
        """
        if not isinstance(world, int) or not 0 <= world < max(self.size or 1, len(self.worlds)):
            raise ValueError(f"{type(self).__name__}: no world {world!r} (worlds 0..{max(self.size or 1, 2) - 1})")
        if self._has_worlds(value, event_dim):
            return value.select(self.dim - event_dim, world)
        return value

    def factual(self, value, event_dim=0):
        """``value`` in the factual world (world 0)."""
        return self.world(value, 0, event_dim)

    # -- splitting a site ------------------------------------------------------------------------

    def _choose_dim(self, fn):
        index = self._position()
        stack = _runtime.HANDLER_STACK
        inner = [h.dim for h in stack[index + 1:] if isinstance(h, _runtime.plate) and not h._sequential
                 and h.dim is not None and h.size != -1]
        outer = {h.dim for h in stack[:index] if isinstance(h, _runtime.plate) and not h._sequential
                 and h.dim is not None}
        base = min(inner, default=0)
        if not outer:
            base = min(base, -len(fn.batch_shape))  # batch dims no plate declares
        dim = base - 1
        while dim in outer:  # a plate outside the handler (rows, or Importance's samples) keeps its dim
            dim -= 1
        return dim

    def _batched(self, fn):
        if self.dim is None or self.size is None:
            return False
        shape = fn.batch_shape
        return len(shape) >= -self.dim and shape[self.dim] == self.size

    def postprocess_message(self, msg):
        if msg["type"] != "sample":
            return
        registered = msg.pop("_world_do", None) or []
        fn = msg["fn"]
        event_dim = len(fn.event_shape)
        if msg["intervened"] or isinstance(fn, _Unit()):
            self.values[msg["name"]] = (msg["value"], event_dim)
            return
        handlers = self._do_handlers()
        count = self._count(handlers)
        if count < 2 or not (registered or self._batched(fn) or self._has_worlds(msg["value"], event_dim)):
            self.values[msg["name"]] = (msg["value"], event_dim)
            return
        if self.size is None:
            self.size, self._handlers = count, handlers
            if self.dim is None:
                self.dim = self._choose_dim(fn)
        elif count != self.size:
            raise ValueError(f"{type(self).__name__}: site '{msg['name']}' sees {count} worlds, but earlier sites were "
                             f"split into {self.size}; enter every do handler before the model's first "
                             "intervened site")
        self._split(msg, registered, handlers, event_dim)
        self.values[msg["name"]] = (msg["value"], event_dim)

    def _split(self, msg, registered, handlers, event_dim):
        name, fn, size, dim = msg["name"], msg["fn"], self.size, self.dim
        value = torch.as_tensor(msg["value"])
        deterministic = bool(msg["infer"].get("_deterministic"))
        factual = self._select(value, 0, event_dim)
        batch = list(torch.broadcast_shapes(fn.batch_shape, factual.shape[: factual.dim() - event_dim]))
        batch = [1] * max(0, -dim - len(batch)) + batch
        batch[dim] = 1
        one = torch.Size(batch) + fn.event_shape
        factual = torch.broadcast_to(factual, one)
        cache = {}

        def noise():
            if "noise" not in cache:
                found = _noise.abduct(fn, factual, name)
                if found is not None and self._batched(fn):
                    extra = found.dim() - len(batch)
                    found = found.narrow(dim - extra, 0, 1)
                cache["noise"] = found
            return cache["noise"]

        def natural_all():
            if "natural" not in cache:
                if deterministic:
                    cache["natural"] = value
                elif not self._batched(fn):
                    cache["natural"] = factual  # the same parents in every world: the same value
                else:
                    cache["natural"] = _noise.predict(fn, noise(), name)
            return cache["natural"]

        chosen = {}
        for handler, intervention in registered:  # innermost first: the innermost handler wins
            chosen.setdefault(self._world_of(handler, handlers), intervention)
        pieces = [factual] + [None] * (size - 1)
        deferred = []
        for world in range(1, size):
            intervention = chosen.get(world)
            if isinstance(intervention, _interventions.from_world):
                deferred.append((world, intervention))
                continue
            if intervention is None:
                found = self._select(natural_all(), world, event_dim)
            elif isinstance(intervention, torch.Tensor):
                found = intervention
            else:
                context = _interventions.Context(
                    name, world, one, fn, noise,
                    lambda world=world: torch.broadcast_to(self._select(natural_all(), world, event_dim), one),
                    lambda other, world=world: self._lookup(other, world, name),
                    lambda other: self._other_world(pieces, other, name))
                found = intervention.world_value(context)
            pieces[world] = _interventions.fit_shape(name, found, one, factual)
        for world, intervention in deferred:
            pieces[world] = self._other_world(pieces, intervention.world, name)
        pieces = [piece.to(factual.dtype) if piece.dtype != factual.dtype else piece for piece in pieces]
        stacked = torch.cat(pieces, dim - event_dim)
        msg["value"] = stacked
        full = list(batch)
        full[dim] = size
        full = torch.Size(full)
        if deterministic:
            from causalppl.distributions import Delta

            msg["fn"] = Delta(stacked, event_dim=event_dim)
        elif fn.batch_shape != full:
            try:
                msg["fn"] = fn.expand(full)
            except (RuntimeError, ValueError, NotImplementedError):
                pass
        mask = torch.zeros((size,) + (1,) * (-dim - 1), dtype=torch.bool, device=stacked.device)
        mask[0] = True
        msg["mask"] = mask if msg["mask"] is None else msg["mask"] & mask
        msg["cond_indep_stack"] = msg["cond_indep_stack"] + (_runtime.CondIndepStackFrame("_worlds", dim, size, size),)
        msg["infer"] = {**msg["infer"], "_worlds": self}

    def _other_world(self, pieces, world, name):
        if not 0 <= world < len(pieces) or pieces[world] is None:
            raise ValueError(f"from_world({world}) at site '{name}': world {world} has no value here yet "
                             f"(worlds 0..{len(pieces) - 1}; a world may read only a world that does not read it)")
        return pieces[world]

    def _lookup(self, other, world, name):
        if other not in self.values:
            raise ValueError(f"site '{name}': its intervention reads '{other}', which has not run yet "
                             f"(sites so far: {', '.join(self.values) or 'none'})")
        value, event_dim = self.values[other]
        return self._select(value, world, event_dim)


class twin_world(_Worlds):
    """Two worlds, factual (0) and counterfactual (1), sharing exogenous noise (ChiRho's ``TwinWorldCounterfactual``).

    Every ``do`` handler inside it intervenes in world 1 (together, the
    innermost winning on a shared site); the factual world runs the model
    as it is, observations included. Read a value in a world with
    :meth:`world` (or :meth:`factual` / :meth:`counterfactual`).

    >>> import torch, causalppl as cp
    >>> def model():
    ...     x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    ...     return cp.sample("y", cp.dist.Normal(2 * x, 1.0))
    >>> with cp.handlers.twin_world() as tw, cp.handlers.do(data={"x": torch.tensor(0.0)}):
    ...     with cp.handlers.condition(data={"x": torch.tensor(1.0), "y": torch.tensor(3.0)}):
    ...         y = model()
    >>> y                                        # factual 3 = 2 * 1 + 1; the same noise with x = 0
    tensor([3., 1.])
    """

    def _count(self, handlers):
        return 2 if handlers else 1

    def _world_of(self, handler, handlers):
        return 1

    def counterfactual(self, value, event_dim=0):
        """``value`` in the counterfactual world (world 1)."""
        return self.world(value, 1, event_dim)


class multi_world(_Worlds):
    """The factual world plus one world per ``do`` handler inside it, all sharing exogenous noise.

    World ``k`` (``k >= 1``) holds the interventions of the ``k``-th ``do``
    handler (outermost first) and nothing else, so ``k`` handlers make
    ``k + 1`` worlds -- not one per combination of interventions: put the
    interventions a world needs together in one handler. A value may come
    from another world, :func:`from_world` ``(k)``, for nested
    counterfactuals such as the natural direct effect.

    >>> import torch, causalppl as cp
    >>> def model():
    ...     x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    ...     m = cp.sample("m", cp.dist.Normal(x, 1.0))
    ...     return cp.sample("y", cp.dist.Normal(x + m, 1.0))
    >>> nde = {"x": torch.tensor(1.0), "m": cp.handlers.from_world(1)}     # m as in world 1
    >>> with cp.handlers.multi_world() as mw, cp.handlers.do(data={"x": torch.tensor(0.0)}), cp.handlers.do(data=nde):
    ...     y = model()
    >>> y.shape[0], len(mw.worlds)                       # factual, do(x=0), do(x=1, m=m in world 1)
    (3, 3)
    >>> bool(torch.isclose(mw.world(y, 2) - mw.world(y, 1), torch.tensor(1.0)))   # the direct effect
    True
    """

    def _count(self, handlers):
        return 1 + len(handlers)

    def _world_of(self, handler, handlers):
        return 1 + handlers.index(handler)


from_world = _interventions.from_world


def _Unit():
    from causalppl.distributions import Unit

    return Unit


class replay(Messenger):
    """Reuse the values of latent sites recorded in ``trace`` (e.g. a guide's).

    Plate subsample indices are replayed too, so a model and its guide see
    the same rows.
    """

    def __init__(self, fn=None, trace=None):
        super().__init__(fn)
        if trace is None:
            raise ValueError("replay needs a trace to replay")
        self.trace = trace

    def process_message(self, msg):
        if msg["type"] == "param" or msg["is_observed"] or msg["intervened"]:
            return
        recorded = self.trace.nodes.get(msg["name"])
        if recorded is None and msg["type"] == "plate":
            size, _, device = msg["args"]
            if getattr(self.trace, "full_plates", {}).get(msg["name"]) == size:
                msg["value"] = _runtime.all_rows(size, device)  # the trace's plate used every row
            return
        if recorded is not None and recorded["type"] == msg["type"]:
            msg["value"] = recorded["value"]
            if msg["type"] == "sample" and "_dim_to_id" in recorded.get("infer", {}):
                # An enumerated (or enumeration-aware) value: which enumerated variable
                # each of its dims stands for travels with it.
                msg["infer"] = {**msg["infer"], **{key: value for key, value in recorded["infer"].items()
                                                   if key in _ENUM_KEYS}}


_ENUM_KEYS = ("_dim_to_id", "_enumerate_dim", "_enumerate_id", "_enum_total")


class BlockConflictError(ValueError, AssertionError):
    """``block`` was told to hide and to expose the same site (an ``AssertionError`` in Pyro)."""


class block(Messenger):
    """Hide sites from the handlers outside this one.

    By default everything is hidden. ``hide=[...]`` / ``hide_types=[...]``
    hide only those; ``expose=[...]`` / ``expose_types=[...]`` hide all but
    those (names decide before types; an observed sample site has the type
    ``"observe"``). ``hide_fn(msg) -> bool`` (or ``expose_fn``) decides per
    site and overrides the lists.

    >>> import causalppl as cp
    >>> def model():
    ...     z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
    ...     cp.sample("x", cp.dist.Normal(z, 1.0), obs=0.5)
    >>> tr = cp.handlers.trace(cp.handlers.block(model, hide_types=["observe"])).get_trace()
    >>> [name for name, site in tr.nodes.items() if site["type"] == "sample"]
    ['z']
    """

    def __init__(self, fn=None, hide_fn=None, expose_fn=None, hide_all=True, expose_all=False,
                 hide=None, expose=None, hide_types=None, expose_types=None):
        super().__init__(fn)
        self.hide_fn, self.expose_fn = hide_fn, expose_fn
        # Pyro's defaults: listing sites to hide shows the rest; listing sites to expose hides the rest.
        if hide is not None or hide_types is not None:
            hide_all = False
        if expose is not None or expose_types is not None:
            hide_all = True
        self.hide_all = hide_all and not expose_all
        self.hide, self.expose = set(hide or ()), set(expose or ())
        self.hide_types, self.expose_types = set(hide_types or ()), set(expose_types or ())
        for what, hidden, exposed in (("site", self.hide, self.expose),
                                      ("site type", self.hide_types, self.expose_types)):
            if hidden & exposed:
                raise BlockConflictError(f"block: cannot both hide and expose {what}(s) {sorted(hidden & exposed)}")

    def hides(self, msg):
        """Whether ``msg`` is hidden: the rule function, else its name, else its type, else ``hide_all``."""
        if self.hide_fn is not None:
            return self.hide_fn(msg)
        if self.expose_fn is not None:
            return not self.expose_fn(msg)
        if msg["name"] in self.hide:
            return True
        if msg["name"] in self.expose:
            return False
        kind = "observe" if msg.get("is_observed") else msg["type"]
        if kind in self.hide_types:
            return True
        if kind in self.expose_types:
            return False
        return self.hide_all

    def process_message(self, msg):
        if self.hides(msg):
            msg["stop"] = True


class seed(Messenger):
    """Run with torch's RNG seeded to ``rng_seed``; restore the previous state after."""

    def __init__(self, fn=None, rng_seed=0):
        super().__init__(fn)
        self.rng_seed = rng_seed

    def __enter__(self):
        self._cpu_state = torch.get_rng_state()
        self._cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        torch.manual_seed(self.rng_seed)
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        torch.set_rng_state(self._cpu_state)
        if self._cuda_states is not None:
            torch.cuda.set_rng_state_all(self._cuda_states)
        return super().__exit__(exc_type, exc_value, traceback)


class scale(Messenger):
    """Multiply the log density of every sample site by ``scale`` (> 0)."""

    def __init__(self, fn=None, scale=1.0):
        super().__init__(fn)
        if isinstance(scale, (int, float)):
            if scale <= 0:
                raise ValueError(f"scale must be positive, got {scale}")
            scale = float(scale)
        self.scale = scale

    def process_message(self, msg):
        if msg["type"] == "sample":
            msg["scale"] = msg["scale"] * self.scale


class mask(Messenger):
    """Drop the log density of entries where boolean ``mask`` is False."""

    def __init__(self, fn=None, mask=True):
        super().__init__(fn)
        self.given = mask  # as passed: get_mask() hands back a bool as a bool
        self.mask = torch.as_tensor(mask, dtype=torch.bool)

    def process_message(self, msg):
        if msg["type"] == "sample":
            msg["mask"] = self.mask if msg["mask"] is None else msg["mask"] & self.mask


class substitute(Messenger):
    """Replace the values of param and latent sample sites.

    ``data`` maps names to values; ``substitute_fn(msg)`` may return a value
    or None (leave the site alone).
    """

    def __init__(self, fn=None, data=None, substitute_fn=None):
        super().__init__(fn)
        if data is None and substitute_fn is None:
            raise ValueError("substitute needs data or substitute_fn")
        self.data = data
        self.substitute_fn = substitute_fn

    def process_message(self, msg):
        if msg["type"] not in ("param", "sample") or msg["is_observed"] or msg["intervened"]:
            return
        if self.data is not None:
            value = self.data.get(msg["name"])
        else:
            value = self.substitute_fn(msg)
        if value is not None:
            msg["value"] = as_tensor(value)


class uncondition(Messenger):
    """Sample observed sites from their distributions instead (Pyro's ``uncondition``).

    The observation is kept in ``msg["infer"]["obs"]``, with
    ``infer["was_observed"] = True``.

    >>> import causalppl as cp
    >>> def model():
    ...     return cp.sample("y", cp.dist.Normal(0.0, 1.0), obs=100.0)
    >>> bool(cp.handlers.uncondition(model)() < 100.0)
    True
    """

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["is_observed"] and not msg["infer"].get("_deterministic"):
            msg["infer"] = {**msg["infer"], "was_observed": True, "obs": msg["value"]}
            msg["is_observed"] = False
            msg["value"] = None


class infer_config(Messenger):
    """Add ``config_fn(msg)`` (a dict) to every sample and param site's ``infer`` dict.

    >>> import causalppl as cp
    >>> def model():
    ...     cp.sample("z", cp.dist.Bernoulli(0.5))
    >>> tr = cp.handlers.trace(cp.handlers.infer_config(model, lambda msg: {"enumerate": "parallel"})).get_trace()
    >>> tr.nodes["z"]["infer"]
    {'enumerate': 'parallel'}
    """

    def __init__(self, fn=None, config_fn=None):
        super().__init__(fn)
        if not callable(config_fn):
            raise TypeError(f"infer_config needs a callable config_fn(msg) -> dict, got {config_fn!r}")
        self.config_fn = config_fn

    def process_message(self, msg):
        if msg["type"] in ("sample", "param"):
            msg["infer"] = {**msg["infer"], **self.config_fn(msg)}


class lift(Messenger):
    """Turn ``param`` sites into ``sample`` sites drawn from ``prior`` (Pyro's ``lift``).

    ``prior`` is a distribution (for every param), a dict param name ->
    distribution or function (the other params stay params), or a function.
    A function is a stochastic function called as ``prior(init, constraint)``
    (the param's own arguments; a function without parameters is called
    with none) whose value replaces the param; a function given for every
    param is hidden from outer handlers, one from a dict is recorded as the
    site's ``fn``. A name read twice in one run is sampled once. Params of
    ``nn.Module`` s are matched by their own name (after ``$$$``), as in
    Pyro; with validation on, dict keys that match no param are warned about.

    >>> import torch, causalppl as cp
    >>> def model():
    ...     return cp.param("w", torch.tensor(0.0))
    >>> tr = cp.handlers.trace(lift(model, prior={"w": cp.dist.Normal(5.0, 1e-3)})).get_trace()
    >>> tr.nodes["w"]["type"], round(tr.nodes["w"]["value"].item(), 1)
    ('sample', 5.0)
    """

    def __init__(self, fn=None, prior=None):
        super().__init__(fn)
        if prior is None:
            raise ValueError("lift needs a prior: a distribution, a dict name -> distribution, or a function")
        self.prior = prior
        self._drawn = {}
        self._hits = set()

    def __enter__(self):
        self._drawn = {}
        self._hits = set()
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is None and isinstance(self.prior, dict) and _runtime.is_validation_enabled():
            unused = sorted(set(self.prior) - self._hits)
            if unused:
                import warnings

                warnings.warn(f"lift: the prior names param(s) {unused} that the model never read", UserWarning,
                              stacklevel=2)
        return super().__exit__(exc_type, exc_value, traceback)

    def process_message(self, msg):
        if msg["type"] != "param":
            return
        name = msg["name"]
        prior = self.prior
        hidden = not isinstance(prior, (dict, torch.distributions.Distribution))
        if isinstance(prior, dict):
            own_name = _params.user_param_name(name)
            prior = prior.get(own_name)
            if prior is None:
                return
            self._hits.add(own_name)
        args = msg["args"]
        msg["type"] = "sample"
        msg["args"] = ()
        msg["infer"] = {}
        msg["fn"] = prior
        if name in self._drawn:
            # Read again in the same run: the same value, scored once.
            msg["value"] = self._drawn[name]["value"]
            msg["is_observed"] = True
            msg["stop"] = True
            return
        if not isinstance(prior, torch.distributions.Distribution):
            msg["value"] = _call_prior(prior, args)
            msg["stop"] = hidden  # a value, not a density: nothing outside may score it
        self._drawn[name] = msg


def _call_prior(prior, args):
    """``prior(init, constraint)`` as Pyro calls it, or ``prior()`` for a function without parameters."""
    import inspect

    try:
        inspect.signature(prior).bind(*args)
    except TypeError:
        return prior()
    except ValueError:  # no signature to inspect (a builtin): call it as Pyro does
        pass
    return prior(*args)


class reparam(Messenger):
    """Reparameterise sample sites: ``reparam(model, config)`` (Pyro's ``reparam``).

    ``config`` maps site names to reparameterisers (objects with
    ``apply(msg) -> msg`` such as :class:`causalppl.infer.reparam.LocScaleReparam`),
    or is a function ``config(msg)`` returning one or None. A reparameteriser
    draws new auxiliary sites (``{name}_decentered``, ``{name}_base``, ...)
    and turns the original site into a deterministic function of them, so the
    model's density and its samples stay the same while the geometry that
    inference sees changes.
    """

    def __init__(self, fn=None, config=None):
        super().__init__(fn)
        if not (isinstance(config, dict) or callable(config)):
            raise TypeError(f"reparam needs config: a dict site name -> reparam, or a function; got {config!r}")
        self.config = config
        self._applying = False

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["intervened"] or msg["infer"].get("_deterministic"):
            return
        if self._applying:
            return  # a site the strategy itself draws (``x_decentered``) is not reparameterised again
        if isinstance(self.config, dict):
            strategy = self.config.get(msg["name"])
        else:
            strategy = self.config(msg)
        if strategy is None:
            return
        observed = msg["value"] if msg["is_observed"] else None
        if observed is None and getattr(strategy, "uses_init", False):
            # As Pyro: enclosing InitMessengers act first, so the model and its initialiser are
            # reparameterised together (the strategy maps the initial value to its own sites).
            for handler in HANDLER_STACK:
                if msg["value"] is None and hasattr(handler, "init_site"):
                    handler.init_site(msg)
            observed = msg["value"]
        self._applying = True
        try:
            new = strategy.apply({"name": msg["name"], "fn": msg["fn"], "value": observed,
                                  "is_observed": msg["is_observed"]})
        finally:
            self._applying = False
        msg["fn"] = new["fn"]
        msg["value"] = new["value"]
        msg["is_observed"] = new["is_observed"]


class param_scope(Messenger):
    """Read and create ``param`` sites in ``store`` instead of the global store.

    The store is part of the handler context: while the scope is active,
    ``cp.param``, ``cp.module`` and ``cp.get_param_store()`` all use it. With
    ``frozen=True`` params are read as constants (detached, never created),
    so an optimiser cannot move them.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> mine = cp.ParamStore()
    >>> with cp.handlers.param_scope(store=mine):
    ...     _ = cp.param("w", torch.tensor(1.0))
    >>> "w" in mine, "w" in cp.get_param_store()
    (True, False)
    """

    def __init__(self, fn=None, store=None, frozen=False):
        super().__init__(fn)
        if not isinstance(store, _params.ParamStore):
            raise TypeError(f"param_scope needs a ParamStore, got {type(store).__name__}")
        self.store = store
        self.frozen = frozen

    def __enter__(self):
        _params._SCOPES.append(self.store)
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        # Pop our own entry even if an inner scope failed to exit.
        for index in range(len(_params._SCOPES) - 1, -1, -1):
            if _params._SCOPES[index] is self.store:
                del _params._SCOPES[index:]
                break
        return super().__exit__(exc_type, exc_value, traceback)

    def process_message(self, msg):
        if msg["type"] != "param" or msg["value"] is not None:
            return
        init, constraint = msg["args"]
        if self.frozen:
            if msg["name"] not in self.store:
                raise KeyError(
                    f"param '{msg['name']}' is not in the frozen param scope "
                    f"(its params: {', '.join(self.store.keys()) or 'none'})"
                )
            msg["value"] = self.store[msg["name"]].detach()
        else:
            msg["value"] = self.store.get_param(msg["name"], init, constraint)


from causalppl.enumeration import EnumMessenger, MarkovMessenger, enum, markov  # noqa: E402

# Pyro's ``poutine.messenger`` module: ``cp.handlers.messenger.Messenger`` is the base class.
messenger = _runtime

__all__ = [
    "param_scope", "trace", "TraceMessenger", "condition", "do", "replay", "block",
    "seed", "scale", "mask", "substitute", "uncondition", "infer_config", "lift", "reparam", "messenger", "Messenger",
    "UnknownSiteError", "enum", "markov", "EnumMessenger", "MarkovMessenger",
    "twin_world", "multi_world", "from_world",
]

from causalppl.handlers import util  # noqa: E402
from causalppl.handlers.escape import EscapeMessenger, NonlocalExit, escape, queue  # noqa: E402

__all__ += ["EscapeMessenger", "NonlocalExit", "Trace", "escape", "queue", "util"]


class broadcast(Messenger):
    """Pyro's ``broadcast``: a no-op here, because :class:`~causalppl.runtime.plate` always broadcasts.

    Kept so Pyro scripts that wrap models in ``@poutine.broadcast`` run unchanged.
    """


def get_mask():
    """The mask the enclosing :class:`mask` handlers put on a sample site here (``None`` if none).

    >>> import causalppl as cp
    >>> with cp.handlers.mask(mask=False):
    ...     cp.handlers.get_mask()
    False
    """
    combined = None
    for handler in HANDLER_STACK:
        if isinstance(handler, mask):
            given = handler.given
            if combined is None:
                combined = given
            elif isinstance(combined, bool) and isinstance(given, bool):
                combined = combined and given
            else:
                combined = torch.as_tensor(combined, dtype=torch.bool) & torch.as_tensor(given, dtype=torch.bool)
    return combined


def unwrap(fn):
    """The function inside any handlers wrapped around ``fn``."""
    while isinstance(fn, Messenger) and fn.fn is not None:
        fn = fn.fn
    return fn


enable_validation = _runtime.enable_validation
is_validation_enabled = _runtime.is_validation_enabled
__all__ += ["broadcast", "enable_validation", "get_mask", "is_validation_enabled", "unwrap"]

from causalppl.handlers import pyro_paths as _pyro_paths  # noqa: E402

_pyro_paths.register(sys.modules[__name__])
