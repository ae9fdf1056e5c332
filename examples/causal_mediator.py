"""Mediation: the total effect and the direct effect are different questions.

``causalppl/graphs/mediator.dot``::

    c -> x,  c -> y,  x -> m -> y,  x -> y
    m = 0.5 x + noise;  y = 0.7 m + 0.3 x + c + noise

The total effect of x on y is 0.3 + 0.5 * 0.7 = 0.65 and needs adjustment
for the confounder c only. The mediator m is a descendant of x, so it is
never a backdoor adjustment set: adding it removes the indirect path and
leaves the (controlled) direct effect 0.3, i.e. E[y | do(x=1, m)] -
E[y | do(x=0, m)]. Ignoring c entirely gives a confounded 1.15.

Run ``python examples/causal_mediator.py [-n N]``.
"""

from __future__ import annotations

import argparse

import causalppl as cp
from causalppl.causal.estimate import adjusted_slope


def main(n=20_000, quiet=False, seed=0):
    say = (lambda *a: None) if quiet else print
    cp.set_rng_seed(seed)
    scm = cp.graphs.load("mediator")
    valid = cp.causal.backdoor_sets(scm, "x", "y", minimal=False)
    with_m = cp.causal.check_backdoor(scm, "x", "y", {"c", "m"})
    say(f"valid backdoor sets: {[sorted(s) for s in valid]}")
    say(f"  adjust for {{c, m}}: {with_m}")

    data = scm.sample(n)
    estimates = {name: adjusted_slope(data, "x", "y", adjustment).value
                 for name, adjustment in (("none", ()), ("c", ("c",)), ("c_m", ("c", "m")))}
    total = cp.causal.ate(scm, "x", "y", n=n)
    # Controlled direct effect: hold the mediator fixed by intervening on it too.
    direct = cp.causal.ate(scm.do(m=0.0), "x", "y", n=n)

    say(f"from {n} observational samples, the x coefficient of y regressed on:")
    say(f"  x         {estimates['none']:.3f}   (confounded by c; population value 1.15)")
    say(f"  x, c      {estimates['c']:.3f}   total effect (truth 0.65)")
    say(f"  x, c, m   {estimates['c_m']:.3f}   direct effect only (truth 0.3)")
    say(f"simulated: total  E[y|do(x=1)] - E[y|do(x=0)]           = {total.ate:.3f} ± {total.stderr:.3f}")
    say(f"           direct E[y|do(x=1,m=0)] - E[y|do(x=0,m=0)]   = {direct.ate:.3f} ± {direct.stderr:.3f}")
    return {"naive": estimates["none"], "total_adjusted": estimates["c"], "direct_adjusted": estimates["c_m"],
            "total": total.ate, "total_stderr": total.stderr, "direct": direct.ate,
            "direct_stderr": direct.stderr, "backdoor_sets": valid, "m_valid": bool(with_m)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="number of samples (default 20000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.n, seed=args.seed)
