"""Tensor operations for models: :mod:`causalppl.ops.indexing` (``Vindex``, broadcasting advanced indexing)."""

from causalppl.ops import indexing

__all__ = ["indexing"]
