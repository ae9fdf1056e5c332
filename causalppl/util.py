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
    """Warn (naming ``msg``) when ``value`` has a NaN; returns ``value``."""
    return _warn_if(value, torch.isnan, "NaN", msg)


def warn_if_inf(value, msg=""):
    """Warn (naming ``msg``) when ``value`` has an infinite entry; returns ``value``."""
    return _warn_if(value, torch.isinf, "+/-Inf", msg)


def _warn_if(value, test, what, msg):
    if isinstance(value, (torch.Tensor, float)) and bool(test(torch.as_tensor(value)).any()):
        warnings.warn(f"Encountered {what}{': ' + msg if msg else ''}", stacklevel=3)
    return value


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
