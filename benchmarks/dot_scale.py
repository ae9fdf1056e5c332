"""Reading a large DOT file: seconds to parse it, build its SCM, and build a learnable SCM over it.

The file is a seeded random DAG of N nodes, each with a mechanism in the
style of hand-written files (``x123 [mechanism="Normal(0.5*x12 + x7, 1)"]``,
0 to 2 parents among the previous 1,000 nodes), its edges listed after the
nodes. Issue 9's goal, for N = 100,000: read (parse and build the SCM) in
under 10 s, and ``SCM.from_graph`` on it in under 10 s.

    python benchmarks/dot_scale.py                  # N = 100,000
    python benchmarks/dot_scale.py --nodes 20000 --repeats 3
    python benchmarks/dot_scale.py --json out.json

Each number is the best of ``--repeats`` runs (wall seconds, and the CPU
seconds of this process, which a shared machine inflates less); ``per node``
is the best wall time divided by N, in microseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import causalppl as cp  # noqa: E402
from causalppl.graph.dotparse import parse_dot  # noqa: E402

COEFFICIENTS = ("0.5*", "1.5*", "-0.3*", "")


def make_dot(n, seed=0):
    """DOT text of a seeded random DAG of ``n`` nodes ``x0 ... x{n-1}`` with expression mechanisms."""
    rng = random.Random(seed)
    nodes, edges = [], []
    for i in range(n):
        k = min(i, rng.choice((0, 1, 2, 2)))
        parents = sorted(rng.sample(range(max(0, i - 1000), i), k))
        terms = " + ".join(f"{rng.choice(COEFFICIENTS)}x{p}" for p in parents) or "0"
        nodes.append(f'x{i} [mechanism="Normal({terms}, 1)"];')
        edges += [f"x{p} -> x{i};" for p in parents]
    return "digraph big {\n" + "\n".join(nodes + edges) + "\n}\n"


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run(n, repeats=1, seed=0):
    """``{"nodes", "megabytes", "parse", "read", "from_graph"}``: each a ``(wall, cpu)`` best of ``repeats``."""
    text = make_dot(n, seed)
    best = {}
    for _ in range(repeats):
        _, *parse = timed(lambda: parse_dot(text))
        scm, *read = timed(lambda: cp.read_dot(text))
        learned, *learn = timed(lambda scm=scm: cp.SCM.from_graph(scm))
        assert len(scm) == n and len(learned) == n
        for key, value in (("parse", parse), ("read", read), ("from_graph", learn)):
            best[key] = min(best.get(key, value), value)
    return {"nodes": n, "megabytes": len(text.encode()) / 1e6, **best}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    out = run(args.nodes, args.repeats, args.seed)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"{out['nodes']:,} nodes, {out['megabytes']:.1f} MB of DOT; best of {args.repeats}; "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    print(f"{'step':<12}{'wall s':>9}{'cpu s':>9}{'per node':>11}   goal")
    goals = {"parse": "", "read": "< 10 s (parse + SCM)", "from_graph": "< 10 s"}
    for key in ("parse", "read", "from_graph"):
        wall, cpu = out[key]
        print(f"{key:<12}{wall:>9.2f}{cpu:>9.2f}{wall / out['nodes'] * 1e6:>9.1f}us   {goals[key]}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
