"""Tensor utilities that models and inference share.

``causalppl.ops.indexing``: :class:`~causalppl.ops.indexing.Vindex` (indexing
that broadcasts); ``causalppl.ops.provenance``: which sites a value came from;
``causalppl.ops.packed``: tensors with named dims; ``causalppl.ops.special``: special functions.
"""

from causalppl.ops import indexing, packed, provenance, special

__all__ = ["indexing", "packed", "provenance", "special"]
