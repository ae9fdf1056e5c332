"""Pyro's ``pyro.ops.jit.trace`` decorator, for scripts that use it.

causalppl runs models eagerly (see :mod:`causalppl.infer.jit`); ``trace(fn)``
returns a callable that computes exactly what ``fn`` does, with
``torch.jit.TracerWarning`` silenced as Pyro's compiled function would.

>>> import torch
>>> @trace
... def double(x):
...     return 2 * x
>>> double(torch.tensor(3.0))
tensor(6.)
"""

import functools

from causalppl.util import ignore_jit_warnings


def trace(fn=None, ignore_warnings=False, jit_options=None):
    """Wrap ``fn`` as Pyro's ``pyro.ops.jit.trace`` does (computed eagerly); usable with or without arguments."""
    if fn is None:
        return lambda f: trace(f, ignore_warnings=ignore_warnings, jit_options=jit_options)

    @functools.wraps(fn)
    def compiled(*args, **kwargs):
        with ignore_jit_warnings():
            return fn(*args, **kwargs)

    return compiled


__all__ = ["trace"]
