"""``Vindex``: advanced indexing that broadcasts, for models with batch and enumeration dims (Pyro's).

``x[i, :, j]`` with integer ``i, j`` generalises to tensors ``i, j`` that
carry batch or enumeration dims as ``Vindex(x)[i, :, j]``: the index tensors
broadcast together into the result's leading (batch) shape, and each
``:`` keeps its dim on the right (the event shape). A leading ``...`` says
``x`` has batch dims of its own, which broadcast with the indices'.

>>> import torch
>>> x = torch.arange(24).reshape(2, 3, 4)
>>> i = torch.tensor([[0], [1]])          # batch shape (2, 1), e.g. an enumerated value
>>> j = torch.tensor([0, 3, 2])           # batch shape (3,)
>>> Vindex(x)[i, :, j].shape              # batch (2, 3), event (3,)
torch.Size([2, 3, 3])
>>> bool((Vindex(x)[i, :, j][1, 2] == x[1, :, 2]).all())
True
"""

from __future__ import annotations

import torch


def _is_batched(arg):
    return isinstance(arg, torch.Tensor) and arg.dim() > 0


def vindex(tensor, args):
    """``tensor[args]`` with broadcasting semantics (see the module docstring and :class:`Vindex`).

    Each arg is ``slice(None)``, an int, or an integer tensor of batch shape;
    ``...`` may come first only (then ``tensor`` has batch dims left of the
    ``len(args) - 1`` indexed ones).
    """
    if not isinstance(args, tuple):
        args = (args,)
    if not args:
        return tensor
    if args[0] is Ellipsis:
        args = args[1:]
        if not args:
            return tensor
        event_dim = len(args)
        if event_dim > tensor.dim():
            raise IndexError(f"Vindex: {event_dim} indices for a tensor of {tensor.dim()} dims")
        args = (slice(None),) * (tensor.dim() - event_dim) + args
    else:
        if len(args) > tensor.dim():
            raise IndexError(f"Vindex: {len(args)} indices for a tensor of {tensor.dim()} dims")
        args = args + (slice(None),) * (tensor.dim() - len(args))
        event_dim = len(args)
    if any(arg is Ellipsis for arg in args):
        raise NotImplementedError("Vindex: `...` may only come first")
    batch_dims = tensor.dim() - event_dim
    if not any(_is_batched(arg) for arg in args[batch_dims:]) and not (
            batch_dims and any(_is_batched(arg) for arg in args[:batch_dims])):
        return tensor[args]  # nothing to broadcast: ordinary indexing
    # The kept (sliced) event dims go to the right, in order; the tensor indices
    # broadcast left of them, with the batch dims of ``tensor`` itself.
    kept = sum(isinstance(arg, slice) for arg in args[batch_dims:])
    converted, position = [], 0
    for axis in reversed(range(tensor.dim())):
        arg = args[axis]
        if isinstance(arg, slice):
            if arg != slice(None):
                raise NotImplementedError("Vindex: only full slices `:` are supported")
            index = torch.arange(tensor.size(axis), device=tensor.device)
            if axis >= batch_dims:
                index = index.reshape((-1,) + (1,) * position)
                position += 1
            else:  # a batch dim of the tensor: it lines up with the indices' batch dims
                index = index.reshape((-1,) + (1,) * (tensor.dim() - 1 - axis - (event_dim - kept)))
        elif isinstance(arg, torch.Tensor):
            index = arg.reshape(arg.shape + (1,) * kept)
        else:
            index = arg
        converted.append(index)
    return tensor[tuple(reversed(converted))]


class Vindex:
    """``Vindex(x)[args]`` is :func:`vindex` ``(x, args)``.

    >>> import torch
    >>> probs = torch.rand(3, 4, 5)
    >>> z = torch.tensor([[0], [2]])      # enumerated: shape (2, 1)
    >>> w = torch.tensor([1, 3])          # in a plate: shape (2,)
    >>> Vindex(probs)[z, w, :].shape      # one row of probs per (z, w), event dim 5 kept
    torch.Size([2, 2, 5])
    """

    def __init__(self, tensor):
        self._tensor = tensor

    def __getitem__(self, args):
        return vindex(self._tensor, args)


__all__ = ["Vindex", "vindex"]
