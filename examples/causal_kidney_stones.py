"""Simpson's paradox resolved: kidney stones (Charig et al., 1986).

Treatment A (open surgery, treatment = 1) beats B within small stones and
within large stones, yet loses overall, because doctors gave A mostly to the
hard, large stones (``causalppl/graphs/kidney_stones.dot``). Stone size confounds the
comparison; the graph says to adjust for it::

    P(recovery | do(treatment)) = sum_size P(recovery | treatment, size) P(size)

From observational samples we print the overall and the stratified recovery
rates, then the backdoor-adjusted effect of A over B, which agrees with
simulating do(treatment) on the SCM and with the exact value from the
study's counts.

Run ``python examples/causal_kidney_stones.py [-n N]``.
"""

from __future__ import annotations

import argparse

import causalppl as cp

P_LARGE = 343 / 700
RECOVERY = {(1, 1): 192 / 263, (0, 1): 55 / 80, (1, 0): 81 / 87, (0, 0): 234 / 270}  # (treatment, large)


def exact_effect():
    """E[recovery | do(A)] - E[recovery | do(B)] from the study's counts."""
    def p_do(t):
        return P_LARGE * RECOVERY[t, 1] + (1 - P_LARGE) * RECOVERY[t, 0]
    return p_do(1) - p_do(0)


def main(n=50_000, quiet=False, seed=0):
    say = (lambda *a: None) if quiet else print
    cp.set_rng_seed(seed)
    scm = cp.graphs.load("kidney_stones")
    found = cp.causal.identify(scm, "treatment", "recovery")
    say(f"adjust for: {[sorted(s) for s in found.backdoor]}")

    data = scm.sample(n)
    large, treated, recovered = (data[k].bool() for k in ("large", "treatment", "recovery"))

    def rate(mask):
        return float(recovered[mask].float().mean())

    overall = {t: rate(treated == t) for t in (True, False)}
    stratum = {(t, size): rate((treated == t) & (large == size)) for t in (True, False) for size in (True, False)}
    say(f"{'':>8}{'A (open)':>10}{'B (PCNL)':>10}")
    say(f"{'small':>8}{stratum[True, False]:>10.3f}{stratum[False, False]:>10.3f}")
    say(f"{'large':>8}{stratum[True, True]:>10.3f}{stratum[False, True]:>10.3f}")
    say(f"{'overall':>8}{overall[True]:>10.3f}{overall[False]:>10.3f}   <- A looks worse")

    p_large = float(large.float().mean())
    adjusted = {t: p_large * stratum[t, True] + (1 - p_large) * stratum[t, False] for t in (True, False)}
    adjusted_effect = adjusted[True] - adjusted[False]
    simulated = cp.causal.ate(scm, "treatment", "recovery", n=n, method="sample")
    exact = exact_effect()
    say(f"adjusted for size: A {adjusted[True]:.3f}, B {adjusted[False]:.3f}; effect of A {adjusted_effect:+.4f}")
    say(f"simulated under do(): {simulated.ate:+.4f} ± {simulated.stderr:.4f};  exact {exact:+.4f}")
    return {
        "overall_A": overall[True], "overall_B": overall[False],
        "small_A": stratum[True, False], "small_B": stratum[False, False],
        "large_A": stratum[True, True], "large_B": stratum[False, True],
        "adjusted_effect": adjusted_effect, "naive_effect": overall[True] - overall[False],
        "simulated": simulated.ate, "simulated_stderr": simulated.stderr, "exact": exact,
        "backdoor_sets": found.backdoor,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50_000, help="number of patients to simulate (default 50000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.n, seed=args.seed)
