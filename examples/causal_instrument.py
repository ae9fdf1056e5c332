"""Instrumental variables: an unobserved confounder, and an instrument that beats it.

``causalppl/graphs/instrument.dot``: a latent u pushes up both x and y, so regressing
y on x is biased (it gives 3, not 2) and no observed set blocks the backdoor
path x <- u -> y. The instrument z moves x but reaches y only through x::

    z ~ N(0, 1);  u ~ N(0, 1);  x ~ N(z + u, 1);  y ~ N(2 x + 3 u, 1)

In a linear model the Wald ratio cov(z, y) / cov(z, x) -- which is two-stage
least squares with one instrument: regress x on z, then y on the fitted x --
recovers the effect 2 from observational samples of (z, x, y).

Run ``python examples/causal_instrument.py [-n N]``.
"""

from __future__ import annotations

import argparse
from dataclasses import astuple

import causalppl as cp
from causalppl.causal.estimate import iv_slope


def cov(a, b):
    a, b = a.double(), b.double()
    return float(((a - a.mean()) * (b - b.mean())).mean())


def main(n=20_000, quiet=False, seed=0):
    say = (lambda *a: None) if quiet else print
    cp.set_rng_seed(seed)
    scm = cp.graphs.load("instrument")
    found = cp.causal.identify(scm, "x", "y")
    say(f"backdoor sets: {found.backdoor or 'none'} (u is latent); instruments: {found.instruments}")

    data = scm.sample(n)
    z, x, y = data["z"], data["x"], data["y"]
    ols = cov(x, y) / cov(x, x)
    wald = cov(z, y) / cov(z, x)
    tsls, tsls_se = astuple(iv_slope(data, "z", "x", "y"))
    simulated = cp.causal.ate(scm, "x", "y", n=n)

    say(f"from {n} observational samples of z, x, y:")
    say(f"  OLS slope of y on x    = {ols:.3f}   (biased by u; population value 3)")
    say(f"  Wald cov(z,y)/cov(z,x) = {wald:.3f}")
    say(f"  2SLS                   = {tsls:.3f} ± {tsls_se:.3f}")
    say(f"simulated under do():    {simulated.ate:.3f} ± {simulated.stderr:.3f}   (the effect is 2)")
    return {"ols": ols, "wald": wald, "tsls": tsls, "tsls_stderr": tsls_se,
            "simulated": simulated.ate, "simulated_stderr": simulated.stderr,
            "instruments": found.instruments, "backdoor_sets": found.backdoor}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="number of samples (default 20000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.n, seed=args.seed)
