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

__all__ = [
    "_DIM_ALLOCATOR", "_PYRO_STACK", "CondIndepStackFrame", "Messenger", "NonlocalExit",
    "apply_stack", "get_mask", "get_plates", "new_message",
]
