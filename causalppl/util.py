"""Pyro's ``pyro.util`` helpers that scripts import directly.

>>> import torch
>>> with optional(torch.no_grad(), False):
...     torch.ones(1, requires_grad=True).mul(2).requires_grad
True
"""

import contextlib
import warnings

import torch

from causalppl.infer.elbo import check_site_shape  # noqa: F401
from causalppl.params import set_rng_seed  # noqa: F401  (re-exported: ``from causalppl.util import set_rng_seed``)


def optional(context_manager, condition):
    """``context_manager`` when ``condition`` holds, otherwise a context that does nothing."""
    return context_manager if condition else contextlib.nullcontext()


def warn_if_nan(value, msg=""):
    """Warn (naming ``msg``) when ``value``, or later its gradient, has a NaN; returns ``value``.

    Works on numbers and tensors; for a tensor that requires grad, a hook
    checks the gradient when it is computed ("backward " + ``msg``).

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = warn_if_nan(float("nan"), "loss")
    >>> str(caught[0].message)
    'Encountered NaN: loss'
    """
    _watch_grad(value, lambda grad: warn_if_nan(grad, "backward " + msg))
    if _has(value, torch.isnan):
        _warn("NaN", msg)
    return value


def warn_if_inf(value, msg="", allow_posinf=False, allow_neginf=False):
    """Warn (naming ``msg``) when ``value``, or later its gradient, has an infinite entry; returns ``value``.

    ``allow_posinf`` / ``allow_neginf`` let ``+inf`` / ``-inf`` pass.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = warn_if_inf(float("inf"), "bound", allow_posinf=True)
    >>> len(caught)
    0
    """
    _watch_grad(value, lambda grad: warn_if_inf(grad, "backward " + msg, allow_posinf, allow_neginf))
    if not allow_posinf and _has(value, lambda t: t == float("inf")):
        _warn("+Inf", msg)
    if not allow_neginf and _has(value, lambda t: t == float("-inf")):
        _warn("-Inf", msg)
    return value


def _watch_grad(value, check):
    if isinstance(value, torch.Tensor) and value.requires_grad:
        def hook(grad):
            check(grad)  # returns None: the gradient is left as it is

        value.register_hook(hook)


def _has(value, test):
    if not isinstance(value, (torch.Tensor, int, float)) or isinstance(value, bool):
        return False
    return bool(test(torch.as_tensor(value).detach()).any())


def _warn(what, msg):
    warnings.warn(f"Encountered {what}{': ' + msg if msg else '.'}", UserWarning, stacklevel=4)


@contextlib.contextmanager
def ignore_jit_warnings(filter=None):
    """Silence ``torch.jit.TracerWarning`` (and the ``(message, category)`` pairs in ``filter``) for a block.

    Usable as ``with ignore_jit_warnings():`` or as a decorator ``@ignore_jit_warnings()``.

    >>> import warnings
    >>> with ignore_jit_warnings([("ignore me", UserWarning)]):
    ...     warnings.warn("ignore me")
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        for entry in filter or ():
            message, category = (entry, Warning) if isinstance(entry, str) else entry
            warnings.filterwarnings("ignore", message=message, category=category)
        yield
