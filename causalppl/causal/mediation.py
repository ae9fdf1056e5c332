"""Natural direct and indirect effects through nested counterfactuals (Pearl 2001).

With treatment ``T`` moved from ``control`` (``t0``) to ``treated`` (``t1``)
and mediators ``M``:

* natural direct effect ``NDE = E[Y(t1, M(t0))] - E[Y(t0, M(t0))]``: the
  treatment changes, the mediators keep the values they would have had
  without it;
* natural indirect effect ``NIE = E[Y(t1, M(t1))] - E[Y(t1, M(t0))]``: the
  treatment stays at ``t1``, the mediators move as the treatment would move
  them; so ``NDE + NIE`` is the total effect.

``Y(t1, M(t0))`` is a nested counterfactual: every world shares the same
exogenous noise (:mod:`causalppl.causal.worlds`); the mediators' values in
the world ``do(T=t0)`` are held, row by row, in the world ``do(T=t1)``.
Several mediators are held jointly (the effect through the set).

>>> import causalppl as cp
>>> cp.set_rng_seed(0)
>>> scm = cp.SCM().add("x", "Normal(0, 1)").add("m", "Normal(2*x, 1)").add("y", "Normal(3*m + x, 1)")
>>> effect = mediation(scm, "x", "m", "y", n=2000)
>>> round(effect.nde, 4), round(effect.nie, 4), round(effect.total, 4)
(1.0, 6.0, 7.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from causalppl.causal.queries import _fmt
from causalppl.causal.worlds import arm, propagate, require_nodes, require_plain, sample_noise


@dataclass
class MediationResult:
    """Natural direct and indirect effects, each with its Monte Carlo standard error.

    ``nde`` and ``nie`` add up to ``total`` (the average treatment effect);
    ``nie_pure`` is the indirect effect at the control level,
    ``E[Y(t0, M(t1))] - E[Y(t0, M(t0))]`` (equal to ``nie`` when the
    treatment and the mediators do not interact).
    """

    treatment: str
    mediators: tuple
    outcome: str
    treated: object
    control: object
    nde: float
    nie: float
    total: float
    nie_pure: float
    stderr: dict
    n: int

    @property
    def proportion_mediated(self):
        """``NIE / total`` (NaN when the total effect is zero)."""
        return self.nie / self.total if self.total != 0 else math.nan

    def __str__(self):
        through = ", ".join(self.mediators)
        return (f"mediation of {self.treatment} -> {self.outcome} through {through} "
                f"(do({self.treatment}={_fmt(self.treated)}) vs {_fmt(self.control)}, n={self.n}):\n"
                f"  natural direct effect   {self.nde:.4g} ± {self.stderr['nde']:.2g}\n"
                f"  natural indirect effect {self.nie:.4g} ± {self.stderr['nie']:.2g}\n"
                f"  total effect            {self.total:.4g} ± {self.stderr['total']:.2g}")


def _mediators(scm, treatment, mediator, outcome):
    mediators = (mediator,) if isinstance(mediator, str) else tuple(mediator)
    if not mediators:
        raise ValueError("mediation needs at least one mediator")
    require_nodes(scm, treatment, outcome, *mediators)
    for name in mediators:
        if name in (treatment, outcome):
            raise ValueError(f"mediator '{name}' is also the treatment or the outcome")
    if treatment == outcome:
        raise ValueError(f"treatment and outcome are both '{treatment}'")
    return mediators


def _outcome(values, outcome):
    value = values[outcome]
    return value.double().reshape(value.shape[0], -1).mean(-1)


def _mean_and_stderr(rows):
    return float(rows.mean()), float(rows.std() / math.sqrt(len(rows))) if len(rows) > 1 else 0.0


def mediation(scm, treatment, mediator, outcome, treated=1.0, control=0.0, n=10000, **inputs):
    """Natural direct and indirect effects of ``treatment`` on ``outcome`` through ``mediator``.

    ``mediator`` is a node or a list of nodes (held jointly). ``treated`` and
    ``control`` may be labels, or any intervention :meth:`SCM.do` takes (a
    shift ``lambda x: x + 1`` or ``"x + 1"``, a distribution), and ``control=None``
    leaves the treatment as it is: the direct and indirect parts of a shift's
    effect. Every row's four worlds share its noise, so the standard errors
    are those of per-row differences. Works on hand-written and learned SCMs
    whose nodes have a noise model (:mod:`causalppl.noise`: count nodes too).

    Returns a :class:`MediationResult`.

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.SCM().add("x", "Bernoulli(0.5)").add("m1", "Normal(x, 1)").add("m2", "Normal(2*x + m1, 1)")
    >>> scm = scm.add("y", "Normal(m1 + m2 + 0.5*x, 1)")
    >>> effect = mediation(scm, "x", ["m1", "m2"], "y", n=2000)
    >>> round(effect.nde, 4), round(effect.nie, 4)
    (0.5, 4.0)
    """
    mediators = _mediators(scm, treatment, mediator, outcome)
    require_plain(scm, "mediation")
    high, low = arm(scm, treatment, treated), arm(scm, treatment, control)
    draw = sample_noise(scm, n, **inputs)

    def world(level, held=None):
        source, fixed = level
        return propagate(source, draw.noise, draw.weights, fixed={**fixed, **(held or {})}, inputs=inputs)

    under_low, under_high = world(low), world(high)
    held_low = {m: under_low[m] for m in mediators}
    held_high = {m: under_high[m] for m in mediators}
    y00, y11 = _outcome(under_low, outcome), _outcome(under_high, outcome)
    y10 = _outcome(world(high, held_low), outcome)  # Y(t1, M(t0))
    y01 = _outcome(world(low, held_high), outcome)  # Y(t0, M(t1))
    (nde, nde_se), (nie, nie_se) = _mean_and_stderr(y10 - y00), _mean_and_stderr(y11 - y10)
    (total, total_se), (pure, pure_se) = _mean_and_stderr(y11 - y00), _mean_and_stderr(y01 - y00)
    return MediationResult(treatment, mediators, outcome, treated, control, nde, nie, total, pure,
                           {"nde": nde_se, "nie": nie_se, "total": total_se, "nie_pure": pure_se}, n)
