"""Provenance tracking: tensors that remember which sample/param sites they were computed from.

A :class:`ProvenanceTensor` is a tensor with a frozenset of names attached;
every torch operation on such tensors returns tensors carrying the union of
its inputs' names. :func:`causalppl.infer.inspect.get_model_relations`
runs a model with each site's value tagged by its own name, so the log
density of a site reveals the sites it depends on directly.

>>> import torch
>>> x = ProvenanceTensor(torch.tensor(1.0), frozenset({"x"}))
>>> y = ProvenanceTensor(torch.tensor(2.0), frozenset({"y"}))
>>> sorted(get_provenance(torch.exp(x) * y + 1))
['x', 'y']
"""

from __future__ import annotations

import torch


class ProvenanceTensor(torch.Tensor):
    """A tensor whose ``_provenance`` (a frozenset of site names) follows it through torch operations."""

    def __new__(cls, data, provenance=frozenset()):
        if not isinstance(provenance, frozenset):
            raise TypeError(f"provenance must be a frozenset, got {type(provenance).__name__}")
        if isinstance(data, ProvenanceTensor):
            provenance = provenance | data._provenance
            data = data._t
        result = data.as_subclass(cls)
        result._t = data
        result._provenance = provenance
        return result

    def __repr__(self):
        return f"ProvenanceTensor({self._t!r}, provenance={set(self._provenance)})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        provenance = frozenset()
        plain_args = []
        for arg in args:
            arg, found = extract_provenance(arg)
            plain_args.append(arg)
            provenance |= found
        plain_kwargs = {}
        for key, value in (kwargs or {}).items():
            value, found = extract_provenance(value)
            plain_kwargs[key] = value
            provenance |= found
        return track_provenance(func(*plain_args, **plain_kwargs), provenance)


def track_provenance(value, provenance):
    """``value`` (a tensor, or a list/tuple/dict of them) tagged with ``provenance``."""
    if isinstance(value, torch.Tensor):
        return ProvenanceTensor(value, provenance)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple, e.g. torch.return_types
        return type(value)(*(track_provenance(v, provenance) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(track_provenance(v, provenance) for v in value)
    if isinstance(value, dict):
        return {key: track_provenance(v, provenance) for key, v in value.items()}
    return value


def extract_provenance(value):
    """``(plain value, provenance)``: ``value`` with its tags removed, and their union."""
    if isinstance(value, ProvenanceTensor):
        return value._t, value._provenance
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        pairs = [extract_provenance(v) for v in value]
        return type(value)(p[0] for p in pairs), frozenset().union(*(p[1] for p in pairs))
    if isinstance(value, dict):
        pairs = {key: extract_provenance(v) for key, v in value.items()}
        return ({key: p[0] for key, p in pairs.items()},
                frozenset().union(*(p[1] for p in pairs.values())))
    return value, frozenset()


def get_provenance(value):
    """The site names ``value`` was computed from."""
    return extract_provenance(value)[1]


def detach_provenance(value):
    """``value`` without provenance tags."""
    return extract_provenance(value)[0]


__all__ = ["ProvenanceTensor", "detach_provenance", "extract_provenance", "get_provenance", "track_provenance"]
