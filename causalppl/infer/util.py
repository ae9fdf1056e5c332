"""Small helpers that inference code and Pyro-style scripts share.

>>> import torch
>>> torch_item(torch.tensor(2.5))
2.5
>>> torch_item(1.0)
1.0
"""

import torch

from causalppl.runtime import is_validation_enabled  # noqa: F401  (Pyro keeps it here too)


def torch_item(x):
    """A Python number from a one-element tensor, or ``x`` itself if it is a number already."""
    return x.item() if isinstance(x, torch.Tensor) else x


def torch_backward(x, retain_graph=None):
    """``x.backward()`` when ``x`` carries a gradient; a no-op for numbers and constants."""
    if isinstance(x, torch.Tensor) and x.requires_grad:
        x.backward(retain_graph=retain_graph)


def zero_grads(tensors):
    """Zero the ``.grad`` of each tensor that has one, in place."""
    for tensor in tensors:
        if tensor.grad is not None:
            tensor.grad.zero_()


def check_fully_reparametrized(guide_site):
    """Raise if a guide site cannot be drawn with ``rsample`` (for losses that need pathwise gradients)."""
    if not guide_site["fn"].has_rsample:
        raise NotImplementedError(
            f"guide site '{guide_site['name']}': {type(guide_site['fn']).__name__} has no rsample; "
            "this loss needs every guide site reparameterised"
        )
