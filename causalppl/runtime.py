"""The effect-handler runtime: one handler stack, one message loop, the primitives.

A stochastic function is ordinary Python that calls :func:`sample`,
:func:`param`, :func:`factor` and :func:`deterministic`. Each call builds a
small *message* (a dict) and hands it to :func:`apply_stack`, which lets every
active handler look at it (innermost first), fills in a value if no handler
did, and then lets the handlers see the result (outermost first).

Handlers (see :mod:`causalppl.handlers`) are small :class:`Messenger`
subclasses; ``with handler:`` pushes one on the stack, ``handler(fn)`` wraps a
function so that it runs inside it.

>>> import torch, causalppl as cp
>>> def model():
...     return cp.sample("x", cp.dist.Normal(0.0, 1.0))
>>> with cp.handlers.trace() as tr:
...     _ = model()
>>> list(tr.trace.nodes)
['x']
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings
from typing import NamedTuple

import torch

from causalppl.params import get_param_store

# The global mutable state besides the param store: the active handlers,
# outermost first, and whether models are validated (shape checks in the ELBOs).
HANDLER_STACK: list[Messenger] = []
_VALIDATION = [True]


def enable_validation(is_validate=True):
    """Turn validation on or off (on by default): the ELBOs' shape checks and torch's argument checks."""
    _VALIDATION[0] = bool(is_validate)
    torch.distributions.Distribution.set_default_validate_args(bool(is_validate))


def is_validation_enabled():
    return _VALIDATION[0]


@contextlib.contextmanager
def validation_enabled(is_validate=True):
    """``enable_validation(is_validate)`` for the ``with`` block, then the previous setting.

    >>> import causalppl as cp
    >>> with cp.validation_enabled(False):
    ...     cp.runtime.is_validation_enabled()
    False
    """
    previous = (_VALIDATION[0], torch.distributions.Distribution._validate_args)
    enable_validation(is_validate)
    try:
        yield
    finally:
        _VALIDATION[0] = previous[0]
        torch.distributions.Distribution.set_default_validate_args(previous[1])


class Messenger:
    """Base class of all handlers.

    Subclasses override :meth:`process_message` (runs before the value is
    chosen, innermost handler first) and/or :meth:`postprocess_message` (runs
    after, outermost first). Setting ``msg["stop"] = True`` in
    ``process_message`` hides the site from the handlers further out.
    """

    def __init__(self, fn=None):
        if fn is not None and not callable(fn):
            raise ValueError(
                f"{type(self).__name__}: {fn!r} is not callable; did you mean to pass it as a keyword "
                f"argument (e.g. {type(self).__name__}({_first_option(type(self))}=...))?"
            )
        self.fn = fn

    def __init_subclass__(cls, **kwargs):
        # Pyro-style handlers write _process_message / _postprocess_message, or
        # per-type hooks _pyro_sample / _pyro_post_sample (and _param, ...).
        super().__init_subclass__(**kwargs)
        if "_process_message" in vars(cls):
            cls.process_message = cls._process_message
        elif cls.process_message is Messenger.process_message and _has_hooks(cls, "_pyro_"):
            cls.process_message = Messenger._run_pyro_hook
        if "_postprocess_message" in vars(cls):
            cls.postprocess_message = cls._postprocess_message
        elif cls.postprocess_message is Messenger.postprocess_message and _has_hooks(cls, "_pyro_post_"):
            cls.postprocess_message = Messenger._run_pyro_post_hook

    def _run_pyro_hook(self, msg):
        hook = getattr(self, "_pyro_" + msg["type"], None)
        if hook is not None:
            hook(msg)

    def _run_pyro_post_hook(self, msg):
        hook = getattr(self, "_pyro_post_" + msg["type"], None)
        if hook is not None:
            hook(msg)

    def __get__(self, instance, owner=None):
        # A handler wrapping a method (``@scale(scale=2.0)`` on ``def model(self, ...)``)
        # binds like a function, so ``obj.model(...)`` passes ``obj``.
        if instance is None or self.fn is None:
            return self
        return functools.partial(self.__call__, instance)

    def __enter__(self):
        HANDLER_STACK.append(self)
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        # Normally we are on top; after an error inside a nested handler that
        # never exited, drop everything above us too so the stack stays sane.
        for index in range(len(HANDLER_STACK) - 1, -1, -1):
            if HANDLER_STACK[index] is self:
                del HANDLER_STACK[index:]
                break
        return False

    def __call__(self, *args, **kwargs):
        if self.fn is None:
            # ``handler(...)(fn)``: bind a copy of this handler to ``fn``.
            if len(args) == 1 and not kwargs and callable(args[0]):
                bound = copy.copy(self)
                bound.fn = args[0]
                return bound
            raise TypeError(
                f"{type(self).__name__} has no function to run; wrap one with "
                f"{type(self).__name__}(fn, ...) or use it as a context manager"
            )
        with self:
            return self.fn(*args, **kwargs)

    def process_message(self, msg):
        pass

    def postprocess_message(self, msg):
        pass


def _first_option(cls):
    """The first keyword a handler takes after ``fn`` (for the hint in its error message)."""
    names = cls.__init__.__code__.co_varnames[1:cls.__init__.__code__.co_argcount]
    return next((name for name in names if name != "fn"), "...")


def _has_hooks(cls, prefix):
    """Whether ``cls`` defines a hook ``{prefix}<message type>`` (post hooks are not pre hooks)."""
    return any(name.startswith(prefix) and (prefix != "_pyro_" or not name.startswith("_pyro_post_"))
               for name in dir(cls))


class CondIndepStackFrame(NamedTuple):
    """What a plate contributes to a site: its name, batch dim and sizes."""

    name: str
    dim: int
    size: int
    subsample_size: int
    counter: int = 0  # which pass of a sequential plate (``for i in plate(...)``)

    @property
    def vectorized(self):
        """True for a vectorised plate (one with a batch dim), as in Pyro."""
        return self.dim is not None

    @property
    def full_size(self):
        return self.size

    def _key(self):
        # A size given as a 0-dim tensor (traced code) is the same frame as that int.
        name, dim, size, subsample_size, counter = self
        if isinstance(size, torch.Tensor) or isinstance(subsample_size, torch.Tensor):
            return name, dim, int(size), int(subsample_size), counter
        return self[:]

    def __eq__(self, other):
        return isinstance(other, tuple) and self._key() == (other._key() if hasattr(other, "_key") else other)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self._key())


def new_message(type, name, fn, value, is_observed=False, infer=None, args=()):
    """The message dict every primitive hands to the stack (also the trace node)."""
    return {
        "type": type,
        "name": name,
        "fn": fn,
        "args": args,
        "kwargs": {},
        "value": value,
        "is_observed": is_observed,
        "intervened": False,
        "infer": {} if infer is None else infer,
        "scale": 1.0,
        "mask": None,
        "cond_indep_stack": (),
        "stop": False,
        "done": False,
        "continuation": None,
    }


def apply_stack(msg):
    """Run ``msg`` through the active handlers and return its final value."""
    stack = HANDLER_STACK
    first = 0
    for index in range(len(stack) - 1, -1, -1):
        stack[index].process_message(msg)
        if msg["stop"]:
            first = index
            break
    if msg["value"] is None:
        msg["value"] = _default_value(msg)
    msg["done"] = True
    for index in range(first, len(stack)):
        stack[index].postprocess_message(msg)
    if msg["continuation"] is not None:  # e.g. escape's NonlocalExit, after the handlers below saw the site
        msg["continuation"](msg)
    return msg["value"]


def _default_value(msg):
    if msg["type"] == "sample":
        return draw(msg["fn"], msg["name"])
    if msg["type"] == "param":
        init, constraint = msg["args"]
        return get_param_store().get_param(msg["name"], init, constraint)
    if msg["type"] == "plate":
        size, subsample_size, device = msg["args"]
        if subsample_size == size:
            return all_rows(size, device)
        return torch.randperm(size, device=device)[:subsample_size]
    if callable(msg["fn"]):  # any other effect (Pyro's ``effectful``): the value is the function's result
        return msg["fn"](*msg["args"], **msg["kwargs"])
    raise ValueError(f"site '{msg['name']}' of type {msg['type']!r} has no value")


def draw(fn, name):
    """One draw from ``fn``: reparameterised when the distribution allows it."""
    _check_distribution(name, fn)
    try:
        return fn.rsample() if fn.has_rsample else fn.sample()
    except (ValueError, RuntimeError) as err:
        raise type(err)(f"sample site '{name}': drawing from {fn!r} failed: {err}") from err


def as_tensor(value):
    """Numbers and lists become tensors (on the default device); tensors pass through."""
    if isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(value, dtype=torch.get_default_dtype())


def _check_distribution(name, fn):
    if not isinstance(fn, torch.distributions.Distribution):
        raise TypeError(
            f"sample site '{name}': expected a torch Distribution, got {type(fn).__name__} {fn!r}"
        )


# ---------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------


def sample(name, fn, obs=None, infer=None, obs_mask=None):
    """Draw a value for site ``name`` from distribution ``fn`` (or return ``obs``).

    With a boolean ``obs_mask`` (broadcastable to ``fn.batch_shape``) only the
    entries where it is True are observed; as in Pyro the site is split into
    ``{name}_observed`` and ``{name}_unobserved`` (each masked to its part)
    and ``name`` is a deterministic site holding the merged value.

    Outside any handler an observation records nothing, so (as in Pyro) it
    warns with a ``RuntimeWarning``.

    >>> import causalppl as cp
    >>> with cp.handlers.trace():
    ...     cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=0.5)
    tensor(0.5000)
    """
    if obs is not None:
        _check_distribution(name, fn)  # else when it is drawn from (draw): a handler may answer the site itself
    if obs_mask is not None:
        return _masked_observe(name, fn, obs, obs_mask, infer)
    if obs is not None:
        obs = as_tensor(obs)
    if not HANDLER_STACK:  # fast path: nothing is listening
        if obs is None:
            return draw(fn, name)
        if not (infer and infer.get("_deterministic")):
            # As in Pyro: an observation outside inference changes nothing, which is rarely meant.
            warnings.warn(f"trying to observe a value outside of inference at {name}", RuntimeWarning, stacklevel=2)
        return obs
    msg = new_message("sample", name, fn, obs, is_observed=obs is not None, infer=infer)
    return apply_stack(msg)


def param(name, init=None, constraint=torch.distributions.constraints.real, event_dim=None):
    """The constrained value of learnable parameter ``name`` from the param store.

    The first call creates it from ``init`` (a tensor, a number, or a
    zero-argument callable); later calls ignore ``init``.
    ``param(...).unconstrained()`` is the leaf tensor the optimiser updates.
    With ``event_dim`` given, the dims left of the ``event_dim`` rightmost
    ones are batch dims: inside a subsampled plate the value is indexed by
    the plate's rows (the full parameter stays in the store).

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> b = cp.param("b", torch.tensor(2.0), constraint=cp.constraints.positive)
    >>> round(b.item(), 4), b.unconstrained().requires_grad
    (2.0, True)
    """
    if not HANDLER_STACK:
        return get_param_store().get_param(name, init, constraint)
    msg = new_message("param", name, None, None, args=(init, constraint))
    msg["kwargs"] = {"event_dim": event_dim}
    return apply_stack(msg)


def factor(name, log_factor):
    """Add ``log_factor`` to the joint log density under site ``name``."""
    from causalppl.distributions import Unit

    log_factor = as_tensor(log_factor)
    unit = Unit(log_factor)
    return sample(name, unit, obs=unit.sample())


def _masked_observe(name, fn, obs, obs_mask, infer):
    from causalppl.handlers import mask

    if obs is None:
        raise ValueError(f"sample site '{name}': obs_mask needs obs (the values where the mask is True)")
    obs_mask = torch.as_tensor(obs_mask, dtype=torch.bool)
    with mask(mask=obs_mask):
        observed = sample(f"{name}_observed", fn, obs=obs, infer=infer)
    with mask(mask=~obs_mask):
        unobserved = sample(f"{name}_unobserved", fn, infer=infer)
    event_dim = len(fn.event_shape)
    value = torch.where(obs_mask.reshape(obs_mask.shape + (1,) * event_dim), observed, unobserved)
    return deterministic(name, value, event_dim=event_dim)


def deterministic(name, value, event_dim=None):
    """Record a value computed from other sites, so traces and Predictive report it."""
    from causalppl.distributions import Delta

    value = as_tensor(value)
    if not HANDLER_STACK:
        return value
    msg = new_message(
        "sample",
        name,
        Delta(value, event_dim=value.dim() if event_dim is None else event_dim),
        value,
        is_observed=True,
        infer={"_deterministic": True},
    )
    return apply_stack(msg)


@functools.lru_cache(maxsize=32)
def _all_rows(size, device, default_device):
    # Entering a full plate every step must not allocate arange(size) every step.
    return torch.arange(size, device=device if device is not None else default_device)


def all_rows(size, device=None):
    """``arange(size)``, cached (except under inference mode, whose tensors autograd cannot use)."""
    if torch.is_inference_mode_enabled():
        return torch.arange(size, device=device)
    return _all_rows(size, device, default_device())


_CPU = torch.device("cpu")
_DEVICE_CONTEXT = getattr(torch, "_GLOBAL_DEVICE_CONTEXT", None)  # where set_default_device keeps its device


def default_device():
    """``torch.get_default_device()``, without its walk over the function modes when none is active."""
    if (_DEVICE_CONTEXT is not None and not torch._C._len_torch_function_stack()
            and getattr(_DEVICE_CONTEXT, "device_context", None) is None):
        return _CPU
    return torch.get_default_device()


class PlateSizeError(ValueError, ZeroDivisionError):
    """A plate of size 0 (Pyro raises ``ZeroDivisionError`` there)."""


class plate(Messenger):
    """Conditionally independent rows along one batch dimension.

    Inside ``with plate(name, size) as idx:`` every sample site's distribution
    is broadcast to have ``size`` (or ``subsample_size``) entries along ``dim``,
    and with subsampling the log densities are multiplied by
    ``size / subsample_size`` so the loss stays an unbiased estimate of the
    full-data loss. ``idx`` holds the row indices in use. The arguments are
    Pyro's, in its order: ``plate(name, size=None, subsample_size=None,
    subsample=None, dim=None)``.

    >>> import torch, causalppl as cp
    >>> with cp.plate("rows", 100, subsample_size=10) as idx:
    ...     x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
    >>> tuple(x.shape), tuple(idx.shape)
    ((10,), (10,))

    - ``subsample=`` gives the row indices (a tensor) instead of drawing them.
    - ``plate(name)`` without a size declares the dim only: the sizes come
      from the data, and nothing is broadcast or rescaled (``idx`` is None).
    - Under ``replay`` (e.g. a model run on a guide's trace) the plate takes
      the rows the guide's plate of the same name drew, even without its own
      ``subsample_size``; a different ``subsample_size`` is an error.
    - ``param(..., event_dim=)`` values and ``subsample(data, event_dim)``
      with a full-size dim here are indexed by the rows in use.

    Iterating, ``for i in plate(name, size):``, is the sequential form: each
    step's sites are independent of the others' and rescaled likewise, but
    nothing is broadcast (Pyro's sequential plate).
    """

    def __init__(self, name, size=None, subsample_size=None, subsample=None, dim=None, device=None):
        super().__init__()
        if subsample is not None:
            if isinstance(subsample, int):
                raise TypeError(f"plate '{name}': subsample must be a tensor of row indices, got {subsample!r} "
                                "(give the dim as dim=...)")
            self._given_raw = None if isinstance(subsample, torch.Tensor) else subsample
            subsample = torch.as_tensor(subsample, device=device)
            if subsample_size is not None and int(subsample_size) != len(subsample):
                raise ValueError(f"plate '{name}': subsample_size={subsample_size} but len(subsample)={len(subsample)}")
            size = len(subsample) if size is None else size
            subsample_size = len(subsample)
        if size is None or size == -1:
            if subsample_size is not None:
                raise ValueError(f"plate '{name}': subsample_size={subsample_size} needs a size")
            size = subsample_size = -1  # sizes from the data (PyTorch's "any size")
        elif int(size) < 1:
            error = PlateSizeError if int(size) == 0 else ValueError  # size 0 would divide by zero when scaling
            raise error(f"plate '{name}': size must be a positive integer, got {size!r}")
        size = int(size)
        self._fixed_rows = subsample_size is not None  # given (even as size): a replay may not change it
        subsample_size = size if subsample_size is None else int(subsample_size)
        if size != -1 and not 1 <= subsample_size <= size:
            raise ValueError(
                f"plate '{name}': subsample_size must be between 1 and size={size}, "
                f"got {subsample_size}"
            )
        if dim is not None and dim >= 0:
            raise ValueError(f"plate '{name}': dim must be negative (counted from the right), got {dim}")
        self.name = name
        self.size = size
        self.subsample_size = subsample_size
        self.dim = dim
        self.device = device
        self._given_subsample = subsample
        self.indices = None

    def __enter__(self):
        taken = {h.dim for h in HANDLER_STACK if isinstance(h, plate) and not h._sequential}
        taken |= {h.dim for h in HANDLER_STACK if getattr(h, "_takes_dim", False) and h.dim is not None}
        if self._sequential:
            pass  # a sequential plate broadcasts nothing, so it takes no dim
        elif self.dim is None:
            self.dim = -1
            while self.dim in taken:
                self.dim -= 1
        elif self.dim in taken:
            raise ValueError(f"plate '{self.name}': dim {self.dim} is already used by an enclosing plate "
                             f"(plates collide at dim={self.dim})")
        self.indices = self._rows()
        rows = self.size if self.indices is None else len(self.indices)
        self.frame = CondIndepStackFrame(self.name, self.dim, self.size, rows)
        self._scale = self.size / rows
        super().__enter__()
        # Rows given as a list come back as that list, as in Pyro.
        return self.indices if self._given_raw is None else self._given_raw

    def _rows(self):
        """The row indices for this entry: given, drawn (or replayed), or all of them."""
        if self.size == -1:
            return None
        if self._given_subsample is not None:
            return self._given_subsample
        if self.subsample_size < self.size and self.indices is not None:
            # Drawn once per plate object (as in Pyro): re-entering it keeps its rows,
            # so ``with x_axis: ...`` and ``with x_axis, y_axis: ...`` sites line up.
            return self.indices
        msg = new_message("plate", self.name, None, None, args=(self.size, self.subsample_size, self.device))
        if not HANDLER_STACK:
            return _default_value(msg)
        # Through the stack, so a trace records a drawn subsample and ``replay``
        # hands the guide's rows to the model's plate of the same name.
        indices = apply_stack(msg)
        if len(indices) != self.subsample_size and (self._fixed_rows or self.subsample_size < self.size
                                                     or len(indices) > self.size):
            raise ValueError(
                f"plate '{self.name}': subsample_size is {self.subsample_size} (of size {self.size}), but the "
                f"replayed trace's plate '{self.name}' used {len(indices)} rows; give model and guide the same "
                "subsample_size"
            )
        return indices

    def __iter__(self):
        if self.size == -1:
            raise ValueError(f"plate '{self.name}': a plate without a size cannot be iterated")
        self._sequential = True
        try:
            with self:
                for counter, index in enumerate(self.indices.tolist()):
                    # Each pass is its own frame, so sites of different passes are independent.
                    self.frame = self.frame._replace(counter=counter)
                    yield index
        finally:
            self._sequential = False

    _sequential = False
    _given_raw = None

    def process_message(self, msg):
        if msg["type"] != "sample":
            return
        msg["cond_indep_stack"] = msg["cond_indep_stack"] + (self.frame,)
        if msg["infer"].get("_deterministic"):
            return  # recorded in the plate (as in Pyro), never broadcast or rescaled
        if self._scale != 1.0:
            msg["scale"] = msg["scale"] * self._scale
        if self._sequential or self.size == -1:
            return
        batch_shape = msg["fn"].batch_shape
        dim, size = self.dim, self.frame.subsample_size
        if len(batch_shape) >= -dim and batch_shape[dim] == size:
            return
        shape = [1] * max(0, -dim - len(batch_shape)) + list(batch_shape)
        if shape[dim] != 1:
            raise ValueError(
                f"Shape mismatch inside plate '{self.name}' at sample site '{msg['name']}': "
                f"batch shape {tuple(batch_shape)} has size "
                f"{shape[dim]} at dim {dim}, but plate '{self.name}' has size {size} there"
            )
        shape[dim] = size
        msg["fn"] = msg["fn"].expand(torch.Size(shape))

    def postprocess_message(self, msg):
        if msg["type"] == "param" and msg["kwargs"]["event_dim"] is not None and not self._sequential:
            what = f"invalid shape of cp.param('{msg['name']}') (event_dim={msg['kwargs']['event_dim']})"
            msg["value"] = self.subsample(msg["value"], msg["kwargs"]["event_dim"], what)

    def subsample(self, value, event_dim, what="subsample"):
        """``value`` indexed by this plate's rows along its dim (``event_dim`` dims from the right).

        A dim of size 1 (or a missing one) broadcasts and is left alone; any
        other size must be the plate's full size.
        """
        dim = self.dim - event_dim
        if self.size == -1 or value.dim() < -dim or value.shape[dim] == 1:
            return value
        if value.shape[dim] != self.size:
            raise ValueError(
                f"{what}: size {value.shape[dim]} at dim {dim}, but plate '{self.name}' (dim {self.dim}) "
                f"has size {self.size}"
            )
        if self.frame.subsample_size == self.size:
            return value
        subsampled = value.index_select(dim, self.indices.to(value.device))
        if hasattr(value, "unconstrained"):
            subsampled.unconstrained = value.unconstrained  # still the full leaf the optimiser updates
        return subsampled


def subsample(data, event_dim):
    """``data`` restricted to the rows of the enclosing plates (Pyro's ``pyro.subsample``).

    The ``event_dim`` rightmost dims are not plate dims; each enclosing
    subsampled plate indexes its own dim, counted left of them.

    >>> import torch, causalppl as cp
    >>> data = torch.arange(10.0)
    >>> with cp.plate("rows", 10, subsample=torch.tensor([2, 5])):
    ...     cp.subsample(data, event_dim=0)
    tensor([2., 5.])
    """
    if not isinstance(event_dim, int) or event_dim < 0:
        raise ValueError(f"subsample: event_dim must be a non-negative int, got {event_dim!r}")
    for handler in HANDLER_STACK:
        if isinstance(handler, plate) and not handler._sequential:
            data = handler.subsample(data, event_dim, f"subsample(data, event_dim={event_dim})")
    return data


@contextlib.contextmanager
def plate_stack(prefix, sizes, rightmost_dim=-1):
    """Nested plates ``{prefix}_0`` (rightmost, at ``rightmost_dim``), ``{prefix}_1``, ... for ``sizes``.

    >>> import causalppl as cp
    >>> with cp.plate_stack("batch", (2, 3)):
    ...     tuple(cp.sample("x", cp.dist.Normal(0.0, 1.0)).shape)
    (2, 3)
    """
    with contextlib.ExitStack() as stack:
        for i, size in enumerate(reversed(tuple(sizes))):
            stack.enter_context(plate(f"{prefix}_{i}", size, dim=rightmost_dim - i))
        yield


def intervention(name, value):
    """A site whose value an intervention (do) fixed: recorded, never scored.

    Used by lowered SCMs for intervened nodes; inside plates the value is
    broadcast to the plate's shape.
    """
    from causalppl.distributions import Delta

    value = as_tensor(value)
    if not HANDLER_STACK:
        return value
    msg = new_message("sample", name, Delta(value), value)
    msg["intervened"] = True
    value = apply_stack(msg)
    shape = msg["fn"].batch_shape
    if value.shape != shape:
        msg["value"] = value = value.expand(shape)
    return value


class iarange(plate):
    """Pyro's former name of :class:`plate` (deprecated there too)."""

    def __init__(self, *args, **kwargs):
        warnings.warn("cp.iarange is deprecated; use cp.plate instead", DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)


class irange(plate):
    """Pyro's former name of a sequential :class:`plate` (``for i in irange(...)``); deprecated."""

    def __init__(self, *args, **kwargs):
        warnings.warn("cp.irange is deprecated; use cp.plate instead", DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)


def barrier(data):
    """Pyro's barrier: values here are never lazy, so it returns ``data`` as it is."""
    return data
