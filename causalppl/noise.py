"""Exogenous noise: every sample site read as ``value = f(parents, noise)``.

Counterfactuals share noise between worlds: the noise of a site is recovered
from its factual value (*abduction*, :func:`abduct`) and pushed through the
site's distribution in another world (*prediction*, :func:`predict`). One
noise model per family, the same for :meth:`SCM.counterfactual`, the world
handlers (:func:`causalppl.handlers.twin_world`) and the attribution,
mediation and causation queries:

* **location-scale** (Normal, Laplace, Cauchy, Gumbel, StudentT): the
  standardised noise ``z = (value - loc) / scale``, recovered exactly;
* **transformed** distributions (LogNormal, HalfNormal, ...): the base
  distribution's noise at the inverse-transformed value; ``Independent``: the
  base's, entry by entry;
* **Bernoulli and Categorical**: Gumbel-max, ``value = argmax(logits + g)``
  with ``g`` iid standard Gumbel (two entries for a Bernoulli, logits
  ``[0, logit p]``); abduction draws ``g`` from its exact posterior given the
  argmax (the top entry is Gumbel at ``logsumexp(logits)``, the others are
  truncated below it);
* **integer-valued** (Poisson, Binomial, Geometric, NegativeBinomial, any
  distribution on the integers): a uniform ``u`` in (0, 1) and the inverse
  CDF, ``value = min{k : F(k) >= u}``; abduction draws ``u`` uniformly on
  ``(F(k - 1), F(k)]``, its exact posterior given ``k``. A Poisson's CDF is
  the regularised incomplete gamma function; other families sum their
  probabilities;
* **other continuous** distributions with a ``cdf``: ``u = F(value)`` and
  ``value = F^{-1}(u)`` (``icdf``, or bisection on the ``cdf`` when torch has
  no ``icdf``, as for Gamma);
* **Delta**: no noise (the value is a function of the parents).

The uniform and the Gumbel-max models agree for a Bernoulli (``value = 1``
exactly when ``u = sigmoid(g_1 - g_0) > 1 - p``): both are the monotone
coupling. Families with none of these (Beta, VonMises, Dirichlet, mixtures)
raise :class:`CounterfactualError` naming the site; give such a node its
noise as an explicit parent instead.

Abduction is exact or an exact conditional draw, so given a draw of the
factual world from its posterior (by any inference method), the recovered
noise is a draw from the noise's posterior: the noise of different sites is
independent given all factual values.

>>> import torch
>>> rate = torch.tensor([1.0, 4.0])
>>> k = torch.tensor([2.0, 2.0])
>>> u = abduct(torch.distributions.Poisson(rate), k)
>>> predict(torch.distributions.Poisson(rate), u)
tensor([2., 2.])
>>> bool(predict(torch.distributions.Poisson(rate + 10), u).min() >= 2)     # monotone in the rate
True
"""

from __future__ import annotations

import math

import torch
from torch.distributions import (
    Bernoulli,
    Binomial,
    Categorical,
    Cauchy,
    Geometric,
    Gumbel,
    Independent,
    Laplace,
    Normal,
    Poisson,
    StudentT,
    TransformedDistribution,
    constraints,
)

LOCATION_SCALE = (Normal, Laplace, Cauchy, Gumbel, StudentT)
_TINY = 1e-12


class CounterfactualError(ValueError):
    """A site whose distribution has no noise model that worlds can share."""


def _where(name):
    return f"node '{name}'" if name is not None else "a sample site"


def _delta_type():
    from causalppl.distributions import Delta

    return Delta


def _shifted_type():
    from causalppl.interventions import Shifted

    return Shifted


# -- what a family's noise is ---------------------------------------------------------------


def _integer_valued(fn):
    support = fn.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return bool(getattr(support, "is_discrete", False)) and not isinstance(fn, (Bernoulli, Categorical))


def kind(fn):
    """The noise model of ``fn``: ``"none"``, ``"standard"``, ``"gumbel"``, ``"uniform"``, or ``None``.

    >>> kind(torch.distributions.Normal(0.0, 1.0)), kind(torch.distributions.Poisson(2.0))
    ('standard', 'uniform')
    >>> kind(torch.distributions.Beta(2.0, 2.0)) is None
    True
    """
    if isinstance(fn, _delta_type()):
        return "none"
    if isinstance(fn, _shifted_type()):
        return None
    if isinstance(fn, Independent):
        return kind(fn.base_dist)
    if isinstance(fn, LOCATION_SCALE):
        return "standard"
    if isinstance(fn, (Bernoulli, Categorical)):
        return "gumbel"
    if isinstance(fn, TransformedDistribution):
        return kind(fn.base_dist)
    if _integer_valued(fn):
        return "uniform"
    if _has(fn, "cdf"):
        return "uniform"
    return None


def _has(fn, method):
    """Whether ``fn`` implements ``cdf``/``icdf`` (torch raises NotImplementedError when not)."""
    try:
        probe = fn.mean.detach()
    except Exception:
        probe = torch.zeros(fn.batch_shape + fn.event_shape)
    if method == "icdf":
        probe = torch.full_like(probe, 0.5)
    try:
        getattr(fn, method)(probe)
    except NotImplementedError:
        return False
    except Exception:  # e.g. a value outside a bounded support: implemented all the same
        return True
    return True


def is_invertible(fn):
    """Whether abduction under ``fn`` is the exact fast path: the noise is a function of the value
    (location-scale, transformed, continuous with a ``cdf``, Delta) or, for Bernoulli and
    Categorical, an exact Gumbel posterior. Integer-valued families (Poisson, ...) are not:
    their counterfactuals go through the world handlers.

    >>> is_invertible(torch.distributions.Normal(0.0, 1.0)), is_invertible(torch.distributions.Poisson(1.0))
    (True, False)
    """
    found = kind(fn)
    if found in ("none", "standard", "gumbel"):
        return True
    return found == "uniform" and not _integer_valued(_innermost(fn))


def _innermost(fn):
    while isinstance(fn, (Independent, TransformedDistribution)):
        fn = fn.base_dist
    return fn


# -- abduction and prediction -----------------------------------------------------------------


def _gumbel(shape, like):
    uniform = torch.rand(shape, dtype=like.dtype, device=like.device).clamp(1e-12, 1 - 1e-7)
    return -torch.log(-torch.log(uniform))


def two_class_logits(fn):
    logits = fn.logits
    return torch.stack([torch.zeros_like(logits), logits], -1)


def posterior_gumbel(logits, index):
    """Gumbel noise g with ``argmax(logits + g) == index``, drawn from its posterior.

    The maximum of ``logits + g`` is Gumbel(logsumexp(logits)); every other
    entry is a Gumbel at its logit truncated below that maximum.
    """
    logits = logits.expand(torch.broadcast_shapes(index.shape, logits.shape[:-1]) + logits.shape[-1:])
    index = index.long().expand(logits.shape[:-1]).unsqueeze(-1)
    top = torch.logsumexp(logits, -1, keepdim=True) + _gumbel(logits.shape[:-1] + (1,), logits)
    others = logits + _gumbel(logits.shape, logits)
    truncated = -torch.log(torch.exp(-top) + torch.exp(-others))
    perturbed = truncated.scatter(-1, index, top)
    return perturbed - logits


def abduct(fn, value, name=None):
    """The noise that, under distribution ``fn``, produced ``value`` (or a draw from its posterior).

    Returns ``None`` for a Delta (no noise). Raises :class:`CounterfactualError`
    naming the node for a family without a noise model.
    """
    value = torch.as_tensor(value)
    if isinstance(fn, _delta_type()):
        return None
    if isinstance(fn, _shifted_type()):
        raise CounterfactualError(f"{_where(name)}: its value was shifted by an intervention, so its noise "
                                  "cannot be recovered from it; abduct in the SCM before the shift")
    if isinstance(fn, Independent):
        return abduct(fn.base_dist, value, name)
    if isinstance(fn, LOCATION_SCALE):
        return (value - fn.loc) / fn.scale
    if isinstance(fn, Bernoulli):
        return posterior_gumbel(two_class_logits(fn), value)
    if isinstance(fn, Categorical):
        return posterior_gumbel(fn.logits, value)
    if isinstance(fn, TransformedDistribution):
        base_value = value
        for transform in reversed(fn.transforms):
            base_value = transform.inv(base_value)
        return abduct(fn.base_dist, base_value, name)
    if _integer_valued(fn):
        return _abduct_integer(fn, value)
    try:
        return fn.cdf(value)
    except NotImplementedError:
        pass
    raise CounterfactualError(
        f"{_where(name)}: {type(fn).__name__} has no noise model that counterfactual worlds can share "
        "(location-scale, Bernoulli/Categorical by Gumbel-max, an integer distribution by its inverse CDF, "
        "or a continuous distribution with a cdf); give its noise as an explicit parent node instead"
    )


def predict(fn, noise, name=None):
    """The value distribution ``fn`` gives with ``noise`` (the inverse of :func:`abduct`)."""
    if isinstance(fn, _delta_type()):
        return fn.v
    if isinstance(fn, _shifted_type()):
        return fn.transform(predict(fn.base, noise, name))
    if noise is None:
        raise CounterfactualError(f"{_where(name)}: no noise to predict its {type(fn).__name__} value from "
                                  "(it was deterministic where the noise was recovered)")
    if isinstance(fn, Independent):
        return predict(fn.base_dist, noise, name)
    if isinstance(fn, LOCATION_SCALE):
        return fn.loc + fn.scale * noise
    if isinstance(fn, Bernoulli):
        return (two_class_logits(fn) + noise).argmax(-1).to(fn.logits.dtype)
    if isinstance(fn, Categorical):
        return (fn.logits + noise).argmax(-1)
    if isinstance(fn, TransformedDistribution):
        value = predict(fn.base_dist, noise, name)
        for transform in fn.transforms:
            value = transform(value)
        return value
    if _integer_valued(fn):
        return _integer_icdf(fn, noise)
    try:
        return fn.icdf(noise)
    except NotImplementedError:
        pass
    if _has(fn, "cdf"):
        return _bisect_icdf(fn, noise)
    raise CounterfactualError(f"{_where(name)}: {type(fn).__name__} has no icdf or cdf to predict from its noise")


# -- moving noise between families (mechanism replacement) ----------------------------------------


def _standard_cdf(fn, z):
    if isinstance(fn, Normal):
        return 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    if isinstance(fn, Laplace):
        return torch.where(z < 0, 0.5 * torch.exp(z), 1 - 0.5 * torch.exp(-z))
    if isinstance(fn, Cauchy):
        return 0.5 + torch.atan(z) / math.pi
    if isinstance(fn, Gumbel):
        return torch.exp(-torch.exp(-z))
    return None


def _standard_icdf(fn, u):
    if isinstance(fn, Normal):
        return math.sqrt(2) * torch.erfinv(2 * u - 1)
    if isinstance(fn, Laplace):
        return -torch.sign(u - 0.5) * torch.log1p(-2 * (u - 0.5).abs())
    if isinstance(fn, Cauchy):
        return torch.tan(math.pi * (u - 0.5))
    if isinstance(fn, Gumbel):
        return -torch.log(-torch.log(u))
    return None


def _family(fn):
    fn = _innermost(fn)
    found = kind(fn)
    if found == "standard":
        return ("standard", type(fn).__name__)
    if found == "gumbel":
        return ("gumbel", 2 if isinstance(fn, Bernoulli) else fn.logits.shape[-1])
    return (found,)


def transfer(source, noise, target, name=None):
    """``noise`` recovered under ``source`` as noise for ``target`` (a replaced mechanism's family).

    The same family keeps the noise as it is. Otherwise the noise travels as
    its uniform ``u`` (``Phi(z)`` for a Normal's ``z``, ``sigmoid(g_1 - g_0)``
    for a Bernoulli's Gumbels): the monotone coupling between the two families.
    A Categorical with more than two states shares its Gumbels only with a
    Categorical of as many states.
    """
    Shifted = _shifted_type()
    source = source.base if isinstance(source, Shifted) else source
    target = target.base if isinstance(target, Shifted) else target
    have, want = _family(source), _family(target)
    if have == want or noise is None:
        return noise
    u = _to_uniform(source, noise, name)
    return _from_uniform(target, u, name)


def _to_uniform(fn, noise, name):
    inner = _innermost(fn)
    family = _family(fn)
    if family[0] == "uniform":
        return noise
    if family[0] == "standard":
        u = _standard_cdf(inner, noise)
        if u is not None:
            return u.clamp(_TINY, 1 - _TINY)
    if family == ("gumbel", 2):
        return torch.sigmoid(noise[..., 1] - noise[..., 0]).clamp(_TINY, 1 - _TINY)
    raise CounterfactualError(f"{_where(name)}: its noise ({type(inner).__name__}) cannot be carried over to a "
                              "mechanism of another family")


def _from_uniform(fn, u, name):
    inner = _innermost(fn)
    family = _family(fn)
    if family[0] == "uniform":
        return u
    if family[0] == "standard":
        z = _standard_icdf(inner, u)
        if z is not None:
            return z
    if family == ("gumbel", 2):
        g0 = _gumbel(u.shape, u)
        return torch.stack([g0, g0 + torch.logit(u)], -1)
    raise CounterfactualError(f"{_where(name)}: a {type(inner).__name__} mechanism cannot take the noise of "
                              "another family")


# -- integer-valued families: the inverse CDF ---------------------------------------------------


def _float64(tensor):
    return tensor.double() if tensor.device.type != "mps" else tensor.float()


def _integer_cdf(fn, k):
    """``P(X <= k)`` for integer ``k`` (float64), broadcast with ``fn``'s batch."""
    k = _float64(torch.as_tensor(k))
    if isinstance(fn, Poisson):
        rate = _float64(fn.rate)
        cdf = torch.special.gammaincc(k.clamp(min=0) + 1, rate.expand(torch.broadcast_shapes(rate.shape, k.shape)))
        return torch.where(k < 0, torch.zeros_like(cdf), cdf)
    if isinstance(fn, Geometric):
        p = _float64(fn.probs)
        cdf = 1 - (1 - p) ** (k.clamp(min=0) + 1)
        return torch.where(k < 0, torch.zeros_like(cdf), cdf)
    return _table_cdf(fn, k)


def _lower_bound(fn):
    support = fn.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    bound = getattr(support, "lower_bound", 0)
    if isinstance(bound, torch.Tensor):
        bound = float(bound.min())
    return int(bound)


def _table_cdf(fn, k):
    """The CDF at ``k`` by summing probabilities from the support's lower bound up to ``max(k)``."""
    low = _lower_bound(fn)
    top = int(k.max().clamp(min=low)) if k.numel() else low
    if top - low > 10_000_000:
        raise CounterfactualError(f"{type(fn).__name__}: values up to {top} are too large to sum probabilities to")
    batch = tuple(fn.batch_shape)
    shape = torch.broadcast_shapes(k.shape, batch)
    grid = torch.arange(low, top + 1, device=k.device, dtype=torch.get_default_dtype())
    table = torch.cumsum(_float64(_pmf(fn, grid.reshape((-1,) + (1,) * len(batch)))), 0)
    rows = table.shape[0]
    table = table.reshape((rows,) + (1,) * (len(shape) - len(batch)) + batch).expand((rows,) + shape)
    index = (k - low).clamp(min=-1, max=top - low).long().expand(shape)
    found = table.gather(0, index.clamp(min=0).unsqueeze(0)).squeeze(0)
    return torch.where(index < 0, torch.zeros_like(found), found)


def _pmf(fn, grid):
    """``P(X = grid)`` with values outside the support (a Binomial past its count) at zero."""
    validate = fn._validate_args
    fn._validate_args = False
    try:
        log_prob = fn.log_prob(grid)
    finally:
        fn._validate_args = validate
    inside = fn.support.check(grid)
    return torch.where(inside & torch.isfinite(log_prob), log_prob.exp(), torch.zeros_like(log_prob))


def _abduct_integer(fn, value):
    value = _float64(torch.as_tensor(value))
    low = _integer_cdf(fn, value - 1)
    high = _integer_cdf(fn, value)
    shape = torch.broadcast_shapes(low.shape, high.shape)
    r = 1 - torch.rand(shape, dtype=low.dtype, device=low.device)  # in (0, 1]: u lands in (F(k-1), F(k)]
    return low + (high - low) * r


def _integer_icdf(fn, u):
    """``min{k : F(k) >= u}`` by bisection on the integers (vectorised, float64)."""
    u = _float64(torch.as_tensor(u))
    dtype = fn.mean.dtype if fn.mean.is_floating_point() else torch.get_default_dtype()
    try:
        mean, std = _float64(fn.mean.detach()), _float64(fn.stddev.detach())
    except NotImplementedError:
        mean, std = torch.zeros((), dtype=u.dtype, device=u.device), torch.ones((), dtype=u.dtype, device=u.device)
    low = _lower_bound(fn)
    shape = torch.broadcast_shapes(u.shape, fn.batch_shape)
    high = torch.ceil(mean + 10 * std + 10).clamp(min=low).expand(shape).clone()
    if isinstance(fn, Binomial):
        high = torch.minimum(high, _float64(fn.total_count).expand(shape))
    u = u.expand(shape).clamp(max=1 - 1e-15)
    for _ in range(64):  # grow the bracket until F(high) >= u everywhere
        short = _integer_cdf(fn, high) < u
        if not bool(short.any()):
            break
        high = torch.where(short, high * 2 + 1, high)
    lowest = torch.full(shape, low - 1, dtype=u.dtype, device=u.device)  # F(low - 1) = 0 < u
    while bool((high - lowest > 1).any()):
        middle = torch.floor((lowest + high) / 2)
        above = _integer_cdf(fn, middle) >= u
        high = torch.where(above, middle, high)
        lowest = torch.where(above, lowest, middle)
    return high.to(dtype)


def _bisect_icdf(fn, u, steps=100):
    """``F^{-1}(u)`` for a continuous ``fn`` with a ``cdf`` but no ``icdf`` (Gamma, ...), by bisection."""
    u = torch.as_tensor(u)
    shape = torch.broadcast_shapes(u.shape, fn.batch_shape)
    mean, std = fn.mean.detach(), fn.stddev.detach()
    support = fn.support
    lower = getattr(support, "lower_bound", None)
    upper = getattr(support, "upper_bound", None)
    low = (mean - 20 * std - 1).expand(shape).clone()
    high = (mean + 20 * std + 1).expand(shape).clone()
    if lower is not None:
        low = torch.maximum(low, torch.as_tensor(lower, dtype=low.dtype, device=low.device).expand(shape))
    if upper is not None:
        high = torch.minimum(high, torch.as_tensor(upper, dtype=high.dtype, device=high.device).expand(shape))
    for _ in range(60):
        too_low = fn.cdf(high) < u
        if not bool(too_low.any()):
            break
        high = torch.where(too_low, high + (high - low), high)
    for _ in range(steps):
        middle = (low + high) / 2
        above = fn.cdf(middle) >= u
        high = torch.where(above, middle, high)
        low = torch.where(above, low, middle)
    return (low + high) / 2
