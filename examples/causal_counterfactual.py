"""Counterfactuals: abduction, action, prediction on a linear SCM.

``causalppl/graphs/confounded.dot``::

    z = u_z;   x = z + u_x;   y = 2 x + 3 z + u_y      (u ~ N(0, 1))

1. Full evidence z=1, x=2, y=9 pins every noise (u_y = 9 - 4 - 3 = 2), so
   "had x been 0" has one answer: y = 0 + 3 + 2 = 5, in every draw.
2. Partial evidence x=2, y=9 with z unobserved: abduction must infer z (and
   with it the noises) from its posterior, here by SVI (``method="svi"``).
   Given x and y, z ~ N(17/11, 1/sqrt(11)); "had z been 0" then gives
   y = y - 5 z, with mean 9 - 85/11 = 14/11, and x = x - z. (Under
   do(x=0), y = y - 2 x = 5 again, whatever z was: x's effect is linear.)

Run ``python examples/causal_counterfactual.py [-n N] [--steps S]``.
"""

from __future__ import annotations

import argparse

import causalppl as cp

Z_POSTERIOR = 17 / 11  # E[z | x=2, y=9]: z has prior precision 1, x adds 1 and y - 2x = 3z + u_y adds 9
Y_IF_Z_ZERO = 9 - 5 * Z_POSTERIOR  # 14/11


def main(n=2_000, quiet=False, seed=0, steps=1000):
    say = (lambda *a: None) if quiet else print
    cp.set_rng_seed(seed)
    cp.clear_param_store()
    scm = cp.graphs.load("confounded")

    full = scm.counterfactual(evidence={"z": 1.0, "x": 2.0, "y": 9.0}, do={"x": 0.0}, n=n)
    y_full = full["y"]
    say(full)
    say(f"  every draw: y in [{y_full.min():.4g}, {y_full.max():.4g}]   (exactly 5)")

    partial = {"x": 2.0, "y": 9.0}
    by_svi = scm.counterfactual(evidence=partial, do={"z": 0.0}, n=n, method="svi", steps=steps)
    by_importance = scm.counterfactual(evidence=partial, do={"z": 0.0}, n=n)
    say("given x=2, y=9 (z unobserved), had z been 0:")
    for name, world in (("svi", by_svi), ("importance", by_importance)):
        say(f"  {name:10}  E[z | evidence] = {world.factual['z'].mean():.3f} (exact {Z_POSTERIOR:.3f})   "
            f"y -> {world.mean('y'):.3f} (exact {Y_IF_Z_ZERO:.3f})   x -> {world.mean('x'):.3f} "
            f"(exact {2 - Z_POSTERIOR:.3f})")
    same_x = scm.counterfactual(evidence=partial, do={"x": 0.0}, n=n)
    say(f"  and had x been 0 instead: y in [{same_x['y'].min():.4g}, {same_x['y'].max():.4g}]")
    return {
        "full_y": y_full, "svi_z": float(by_svi.factual["z"].mean()), "svi_y": by_svi.mean("y"),
        "importance_z": float(by_importance.factual["z"].mean()), "importance_y": by_importance.mean("y"),
        "partial_do_x_y": same_x["y"], "exact_z": Z_POSTERIOR, "exact_y": Y_IF_Z_ZERO,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2_000, help="counterfactual draws (default 2000)")
    parser.add_argument("--steps", type=int, default=1000, help="SVI steps for the abduction")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.n, seed=args.seed, steps=args.steps)
