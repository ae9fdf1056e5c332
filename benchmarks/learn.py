"""Learning fully observed SCMs: exact maximum likelihood vs SVI, time and error.

    python benchmarks/learn.py                 # full run (one CPU thread)
    python benchmarks/learn.py --quick         # smoke run: small data, few steps, one repeat
    python benchmarks/learn.py --json out.json

Workloads:

- **discrete**: a 37-node random discrete network (2-4 states, up to 3
  parents), 5,000 rows, every node a ``CategoricalTable``; error = the max
  (and mean) absolute difference between the learned and the true CPT entries.
- **linear**: a 20-node random linear-Gaussian SCM on raw scales, 100,000
  rows; error = the max absolute difference between the learned and true
  weights, relative to the largest true weight of the node.

Each time is the median over repeats of ``scm.fit(...)`` on a freshly built
SCM (``fit(method="mle")`` vs ``fit(method="svi", steps=S)``), on one torch
thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import causalppl as cp
from causalppl import datasets


def _timed(build, frame, options, repeats):
    """Median seconds of ``build().fit(frame, **options)`` over ``repeats`` runs, and the last SCM fitted."""
    seconds = []
    scm = None
    for _ in range(repeats):
        scm = build()
        start = time.perf_counter()
        scm.fit(frame, progress=False, **options)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), scm


METHODS = (("mle", {"method": "mle"}), ("svi", {"method": "svi", "lr": 0.05}))


def cpt_errors(scm, net):
    """Max and mean absolute error of every learned CPT entry against the truth."""
    errors = torch.cat([(scm.params[f"{node}.probs"].detach() - net.cpts[node]).abs().reshape(-1)
                        for node in net.graph])
    return float(errors.max()), float(errors.mean())


def weight_errors(scm, truth):
    """Max over nodes of (max |learned - true weight|) / (max |true weight|) of the node."""
    worst = 0.0
    for node, params in truth.items():
        if not params["weights"]:
            continue
        learned = scm.mechanism(node).fn.coefficients(scm.params)["weights"]
        size = max(abs(w) for w in params["weights"].values())
        worst = max(worst, max(abs(learned[p] - w) for p, w in params["weights"].items()) / size)
    return worst


def discrete(rows, steps, repeats):
    net = datasets.random_discrete_network(37, seed=0)
    frame = net.sample(rows, seed=1)

    def build():
        return cp.SCM.from_graph(net.graph, frame, mechanisms="categorical")

    out = []
    for method, options in METHODS:
        options = {**options, "steps": steps} if method == "svi" else options
        seconds, scm = _timed(build, frame, options, repeats)
        worst, mean = cpt_errors(scm, net)
        out.append({"workload": "discrete", "method": method, "steps": options.get("steps", 0),
                    "rows": rows, "seconds": seconds, "max_error": worst, "mean_error": mean})
    return out


def linear(rows, steps, repeats):
    graph, frame, truth = datasets.random_linear_scm_data(20, rows, seed=0)

    def build():
        return cp.SCM.from_graph(graph, frame)

    out = []
    for method, options in METHODS:
        options = {**options, "steps": steps} if method == "svi" else options
        seconds, scm = _timed(build, frame, options, repeats)
        out.append({"workload": "linear", "method": method, "steps": options.get("steps", 0),
                    "rows": rows, "seconds": seconds, "max_error": weight_errors(scm, truth),
                    "mean_error": float("nan")})
    return out


def print_table(results):
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"{'workload':<9} {'method':<6} {'rows':>7} {'steps':>6} {'seconds':>9} {'max err':>9} {'mean err':>9}")
    for r in results:
        print(f"{r['workload']:<9} {r['method']:<6} {r['rows']:>7} {r['steps']:>6} {r['seconds']:>9.3f} "
              f"{r['max_error']:>9.4f} {r['mean_error']:>9.4f}")
    for workload in dict.fromkeys(r["workload"] for r in results):
        mle, svi = (next(r for r in results if r["workload"] == workload and r["method"] == m)
                    for m in ("mle", "svi"))
        print(f"{workload}: mle is {svi['seconds'] / mle['seconds']:.0f}x faster than {svi['steps']} SVI steps")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, few steps, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per timing (default 5; 1 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="SVI steps (default 1000; 20 with --quick)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)
    steps = args.steps or (20 if args.quick else 1000)
    torch.set_num_threads(1)
    cp.set_rng_seed(0)
    results = discrete(500 if args.quick else 5000, steps, repeats)
    results += linear(2000 if args.quick else 100_000, steps, repeats)
    print_table(results)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)
    return results


if __name__ == "__main__":
    main()
