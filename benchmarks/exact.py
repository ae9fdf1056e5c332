"""Exact discrete queries by variable elimination against Monte Carlo, on an alarm-sized network.

    python benchmarks/exact.py                  # medians of 20 repeats, one CPU thread
    python benchmarks/exact.py --sample 200000  # also time the sampling path at that many rows
    python benchmarks/exact.py --quick          # smoke run: 3 repeats, no sampling
    python benchmarks/exact.py --json out.json

The network is ``datasets.random_discrete_network(37, seed=0).to_scm()``: 37
``CategoricalTable`` nodes with 2-4 states and up to 3 parents. Timed, end to
end from the SCM (graph surgery, building every factor, elimination):

- **do-query**: ``interventional(scm, do={n05: 1}, method="exact").distribution(n36)``;
- **evidence**: the same with ``evidence={n30: 0}`` as well;
- **ate**: ``ate(scm, "n05", "n36", outcome_level=0, method="exact")`` (two arms);
- **all marginals**: ``str()`` of the do-query's result (37 marginals);
- **sample** (with ``--sample N``): ``method="sample"`` with ``n=N`` rows, once.

The goal is at most 50 ms for the do-query.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import causalppl as cp
from causalppl import datasets

GOAL_MS = 50.0


def network():
    """The alarm-sized SCM and the nodes the queries use."""
    scm = datasets.random_discrete_network(37, seed=0).to_scm()
    return scm, "n05", "n36", "n30"


def timed(fn, repeats):
    """Median and minimum milliseconds of ``fn()`` over ``repeats`` runs (after one warm-up run)."""
    fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return 1e3 * statistics.median(seconds), 1e3 * min(seconds)


def queries(scm, treatment, outcome, witness):
    interventional, ate = cp.causal.interventional, cp.causal.ate
    return {
        "do-query": lambda: interventional(scm, do={treatment: 1}, method="exact").distribution(outcome),
        "evidence": lambda: interventional(scm, do={treatment: 1}, evidence={witness: 0},
                                           method="exact").distribution(outcome),
        "ate": lambda: ate(scm, treatment, outcome, treated=1, control=0, outcome_level=0, method="exact"),
        "all marginals": lambda: str(interventional(scm, do={treatment: 1}, method="exact")),
    }


def run(repeats, sample_rows=None):
    scm, treatment, outcome, witness = network()
    rows = []
    for name, fn in queries(scm, treatment, outcome, witness).items():
        median, best = timed(fn, repeats)
        rows.append({"query": name, "median_ms": median, "min_ms": best, "repeats": repeats})
    answer = cp.causal.interventional(scm, do={treatment: 1}, method="exact").distribution(outcome)
    if sample_rows:
        start = time.perf_counter()
        sampled = cp.causal.interventional(scm, do={treatment: 1}, n=sample_rows, method="sample")
        distribution = sampled.distribution(outcome)
        seconds = time.perf_counter() - start
        worst = max(abs(distribution[k] - answer[k]) / max(distribution.stderr[k], 1e-12) for k in answer.probs)
        rows.append({"query": f"sample n={sample_rows}", "median_ms": 1e3 * seconds, "min_ms": 1e3 * seconds,
                     "repeats": 1, "max_z": worst})
    return rows, answer


def print_table(rows, answer):
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); goal: do-query <= {GOAL_MS:.0f} ms")
    print(f"{'query':<20} {'median ms':>10} {'min ms':>8} {'repeats':>8}")
    for row in rows:
        extra = f"   (exact answer within {row['max_z']:.1f} standard errors)" if "max_z" in row else ""
        print(f"{row['query']:<20} {row['median_ms']:>10.2f} {row['min_ms']:>8.2f} {row['repeats']:>8}{extra}")
    print(answer)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats, no sampling")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per timing (default 20)")
    parser.add_argument("--sample", type=int, default=None, metavar="N", help="also time sampling N rows")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    repeats = args.repeats or (3 if args.quick else 20)
    rows, answer = run(repeats, None if args.quick else args.sample)
    print_table(rows, answer)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)
    return rows


if __name__ == "__main__":
    main()
