"""Tensor utilities that models and inference share.

``causalppl.ops.indexing``: :class:`~causalppl.ops.indexing.Vindex` (indexing
that broadcasts); ``causalppl.ops.provenance``: which sites a value came from.
"""

from causalppl.ops import indexing, provenance

__all__ = ["indexing", "provenance"]
