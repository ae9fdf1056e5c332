"""Indexing that broadcasts: pick mixture components with batched (or enumerated) indices.

``Vindex(x)[..., i, :, j]`` reads dims of ``x`` with index tensors ``i`` and
``j`` that may carry batch and enumeration dims. The ``...`` stands for
``x``'s own batch dims, which broadcast with the shapes of ``i`` and ``j``;
every ``:`` keeps its dim, to the right. Without tensor indices it is plain
indexing.

>>> import torch
>>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])     # probs[state] is a row
>>> state = torch.tensor([[0], [1]])                    # e.g. enumerated: shape (2, 1)
>>> Vindex(probs)[state, :].shape
torch.Size([2, 1, 2])
>>> Vindex(probs)[state, 1].squeeze(-1).tolist()
[0.10000000149011612, 0.800000011920929]
"""

from __future__ import annotations

import torch


def _flatten(args, out):
    if isinstance(args, tuple):
        for arg in args:
            _flatten(arg, out)
    elif not (args is Ellipsis and out and out[-1] is Ellipsis):
        out.append(args)


def index(tensor, args):
    """``tensor[args]`` with nested tuples flattened and repeated ``...`` merged.

    >>> import torch
    >>> index(torch.zeros(2, 3), (Ellipsis, (Ellipsis, None))).shape
    torch.Size([2, 3, 1])
    """
    if not isinstance(args, tuple):
        return tensor[args]
    flat = []
    _flatten(args, flat)
    return tensor[tuple(flat)]


class Index:
    """``Index(x)[args]`` is :func:`index` ``(x, args)``."""

    def __init__(self, tensor):
        self._tensor = tensor

    def __getitem__(self, args):
        return index(self._tensor, args)


def vindex(tensor, args):
    """Advanced indexing in which tensor indices and ``tensor``'s batch dims broadcast together.

    ``args`` is a tuple of ``...`` (only first: ``tensor`` has batch dims on
    the left), ``:`` (keep the dim), ints and integer tensors, one per event
    dim of ``tensor`` (without ``...``, missing trailing ones are ``:``).
    The result has shape ``broadcast(batch dims, index shapes) + (sizes of
    the kept dims)``.
    """
    args = args if isinstance(args, tuple) else (args,)
    if not any(isinstance(arg, torch.Tensor) and arg.dim() for arg in args):
        return tensor[args]
    batched = args[0] is Ellipsis
    event_args = args[1:] if batched else args
    for arg in event_args:
        if arg is Ellipsis:
            raise ValueError("Vindex: '...' may only come first (it stands for the tensor's batch dims)")
        if isinstance(arg, slice) and arg != slice(None):
            raise ValueError(f"Vindex: only full slices ':' are supported, got {arg}")
        if isinstance(arg, torch.Tensor) and (arg.dtype.is_floating_point or arg.dtype == torch.bool):
            raise ValueError(f"Vindex: index tensors must hold integers, got dtype {arg.dtype}")
    if len(event_args) > tensor.dim():
        raise ValueError(f"Vindex: {len(event_args)} indices for a tensor of {tensor.dim()} dims")
    if not batched:  # as in plain indexing, dims left unindexed on the right are kept whole
        event_args = tuple(event_args) + (slice(None),) * (tensor.dim() - len(event_args))
    batch_dims = tensor.dim() - len(event_args)
    index_shapes = [arg.shape for arg in event_args if isinstance(arg, torch.Tensor)]
    batch_shape = torch.broadcast_shapes(tensor.shape[:batch_dims], *index_shapes)
    kept = [k for k, arg in enumerate(event_args) if isinstance(arg, slice)]
    nb, nk = len(batch_shape), len(kept)
    device = tensor.device

    def shaped(values, at):  # put ``values``'s dims so that they end at position ``at`` of the result
        return values.reshape((1,) * (at - values.dim()) + tuple(values.shape) + (1,) * (nb + nk - at))

    indices = []
    for k in range(batch_dims):
        size = tensor.shape[k]
        positions = torch.arange(size, device=device) if size > 1 else torch.zeros(1, dtype=torch.long, device=device)
        indices.append(shaped(positions, nb - batch_dims + k + 1))
    for k, arg in enumerate(event_args):
        if isinstance(arg, slice):
            indices.append(shaped(torch.arange(tensor.shape[batch_dims + k], device=device), nb + kept.index(k) + 1))
        else:
            indices.append(shaped(torch.as_tensor(arg, dtype=torch.long, device=device), nb))
    return tensor[tuple(indices)]


class Vindex:
    """``Vindex(x)[args]`` is :func:`vindex` ``(x, args)``."""

    def __init__(self, tensor):
        self._tensor = tensor

    def __getitem__(self, args):
        return vindex(self._tensor, args)
