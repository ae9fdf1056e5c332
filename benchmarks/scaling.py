"""Per-step cost of a linear-Gaussian SCM fit against nodes and rows: causalppl, the floor, NumPyro.

Two sweeps of the full-batch linear SCM of ``compare.py`` (AutoNormal,
Adam(0.02), about two parents per node): nodes 10, 50, 200 at 100,000 rows,
and rows 1e3, 1e4, 1e5, 1e6 at 50 nodes (``--grid cross`` runs every
pair instead). Each cell is measured as in ``compare.py`` (interleaved
repeats in one process, medians, paired ratios to the floor, wall and CPU
time, one thread), without the answer runs unless ``--check``. Prints a
markdown table; ``--markdown PATH`` writes it to a file too.

    python benchmarks/scaling.py                 # ~10 minutes on an idle 2-core machine
    python benchmarks/scaling.py --quick         # tiny grid, seconds (the smoke test)
    python benchmarks/scaling.py --backends causalppl,causalppl_scm,floor,numpyro --grid cross
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (also puts this checkout's causalppl first on sys.path)
from workloads import Workload  # noqa: E402

NODES, ROWS = (10, 50, 200), (1_000, 10_000, 100_000, 1_000_000)
FIXED_ROWS, FIXED_NODES = 100_000, 50
QUICK_NODES, QUICK_ROWS, QUICK_FIXED_ROWS, QUICK_FIXED_NODES = (4, 8), (300, 1_000), 1_000, 4
DEFAULT_BACKENDS = ("causalppl_scm", "floor", "numpyro")


def cells(grid, nodes, rows, fixed_rows, fixed_nodes):
    """(nodes, rows) pairs: two sweeps through the fixed size, or the cross product."""
    if grid == "cross":
        return [(n, r) for n in nodes for r in rows]
    pairs = [(n, fixed_rows) for n in nodes] + [(fixed_nodes, r) for r in rows]
    return list(dict.fromkeys(pairs))  # the shared cell once


def workload(nodes, rows, steps=300):
    return Workload(f"{nodes}x{rows}", "linear", f"{nodes}-node linear-Gaussian SCM, {rows:,} rows, full batch",
                    steps=steps, lr=0.02, tol=0.08 if rows >= 50_000 else 0.15, nodes=nodes, rows=rows)


def table(results, names):
    shown = [n for n in compare.BACKENDS if n in names]
    ratios = [n for n in shown if n != compare.BASELINE]
    header = (["nodes", "rows", "edges"] + [f"{compare.LABELS[n]} µs" for n in shown]
              + [f"{compare.LABELS[n]} ÷ floor" for n in ratios])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---:"] * len(header)) + "|"]
    for result in results:
        rows = result["backends"]
        cells_ = ([str(result["nodes"]), f"{result['rows']:,}", str(result["edges"])]
                  + [compare._cell(rows.get(n)) for n in shown] + [compare._ratio(rows.get(n)) for n in ratios])
        lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                        help=f"comma-separated subset of {','.join(compare.BACKENDS)}")
    parser.add_argument("--grid", choices=("sweeps", "cross"), default="sweeps")
    parser.add_argument("--nodes", type=lambda s: tuple(int(v) for v in s.split(",")), help="e.g. 10,50,200")
    parser.add_argument("--rows", type=lambda s: tuple(int(float(v)) for v in s.split(",")), help="e.g. 1e3,1e4")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats per cell (default 3; quick 1)")
    parser.add_argument("--target-s", type=float, default=None, help="window length per repeat (default 1; quick 0.02)")
    parser.add_argument("--threads", type=int, default=1, help="torch and XLA threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--numpyro-max-nodes", type=int, default=100,
                        help="skip NumPyro in larger cells: its jit compile of the 200-site model ran past 20 "
                             "minutes on a loaded 2-core machine (default 100; 0 = no limit)")
    parser.add_argument("--check", action="store_true", help="also run each cell to 300 steps and compare answers")
    parser.add_argument("--fit-option", action="append", type=compare.parse_option, default=[], metavar="KEY=VALUE")
    parser.add_argument("--quick", action="store_true", help="tiny grid, short windows (smoke test)")
    parser.add_argument("--markdown", metavar="PATH", help="write the table to PATH")
    parser.add_argument("--json", metavar="PATH", help="write every number to PATH as JSON")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    compare.set_threads(args.threads)
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = [n for n in names if n not in compare.BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}")
    if compare.BASELINE not in names:
        names.append(compare.BASELINE)
    if args.quick:
        grid = cells(args.grid, args.nodes or QUICK_NODES, args.rows or QUICK_ROWS, QUICK_FIXED_ROWS, QUICK_FIXED_NODES)
    else:
        grid = cells(args.grid, args.nodes or NODES, args.rows or ROWS, FIXED_ROWS, FIXED_NODES)
    repeats = args.repeats or (1 if args.quick else 3)
    target_s = args.target_s or (0.02 if args.quick else 1.0)
    backends = compare.Backends(names, device, dict(args.fit_option))
    limit = args.numpyro_max_nodes
    large = backends
    if limit and "numpyro" in backends.names:
        large = compare.Backends([n for n in names if n != "numpyro"], device, dict(args.fit_option))
    env = compare.environment(device, argv, backends)
    log = (lambda text: print(text, file=sys.stderr, flush=True)) if args.verbose else None
    results = []
    for nodes, rows in grid:
        w = workload(nodes, rows, steps=300)
        cell_backends = large if limit and nodes > limit else backends
        result = compare.measure(w, cell_backends, repeats=repeats, warmup=1 if args.quick else 2,
                                 target_s=target_s, check=args.check, min_window=2 if args.quick else 3, log=log)
        results.append(result)
        print(f"  {nodes} nodes x {rows:,} rows done", file=sys.stderr, flush=True)
    env["load_avg_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    text = "\n".join([compare.header_line(env, repeats), "",
                      "µs per SVI step of the full-batch linear SCM, wall (process CPU); ratios: paired, to the floor.",
                      "", table(results, backends.names)]
                     + [f"{compare.LABELS[n]} skipped: {why}" for n, why in backends.skipped.items()]
                     + ([f"NumPyro skipped above {limit} nodes (--numpyro-max-nodes)"]
                        if large is not backends and any(n > limit for n, _ in grid) else []))
    for result in results:
        for name, row in result["backends"].items():
            if row.get("error"):
                text += f"\n{result['workload']} {compare.LABELS[name]} failed: {row['error']}"
            elif row.get("agrees") is False:
                text += (f"\n{result['workload']} {compare.LABELS[name]}: answer differs from the floor's by "
                         f"{row['error_vs_floor']:.3g}")
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(text + "\n")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"environment": env, "results": results, "skipped": backends.skipped}, file,
                      indent=1)
    return {"environment": env, "results": results, "table": text}


if __name__ == "__main__":
    main()
