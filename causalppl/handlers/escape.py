"""Leaving a model run early at a chosen site, and enumerating traces through a queue.

``escape(fn, escape_fn)`` stops the run at the first site where
``escape_fn(msg)`` holds, by raising :class:`NonlocalExit` with that site
(handlers inside the escape still see the site first). ``queue`` builds on
it: each call takes a partial trace from a queue, replays it, and at the
first site the trace does not fix puts back one extension per value of
that site, until some run completes.

>>> import queue as stdlib_queue, torch, causalppl as cp
>>> def model():
...     a = cp.sample("a", cp.dist.Bernoulli(torch.tensor(0.5)))
...     b = cp.sample("b", cp.dist.Bernoulli(torch.tensor(0.5)))
...     return int(a), int(b)
>>> todo = stdlib_queue.Queue()
>>> todo.put(cp.handlers.Trace())
>>> run = cp.handlers.queue(model, queue=todo)
>>> outcomes = set()
>>> while not todo.empty():
...     outcomes.add(run())
>>> sorted(outcomes)
[(0, 0), (0, 1), (1, 0), (1, 1)]
"""

from __future__ import annotations

import functools

from causalppl.handlers.util import discrete_escape, enum_extend
from causalppl.runtime import HANDLER_STACK, Messenger


class NonlocalExit(Exception):
    """Raised by :class:`escape` at the site it stops at (``.site`` is that site's message)."""

    def __init__(self, site, *args):
        super().__init__(f"escaped at site '{site['name']}'", *args)
        self.site = site

    def reset_stack(self):
        """Reset the handlers still on the stack, so a retried run is not recorded twice.

        From the innermost outwards, each handler with a ``_reset`` method
        (a trace starts afresh, keeping ``_INPUT``) is reset, up to and
        including the first ``block`` that hides this site: the handlers
        outside it never saw the site. (Each handler inside the escape has
        already left the stack as the exception passed its ``with``.)
        """
        from causalppl.handlers import block  # the package imports this module first

        for handler in reversed(HANDLER_STACK):
            reset = getattr(handler, "_reset", None)
            if reset is not None:
                reset()
            if isinstance(handler, block) and handler.hides(self.site):
                break


class QueueEmptyError(ValueError, AssertionError):
    """``queue`` found its queue empty (Pyro asserts here)."""


class escape(Messenger):
    """Stop the run at the first site where ``escape_fn(msg)`` is true, raising :class:`NonlocalExit`."""

    def __init__(self, fn=None, escape_fn=None):
        super().__init__(fn)
        if not callable(escape_fn):
            raise TypeError(f"escape needs a callable escape_fn(msg) -> bool, got {escape_fn!r}")
        self.escape_fn = escape_fn

    def process_message(self, msg):
        if self.escape_fn(msg):
            msg["stop"] = True
            msg["done"] = True
            msg["continuation"] = _exit_at


def _exit_at(msg):
    raise NonlocalExit(msg)


EscapeMessenger = escape


def queue(fn=None, queue=None, max_tries=None, extend_fn=None, escape_fn=None, num_samples=None):
    """Run ``fn`` to completion from partial traces taken from ``queue`` (a ``queue.Queue``).

    Each try replays the next partial trace; at the first site it does not
    fix (``escape_fn``, by default the next discrete latent) the trace's
    extensions (``extend_fn``, by default one per value of the site) go back
    on the queue and the next try starts. Gives up with ``ValueError``
    after ``max_tries`` (default 1e6).
    """
    if queue is None:
        raise TypeError("queue needs a queue of partial traces, e.g. queue.Queue() holding cp.handlers.Trace()")
    max_tries = int(1e6) if max_tries is None else max_tries
    extend_fn = enum_extend if extend_fn is None else extend_fn
    escape_fn = discrete_escape if escape_fn is None else escape_fn

    def wrap(wrapped):
        @functools.wraps(wrapped)
        def run(*args, **kwargs):
            from causalppl.handlers import replay, trace  # the package imports this module first

            for _ in range(max_tries):
                if queue.empty():
                    raise QueueEmptyError("queue: no partial traces left to run (get() would block forever)")
                partial = queue.get()
                recorded = trace(escape(replay(wrapped, trace=partial), functools.partial(escape_fn, partial)))
                try:
                    return recorded(*args, **kwargs)
                except NonlocalExit as exit_:
                    exit_.reset_stack()
                    for extension in extend_fn(recorded.trace.copy(), exit_.site, num_samples=num_samples):
                        queue.put(extension)
            raise ValueError(f"queue: max tries ({max_tries}) exceeded")

        return run

    return wrap if fn is None else wrap(fn)
