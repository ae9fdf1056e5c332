"""Coverage of the bootstrap interval of the ATE on the job-training table.

For each seed: draw a job-training table (true ATE of training on earnings
2.3), learn an SCM over its graph with exact maximum likelihood, and ask for
the ATE with ``bootstrap=B`` refits. The 95% interval should cover 2.3 in at
least 18 of 20 seeds; a Monte Carlo-only interval, shown beside it, does not.

    python benchmarks/ate_coverage.py                # 20 seeds, 2,000 rows, B = 200
    python benchmarks/ate_coverage.py --quick        # a smoke run
"""

from __future__ import annotations

import argparse
import time

import torch

import causalppl as cp
from causalppl.datasets import JOB_TRAINING_ATE, job_training, job_training_graph


def one_seed(seed, rows, bootstrap, n):
    cp.set_rng_seed(seed)
    table = job_training(rows, seed=seed)
    scm = cp.SCM.from_graph(job_training_graph(), table)
    scm.fit(table, method="mle", progress=False)
    plain = cp.causal.ate(scm, "training", "earnings", treated=1, control=0, n=n)
    boot = cp.causal.ate(scm, "training", "earnings", treated=1, control=0, n=n, bootstrap=bootstrap)
    return plain, boot


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("-n", type=int, default=500, help="Monte Carlo rows per effect")
    parser.add_argument("--quick", action="store_true", help="3 seeds, B = 20")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.bootstrap = 3, 20
    torch.set_num_threads(1)
    truth = JOB_TRAINING_ATE
    covered = {"bootstrap": 0, "monte carlo only": 0}
    start = time.perf_counter()
    print(f"{'seed':>4} {'ATE':>7} {'bootstrap 95%':>18} {'MC-only 95%':>18}")
    for seed in range(args.seeds):
        plain, boot = one_seed(seed, args.rows, args.bootstrap, args.n)
        low, high = boot.interval()
        mc_low, mc_high = plain.interval()
        covered["bootstrap"] += low <= truth <= high
        covered["monte carlo only"] += mc_low <= truth <= mc_high
        print(f"{seed:>4} {boot.ate:7.3f} [{low:7.3f}, {high:7.3f}] [{mc_low:7.3f}, {mc_high:7.3f}]")
    elapsed = time.perf_counter() - start
    print(f"truth {truth}: the bootstrap interval covered it in {covered['bootstrap']}/{args.seeds} seeds, "
          f"the Monte Carlo-only interval in {covered['monte carlo only']}/{args.seeds} "
          f"({elapsed:.1f} s, B={args.bootstrap}, {args.rows} rows)")
    return covered


if __name__ == "__main__":
    main()
