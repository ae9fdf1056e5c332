"""Reparameterisers for :class:`causalppl.handlers.reparam`: the same model, other coordinates.

Each strategy's ``apply(msg)`` takes a site (``name``, ``fn``, ``value``,
``is_observed``), draws auxiliary sites of its own, and returns the
original site as a deterministic function of them (``fn`` a masked point
mass, ``is_observed`` True). Samples and the model's density are unchanged;
what a guide (or MCMC) sees is the auxiliary site.

- :class:`LocScaleReparam`: for a location-scale family (Normal, StudentT,
  Cauchy, Laplace, ...), ``x = loc + scale * z`` with ``z`` drawn at
  ``{name}_decentered``; ``centered`` (0 fully decentred, 1 unchanged, or
  learnable by default) interpolates.
- :class:`TransformReparam`: for a ``TransformedDistribution``, draw its base
  at ``{name}_base`` and push it through the transforms.
- :class:`UnitJacobianReparam`: draw ``transform(x)`` at ``{name}_transformed``
  (a volume-preserving transform such as a permutation or a DCT) and map back.

>>> import torch, causalppl as cp
>>> def model():
...     return cp.sample("x", cp.dist.Normal(3.0, 2.0))
>>> tr = cp.trace(cp.handlers.reparam(model, {"x": LocScaleReparam(centered=0.0)})).get_trace()
>>> z, x = tr.nodes["x_decentered"]["value"], tr.nodes["x"]["value"]
>>> bool(torch.isclose(x, 3.0 + 2.0 * z)), tr.nodes["x_decentered"]["fn"].loc.item()
(True, 0.0)
"""

from __future__ import annotations

import sys

import torch
from torch.distributions import constraints

from causalppl.distributions import Delta, TransformedDistribution
from causalppl.runtime import param, sample


class Reparam:
    """Base class of the reparameterisers: ``apply(msg) -> {"fn", "value", "is_observed"}``."""

    def apply(self, msg):
        raise NotImplementedError

    @staticmethod
    def _unwrap(fn):
        """The distribution under any ``Independent`` wrappers, and the site's event dims."""
        event_dim = len(fn.event_shape)
        while isinstance(fn, torch.distributions.Independent):
            fn = fn.base_dist
        return fn, event_dim

    @staticmethod
    def _wrap(fn, event_dim):
        """``fn`` with its rightmost batch dims made event dims, up to ``event_dim``."""
        extra = event_dim - len(fn.event_shape)
        return torch.distributions.Independent(fn, extra) if extra > 0 else fn

    @staticmethod
    def _deterministic(value, event_dim):
        """The original site as a function of the new ones: observed, with no density of its own."""
        return {"fn": Delta(value, event_dim=event_dim).mask(False), "value": value, "is_observed": True}


class LocScaleReparam(Reparam):
    """Decentre a location-scale site: ``x = loc + scale**(1 - c) * (z - c * loc)``, ``z ~ F(c * loc, scale**c)``.

    ``centered=0.0`` is the fully non-centred ``x = loc + scale * z`` with
    ``z ~ F(0, 1)``; ``1.0`` leaves the site as it is; ``None`` (the default)
    learns ``c`` per event entry as the param ``{name}_centered`` in [0, 1].
    ``shape_params`` names the family's other arguments (e.g. ``("df",)``
    for StudentT; by default every argument but ``loc`` and ``scale``).
    An observed site is mapped to its ``z`` and observed there.
    """

    def __init__(self, centered=None, shape_params=None):
        if isinstance(centered, (int, float)) and not 0.0 <= centered <= 1.0:
            raise ValueError(f"LocScaleReparam: centered must be in [0, 1], got {centered}")
        if isinstance(centered, torch.Tensor) and not bool(((centered >= 0) & (centered <= 1)).all()):
            raise ValueError("LocScaleReparam: centered must be in [0, 1]")
        self.centered = centered
        self.shape_params = None if shape_params is None else tuple(shape_params)

    def apply(self, msg):
        name, value = msg["name"], msg["value"]
        centered = self.centered
        if isinstance(centered, (int, float)) and centered == 1.0:
            return msg
        fn, event_dim = self._unwrap(msg["fn"])
        if not (hasattr(fn, "loc") and hasattr(fn, "scale")):
            raise TypeError(f"LocScaleReparam: site '{name}': {type(fn).__name__} has no loc and scale")
        shape_params = self.shape_params
        if shape_params is None:
            shape_params = tuple(key for key in fn.arg_constraints if key not in ("loc", "scale"))
        params = {key: getattr(fn, key) for key in shape_params}
        if centered is None:
            event_shape = msg["fn"].event_shape
            centered = param(f"{name}_centered", lambda: fn.loc.new_full(event_shape, 0.5),
                             constraint=constraints.unit_interval)
        params["loc"] = fn.loc * centered
        params["scale"] = fn.scale ** centered
        decentered_fn = type(fn)(**params)
        decentered_value = None
        if value is not None:
            decentered_value = (value - fn.loc) * fn.scale.pow(centered - 1) + centered * fn.loc
        z = sample(f"{name}_decentered", self._wrap(decentered_fn, event_dim), obs=decentered_value)
        x = fn.loc + fn.scale.pow(1 - centered) * (z - centered * fn.loc)
        return self._deterministic(x, event_dim)


class TransformReparam(Reparam):
    """Draw a ``TransformedDistribution`` site's base at ``{name}_base``, then apply its transforms.

    A decentred Normal, say, is ``TransformedDistribution(Normal(0, 1),
    AffineTransform(loc, scale))`` under this reparameteriser.
    """

    def apply(self, msg):
        name = msg["name"]
        fn, event_dim = self._unwrap(msg["fn"])
        if not isinstance(fn, torch.distributions.TransformedDistribution):
            raise TypeError(f"TransformReparam: site '{name}' is a {type(fn).__name__}, "
                            "not a TransformedDistribution")
        if msg["is_observed"]:
            raise NotImplementedError(f"TransformReparam: site '{name}' is observed; it reparameterises "
                                      "latent sites only")
        base_event_dim = event_dim
        for transform in reversed(fn.transforms):
            base_event_dim += transform.domain.event_dim - transform.codomain.event_dim
        x = sample(f"{name}_base", self._wrap(fn.base_dist, base_event_dim))
        for transform in fn.transforms:
            x = transform(x)
        return self._deterministic(x, event_dim)


class LatentStableReparam(Reparam):
    """For a latent ``Stable`` site: draw ``{name}_uniform ~ U(-pi/2, pi/2)`` and ``{name}_exponential ~ Exp(1)``
    and map them through Chambers-Mallows-Stuck, so the site needs no density (which ``Stable`` lacks).

    >>> import torch, causalppl as cp
    >>> model = lambda: cp.sample("z", cp.dist.Stable(torch.tensor(1.5), torch.tensor(0.0)))
    >>> tr = cp.trace(cp.handlers.reparam(model, {"z": LatentStableReparam()})).get_trace()
    >>> sorted(n for n in tr.nodes if n.startswith("z_"))
    ['z_exponential', 'z_uniform']
    """

    def apply(self, msg):
        import math

        from causalppl.distributions.stable import Stable, standard_stable

        name = msg["name"]
        fn, event_dim = self._unwrap(msg["fn"])
        if not isinstance(fn, Stable):
            raise ValueError(f"sample site '{name}': LatentStableReparam needs a Stable distribution, "
                             f"got {type(fn).__name__}")
        if msg["is_observed"]:
            raise NotImplementedError(f"At cp.sample('{name}',...), LatentStableReparam does not support "
                                      "observe statements")
        proto = fn.stability
        half_pi = proto.new_tensor(math.pi / 2)
        uniform = sample(f"{name}_uniform",
                         self._wrap(torch.distributions.Uniform(-half_pi, half_pi).expand(proto.shape), event_dim))
        exponential = sample(f"{name}_exponential",
                             self._wrap(torch.distributions.Exponential(proto.new_ones(proto.shape)), event_dim))
        value = fn.loc + fn.scale * standard_stable(fn.stability, fn.skew, uniform, exponential)
        return self._deterministic(value, event_dim)


class UnitJacobianReparam(Reparam):
    """Draw ``y = transform(x)`` at ``{name}_{suffix}``, then ``x = transform.inv(y)``.

    ``transform`` must have a unit Jacobian (a permutation, an orthonormal
    map), so the density is unchanged; it acts on the site's event dims.

    >>> import torch, causalppl as cp
    >>> from torch.distributions.transforms import AffineTransform
    >>> flip = AffineTransform(0.0, -1.0)
    >>> tr = cp.trace(cp.handlers.reparam(lambda: cp.sample("x", cp.dist.Normal(1.0, 1.0)),
    ...                                   {"x": UnitJacobianReparam(flip)})).get_trace()
    >>> bool(tr.nodes["x"]["value"] == -tr.nodes["x_transformed"]["value"])
    True
    """

    uses_init = True  # a latent site's initial value (from an enclosing InitMessenger) maps to the new site

    def __init__(self, transform, suffix="transformed", *, experimental_allow_batch=False):
        self.transform = transform.with_cache() if hasattr(transform, "with_cache") else transform
        self.suffix = suffix
        self.experimental_allow_batch = experimental_allow_batch

    def apply(self, msg):
        name, fn, value = msg["name"], msg["fn"], msg["value"]
        event_dim = len(fn.event_shape)
        if self.transform.domain.event_dim > event_dim:
            raise ValueError(f"UnitJacobianReparam: site '{name}': cannot transform along batch dimension; "
                             "try converting a batch dimension to an event dimension")
        transformed = TransformedDistribution(fn, [self.transform])
        mapped = None if value is None else self.transform(value)
        if msg["is_observed"] or mapped is None:
            y = sample(f"{name}_{self.suffix}", transformed, obs=mapped)
        else:  # an initial value: the new site starts at its image, and stays latent
            from causalppl.infer.autoguide import InitMessenger

            with InitMessenger(lambda site: mapped):
                y = sample(f"{name}_{self.suffix}", transformed)
        x = self.transform.inv(y)
        return {"fn": Delta(x, event_dim=event_dim), "value": x, "is_observed": True}


__all__ = ["LatentStableReparam", "LocScaleReparam", "Reparam", "TransformReparam", "UnitJacobianReparam"]

# Pyro's module path ``pyro.infer.reparam.reparam`` (the base class lives there).
sys.modules.setdefault(__name__ + ".reparam", sys.modules[__name__])
