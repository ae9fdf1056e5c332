"""Distributions that draw like their parents but report ``has_rsample = False``.

Inference then treats their sites as non-reparameterisable (score-function
gradients), which is how tests exercise that path with familiar families.

>>> import torch
>>> from causalppl.distributions.testing.fakes import NonreparameterizedNormal
>>> d = NonreparameterizedNormal(torch.tensor(0.0, requires_grad=True), 1.0)
>>> d.has_rsample, d().requires_grad
(False, False)
"""

from causalppl.distributions import Beta, Dirichlet, Gamma, Normal

__all__ = ["NonreparameterizedBeta", "NonreparameterizedDirichlet", "NonreparameterizedGamma",
           "NonreparameterizedNormal"]


class NonreparameterizedBeta(Beta):
    """:class:`~causalppl.distributions.Beta` with ``has_rsample = False``."""

    has_rsample = False


class NonreparameterizedDirichlet(Dirichlet):
    """:class:`~causalppl.distributions.Dirichlet` with ``has_rsample = False``."""

    has_rsample = False


class NonreparameterizedGamma(Gamma):
    """:class:`~causalppl.distributions.Gamma` with ``has_rsample = False``."""

    has_rsample = False


class NonreparameterizedNormal(Normal):
    """:class:`~causalppl.distributions.Normal` with ``has_rsample = False``."""

    has_rsample = False
