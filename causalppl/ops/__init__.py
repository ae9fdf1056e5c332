"""Tensor utilities used by inference: provenance tracking (which sites a value came from)."""

from causalppl.ops import provenance

__all__ = ["provenance"]
