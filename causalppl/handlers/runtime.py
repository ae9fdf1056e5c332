"""Pyro's ``poutine.runtime`` names, over causalppl's one handler stack.

``_PYRO_STACK`` *is* :data:`causalppl.runtime.HANDLER_STACK` (outermost
handler first); ``_DIM_ALLOCATOR._stack`` lists the names of the plates that
hold a batch dim right now (index ``i`` is dim ``-1 - i``), derived from the
stack, so it can never get out of step with it.

>>> import causalppl as cp
>>> from causalppl.handlers.runtime import _DIM_ALLOCATOR, get_plates
>>> with cp.plate("rows", 3):
...     _DIM_ALLOCATOR._stack, [frame.name for frame in get_plates()]
(['rows'], ['rows'])
"""

from __future__ import annotations

import functools

from causalppl.handlers import get_mask
from causalppl.handlers.escape import NonlocalExit
from causalppl.runtime import (
    HANDLER_STACK,
    CondIndepStackFrame,
    Messenger,
    apply_stack,
    new_message,
    plate,
)

_PYRO_STACK = HANDLER_STACK


def _active_plates():
    return [h for h in HANDLER_STACK if isinstance(h, plate) and getattr(h, "frame", None) is not None]


def get_plates():
    """The frames (:class:`CondIndepStackFrame`) of the plates around this point, outermost first."""
    return tuple(h.frame for h in _active_plates())


class _DimAllocator:
    """A read-only view of which batch dims the active plates hold."""

    @property
    def _stack(self):
        dims = {h.dim: h.name for h in _active_plates() if not h._sequential and h.dim is not None}
        if not dims:
            return []
        return [dims.get(-1 - i) for i in range(-min(dims))]


_DIM_ALLOCATOR = _DimAllocator()


def am_i_wrapped():
    """Whether any handler is active (so effects are seen by handlers)."""
    return bool(HANDLER_STACK)


def effectful(fn=None, type=None):
    """Make ``fn`` an effect of message type ``type``: called inside handlers, each call is a message
    (``name``, ``args``, ``kwargs``) that the handlers may answer; with no handler active it just runs.

    >>> import torch, causalppl as cp
    >>> add = effectful(lambda x, y: x + y, type="apply")
    >>> add(1, 2)
    3
    >>> with cp.trace() as tr:
    ...     _ = add(torch.tensor(1.0), 2.0, name="total")
    >>> tr.trace.nodes["total"]["type"], tr.trace.nodes["total"]["value"].item()
    ('apply', 3.0)
    """
    if fn is None:
        return functools.partial(effectful, type=type)
    if type is None:
        raise ValueError(f"effectful({fn!r}): give the message type, e.g. effectful(fn, type='apply')")

    @functools.wraps(fn)
    def effect(*args, name=None, infer=None, obs=None, **kwargs):
        if not HANDLER_STACK:
            return fn(*args, **kwargs)
        msg = new_message(type, name, fn, obs, is_observed=obs is not None, infer=infer, args=args)
        msg["kwargs"] = kwargs
        return apply_stack(msg)

    return effect

__all__ = [
    "_DIM_ALLOCATOR", "_PYRO_STACK", "CondIndepStackFrame", "Messenger", "NonlocalExit",
    "am_i_wrapped", "apply_stack", "effectful", "get_mask", "get_plates", "new_message",
]
