"""Tensor utilities that models and inference share.

``causalppl.ops.indexing``: :class:`~causalppl.ops.indexing.Vindex` (indexing
that broadcasts); ``causalppl.ops.provenance``: which sites a value came from;
``causalppl.ops.packed``: tensors with named dims; ``causalppl.ops.special``: special functions;
``causalppl.ops.welford``, ``causalppl.ops.integrator`` and
``causalppl.ops.dual_averaging``: the pieces of HMC's warmup and dynamics;
``causalppl.ops.stats``: statistics of samples (ESS, R-hat, intervals, WAIC).
"""

from causalppl.ops import indexing, integrator, packed, provenance, special, welford

__all__ = ["indexing", "integrator", "packed", "provenance", "special", "welford"]
