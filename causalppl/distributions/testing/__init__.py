"""Distributions for tests (Pyro's ``pyro.distributions.testing``)."""
