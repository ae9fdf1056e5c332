"""Global settings, Pyro's ``pyro.settings``: ``get``, ``set`` and ``context``.

Known settings:

- ``module_local_params`` (False): PyroModules keep their params to
  themselves instead of in the param store (see :mod:`causalppl.nn.module`).
- ``validate_poutine`` (True): check that, in that mode, a PyroModule used
  no param it does not own.

>>> import causalppl as cp
>>> with cp.settings.context(module_local_params=True):
...     cp.settings.get("module_local_params")
True
>>> cp.settings.get("module_local_params")
False
"""

from __future__ import annotations

import contextlib

_SETTINGS = {"module_local_params": False, "validate_poutine": True}


def get(alias=None):
    """The value of setting ``alias``, or a dict of all of them."""
    if alias is None:
        return dict(_SETTINGS)
    if alias not in _SETTINGS:
        raise KeyError(f"unknown setting {alias!r} (known: {', '.join(sorted(_SETTINGS))})")
    return _SETTINGS[alias]


def set(**kwargs):
    """Change settings: ``set(module_local_params=True)``."""
    for alias, value in kwargs.items():
        get(alias)  # raises for unknown names
        if not isinstance(value, bool):
            raise TypeError(f"setting {alias!r} must be True or False, got {value!r}")
    _SETTINGS.update(kwargs)


@contextlib.contextmanager
def context(**kwargs):
    """``set(**kwargs)`` for the ``with`` block, then the previous values."""
    old = {alias: get(alias) for alias in kwargs}
    set(**kwargs)
    try:
        yield
    finally:
        _SETTINGS.update(old)


__all__ = ["context", "get", "set"]
