"""Rows per second of a data-parallel SVI fit against the number of processes K.

Starts ``torch.distributed.run --standalone --nproc_per_node=K`` for each K
(gloo on CPU, nccl on a GPU machine), fits a linear-Gaussian SCM on N rows
shared among the K ranks (strong scaling), full batch, and reports rows/s (rows x steps / wall time of the
steps, without start-up) and the scaling efficiency
``rate(K) / (K * rate(1))``.

    python benchmarks/distributed.py            # K = 1, 2; 200k rows, 200 steps
    python benchmarks/distributed.py --quick    # a few seconds
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(rows, steps, out):
    import torch

    import causalppl as cp
    from causalppl.causal.distributed import Parallel

    torch.set_num_threads(1)
    parallel = Parallel.start()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, generator=generator)
    data = {"x": x, "y": 1.0 + 2.0 * x + 0.5 * torch.randn(rows, generator=generator)}
    scm = cp.SCM.from_graph([("x", "y")])
    scm.fit(data, method="svi", steps=2, distributed=True, seed=0, progress=False)  # warm-up
    start = time.perf_counter()
    scm.fit(data, method="svi", steps=steps, distributed=True, seed=0, progress=False, tol=float("inf"))
    seconds = time.perf_counter() - start
    if parallel.is_main:
        Path(out).write_text(json.dumps({"ranks": parallel.size, "seconds": seconds,
                                         "rows_per_second": rows * steps / seconds}))


def run(ranks, rows, steps):
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "out.json")
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                   __file__, "--worker", str(rows), str(steps), out]
        subprocess.run(command, env=env, check=True, timeout=600, capture_output=True)
        return json.loads(Path(out).read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k rows, 30 steps")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        rows, steps, out = args.worker
        return worker(int(rows), int(steps), out)
    rows, steps = (20_000, 30) if args.quick else (200_000, 200)
    results = [run(k, rows, steps) for k in args.ranks]
    base = results[0]["rows_per_second"] / results[0]["ranks"]
    print(f"SVI full batch, {rows} rows, {steps} steps (strong scaling)")
    print(f"{'K':>3} {'seconds':>9} {'rows/s':>12} {'efficiency':>11}")
    for r in results:
        efficiency = r["rows_per_second"] / (r["ranks"] * base)
        print(f"{r['ranks']:>3} {r['seconds']:>9.3f} {r['rows_per_second']:>12.4g} {efficiency:>10.0%}")
    return results


if __name__ == "__main__":
    main()
