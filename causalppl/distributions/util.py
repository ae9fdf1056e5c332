"""Shape and tensor helpers with the names ``pyro.distributions.util`` uses.

>>> import torch
>>> broadcast_shape((2, 1), (3,))
(2, 3)
>>> sum_rightmost(torch.ones(2, 3, 4), 2).shape, sum_leftmost(torch.ones(2, 3, 4), 2).shape
(torch.Size([2]), torch.Size([4]))
>>> scale_and_mask(torch.ones(3), 2.0, torch.tensor([True, False, True]))
tensor([2., 0., 2.])
"""

import copy
import numbers

import torch

from causalppl.runtime import enable_validation, is_validation_enabled, validation_enabled

__all__ = [
    "broadcast_shape", "detach", "enable_validation", "eye_like", "is_identically_one", "is_identically_zero",
    "is_validation_enabled", "scalar_like", "scale_and_mask", "sum_leftmost", "sum_rightmost", "validation_enabled",
]


def broadcast_shape(*shapes, strict=False):
    """The shape that ``shapes`` broadcast to, as a tuple.

    With ``strict=True`` dims may only be added on the left, never grown from
    size 1. Raises ``ValueError`` naming the shapes when they do not broadcast.
    """
    result = []  # right to left
    for shape in shapes:
        for i, size in enumerate(reversed(tuple(shape))):
            if i == len(result):
                result.append(size)
            elif result[i] == size:
                continue
            elif result[i] == 1 and not strict:
                result[i] = size
            elif size == 1 and not strict:
                continue
            else:
                raise ValueError("shape mismatch: objects cannot be broadcast to a single shape: "
                                 + " vs ".join(str(tuple(s)) for s in shapes))
    return tuple(reversed(result))


def _dims_to_sum(value, dim):
    if dim < 0:
        dim += value.dim()
    return max(0, min(dim, value.dim()))


def sum_rightmost(value, dim):
    """Sum out the ``dim`` rightmost dims (all but the ``-dim`` leftmost when negative; all for ``inf``).

    A number is returned unchanged.
    """
    if isinstance(value, numbers.Number):
        return value
    if dim == float("inf"):
        return value.sum()
    n = _dims_to_sum(value, dim)
    return value.sum(tuple(range(value.dim() - n, value.dim()))) if n else value


def sum_leftmost(value, dim):
    """Sum out the ``dim`` leftmost dims (all but the ``-dim`` rightmost when negative; all for ``inf``).

    A number is returned unchanged.
    """
    if isinstance(value, numbers.Number):
        return value
    if dim == float("inf"):
        return value.sum()
    n = _dims_to_sum(value, dim)
    return value.sum(tuple(range(n))) if n else value


def is_identically_zero(x):
    """True only for the number 0 (or a 0-dim integer tensor holding 0); False for float tensors."""
    if isinstance(x, numbers.Number):
        return x == 0
    if isinstance(x, torch.Tensor) and x.dim() == 0 and not x.is_floating_point() and not x.is_complex():
        if not torch._C._get_tracing_state():
            return x.item() == 0
    return False


def is_identically_one(x):
    """True only for the number 1 (or a 0-dim integer tensor holding 1); False for float tensors."""
    if isinstance(x, numbers.Number):
        return x == 1
    if isinstance(x, torch.Tensor) and x.dim() == 0 and not x.is_floating_point() and not x.is_complex():
        if not torch._C._get_tracing_state():
            return x.item() == 1
    return False


def scale_and_mask(tensor, scale=1.0, mask=None):
    """``tensor * scale``, zero where ``mask`` (a bool tensor) is False; skips the work it can."""
    if is_identically_zero(tensor) or (mask is None and is_identically_one(scale)):
        return tensor
    scaled = tensor if is_identically_one(scale) else tensor * scale
    if mask is None:
        return scaled
    if mask is True:
        return scaled
    if mask is False:
        return torch.zeros_like(scaled)
    return torch.where(mask, scaled, scaled.new_zeros(()))


def scalar_like(prototype, fill_value):
    """A 0-dim tensor holding ``fill_value`` with ``prototype``'s dtype and device."""
    return torch.tensor(fill_value, dtype=prototype.dtype, device=prototype.device)


def eye_like(value, m, n=None):
    """An ``m`` by ``n`` (default ``m``) identity with ``value``'s dtype and device."""
    return torch.eye(m, m if n is None else n, dtype=value.dtype, device=value.device)


def detach(obj):
    """A deep copy of ``obj`` in which every tensor is detached (their storage is shared, not copied)."""
    memo = {}

    def visit(x, seen):
        if id(x) in seen:
            return
        seen.add(id(x))
        if isinstance(x, torch.Tensor):
            memo[id(x)] = x.detach()
        elif isinstance(x, dict):
            for k, v in x.items():
                visit(k, seen)
                visit(v, seen)
        elif isinstance(x, (list, tuple, set, frozenset)):
            for v in x:
                visit(v, seen)
        elif hasattr(x, "__dict__") and not isinstance(x, type):
            for v in vars(x).values():
                visit(v, seen)

    visit(obj, set())
    return copy.deepcopy(obj, memo)
