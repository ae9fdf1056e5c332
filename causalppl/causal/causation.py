"""Probabilities of causation for a binary treatment and outcome (Pearl 1999; Tian & Pearl 2000).

With ``x``/``x'`` the treated/control levels and ``y``/``y'`` the outcome
present/absent:

* probability of necessity ``PN = P(Y_x' = y' | X = x, Y = y)``: of those
  treated with the outcome, the share who would not have had it untreated;
* probability of sufficiency ``PS = P(Y_x = y | X = x', Y = y')``;
* probability of necessity and sufficiency ``PNS = P(Y_x = y, Y_x' = y')``.

:func:`probabilities_of_causation` computes them from a known SCM by
counterfactuals over shared noise; :func:`causation_bounds` bounds them from
data when the SCM is not known (Tian & Pearl 2000, Theorems 1-3 and 9).

>>> import causalppl as cp
>>> cp.set_rng_seed(0)
>>> data = {"x": [1, 1, 1, 0, 0, 0, 1, 0], "y": [1, 1, 0, 0, 0, 1, 1, 0]}
>>> bounds = causation_bounds(data, "x", "y", experimental=(0.7, 0.3))
>>> [round(b, 3) for b in bounds.pns]
[0.4, 0.65]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from causalppl.causal.worlds import propagate, require_nodes, require_plain, sample_noise
from causalppl.graph.lower import table_to_tensors


@dataclass
class Causation:
    """PN, PS and PNS from an SCM, with Monte Carlo standard errors (``stderr``: name -> float)."""

    pn: float
    ps: float
    pns: float
    stderr: dict
    n: int

    def __getitem__(self, name):
        """``result["pn"]`` is ``result.pn`` (likewise "ps", "pns")."""
        return getattr(self, name.lower())

    def __str__(self):
        return "  ".join(f"{name.upper()} {getattr(self, name):.4g} ± {self.stderr[name]:.2g}"
                         for name in ("pn", "ps", "pns"))


def _indicator(values, node, level):
    return values[node].reshape(values[node].shape[0], -1)[:, 0] == level


def _ratio(numerator, denominator):
    """``P(A and B) / P(B)`` from row indicators, and its binomial standard error on the rows in B."""
    given = int(denominator.sum())
    if given == 0:
        return math.nan, math.nan
    p = float((numerator & denominator).sum()) / given
    return p, math.sqrt(p * (1 - p) / given)


def probabilities_of_causation(scm, treatment, outcome, treated=1, control=0, outcome_level=1, n=100000,
                               **inputs):
    """PN, PS and PNS of ``treatment`` for ``outcome`` in ``scm``, by counterfactuals over shared noise.

    Each of ``n`` draws of the noise gives the factual world and the worlds
    ``do(treatment=treated)`` and ``do(treatment=control)``; the outcome is
    "present" when it equals ``outcome_level``. Levels may be labels.
    A Bernoulli or Categorical node's noise is its Gumbel-max noise; write
    the exogenous variables as nodes (with deterministic ``Delta``
    mechanisms below them) to pin down any other structural model.

    Returns a :class:`Causation`; PN (PS) is NaN when no draw is treated
    with the outcome (untreated without it).

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.SCM().add("u", "Bernoulli(0.4)").add("x", "Bernoulli(0.5)").add("y", "Delta(x * u)")
    >>> result = probabilities_of_causation(scm, "x", "y", n=20000)
    >>> result.pn, round(result.pns, 1)   # y = x u: whenever y happened, x was necessary
    (1.0, 0.4)
    """
    require_nodes(scm, treatment, outcome)
    require_plain(scm, "probabilities_of_causation")
    if treatment == outcome:
        raise ValueError(f"treatment and outcome are both '{treatment}'")
    high, low = scm.encode(treatment, treated), scm.encode(treatment, control)
    level = scm.encode(outcome, outcome_level)
    draw = sample_noise(scm, n, **inputs)
    factual = draw.values
    y_high = _indicator(propagate(scm, draw.noise, draw.weights, fixed={treatment: high}, inputs=inputs),
                        outcome, level)
    y_low = _indicator(propagate(scm, draw.noise, draw.weights, fixed={treatment: low}, inputs=inputs),
                       outcome, level)
    x_high, x_low = _indicator(factual, treatment, high), _indicator(factual, treatment, low)
    y = _indicator(factual, outcome, level)
    pn, pn_se = _ratio(~y_low, x_high & y)
    ps, ps_se = _ratio(y_high, x_low & ~y)
    pns, pns_se = _ratio(y_high & ~y_low, torch.ones_like(y))
    return Causation(pn, ps, pns, {"pn": pn_se, "ps": ps_se, "pns": pns_se}, n)


# ---------------------------------------------------------------------------
# bounds from data


@dataclass
class CausationBounds:
    """Lower and upper bounds ``(low, high)`` on PN, PS and PNS, and the probabilities they came from.

    ``inputs`` holds ``P(x, y)``-style joint probabilities from the
    observational data and ``P(y_x)``, ``P(y_x')`` (experimental, or their
    assumed values); ``assumption`` says which.
    """

    pn: tuple
    ps: tuple
    pns: tuple
    inputs: dict
    assumption: str

    def __getitem__(self, name):
        """``bounds["pn"]`` is ``bounds.pn``: the pair ``(low, high)``."""
        return getattr(self, name.lower())

    def contains(self, name, value, tolerance=0.0):
        """Whether ``value`` lies within the bounds on ``name`` ("pn", "ps" or "pns"), up to ``tolerance``."""
        low, high = getattr(self, name)
        return low - tolerance <= value <= high + tolerance

    def __str__(self):
        lines = [f"probabilities of causation ({self.assumption}):"]
        lines += [f"  {name.upper():<3} in [{getattr(self, name)[0]:.4g}, {getattr(self, name)[1]:.4g}]"
                  for name in ("pn", "ps", "pns")]
        return "\n".join(lines)


def _binary_column(data, name, level, what):
    columns = table_to_tensors(data, scalars=False)
    if name not in columns:
        raise KeyError(f"{what} has no column '{name}' (columns: {', '.join(columns)})")
    values = columns[name].reshape(-1)
    return values == float(level)


def _joint(data, treatment, outcome, treated, control, outcome_level, what):
    """``P(x, y)``, ``P(x, y')``, ``P(x', y)``, ``P(x', y')`` from rows (rows at other levels are dropped)."""
    x = _binary_column(data, treatment, treated, what)
    x_low = _binary_column(data, treatment, control, what)
    y = _binary_column(data, outcome, outcome_level, what)
    keep = x | x_low
    total = int(keep.sum())
    if total == 0:
        raise ValueError(f"{what}: no row has {treatment} at {treated!r} or {control!r}")

    def share(mask):
        return float((mask & keep).sum()) / total

    return {"P(x,y)": share(x & y), "P(x,y')": share(x & ~y), "P(x',y)": share(x_low & y),
            "P(x',y')": share(x_low & ~y)}


def _experimental(experimental, treatment, outcome, treated, control, outcome_level):
    """``(P(y_x), P(y_x'))`` from a pair of probabilities or from rows of a randomised experiment."""
    if isinstance(experimental, (tuple, list)) and len(experimental) == 2 and all(
            isinstance(p, (int, float)) for p in experimental):
        return float(experimental[0]), float(experimental[1])
    if hasattr(experimental, "items") and treated in experimental and control in experimental and all(
            isinstance(experimental[k], (int, float)) for k in (treated, control)):
        return float(experimental[treated]), float(experimental[control])  # {treated: P(y_x), control: P(y_x')}
    joint = _joint(experimental, treatment, outcome, treated, control, outcome_level, "experimental data")
    treated_share = joint["P(x,y)"] + joint["P(x,y')"]
    control_share = joint["P(x',y)"] + joint["P(x',y')"]
    if treated_share == 0 or control_share == 0:
        raise ValueError("experimental data need rows in both arms")
    return joint["P(x,y)"] / treated_share, joint["P(x',y)"] / control_share


def _clip(low, high):
    """A bound pair within [0, 1] (estimated probabilities can cross slightly: then they meet)."""
    low, high = min(max(low, 0.0), 1.0), min(max(high, 0.0), 1.0)
    return (low, high) if low <= high else ((low + high) / 2, (low + high) / 2)


def _divide(a, b):
    return a / b if b > 0 else math.nan


def _tian_pearl(p, y_x, y_x0):
    """Tian & Pearl (2000), Theorems 1-3: sharp bounds from P(x, y) and P(y_x), P(y_x')."""
    p_y = p["P(x,y)"] + p["P(x',y)"]
    pns = (max(0.0, y_x - y_x0, p_y - y_x0, y_x - p_y),
           min(y_x, 1 - y_x0, p["P(x,y)"] + p["P(x',y')"], y_x - y_x0 + p["P(x,y')"] + p["P(x',y)"]))
    pn = (max(0.0, _divide(p_y - y_x0, p["P(x,y)"])),
          min(1.0, _divide((1 - y_x0) - p["P(x',y')"], p["P(x,y)"])))
    ps = (max(0.0, _divide(y_x - p_y, p["P(x',y')"])),
          min(1.0, _divide(y_x - p["P(x,y)"], p["P(x',y')"])))
    return _clip(*pn), _clip(*ps), _clip(*pns)


def causation_bounds(data, treatment, outcome, experimental=None, exogenous=False, treated=1, control=0,
                     outcome_level=1):
    """Bounds on PN, PS and PNS from data, when the SCM is not known (Tian & Pearl 2000).

    Parameters
    ----------
    data : dict of columns or DataFrame
        Observational rows with the ``treatment`` and ``outcome`` columns.
    experimental : optional
        ``P(y | do(x))`` and ``P(y | do(x'))`` as a pair of numbers (or a
        dict ``{treated: p, control: p}``), or the rows of a randomised
        experiment (the same two columns).
    exogenous : bool
        Assume no confounding, so ``P(y_x) = P(y | x)`` (used when no
        experimental data are given).

    Without either, only the observational constraints apply: PN and PS
    lie in [0, 1] and PNS in [0, P(x, y) + P(x', y')].

    Returns
    -------
    CausationBounds

    >>> data = {"x": [1, 1, 1, 0, 0, 0, 1, 0], "y": [1, 1, 0, 0, 0, 1, 1, 0]}
    >>> [round(b, 3) for b in causation_bounds(data, "x", "y", exogenous=True).pn]
    [0.667, 1.0]
    """
    p = _joint(data, treatment, outcome, treated, control, outcome_level, "data")
    if experimental is not None:
        y_x, y_x0 = _experimental(experimental, treatment, outcome, treated, control, outcome_level)
        assumption = "observational and experimental data"
    elif exogenous:
        treated_share, control_share = p["P(x,y)"] + p["P(x,y')"], p["P(x',y)"] + p["P(x',y')"]
        y_x, y_x0 = _divide(p["P(x,y)"], treated_share), _divide(p["P(x',y)"], control_share)
        assumption = "observational data, no confounding assumed"
    else:
        inputs = dict(p)
        return CausationBounds((0.0, 1.0), (0.0, 1.0), (0.0, p["P(x,y)"] + p["P(x',y')"]), inputs,
                               "observational data only")
    pn, ps, pns = _tian_pearl(p, y_x, y_x0)
    return CausationBounds(pn, ps, pns, {**p, "P(y_x)": y_x, "P(y_x')": y_x0}, assumption)
