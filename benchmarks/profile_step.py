"""Where a causalppl SVI step spends its time, next to the pure-torch floor.

Runs one workload of ``svi_steps.py`` under cProfile for causalppl and for the
floor, and prints per-step microseconds by bucket (causalppl's own Python,
torch.distributions, torch.optim, autograd's backward, other torch calls,
the benchmark's model code), then causalppl's heaviest functions.
cProfile inflates Python-heavy code, so compare buckets between the two
implementations rather than reading absolute numbers; the plain timings
(min and median of windows, no profiler) are printed first.

    python benchmarks/profile_step.py W1 --steps 2000
    python benchmarks/profile_step.py W4 --steps 200 --top 25
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svi_steps  # noqa: E402

BUCKETS = (
    ("causalppl", (os.sep + "causalppl" + os.sep,)),
    ("torch.distributions", (os.sep + "distributions" + os.sep,)),
    ("torch.optim", (os.sep + "optim" + os.sep,)),
    ("autograd", ("run_backward", os.sep + "autograd" + os.sep)),
    ("benchmark model", ("svi_steps.py",)),
)


def bucket_of(func):
    filename, _, name = func
    where = filename + ":" + name
    for bucket, needles in BUCKETS:
        if any(needle in where for needle in needles):
            return bucket
    return "torch ops / other"


def profile(step, steps):
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    profiler.disable()
    stats = pstats.Stats(profiler)
    buckets = {}
    for func, (_, _, tottime, _, _) in stats.stats.items():
        bucket = bucket_of(func)
        buckets[bucket] = buckets.get(bucket, 0.0) + tottime / steps * 1e6
    return stats, buckets


def plain_timings(runners, steps, repeats=9):
    out = {name: [] for name in runners}
    for _ in range(repeats):
        for name, step in runners.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            out[name].append((time.perf_counter() - start) / steps * 1e6)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(svi_steps.WORKLOADS))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    runners = svi_steps.build(args.workload, args.device, impls=["causalppl", "floor"])
    for step in runners.values():
        for _ in range(20):
            step()
    timings = plain_timings(runners, max(1, args.steps // 5))
    print(f"{args.workload}: torch threads {torch.get_num_threads()}, us/step without profiler")
    for name, values in timings.items():
        print(f"  {name:10s} min {min(values):10.1f}   median {statistics.median(values):10.1f}")

    results = {name: profile(step, args.steps) for name, step in runners.items()}
    names = sorted(set(results["causalppl"][1]) | set(results["floor"][1]))
    print("\nper-step us under cProfile, by bucket (tottime)")
    print(f"  {'bucket':22s} {'causalppl':>10s} {'floor':>10s} {'extra':>10s}")
    for bucket in names:
        a = results["causalppl"][1].get(bucket, 0.0)
        b = results["floor"][1].get(bucket, 0.0)
        print(f"  {bucket:22s} {a:10.1f} {b:10.1f} {a - b:+10.1f}")
    total_a, total_b = sum(results["causalppl"][1].values()), sum(results["floor"][1].values())
    print(f"  {'total':22s} {total_a:10.1f} {total_b:10.1f} {total_a - total_b:+10.1f}")

    stats = results["causalppl"][0]
    print("\ncausalppl functions, per step (us): tottime / cumtime / calls")
    rows = [
        (tottime / args.steps * 1e6, cumtime / args.steps * 1e6, calls / args.steps, func)
        for func, (calls, _, tottime, cumtime, _) in stats.stats.items()
        if bucket_of(func) == "causalppl"
    ]
    for tottime, cumtime, calls, (filename, line, name) in sorted(rows, reverse=True)[: args.top]:
        where = f"{os.path.relpath(filename, os.path.dirname(os.path.dirname(svi_steps.__file__)))}:{line}({name})"
        print(f"  {tottime:8.1f} {cumtime:9.1f} {calls:6.1f}  {where}")


if __name__ == "__main__":
    main()
