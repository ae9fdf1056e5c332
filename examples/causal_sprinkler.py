"""The sprinkler: intervening, conditioning and a counterfactual on a Bayesian network.

``causalppl/graphs/sprinkler.dot``: a cloudy day turns the sprinkler on less often and
brings rain more often; the grass is wet when either ran. We compare

* P(wet | do(sprinkler=1)): switch the sprinkler on regardless of the sky;
* P(wet | sprinkler=1): days on which it happened to be on (fewer are cloudy,
  so less rain);

each by Monte Carlo, by exact enumeration of the CPTs and by variable
elimination (the default for a discrete SCM), and then ask a
counterfactual: the grass is wet and the sprinkler was on; had the sprinkler
been off, would the grass have been wet? (Bernoulli noise is shared between
the worlds by the Gumbel-max trick.)

Run ``python examples/causal_sprinkler.py [-n N]``.
"""

from __future__ import annotations

import argparse
import itertools

import causalppl as cp

# The CPTs of causalppl/graphs/sprinkler.dot: P(x = 1 | parents).
P_CLOUDY = 0.5
P_SPRINKLER = {1: 0.1, 0: 0.5}  # given cloudy
P_RAIN = {1: 0.8, 0: 0.2}  # given cloudy
P_WET = {(0, 0): 0.0, (1, 0): 0.9, (0, 1): 0.9, (1, 1): 0.99}  # given (sprinkler, rain)


def bern(p, value):
    return p if value else 1 - p


def joint(c, s, r, w):
    return bern(P_CLOUDY, c) * bern(P_SPRINKLER[c], s) * bern(P_RAIN[c], r) * bern(P_WET[s, r], w)


def exact():
    """P(wet | do(s=1)), P(wet | s=1), and the Gumbel-max counterfactual, by enumeration."""
    do = sum(bern(P_CLOUDY, c) * bern(P_RAIN[c], r) * P_WET[1, r] for c, r in itertools.product((0, 1), repeat=2))
    on = sum(joint(c, 1, r, w) for c, r, w in itertools.product((0, 1), repeat=3))
    wet_on = sum(joint(c, 1, r, 1) for c, r in itertools.product((0, 1), repeat=2))
    # Binary Gumbel-max is a logistic threshold: wet stays 1 when the sprinkler is
    # switched off with probability min(p_off, p_on) / p_on, given rain.
    counterfactual = sum(
        joint(c, 1, r, 1) / wet_on * min(P_WET[0, r], P_WET[1, r]) / P_WET[1, r]
        for c, r in itertools.product((0, 1), repeat=2)
    )
    return {"do": do, "conditional": wet_on / on, "counterfactual": counterfactual}


def main(n=20_000, quiet=False, seed=0):
    say = (lambda *a: None) if quiet else print
    cp.set_rng_seed(seed)
    scm = cp.graphs.load("sprinkler")
    truth = exact()

    do = cp.causal.interventional(scm, do={"sprinkler": 1.0}, n=n, method="sample").summary("wet")
    given = cp.causal.interventional(scm, evidence={"sprinkler": 1.0}, n=n, method="sample").summary("wet")
    say(f"P(wet | do(sprinkler=1)) = {do.mean:.4f} ± {do.stderr:.4f}   exact {truth['do']:.4f}")
    say(f"P(wet | sprinkler=1)     = {given.mean:.4f} ± {given.stderr:.4f}   exact {truth['conditional']:.4f}")
    # The default method answers a discrete SCM exactly, by variable elimination.
    eliminated = cp.causal.interventional(scm, do={"sprinkler": 1.0}).mean("wet")
    say(f"P(wet | do(sprinkler=1)) = {eliminated:.4f} by variable elimination")

    world = scm.counterfactual(evidence={"wet": 1.0, "sprinkler": 1.0}, do={"sprinkler": 0.0}, n=n)
    cf = world.mean("wet")
    say("the grass is wet and the sprinkler was on; had it been off:")
    say(f"  P(rain | evidence)  = {world.mean('rain'):.4f}   (rain is upstream: unchanged)")
    say(f"  P(wet would be 1)   = {cf:.4f}   exact (Gumbel-max) {truth['counterfactual']:.4f}")
    return {
        "do": do.mean, "do_stderr": do.stderr, "do_eliminated": eliminated, "conditional": given.mean,
        "conditional_stderr": given.stderr, "counterfactual": cf, "exact": truth,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="Monte Carlo draws (default 20000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.n, seed=args.seed)
