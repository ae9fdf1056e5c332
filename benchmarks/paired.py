"""Per-step cost against the floor by alternating short windows: steadier than compare.py on a noisy box.

``compare.py`` times one long window per backend per repeat, so a slow
spell of a shared machine lands on one backend and not the other. Here one
run of each backend and of the floor is built once, warmed up, and then
stepped in alternating short windows (``--window`` steps each, ``--rounds``
times); the result is the median of the per-round CPU-time ratios, with
its quartiles. Step-run backends only (not ``causalppl_scm``, whose step is
timed through whole fits).

    python benchmarks/paired.py --workloads W1,W5 --backends causalppl,causalppl_jit,causalppl_compiled
    python benchmarks/paired.py --workloads W5 --backends causalppl --rounds 10 --quick
    python benchmarks/paired.py --workloads W5 --backends causalppl_jit --no-rewrites

``--no-rewrites`` replays ``JitTrace_ELBO``'s capture as captured, without
:mod:`causalppl.infer.graph_rewrites`: the eager step's own tensor ops with
no Python and no autograd engine around them, the least an eager step of
the same program can cost.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (also puts this checkout's causalppl first on sys.path)
from workloads import WORKLOADS, make_data  # noqa: E402

STEP_BACKENDS = ("causalppl", "causalppl_jit", "causalppl_compiled", "pyro", "numpyro")


def cpu_seconds(step, steps):
    start = time.process_time()
    for _ in range(steps):
        step()
    return time.process_time() - start


def paired_ratios(step, floor_step, rounds, window):
    """Per-round CPU-time ratios of ``step`` to ``floor_step`` over alternating windows."""
    ratios = []
    for _ in range(rounds):
        floor_s = cpu_seconds(floor_step, window)
        ratios.append(cpu_seconds(step, window) / floor_s)
    return ratios


def quartiles(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 4], statistics.median(ordered), ordered[(3 * len(ordered)) // 4]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="W1,W5")
    parser.add_argument("--backends", default="causalppl,causalppl_jit,causalppl_compiled")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--window", type=int, default=None, help="steps per window (default: about 20 ms)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny data and few rounds (the smoke test)")
    parser.add_argument("--no-rewrites", action="store_true",
                        help="replay JitTrace_ELBO's capture without its graph rewrites (the eager ops alone)")
    args = parser.parse_args(argv)
    compare.set_threads(1)
    import torch

    names = args.backends.split(",")
    bad = [n for n in names if n not in STEP_BACKENDS]
    if bad:
        parser.error(f"unknown or fit-timed backend(s) {', '.join(bad)}; expected some of {', '.join(STEP_BACKENDS)}")
    backends = compare.Backends(names + ["floor"], torch.device("cpu"))
    for name, why in backends.skipped.items():
        print(f"skipped {name}: {why}")
    rows = ["| workload | backend | floor µs | backend ÷ floor (median) | quartiles |", "|---|---|---:|---:|---|"]
    with rewrites_off() if args.no_rewrites else contextlib.nullcontext():
        rows += paired_rows(args, backends)
    print("\n".join(rows))


@contextlib.contextmanager
def rewrites_off():
    """``JitTrace_ELBO`` keeps its captures as captured while this is open."""
    import causalppl.infer.jit as jit

    simplify = jit.simplify
    jit.simplify = lambda graph_module, no_grad: graph_module
    try:
        yield
    finally:
        jit.simplify = simplify


def paired_rows(args, backends):
    rows = []
    for workload_name in args.workloads.split(","):
        workload = WORKLOADS[workload_name]
        if args.quick:
            workload = workload.scaled(rows=300)
        data = make_data(workload)
        floor = backends.build("floor", workload, data, seed=0).run
        for name in [n for n in backends.names if n != "floor"]:
            run = backends.build(name, workload, data, seed=0).run
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(args.warmup):
                    run.step()
                    floor.step()
            window = args.window or max(5, int(0.02 / max(cpu_seconds(floor.step, 10) / 10, 1e-6)))
            rounds = 3 if args.quick else args.rounds
            low, mid, high = quartiles(paired_ratios(run.step, floor.step, rounds, window))
            floor_us = cpu_seconds(floor.step, window) / window * 1e6
            captured = name in ("causalppl_jit", "causalppl_compiled")
            label = compare.LABELS[name] + (" (no rewrites)" if args.no_rewrites and captured else "")
            rows.append(f"| {workload_name} | {label} | {floor_us:,.0f} | {mid:.2f}× | "
                        f"{low:.2f}–{high:.2f}× |")
    return rows


if __name__ == "__main__":
    main()
