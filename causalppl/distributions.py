"""``torch.distributions`` re-exported, plus :class:`Delta` and :class:`Unit`.

>>> import torch, causalppl as cp
>>> cp.dist.Normal(0.0, 1.0).log_prob(cp.dist.Delta(torch.tensor(0.0)).sample())
tensor(-0.9189)
"""

import torch
from torch.distributions import *  # noqa: F401,F403  (the public torch distribution names)
from torch.distributions import __all__ as _torch_all
from torch.distributions import constraints

__all__ = list(_torch_all) + ["Delta", "Unit"]


def _sum_rightmost(value, dims):
    return value.sum(tuple(range(-dims, 0))) if dims > 0 else value


class Delta(torch.distributions.Distribution):
    """A point mass at ``v``; the rightmost ``event_dim`` dims of ``v`` form one event.

    ``log_prob`` is ``log_density`` at ``v`` and ``-inf`` elsewhere; samples
    are ``v`` itself, so gradients flow through it (``has_rsample``).

    >>> import torch
    >>> Delta(torch.tensor([1.0, 2.0]), event_dim=1).log_prob(torch.tensor([1.0, 2.0]))
    tensor(0.)
    """

    arg_constraints = {}
    has_rsample = True

    def __init__(self, v, log_density=0.0, event_dim=0, validate_args=None):
        v = torch.as_tensor(v, dtype=v.dtype if isinstance(v, torch.Tensor) else None)
        if event_dim > v.dim():
            raise ValueError(f"Delta: event_dim={event_dim} exceeds the value's {v.dim()} dims")
        batch_dims = v.dim() - event_dim
        batch_shape, event_shape = v.shape[:batch_dims], v.shape[batch_dims:]
        self.v = v
        self.log_density = torch.as_tensor(log_density, dtype=v.dtype, device=v.device).expand(batch_shape)
        super().__init__(batch_shape, event_shape, validate_args=False)

    @property
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    @property
    def mean(self):
        return self.v

    @property
    def variance(self):
        return torch.zeros_like(self.v)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return Delta(
            self.v.expand(batch_shape + self.event_shape),
            self.log_density.expand(batch_shape),
            event_dim=len(self.event_shape),
        )

    def rsample(self, sample_shape=torch.Size()):
        return self.v.expand(torch.Size(sample_shape) + self.v.shape)

    def log_prob(self, value):
        hit = (value == self.v).to(self.v.dtype).log()
        return _sum_rightmost(hit, len(self.event_shape)) + self.log_density


class Unit(torch.distributions.Distribution):
    """A distribution over the empty value whose log density is ``log_factor``.

    It is how :func:`causalppl.factor` adds arbitrary terms to the joint.
    """

    arg_constraints = {}
    support = constraints.real

    def __init__(self, log_factor, validate_args=None):
        self.log_factor = torch.as_tensor(log_factor)
        super().__init__(self.log_factor.shape, torch.Size((0,)), validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return Unit(self.log_factor.expand(torch.Size(batch_shape)))

    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.batch_shape + (0,)
        return self.log_factor.new_empty(shape)

    def rsample(self, sample_shape=torch.Size()):
        return self.sample(sample_shape)

    def log_prob(self, value):
        # ``value`` may predate an ``expand`` (factor draws it before a plate broadcasts).
        return self.log_factor.expand(torch.broadcast_shapes(self.batch_shape, value.shape[:-1]))
