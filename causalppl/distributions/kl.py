"""KL divergences for this package's own wrappers, registered with ``torch.distributions.kl``.

``kl_divergence`` here is torch's. Registered (for our classes only):

* ``KL(Delta(v) || q) = -log q(v)`` (the point mass's own log density left out,
  as its entropy term is), so AutoDelta guides get an analytic "KL";
* ``KL(p.mask(m) || q.mask(m))``: the bases' KL, zero where ``m`` is False;
* ``KL`` of two :class:`ExpandedDistribution` s: the bases' KL, broadcast.

>>> import torch, causalppl as cp
>>> kl_divergence(cp.dist.Delta(torch.tensor(0.0)), cp.dist.Normal(0.0, 1.0))
tensor(0.9189)
"""

import torch
from torch.distributions import Distribution, kl_divergence, register_kl

from causalppl.distributions import Delta, ExpandedDistribution, MaskedDistribution

__all__ = ["kl_divergence", "register_kl"]


def _sum_rightmost(value, dims):
    return value.sum(tuple(range(-dims, 0))) if dims > 0 else value


@register_kl(Delta, Distribution)
def _kl_delta(p, q):
    extra_event_dims = len(p.event_shape) - len(q.event_shape)
    return -_sum_rightmost(q.log_prob(p.v), extra_event_dims)


def _same_mask(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a is b or (a.shape == b.shape and bool(torch.equal(a, b)))


@register_kl(MaskedDistribution, MaskedDistribution)
def _kl_masked_masked(p, q):
    if not _same_mask(p._mask, q._mask):
        raise NotImplementedError("KL between distributions with different masks")
    kl = kl_divergence(p.base_dist, q.base_dist)
    if p._mask is True:
        return kl
    if p._mask is False:
        return torch.zeros_like(kl)
    return torch.where(p._mask, kl, kl.new_zeros(()))


@register_kl(ExpandedDistribution, ExpandedDistribution)
def _kl_expanded_expanded(p, q):
    shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    return kl_divergence(p.base_dist, q.base_dist).expand(shape)
