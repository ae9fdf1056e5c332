"""Helpers for building large graphs fast.

Reading a 100,000-node file allocates millions of small objects (tokens,
dicts, closures) that all stay alive, so Python's cyclic garbage collector
runs again and again over a heap that only grows, and takes about half of the
time. :func:`paused_gc` turns it off for the duration of one build.

>>> import gc
>>> with paused_gc():
...     gc.isenabled()
False
>>> gc.isenabled()
True
"""

import contextlib
import gc


@contextlib.contextmanager
def paused_gc():
    """Inside: no cyclic garbage collection (reference counting still frees memory); restored after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
