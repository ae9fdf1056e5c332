"""Interventions beyond setting a value: functional (shift), stochastic, and from another world.

The runtime's :class:`causalppl.handlers.do` takes, per site,

* a number or tensor: the site is set to it (Pearl's ``do``);
* a callable: a *functional* intervention. Its first parameter (or the one
  named after the site) receives the site's natural value -- drawn from the
  site's own distribution, or in a counterfactual world from the noise it
  shares with the factual world -- and the value is what it returns
  (``lambda x: x + 1`` is a shift). Further parameters name earlier sites,
  whose values (in the same world) they receive;
* a ``torch.distributions.Distribution``: a *stochastic* intervention; the
  site is drawn afresh from it, independently of everything else (in a
  counterfactual world too: the randomisation is not the unit's noise);
* :func:`from_world` ``(k)``: inside :func:`causalppl.handlers.multi_world`,
  the value the site takes in world ``k`` (for nested counterfactuals);
* any object with a ``world_value(context)`` method (:class:`Context`), such
  as the SCM's own interventions.

:class:`Shifted` is the distribution of a functionally intervened node in a
lowered SCM: draws are ``transform(natural draw)``.

>>> import torch, causalppl as cp
>>> def model():
...     return cp.sample("x", cp.dist.Normal(0.0, 1e-6))
>>> round(cp.handlers.do(model, data={"x": lambda x: x + 1})().item(), 3)
1.0
"""

from __future__ import annotations

import inspect

import torch
from torch.distributions import Distribution, constraints


class Shifted(Distribution):
    """The law of ``transform(X)`` for ``X ~ base``: a functionally intervened node's distribution.

    Draws apply ``transform`` to draws of ``base`` (reparameterised when
    ``base`` is), so the natural value and its shift share their randomness.
    ``log_prob`` is exact for a discrete ``base`` with an enumerable support
    (the probabilities of the states mapped to the value); a continuous
    shifted value has no known density (the transform is any function).

    >>> d = Shifted(torch.distributions.Bernoulli(torch.tensor(0.3)), lambda t: 1 - t)
    >>> round(d.log_prob(torch.tensor(1.0)).exp().item(), 4)
    0.7
    """

    arg_constraints = {}

    def __init__(self, base, transform, validate_args=False):
        self.base = base
        self.transform = transform
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def has_rsample(self):
        return self.base.has_rsample

    @property
    def support(self):
        return constraints.integer if getattr(self.base.support, "is_discrete", False) else constraints.real

    def _apply(self, natural):
        value = torch.as_tensor(self.transform(natural))
        if value.shape != natural.shape:
            value = value.expand(torch.broadcast_shapes(value.shape, natural.shape))
        if not value.is_floating_point() and natural.is_floating_point():
            value = value.to(natural.dtype)
        return value

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self._apply(self.base.sample(sample_shape))

    def rsample(self, sample_shape=torch.Size()):
        return self._apply(self.base.rsample(sample_shape))

    def expand(self, batch_shape, _instance=None):
        return Shifted(self.base.expand(batch_shape), self.transform)

    def log_prob(self, value):
        base = self.base
        if getattr(base.support, "is_discrete", False) and base.has_enumerate_support:
            states = base.enumerate_support(expand=True)
            images = self._apply(states)
            probs = base.log_prob(states).exp()
            hit = (images == value).to(probs.dtype)
            return torch.log((probs * hit).sum(0))
        raise ValueError("the density of a functionally intervened (shifted) value is not known: the shift "
                         f"is any function of a {type(base).__name__} draw; observe the node before the shift")

    def __repr__(self):
        return f"Shifted({self.base!r}, {getattr(self.transform, '__name__', 'transform')})"


class Context:
    """What an intervention sees in one world at one site (see :class:`causalppl.handlers.twin_world`).

    ``site``: the site's name; ``world``: the world's index (0 is factual);
    ``shape``: the shape of one world's value; ``fn``: the site's
    distribution in the factual world's terms (its batch may span the worlds);
    ``noise``: the factual noise (``None`` outside the world handlers, or for
    a Delta); :meth:`natural` the site's natural value in this world;
    :meth:`lookup` an earlier site's value in this world; :meth:`in_world`
    this site's value in another world.
    """

    def __init__(self, site, world, shape, fn, noise, natural, lookup, in_world):
        self.site, self.world, self.shape, self.fn = site, world, shape, fn
        self._noise, self._natural, self._lookup, self._in_world = noise, natural, lookup, in_world

    @property
    def noise(self):
        return self._noise() if callable(self._noise) else self._noise

    def natural(self):
        return self._natural()

    def lookup(self, name):
        return self._lookup(name)

    def in_world(self, world):
        return self._in_world(world)


def fit_shape(site, value, shape, like=None):
    """``value`` broadcast to ``shape`` (a site's value in one world); the error names the site."""
    value = torch.as_tensor(value, device=like.device if like is not None else None)
    if like is not None and value.is_floating_point() != like.is_floating_point() and like.is_floating_point():
        value = value.to(like.dtype)
    try:
        return torch.broadcast_to(value, shape)
    except RuntimeError:
        raise ValueError(f"site '{site}': the intervention gave a value of shape {tuple(value.shape)}, which "
                         f"does not fit the site's shape {tuple(shape)}") from None


def draw_like(distribution, shape):
    """A fresh draw from ``distribution`` with ``shape`` (its batch broadcast, or drawn ``shape`` times)."""
    event = tuple(distribution.event_shape)
    batch = tuple(shape)[: len(shape) - len(event)] if event else tuple(shape)
    try:
        expanded = distribution.expand(torch.Size(torch.broadcast_shapes(batch, distribution.batch_shape)))
    except (RuntimeError, ValueError, NotImplementedError):
        expanded = distribution
    with torch.no_grad():
        return expanded.sample()


class Fixed:
    """A value the site is set to (Pearl's ``do``)."""

    kind = "do"

    def __init__(self, value):
        self.value = value

    def world_value(self, context):
        return self.value

    def __repr__(self):
        return f"do({self.value!r})"


class Functional:
    """``fn(natural value, **earlier sites)``: a shift or any function of the site's natural value.

    ``natural``: the parameter that receives the natural value; ``others``: the
    names of the earlier sites the other parameters receive.
    """

    kind = "shift"

    def __init__(self, fn, natural=None, others=(), text=None):
        self.fn, self.natural, self.others, self.text = fn, natural, tuple(others), text

    def __call__(self, natural, **others):
        arguments = dict(others)
        if self.natural is not None:
            arguments[self.natural] = natural
        return self.fn(**arguments) if self.natural is not None else self.fn(natural, **others)

    def world_value(self, context):
        return self(context.natural(), **{name: context.lookup(name) for name in self.others})

    def __repr__(self):
        return f"shift({self.text or getattr(self.fn, '__name__', 'fn')})"


def functional(site, fn, text=None):
    """A :class:`Functional` from a callable: its natural-value parameter and the sites it reads.

    One required parameter (any name) receives the natural value; with more,
    the one named ``site`` does, and the others name earlier sites.

    >>> f = functional("x", lambda x, z: x + z)
    >>> f.natural, f.others, f(torch.tensor(1.0), z=torch.tensor(2.0))
    ('x', ('z',), tensor(3.))
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: one argument, the natural value
        return Functional(lambda value: fn(value), "value", (), text)
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"node '{site}': a functional intervention's parameters must be named "
                            f"(*{parameter.name} / **{parameter.name} is not allowed)")
        if parameter.default is parameter.empty:
            names.append(parameter.name)
    if not names:
        raise TypeError(f"node '{site}': a functional intervention takes the node's natural value as its "
                        "parameter (lambda x: x + 1)")
    if len(names) == 1:
        return Functional(fn, names[0], (), text)
    if site not in names:
        raise TypeError(f"node '{site}': a functional intervention with several parameters "
                        f"({', '.join(names)}) must name one of them '{site}' (it receives the natural value)")
    return Functional(fn, site, tuple(name for name in names if name != site), text)


class Randomized:
    """A stochastic intervention: the site is drawn afresh from ``distribution``.

    ``distribution`` is a Distribution, or a callable of the earlier sites
    named in ``others`` that returns one (a policy that depends on covariates).
    """

    kind = "stochastic"

    def __init__(self, distribution, others=(), text=None):
        self.distribution, self.others, self.text = distribution, tuple(others), text

    def law(self, **others):
        if isinstance(self.distribution, Distribution):
            return self.distribution
        return self.distribution(**others)

    def world_value(self, context):
        law = self.law(**{name: context.lookup(name) for name in self.others})
        return draw_like(law, context.shape)

    def __repr__(self):
        return f"stochastic({self.text or self.distribution!r})"


class from_world:
    """The value the site takes in world ``world`` (inside :func:`causalppl.handlers.multi_world`).

    For nested counterfactuals: ``do(data={"x": 1.0, "m": from_world(1)})``
    sets ``m`` to its value in world 1 (say, the world where ``x = 0``).
    """

    kind = "from_world"

    def __init__(self, world):
        if not isinstance(world, int) or world < 0:
            raise ValueError(f"from_world: the world must be a non-negative int (0 is factual), got {world!r}")
        self.world = world

    def world_value(self, context):
        return context.in_world(self.world)

    def __repr__(self):
        return f"from_world({self.world})"


def as_world_intervention(site, value):
    """A handler's ``do`` value as an intervention object (numbers and tensors as :class:`Fixed`)."""
    if hasattr(value, "world_value"):
        return value
    if isinstance(value, Distribution):
        return Randomized(value)
    if callable(value) and not isinstance(value, torch.Tensor):
        return functional(site, value)
    from causalppl.runtime import as_tensor

    return Fixed(as_tensor(value))
