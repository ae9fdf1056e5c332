"""Distributions used by tests: :mod:`.fakes` (non-reparameterised stand-ins), :mod:`.rejection_gamma`."""

from causalppl.distributions.testing import fakes, rejection_gamma

__all__ = ["fakes", "rejection_gamma"]
