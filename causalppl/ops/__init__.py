"""Tensor operations that models share (``causalppl.ops.indexing``: :class:`Vindex`)."""
