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


def check_model_guide_match(model_trace, guide_trace, max_plate_nesting=float("inf")):
    """Check that a guide's trace fits its model's: warn about latent sites only one side has, and raise
    ``ValueError`` naming the site where both have it with different event dims or value shapes.

    >>> import causalppl as cp
    >>> model = cp.handlers.trace(lambda: cp.sample("z", cp.dist.Normal(0.0, 1.0))).get_trace()
    >>> guide = cp.handlers.trace(lambda: cp.sample("z", cp.dist.Normal(1.0, 1.0))).get_trace()
    >>> check_model_guide_match(model, guide)
    """
    def latent(tr):
        return {name for name, site in tr.nodes.items()
                if site["type"] == "sample" and not site["is_observed"] and type(site["fn"]).__name__ != "_Subsample"}

    guide_vars = latent(guide_trace)
    aux_vars = {name for name in guide_vars if guide_trace.nodes[name]["infer"].get("is_auxiliary")}
    model_vars = latent(model_trace)
    enum_vars = {name for name in model_vars - guide_vars
                 if model_trace.nodes[name]["infer"].get("_enumerate_dim") is not None}
    if aux_vars & model_vars:
        warnings.warn(f"Found auxiliary vars in the model: {aux_vars & model_vars}", stacklevel=2)
    if not guide_vars <= model_vars | aux_vars:
        warnings.warn("Found non-auxiliary vars in guide but not model, consider marking these "
                      f"infer={{'is_auxiliary': True}}:\n{guide_vars - aux_vars - model_vars}", stacklevel=2)
    bad = model_vars - guide_vars - enum_vars
    if bad:
        warnings.warn(f"Found vars in model but not guide: {bad}", stacklevel=2)
    for name in model_vars & guide_vars:
        model_fn, guide_fn = model_trace.nodes[name]["fn"], guide_trace.nodes[name]["fn"]
        model_dim, guide_dim = len(model_fn.event_shape), len(guide_fn.event_shape)
        if model_dim != guide_dim:
            raise ValueError(f"Model and guide event_dims disagree at site '{name}': {model_dim} vs {guide_dim}")
        model_shape = model_trace.nodes[name]["value"].shape
        guide_shape = guide_trace.nodes[name]["value"].shape
        if model_shape != guide_shape and max_plate_nesting == float("inf"):
            raise ValueError(f"Model and guide shapes disagree at site '{name}': {model_shape} vs {guide_shape}")
