"""A Gamma whose draws go through shape augmentation (Pyro's test helper ``ShapeAugmentedGamma``).

``ShapeAugmentedGamma(concentration, rate, boost=1)`` draws
``g ~ Gamma(concentration + boost, rate)`` and multiplies it by
``prod_i U_i ** (1 / (concentration + i))`` for ``i < boost`` with uniform
``U_i``: the product is ``Gamma(concentration, rate)`` exactly (Marsaglia &
Tsang's boosting identity, as used by rejection-sampling VI). The boosted
draw is reparameterised (torch's implicit Gamma gradient), so the whole draw
is, and the log density is the plain Gamma density.

>>> import torch
>>> from causalppl.distributions.testing.rejection_gamma import ShapeAugmentedGamma
>>> _ = torch.manual_seed(0)
>>> x = ShapeAugmentedGamma(torch.tensor(0.5), torch.tensor(2.0)).rsample((200000,))
>>> round(x.mean().item(), 2)  # concentration / rate
0.25
"""

from __future__ import annotations

import torch

from causalppl.distributions import Gamma

__all__ = ["ShapeAugmentedGamma"]


class ShapeAugmentedGamma(Gamma):
    """``Gamma(concentration, rate)`` sampled through ``Gamma(concentration + boost, rate)`` and ``boost``
    uniform powers; see the module docstring."""

    has_rsample = True

    def __init__(self, concentration, rate, boost=1, validate_args=None):
        super().__init__(concentration, rate, validate_args=validate_args)
        if int(boost) != boost or boost < 0:
            raise ValueError(f"ShapeAugmentedGamma: boost must be a non-negative integer, got {boost!r}")
        self.boost = int(boost)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ShapeAugmentedGamma, _instance)
        new = super().expand(batch_shape, new)
        new.boost = self.boost
        return new

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        boosted = Gamma(self.concentration + self.boost, self.rate).rsample(sample_shape)
        for i in range(self.boost):
            u = torch.rand(shape, dtype=boosted.dtype, device=boosted.device)
            boosted = boosted * u.pow(1.0 / (self.concentration + i))
        return boosted
