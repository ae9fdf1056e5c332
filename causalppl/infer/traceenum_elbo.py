"""Pyro's module path for :class:`~causalppl.infer.traceenum.TraceEnum_ELBO` (``causalppl.infer.traceenum_elbo``).

>>> from causalppl.infer.traceenum_elbo import TraceEnum_ELBO
>>> TraceEnum_ELBO(max_plate_nesting=1).max_plate_nesting
1
"""

from causalppl.infer.traceenum import JitTraceEnum_ELBO, TraceEnum_ELBO

__all__ = ["JitTraceEnum_ELBO", "TraceEnum_ELBO"]
