"""Distributions that hide their reparameterised draws, to test score-function estimators.

>>> import causalppl as cp
>>> from causalppl.distributions.testing.fakes import NonreparameterizedBeta
>>> NonreparameterizedBeta(2.0, 3.0).has_rsample
False
"""

from causalppl import distributions as dist


class NonreparameterizedBeta(dist.Beta):
    has_rsample = False


class NonreparameterizedDirichlet(dist.Dirichlet):
    has_rsample = False


class NonreparameterizedGamma(dist.Gamma):
    has_rsample = False


class NonreparameterizedNormal(dist.Normal):
    has_rsample = False


__all__ = ["NonreparameterizedBeta", "NonreparameterizedDirichlet", "NonreparameterizedGamma",
           "NonreparameterizedNormal"]
