"""M-bias: adjusting for a pre-treatment collider biases an unconfounded estimate.

``causalppl/graphs/m_bias.dot``::

    a -> x -> y <- b,   a -> m <- b

x and y share no common cause, so the plain regression of y on x is unbiased
(the effect is 1.5). The pre-treatment m looks like a confounder worth
"controlling for", but it is a collider of a and b: conditioning on it opens
x <- a -> m <- b -> y. Least squares of y on x and m then gives
(population value) 1.3. The graph knows: the empty set is a valid backdoor
set, {m} is not, and {m, a} repairs it by blocking the opened path again.

Run ``python examples/causal_m_bias.py [-n N]``.
"""

from __future__ import annotations

import argparse

import causalppl as cp
from causalppl.causal.estimate import adjusted_slope


def main(n=20_000, quiet=False, seed=0):
    say = (lambda *a: None) if quiet else print
    cp.set_rng_seed(seed)
    scm = cp.graphs.load("m_bias")
    valid = cp.causal.backdoor_sets(scm, "x", "y")
    say(f"minimal backdoor sets: {[sorted(s) for s in valid]}")
    checks = {name: cp.causal.check_backdoor(scm, "x", "y", set(zs))
              for name, zs in (("{}", ()), ("{m}", ("m",)), ("{m, a}", ("m", "a")))}
    for name, check in checks.items():
        say(f"  adjust for {name:7} {check}")

    data = scm.sample(n)
    estimates = {name: adjusted_slope(data, "x", "y", adjustment).value
                 for name, adjustment in (("{}", ()), ("{m}", ("m",)), ("{m, a}", ("m", "a")))}
    simulated = cp.causal.ate(scm, "x", "y", n=n)
    say(f"from {n} observational samples, the x coefficient adjusting for:")
    for name, value in estimates.items():
        say(f"  {name:7} {value:.3f}{'   <- biased (collider opened)' if name == '{m}' else ''}")
    say(f"simulated under do(): {simulated.ate:.3f} ± {simulated.stderr:.3f}   (the effect is 1.5)")
    return {"empty": estimates["{}"], "m": estimates["{m}"], "m_a": estimates["{m, a}"],
            "simulated": simulated.ate, "simulated_stderr": simulated.stderr,
            "backdoor_sets": valid, "valid": {name: bool(check) for name, check in checks.items()}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="number of samples (default 20000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.n, seed=args.seed)
