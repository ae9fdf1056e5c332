"""Packed tensors: a tensor whose dims are named by the letters of its ``_pyro_dims`` string.

A batched tensor (dims counted from the right, size-1 dims broadcast) is
*packed* by dropping its size-1 dims and naming each remaining dim with a
symbol (``dim_to_symbol``, e.g. ``{-1: "a", -2: "b"}``); ``unpack`` puts
them back. Packed tensors broadcast by name, whatever their dim order.
Contractions of enumerated factors use this form.

>>> import torch
>>> x = torch.randn(3, 1, 2)
>>> p = pack(x, {-1: "a", -2: "b", -3: "c"})
>>> p.shape, p._pyro_dims
(torch.Size([3, 2]), 'ca')
>>> torch.equal(unpack(p, {"a": -1, "b": -2, "c": -3}), x)
True
"""

from __future__ import annotations

import torch

__all__ = ["broadcast_all", "exp", "mul", "neg", "pack", "unpack"]


def pack(value, dim_to_symbol):
    """Drop ``value``'s size-1 dims and name the others by ``dim_to_symbol`` (negative dim -> symbol).

    Numbers pass through unchanged. A dim of size > 1 with no symbol is a
    ``ValueError``.
    """
    if not isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "_pyro_dims"):
        raise ValueError("pack: the tensor is already packed")
    shift = value.dim()
    try:
        dims = "".join(dim_to_symbol[k - shift] for k, size in enumerate(value.shape) if size > 1)
    except KeyError as err:
        raise ValueError(f"pack: dim {err.args[0]} of a tensor of shape {tuple(value.shape)} has size > 1 "
                         f"but no symbol in dim_to_symbol (known dims: {sorted(dim_to_symbol)})") from None
    packed = value.reshape(tuple(size for size in value.shape if size > 1))
    packed._pyro_dims = dims
    return packed


def unpack(value, symbol_to_dim):
    """The batched tensor of a packed ``value``: each named dim at its ``symbol_to_dim`` position, size-1
    dims elsewhere. Numbers pass through unchanged."""
    if not isinstance(value, torch.Tensor):
        return value
    dims = value._pyro_dims
    if value.dim() != len(dims):
        raise ValueError(f"unpack: a packed tensor of shape {tuple(value.shape)} names {len(dims)} dims ({dims!r})")
    if not dims:
        return value
    positions = [symbol_to_dim[symbol] for symbol in dims]
    order = sorted(range(len(dims)), key=lambda k: positions[k])  # leftmost (most negative) dim first
    value = value.permute(*order)
    shape = [1] * -min(positions)
    for k in order:
        shape[positions[k]] = value.shape[order.index(k)]
    return value.reshape(shape)


def broadcast_all(*values, dims=None):
    """Expand packed tensors to one shape over the union of their dims (in ``dims`` order, by default
    sorted symbols); each result names its dims in that order."""
    sizes = {}
    for value in values:
        for symbol, size in zip(value._pyro_dims, value.shape):
            if sizes.setdefault(symbol, size) != size:
                raise ValueError(f"broadcast_all: dim {symbol!r} has sizes {sizes[symbol]} and {size}")
    if dims is None:
        dims = "".join(sorted(sizes))
    elif set(dims) != set(sizes):
        raise ValueError(f"broadcast_all: dims {dims!r} must name exactly the dims {''.join(sorted(sizes))!r}")
    shape = tuple(sizes[symbol] for symbol in dims)
    result = []
    for value in values:
        old = value._pyro_dims
        if old != dims:
            value = value.permute(*(old.index(symbol) for symbol in dims if symbol in old))
            value = value.reshape(tuple(sizes[symbol] if symbol in old else 1 for symbol in dims)).expand(shape)
            value._pyro_dims = dims
        result.append(value)
    return tuple(result)


def mul(lhs, rhs):
    """Product of two packed tensors (or numbers), broadcast by name."""
    if not isinstance(lhs, torch.Tensor) or not isinstance(rhs, torch.Tensor):
        result = lhs * rhs
        if isinstance(result, torch.Tensor):
            result._pyro_dims = (lhs if isinstance(lhs, torch.Tensor) else rhs)._pyro_dims
        return result
    dims = "".join(sorted(set(lhs._pyro_dims) | set(rhs._pyro_dims)))
    lhs, rhs = broadcast_all(lhs, rhs, dims=dims)
    result = lhs * rhs
    result._pyro_dims = dims
    return result


def neg(value):
    """``-value``, keeping its dim names."""
    result = -value
    if isinstance(value, torch.Tensor):
        result._pyro_dims = value._pyro_dims
    return result


def exp(value):
    """``value.exp()``, keeping its dim names."""
    if not isinstance(value, torch.Tensor):
        return torch.tensor(value).exp()
    result = value.exp()
    result._pyro_dims = value._pyro_dims
    return result
