"""Distributions used by tests: :mod:`.fakes` (non-reparameterised stand-ins)."""

from causalppl.distributions.testing import fakes

__all__ = ["fakes"]
