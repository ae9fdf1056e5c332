"""Enumerating discrete choices one trace at a time (Pyro's ``pyro.infer.enum``).

:func:`iter_discrete_traces` runs a function once per joint value of its
sample sites marked ``infer={"enumerate": "sequential"}``, yielding one
complete trace per assignment (each site records ``infer["_enum_total"]``,
its number of values). :func:`config_enumerate` is re-exported from
:mod:`causalppl.enumeration`.

>>> import causalppl as cp
>>> @cp.infer.config_enumerate(default="sequential")
... def model():
...     cp.sample("a", cp.dist.Bernoulli(0.5))
...     cp.sample("b", cp.dist.Categorical(cp.dist.torch.ones(3) / 3))
>>> len(list(iter_discrete_traces("flat", model)))
6
"""

from __future__ import annotations

from queue import LifoQueue

from causalppl.enumeration import config_enumerate, enumerate_site
from causalppl.handlers import queue as queue_handler
from causalppl.handlers import trace
from causalppl.trace import Trace


def iter_discrete_escape(trace, msg):
    """Stop at a sequentially enumerated latent sample site that ``trace`` does not fix yet."""
    return (msg["type"] == "sample" and not msg["is_observed"]
            and msg["infer"].get("enumerate") == "sequential" and msg["name"] not in trace)


def iter_discrete_extend(trace, site, **ignored):
    """One extension of ``trace`` per value of ``site``'s support, recording the number of values."""
    values = enumerate_site(site)
    total = values.shape[0]
    for value in values:
        extended = trace.copy()
        extended.add_site({**site, "infer": {**site["infer"], "_enum_total": total}, "value": value})
        yield extended


def iter_discrete_traces(graph_type, fn, *args, **kwargs):
    """Yield one trace of ``fn(*args, **kwargs)`` per joint value of its sequentially enumerated sites.

    Sites that are not marked ``"sequential"`` are sampled (or enumerated in
    parallel by an enclosing handler) as usual; ``graph_type`` is that of
    :class:`~causalppl.handlers.trace` (``"flat"`` or ``"dense"``).
    """
    pending = LifoQueue()
    pending.put(Trace())
    traced = trace(queue_handler(fn, queue=pending, escape_fn=iter_discrete_escape,
                                 extend_fn=iter_discrete_extend), graph_type=graph_type)
    while not pending.empty():
        yield traced.get_trace(*args, **kwargs)


__all__ = ["config_enumerate", "iter_discrete_escape", "iter_discrete_extend", "iter_discrete_traces"]
