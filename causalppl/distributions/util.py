"""Shape helpers (Pyro's ``pyro.distributions.util``)."""

import torch


def broadcast_shape(*shapes, strict=False):
    """The shape all ``shapes`` broadcast to; with ``strict``, only equal sizes or 1 may meet.

    >>> broadcast_shape((2, 1), (3,))
    (2, 3)
    """
    if strict:
        reversed_shape = []
        for shape in shapes:
            for i, size in enumerate(reversed(shape)):
                if i >= len(reversed_shape):
                    reversed_shape.append(size)
                elif reversed_shape[i] == 1:
                    reversed_shape[i] = size
                elif size not in (1, reversed_shape[i]):
                    raise ValueError(f"shape mismatch: objects cannot be broadcast to a single shape: "
                                     f"{' vs '.join(map(str, shapes))}")
        return tuple(reversed(reversed_shape))
    try:
        return tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError as err:
        raise ValueError(f"shape mismatch: objects cannot be broadcast to a single shape: "
                         f"{' vs '.join(map(str, shapes))}") from err


def sum_rightmost(value, dim):
    """Sum out the ``dim`` rightmost dims of ``value`` (all but the leftmost ``-dim`` if ``dim < 0``)."""
    if isinstance(value, (int, float)):
        return value
    if dim < 0:
        dim += value.dim()
    if dim == 0:
        return value
    return value.reshape(value.shape[:value.dim() - dim] + (-1,)).sum(-1)


def is_identically_zero(value):
    return isinstance(value, (int, float)) and value == 0


def is_identically_one(value):
    return isinstance(value, (int, float)) and value == 1


__all__ = ["broadcast_shape", "is_identically_one", "is_identically_zero", "sum_rightmost"]
