"""``torch.distributions`` with Pyro's distribution methods, plus Pyro's own distributions.

Every distribution class here is a subclass of the torch class of the same
name with :class:`TorchDistributionMixin` added (``.to_event``,
``.expand_by``, ``.mask``, ``.has_rsample_``, calling ``d()`` to draw), so
``isinstance(cp.dist.Normal(0, 1), torch.distributions.Normal)`` holds and
torch itself is left untouched.

Beside torch's families: :class:`Delta`, :class:`Unit`, the compound counts
(:class:`GammaPoisson`, :class:`BetaBinomial`, :class:`DirichletMultinomial`),
the zero-inflated ones (:class:`ZeroInflatedDistribution`,
:class:`ZeroInflatedPoisson`, :class:`ZeroInflatedNegativeBinomial`),
:class:`ImproperUniform`, :class:`MaskedMixture`, :class:`Empirical`,
:class:`FoldedDistribution`, :class:`SoftLaplace`, :class:`AffineBeta`,
:class:`LKJ` and :class:`MixtureOfDiagNormals`; and the submodules
``constraints`` and ``transforms`` (torch's, plus Pyro's additions), ``kl``
(KL divergences of Delta and the mask/expand wrappers), ``util`` and
``testing.fakes``.

>>> import torch, causalppl as cp
>>> cp.dist.Normal(0.0, 1.0).log_prob(cp.dist.Delta(torch.tensor(0.0)).sample())
tensor(-0.9189)
>>> d = cp.dist.Normal(torch.zeros(3), 1.0).to_event(1)
>>> d.batch_shape, d.event_shape
(torch.Size([]), torch.Size([3]))
"""

import math
from typing import NamedTuple

import torch
import torch.distributions as _torch
from torch.distributions import *  # noqa: F401,F403  (constraints, transforms, kl_divergence, ...)
from torch.distributions import __all__ as _torch_all
from torch.distributions.utils import _standard_normal

from causalppl.distributions import constraints  # torch's constraints plus Pyro's (corr_matrix, ...)


def _force_has_rsample(fn, value):
    """Set ``has_rsample`` on ``fn``, or on its base where it only reports its base's."""
    try:
        fn.has_rsample = value
    except AttributeError:  # Independent, TransformedDistribution, ...: a read-only property
        _force_has_rsample(fn.base_dist, value)


class TorchDistributionMixin:
    """The methods Pyro adds to torch distributions.

    >>> import torch, causalppl as cp
    >>> d = cp.dist.Normal(0.0, 1.0).expand_by([4]).mask(torch.tensor([True, True, False, False]))
    >>> d.log_prob(torch.zeros(4))
    tensor([-0.9189, -0.9189,  0.0000,  0.0000])
    """

    def __call__(self, sample_shape=torch.Size()):
        """A draw, reparameterised when the distribution allows it."""
        return self.rsample(sample_shape) if self.has_rsample else self.sample(sample_shape)

    @property
    def event_dim(self):
        return len(self.event_shape)

    def shape(self, sample_shape=torch.Size()):
        """The shape of a draw: ``sample_shape + batch_shape + event_shape``."""
        return torch.Size(sample_shape) + self.batch_shape + self.event_shape

    @classmethod
    def infer_shapes(cls, **arg_shapes):
        """``(batch_shape, event_shape)`` of an instance built from arguments of these shapes.

        Each argument's batch part is its shape less its constraint's event
        dims; the event shape is the trailing part of the first argument whose
        constraint has the support's event dims. Raises ``NotImplementedError``
        where the shapes alone do not tell (e.g. ``LKJ``'s ``dim``).

        >>> import causalppl as cp
        >>> cp.dist.MultivariateNormal.infer_shapes(loc=(5, 3), scale_tril=(3, 3))
        (torch.Size([5]), torch.Size([3]))
        """
        try:
            support_dim = cls.support.event_dim
        except (AttributeError, NotImplementedError) as e:
            raise NotImplementedError(f"{cls.__name__}.infer_shapes: the support's event dims are unknown") from e
        if not isinstance(cls.arg_constraints, dict):  # a property of the instance (Independent, ...)
            raise NotImplementedError(f"{cls.__name__}.infer_shapes: its arguments' constraints depend on the instance")
        batch_shapes, event_shape = [], None
        for name, shape in arg_shapes.items():
            shape = tuple(shape)
            try:
                dims = cls.arg_constraints.get(name, constraints.real).event_dim
            except NotImplementedError:
                dims = 0
            batch_shapes.append(shape[:len(shape) - dims])
            if support_dim and event_shape is None and dims == support_dim and len(shape) >= dims:
                event_shape = shape[len(shape) - dims:]
        if support_dim and event_shape is None:
            raise NotImplementedError(f"{cls.__name__}.infer_shapes: no argument carries the event shape")
        return torch.Size(torch.broadcast_shapes(*batch_shapes)), torch.Size(event_shape or ())

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, _instance)
        if new.has_rsample != self.has_rsample:  # keep a has_rsample_() choice
            _force_has_rsample(new, self.has_rsample)
        return new

    def expand_by(self, sample_shape):
        """Add ``sample_shape`` to the left of the batch shape."""
        return self.expand(torch.Size(sample_shape) + self.batch_shape)

    def to_event(self, reinterpreted_batch_ndims=None):
        """Treat the rightmost ``n`` batch dims (all by default) as event dims.

        A negative ``n`` gives back event dims of an :class:`Independent`.
        """
        n = len(self.batch_shape) if reinterpreted_batch_ndims is None else reinterpreted_batch_ndims
        base = self
        while isinstance(base, _torch.Independent):
            n += base.reinterpreted_batch_ndims
            base = base.base_dist
        if n == 0:
            return base
        if n < 0:
            raise ValueError(f"to_event({reinterpreted_batch_ndims}): {self!r} has no event dims to give back")
        if n > len(base.batch_shape):
            raise ValueError(
                f"to_event({reinterpreted_batch_ndims}): {self!r} has only {len(self.batch_shape)} batch dims"
            )
        return Independent(base, n)  # noqa: F405  (the mixin subclass defined below)

    def independent(self, reinterpreted_batch_ndims=None):
        """Old name of :meth:`to_event`."""
        return self.to_event(reinterpreted_batch_ndims)

    def mask(self, mask):
        """A copy whose log density is zero where ``mask`` (a bool or bool tensor) is False."""
        return MaskedDistribution(self, mask)

    def has_rsample_(self, value):
        """Force (True) or forbid (False) reparameterised draws on this instance; returns it.

        With False, inference treats the site as not reparameterisable (score
        function gradients), e.g. where a value drives control flow.
        """
        if value is not True and value is not False:
            raise ValueError(f"has_rsample_ expects True or False, got {value!r}")
        _force_has_rsample(self, value)
        return self


class TorchDistribution(TorchDistributionMixin, _torch.Distribution):
    """Base class for new distributions: torch's ``Distribution`` with the mixin.

    ``expand`` works out of the box (as an :class:`ExpandedDistribution`).
    """

    def expand(self, batch_shape, _instance=None):
        return ExpandedDistribution(self, batch_shape)


def _with_mixin(cls):
    # Not torch's docstring: its examples are unseeded doctests.
    doc = f"``torch.distributions.{cls.__name__}`` with Pyro's methods (see :class:`TorchDistributionMixin`)."
    return type(cls.__name__, (TorchDistributionMixin, cls), {"__module__": __name__, "__doc__": doc})


# One mixin subclass per concrete torch distribution (the abstract bases stay torch's).
_ABSTRACT = ("Distribution", "ExponentialFamily")
for _name in _torch_all:
    _cls = getattr(_torch, _name)
    if isinstance(_cls, type) and issubclass(_cls, _torch.Distribution) and _name not in _ABSTRACT:
        globals()[_name] = _with_mixin(_cls)
del _name, _cls


def _compact(tensor):
    """``tensor`` without the dims it was expanded along (stride 0): what it broadcasts from.

    Element for element the same numbers, so ops on it give the same results,
    once per distinct value instead of once per row.
    """
    if tensor.dim() == 0 or 0 not in tensor.stride():
        return tensor
    index = tuple(slice(0, 1) if stride == 0 and size > 1 else slice(None)
                  for stride, size in zip(tensor.stride(), tensor.shape, strict=True))
    return tensor[index]


class Normal(TorchDistributionMixin, _torch.Normal):  # noqa: F811 - replaces the generated class
    """``torch.distributions.Normal`` with Pyro's methods (see :class:`TorchDistributionMixin`).

    ``log_prob`` is torch's density written with two ops fewer (the same
    numbers up to rounding); a scale broadcast over many rows (``Normal(loc,
    0.5)`` in a plate) has its log taken once, not once per row. With tensor
    arguments of one shape there is nothing to broadcast, and nothing is done.

    >>> import torch
    >>> Normal(torch.zeros(3), 2.0).log_prob(torch.ones(3))
    tensor([-1.7371, -1.7371, -1.7371])
    """

    _scale_number = None  # the scale as a Python float, when it was given as a positive number
    _draw = None  # (value, noise) of the last rsample: see _log_prob_of_draw

    def __init__(self, loc, scale, validate_args=None):
        if type(loc) is torch.Tensor and type(scale) is torch.Tensor and loc.shape == scale.shape:
            self.loc, self.scale = loc, scale  # broadcast_all would make views of the same tensors
            _torch.Distribution.__init__(self, loc.shape, validate_args=validate_args)
            return
        if type(scale) in (float, int) and scale > 0:
            self._scale_number = float(scale)
            if type(loc) is torch.Tensor and loc.is_floating_point():
                # The scale tensor (the number broadcast to loc's shape) is made when first read.
                self.loc, self._scale = loc, None
                _torch.Distribution.__init__(self, loc.shape, validate_args=validate_args)
                return
        super().__init__(loc, scale, validate_args=validate_args)

    @property
    def scale(self):
        scale = self._scale
        if scale is None:
            number = torch.as_tensor(self._scale_number, dtype=self.loc.dtype, device=self.loc.device)
            scale = self._scale = number.expand(self.loc.shape)
        return scale

    @scale.setter
    def scale(self, value):
        self._scale = value

    def expand(self, batch_shape, _instance=None):
        if _instance is None and self._scale_number is not None and type(self) is Normal \
                and "has_rsample" not in vars(self):
            # A number scale (Normal(loc, 0.5) entering a plate every step): only loc is expanded,
            # and the scale tensor is made when first read, as in __init__.
            batch_shape = torch.Size(batch_shape)
            new = Normal.__new__(Normal)
            new.loc, new._scale, new._scale_number = self.loc.expand(batch_shape), None, self._scale_number
            _torch.Distribution.__init__(new, batch_shape, validate_args=False)
            new._validate_args = self._validate_args
            return new
        if _instance is None:
            _instance = self._get_checked_instance(Normal, None)  # torch's check is for its own __init__
        new = super().expand(batch_shape, _instance)
        if type(new) is type(self):
            new._scale_number = self._scale_number
        return new

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        eps = _standard_normal(shape, dtype=self.loc.dtype, device=self.loc.device)
        value = self.loc + eps * self.scale
        self._draw = (value, eps)
        return value

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        number = self._scale_number
        if number is not None:  # one positive number: its log is a float, no tensor op
            loc = self.loc
            if type(value) is torch.Tensor and value.shape == loc.shape and value.dtype == loc.dtype:
                # (value - loc)**2 in one op whose backward is one op too
                square = torch._C._nn.mse_loss(value, loc, 0)
                return square.mul_(-0.5 / (number * number)).sub_(math.log(number) + _HALF_LOG_SQRT_2PI)
            z = (value - loc) * (1.0 / number)
            return torch.square(z).mul_(-0.5).sub_(math.log(number) + _HALF_LOG_SQRT_2PI)
        scale = _compact(self.scale)
        z = (value - self.loc) / scale
        return -0.5 * torch.square(z) - (scale.log() + _HALF_LOG_SQRT_2PI)  # the constant joins the (compact) log

    def _log_prob_of_draw(self, value):
        """``log_prob(value)`` from the noise, when ``value`` is this distribution's last ``rsample``; else None.

        At its own draw ``loc + scale * eps`` the density is
        ``-eps**2 / 2 - log(scale) - log(2 pi) / 2``: the same number, and as a
        function of ``loc`` and ``scale`` (which the ELBO differentiates) the
        same function, so the same gradients, without a pass over the value.
        Not its gradient with respect to ``value`` itself, hence not ``log_prob``.
        """
        draw = self._draw
        if draw is None or draw[0] is not value or self._validate_args:
            return None
        eps = draw[1]
        half_square = torch.square(eps).mul_(-0.5)
        number = self._scale_number
        if number is not None:
            return half_square.sub_(math.log(number) + _HALF_LOG_SQRT_2PI)
        scale = _compact(self.scale)
        return half_square.sub_(_HALF_LOG_SQRT_2PI) - _log_of_positive(scale)

    def _summed_log_prob(self, value):
        """``log_prob(value).sum()`` as a :class:`LinearTerm`, or None where no shortcut applies.

        With a number scale the sum is ``-sum((value - loc)**2) / (2 scale**2)``
        less a constant: one reduction whose backward is one op, where the sum
        of ``log_prob`` makes three passes and a fourth to sum them; the ELBO
        applies the coefficient and the constant when it adds the terms up.
        """
        number = self._scale_number
        if number is None or self._validate_args or type(value) is not torch.Tensor:
            return None
        loc = self.loc
        if value.shape != loc.shape or value.dtype != loc.dtype:
            return None
        square = torch._C._nn.mse_loss(value, loc, 2)  # reduction 'sum'
        return LinearTerm(square, -0.5 / (number * number), -value.numel() * (math.log(number) + _HALF_LOG_SQRT_2PI))

    def _summed_log_prob_of_draw(self, value):
        """``_log_prob_of_draw(value).sum()``: ``-|eps|**2 / 2 - sum(log scale)`` less a constant, or None.

        Returned as :class:`LinearTerm` s (the noise carries no gradient; the log scale does).
        """
        draw = self._draw
        if draw is None or draw[0] is not value or self._validate_args:
            return None
        eps = draw[1].reshape(-1)
        count = eps.numel()
        square = LinearTerm(torch.dot(eps, eps), -0.5, -count * _HALF_LOG_SQRT_2PI)
        number = self._scale_number
        if number is not None:
            return LinearTerm(square.value, -0.5, square.constant - count * math.log(number))
        scale = _compact(self.scale)
        log_scale = _log_of_positive(scale)
        if log_scale.dim():
            log_scale = log_scale.sum()
        return square, LinearTerm(log_scale, -float(count // scale.numel()), 0.0)


class LinearTerm(NamedTuple):
    """``coefficient * value + constant``: a summed log density that the ELBO adds up with the others.

    Left unapplied so that a whole loss is one chain of ``add(total, value,
    alpha=coefficient)`` and one constant, not a multiply and a subtract per site.
    """

    value: torch.Tensor
    coefficient: float
    constant: float


def _log_of_positive(tensor):
    """``tensor.log()``; for ``exp(leaf)`` (a positive param's value) the leaf itself, with no pass over it."""
    grad_fn = tensor.grad_fn
    if grad_fn is not None and type(grad_fn).__name__ == "ExpBackward0":
        leaf = getattr(grad_fn.next_functions[0][0], "variable", None)
        if leaf is not None and leaf.shape == tensor.shape:
            return leaf
    return tensor.log()


_HALF_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))

__all__ = list(_torch_all) + [
    "Delta", "ExpandedDistribution", "MaskedDistribution", "TorchDistribution", "TorchDistributionMixin", "Unit",
]


class MaskedDistribution(TorchDistribution):
    """``base_dist`` whose log density is zero where ``mask`` is False (see ``.mask``).

    Draws are the base's; ``mask`` is a bool or a bool tensor broadcastable to
    the batch shape.
    """

    arg_constraints = {}

    def __init__(self, base_dist, mask):
        if isinstance(mask, bool):
            batch_shape = base_dist.batch_shape
        else:
            mask = torch.as_tensor(mask, device=None)
            if mask.dtype != torch.bool:
                raise TypeError(f"mask must be a bool or a bool tensor, got dtype {mask.dtype}")
            batch_shape = torch.broadcast_shapes(mask.shape, base_dist.batch_shape)
            mask = mask.expand(batch_shape)
            if base_dist.batch_shape != batch_shape:
                base_dist = base_dist.expand(batch_shape)
        self.base_dist = base_dist
        self._mask = mask
        super().__init__(batch_shape, base_dist.event_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        mask = self._mask if isinstance(self._mask, bool) else self._mask.expand(batch_shape)
        return MaskedDistribution(self.base_dist.expand(batch_shape), mask)

    @property
    def has_rsample(self):
        return self.base_dist.has_rsample

    @property
    def has_enumerate_support(self):
        return self.base_dist.has_enumerate_support

    @constraints.dependent_property
    def support(self):
        return self.base_dist.support

    @property
    def mean(self):
        return self.base_dist.mean

    @property
    def variance(self):
        return self.base_dist.variance

    def sample(self, sample_shape=torch.Size()):
        return self.base_dist.sample(sample_shape)

    def rsample(self, sample_shape=torch.Size()):
        return self.base_dist.rsample(sample_shape)

    def enumerate_support(self, expand=True):
        return self.base_dist.enumerate_support(expand=expand)

    def log_prob(self, value):
        if self._mask is True:
            return self.base_dist.log_prob(value)
        if self._mask is False:
            shape = torch.broadcast_shapes(self.batch_shape, value.shape[:value.dim() - self.event_dim])
            return value.new_zeros(()).expand(shape)
        log_prob = self.base_dist.log_prob(value)
        return torch.where(self._mask, log_prob, log_prob.new_zeros(()))


class ExpandedDistribution(TorchDistribution):
    """``base_dist`` broadcast to ``batch_shape``, with an independent draw per entry.

    What :meth:`TorchDistribution.expand` gives for distributions that have no
    ``expand`` of their own.
    """

    arg_constraints = {}

    def __init__(self, base_dist, batch_shape=torch.Size()):
        batch_shape = torch.Size(batch_shape)
        if torch.broadcast_shapes(base_dist.batch_shape, batch_shape) != batch_shape:
            raise ValueError(f"cannot expand {base_dist!r} (batch shape {tuple(base_dist.batch_shape)}) "
                             f"to batch shape {tuple(batch_shape)}")
        self.base_dist = base_dist
        super().__init__(batch_shape, base_dist.event_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return ExpandedDistribution(self.base_dist, batch_shape)

    @property
    def has_rsample(self):
        return self.base_dist.has_rsample

    @constraints.dependent_property
    def support(self):
        return self.base_dist.support

    def _draw(self, draw, sample_shape):
        # Draw the extra entries as a sample shape, then move each of those dims
        # into the batch dim the base broadcast along (size 1 or missing there).
        sample_shape = torch.Size(sample_shape)
        new = len(self.batch_shape) - len(self.base_dist.batch_shape)
        padded = (1,) * new + tuple(self.base_dist.batch_shape)
        grown = [i for i, (old, size) in enumerate(zip(padded, self.batch_shape)) if old == 1 and size != 1]
        value = draw(sample_shape + tuple(self.batch_shape[i] for i in grown))
        ns, k = len(sample_shape), len(grown)
        value = value.reshape(value.shape[:ns + k] + padded + self.event_shape)
        for t, i in enumerate(grown):
            value = value.transpose(ns + t, ns + k + i)
        return value.reshape(sample_shape + self.batch_shape + self.event_shape)

    def sample(self, sample_shape=torch.Size()):
        return self._draw(self.base_dist.sample, sample_shape)

    def rsample(self, sample_shape=torch.Size()):
        return self._draw(self.base_dist.rsample, sample_shape)

    def log_prob(self, value):
        shape = torch.broadcast_shapes(self.batch_shape, value.shape[:value.dim() - self.event_dim])
        return self.base_dist.log_prob(value).expand(shape)

    @property
    def mean(self):
        return self.base_dist.mean.expand(self.batch_shape + self.event_shape)

    @property
    def variance(self):
        return self.base_dist.variance.expand(self.batch_shape + self.event_shape)


def _sum_rightmost(value, dims):
    return value.sum(tuple(range(-dims, 0))) if dims > 0 else value


class Delta(TorchDistribution):
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
        if not isinstance(v, torch.Tensor):
            v = torch.as_tensor(v)
        if event_dim > v.dim():
            raise ValueError(f"Delta: event_dim={event_dim} exceeds the value's {v.dim()} dims")
        batch_dims = v.dim() - event_dim
        batch_shape, event_shape = v.shape[:batch_dims], v.shape[batch_dims:]
        self.v = v
        # A number log density (an autoguide's identity-support site: 0.0) stays a number until read.
        self._log_density = log_density
        super().__init__(batch_shape, event_shape, validate_args=False)

    @property
    def log_density(self):
        """The log density at ``v``, one per batch element."""
        density = self._log_density
        if not isinstance(density, torch.Tensor) or density.shape != self.batch_shape:
            density = torch.as_tensor(density, dtype=self.v.dtype, device=self.v.device).expand(self.batch_shape)
            self._log_density = density
        return density

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
        if not sample_shape:
            return self.v  # the point itself, so log_prob knows it without comparing
        return self.v.expand(torch.Size(sample_shape) + self.v.shape)

    def log_prob(self, value):
        if value is self.v:  # the point itself (a guide's draw replayed): no comparison to make
            density = self._log_density
            if isinstance(density, (int, float)):
                return self.v.new_full(self.batch_shape, float(density))
            return self.log_density
        hit = (value == self.v).to(self.v.dtype).log()
        return _sum_rightmost(hit, len(self.event_shape)) + self.log_density

    def _summed_log_prob(self, value):
        """``log_prob(value).sum()`` at the point itself (a number where the density is one), else None."""
        if value is not self.v:
            return None
        density = self._log_density
        if isinstance(density, (int, float)):
            return float(density) * self.batch_shape.numel()
        return self.log_density.sum()

    _summed_log_prob_of_draw = _summed_log_prob


class Unit(TorchDistribution):
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


# Pyro's distributions that torch lacks (they build on the classes above), and the submodules.
from causalppl.distributions import kl, testing, transforms, util  # noqa: E402
from causalppl.distributions.compound import BetaBinomial, DirichletMultinomial, GammaPoisson  # noqa: E402
from causalppl.distributions.continuous import (  # noqa: E402
    LKJ,
    AffineBeta,
    FoldedDistribution,
    LKJCorrCholesky,
    MixtureOfDiagNormals,
    SoftLaplace,
)
from causalppl.distributions.misc import Empirical, ImproperUniform, MaskedMixture  # noqa: E402
from causalppl.distributions.stable import Stable  # noqa: E402
from causalppl.distributions.util import enable_validation, is_validation_enabled, validation_enabled  # noqa: E402
from causalppl.distributions.zero_inflated import (  # noqa: E402
    ZeroInflatedDistribution,
    ZeroInflatedNegativeBinomial,
    ZeroInflatedPoisson,
)

__all__ += [
    "AffineBeta", "BetaBinomial", "DirichletMultinomial", "Empirical", "FoldedDistribution", "GammaPoisson",
    "ImproperUniform", "LKJ", "LKJCorrCholesky", "MaskedMixture", "MixtureOfDiagNormals", "SoftLaplace", "Stable",
    "ZeroInflatedDistribution", "ZeroInflatedNegativeBinomial", "ZeroInflatedPoisson",
    "constraints", "enable_validation", "is_validation_enabled", "kl", "testing", "transforms", "util",
    "validation_enabled",
]
