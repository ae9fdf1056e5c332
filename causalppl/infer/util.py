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


def get_plate_stacks(trace):
    """Site name -> the vectorised plate frames of each sample site (Pyro's ``get_plate_stacks``)."""
    return {name: [frame for frame in site["cond_indep_stack"] if frame.vectorized]
            for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["infer"].get("_subsample")}


class MultiFrameTensor(dict):
    """Sums of tensors that live in different plates, kept per set of plates (Pyro's ``MultiFrameTensor``).

    ``add((cond_indep_stack, tensor), ...)`` accumulates; ``sum_to(frames)``
    sums every entry down to the plates in ``frames`` (the dims of other
    plates are summed out) and adds them up.

    >>> import torch
    >>> from causalppl.runtime import CondIndepStackFrame as Frame
    >>> rows = Frame("rows", -1, 3, 3)
    >>> costs = MultiFrameTensor(((rows,), torch.ones(3)), ((), torch.tensor(2.0)))
    >>> costs.sum_to([rows]), costs.sum_to([])
    (tensor([3., 3., 3.]), tensor(5.))
    """

    def __init__(self, *items):
        super().__init__()
        self.add(*items)

    def add(self, *items):
        for stack, value in items:
            frames = frozenset(frame for frame in stack if frame.vectorized)
            self[frames] = self[frames] + value if frames in self else value

    def sum_to(self, target_frames):
        target = set(target_frames)
        total = None
        for frames, value in self.items():
            for frame in frames:
                if frame not in target and value.dim() >= -frame.dim and value.shape[frame.dim] != 1:
                    value = value.sum(frame.dim, keepdim=True)
            while value.dim() and value.shape[0] == 1:
                value = value.squeeze(0)
            total = value if total is None else total + value
        return 0.0 if total is None else total
