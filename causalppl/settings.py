"""Global settings, Pyro's ``pyro.settings``: ``get``, ``set``, ``context`` and ``register``.

A setting is a registered alias for a variable somewhere (a module constant
or a class attribute, given by module name and a dotted name), optionally
with a validator run on every ``set``. Built in:

- ``module_local_params`` (False): PyroModules keep their params to
  themselves instead of in the param store (see :mod:`causalppl.nn.module`).
- ``validate_poutine`` (True): check that, in that mode, a PyroModule used
  no param it does not own.
- ``validate_infer`` (True): the inference checks (the ELBOs' shape
  checks); the flag :func:`causalppl.enable_validation` sets.
- ``validate_distributions_torch`` (True): torch's own argument checks
  (``torch.distributions.Distribution._validate_args``).
- ``validate_distributions_pyro`` (True): Pyro's extra distribution checks;
  causalppl's distributions check through torch's flag, so this one is
  kept for Pyro scripts that read or set it.

>>> import causalppl as cp
>>> with cp.settings.context(module_local_params=True):
...     cp.settings.get("module_local_params")
True
>>> cp.settings.get("module_local_params")
False
"""

from __future__ import annotations

import contextlib
import importlib

# alias -> (module name, dotted attribute name, validator or None)
_REGISTRY: dict = {}

# Where the built-in settings without another home live.
_MODULE_LOCAL_PARAMS = False
_VALIDATE_POUTINE = True
_VALIDATE_DISTRIBUTIONS_PYRO = True


def _owner(alias):
    if alias not in _REGISTRY:
        raise KeyError(f"unknown setting {alias!r} (known: {', '.join(sorted(_REGISTRY))})")
    module, deepname, validator = _REGISTRY[alias]
    owner = importlib.import_module(module)
    *path, last = deepname.split(".")
    for name in path:
        owner = getattr(owner, name)
    return owner, last, validator


def get(alias=None):
    """The value of setting ``alias``, or a dict of all of them."""
    if alias is None:
        return {name: get(name) for name in sorted(_REGISTRY)}
    owner, last, _ = _owner(alias)
    return getattr(owner, last)


def set(**kwargs):
    """Change settings: ``set(module_local_params=True)``; each value is checked by its validator first."""
    resolved = {alias: _owner(alias) for alias in kwargs}  # unknown names raise before anything changes
    for alias, value in kwargs.items():
        validator = resolved[alias][2]
        if validator is not None:
            validator(value)
    for alias, value in kwargs.items():
        owner, last, _ = resolved[alias]
        setattr(owner, last, value)


@contextlib.contextmanager
def context(**kwargs):
    """``set(**kwargs)`` for the ``with`` block (or a decorated function), then the previous values."""
    old = {alias: get(alias) for alias in kwargs}
    try:
        set(**kwargs)
        yield
    finally:
        set(**old)


def register(alias, modulename, deepname, validator=None):
    """Register setting ``alias`` for variable ``deepname`` (``"NAME"`` or ``"Class.attr"``) of ``modulename``.

    Use it as a statement, or as a decorator of the validator (a function
    that raises on a bad value); returns the validator.

    >>> import causalppl as cp
    >>> @cp.settings.register("doc_example_rate", "causalppl.settings", "_MODULE_LOCAL_PARAMS")
    ... def _check(value):
    ...     assert isinstance(value, bool)
    >>> cp.settings.get("doc_example_rate")
    False
    >>> del _REGISTRY["doc_example_rate"]
    """
    if not (isinstance(alias, str) and alias.isidentifier()):
        raise ValueError(f"settings.register: alias must be a Python identifier, got {alias!r}")
    if not isinstance(modulename, str) or not isinstance(deepname, str):
        raise TypeError("settings.register: modulename and deepname must be strings")
    _REGISTRY[alias] = (modulename, deepname, validator)

    def decorate(fn):
        _REGISTRY[alias] = (modulename, deepname, fn)
        return fn

    return decorate if validator is None else validator


def _is_bool(value):
    if not isinstance(value, bool):
        raise TypeError(f"this setting must be True or False, got {value!r}")


class _TorchValidation:
    """Torch's distribution-argument checks, as a settable attribute."""

    @property
    def flag(self):
        import torch

        return torch.distributions.Distribution._validate_args

    @flag.setter
    def flag(self, value):
        import torch

        torch.distributions.Distribution.set_default_validate_args(value)


class _InferValidation:
    """causalppl's own checks (:func:`causalppl.enable_validation`), as a settable attribute."""

    @property
    def flag(self):
        from causalppl import runtime

        return runtime._VALIDATION[0]

    @flag.setter
    def flag(self, value):
        from causalppl import runtime

        runtime._VALIDATION[0] = value


torch_validation = _TorchValidation()
infer_validation = _InferValidation()

register("module_local_params", __name__, "_MODULE_LOCAL_PARAMS", _is_bool)
register("validate_poutine", __name__, "_VALIDATE_POUTINE", _is_bool)
register("validate_distributions_pyro", __name__, "_VALIDATE_DISTRIBUTIONS_PYRO", _is_bool)
register("validate_distributions_torch", __name__, "torch_validation.flag", _is_bool)
register("validate_infer", __name__, "infer_validation.flag", _is_bool)

__all__ = ["context", "get", "register", "set"]
