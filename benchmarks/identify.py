"""Time `cp.causal.identify` on random DAGs with latent confounders.

Graphs: n observed nodes in a topological order, each drawing parents among
the previous 12 with probability 2.5 / 12 (about 2.5 parents each), plus n / 4
latent confounders of pairs within that window. The outcome is a late node and
the treatment one of its ancestors. Two cases per size:

- ``adjust``: the graph as drawn (a backdoor set usually exists);
- ``ID``: a latent confounder of treatment and outcome added, so no adjustment
  set exists and the complete ID algorithm has to run (or fail with a hedge).

Each number is the median wall time over repeats of one ``identify`` call
(graph building excluded).

    python benchmarks/identify.py            # 50, 200, 1000 nodes, 5 repeats
    python benchmarks/identify.py --quick    # 50 and 200 nodes, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import networkx as nx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from causalppl.causal.identify import identify  # noqa: E402


def random_graph(n, seed=0, window=12, parents=2.5, confounded=False):
    """(G, treatment, outcome): see the module docstring."""
    rng = random.Random(seed)
    G = nx.DiGraph()
    G.add_nodes_from(f"v{i}" for i in range(n))
    for i in range(n):
        G.add_edges_from((f"v{j}", f"v{i}") for j in range(max(0, i - window), i)
                         if rng.random() < parents / window)
    for c in range(n // 4):
        a = rng.randrange(n - 1)
        b = rng.randrange(a + 1, min(n, a + window + 1))
        G.add_edges_from([(f"u{c}", f"v{a}"), (f"u{c}", f"v{b}")])
        G.nodes[f"u{c}"]["latent"] = True
    y = f"v{n - 5}"
    ancestors = sorted((a for a in nx.ancestors(G, y) if a.startswith("v")), key=lambda s: -int(s[1:]))
    x = ancestors[min(2, len(ancestors) - 1)]
    if confounded:
        G.add_edges_from([("u_xy", x), ("u_xy", y)])
        G.nodes["u_xy"]["latent"] = True
    return G, x, y


def time_one(n, case, repeats, seed=0):
    G, x, y = random_graph(n, seed=seed, confounded=(case == "ID"))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = identify(G, x, y)
        times.append(time.perf_counter() - start)
    return {
        "nodes": n, "case": case, "edges": G.number_of_edges(),
        "median_s": statistics.median(times), "repeats": repeats,
        "method": result.method or "hedge", "identifiable": result.identifiable,
        "estimand_chars": len(str(result.estimand)) if result.identifiable else 0,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="50 and 200 nodes, one repeat")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([50, 200] if args.quick else [50, 200, 1000])
    repeats = args.repeats or (1 if args.quick else 5)

    rows = []
    print(f"{'nodes':>6} {'edges':>6} {'case':>7} {'median':>10} {'method':>10} {'estimand':>9}  target")
    for n in sizes:
        for case in ("adjust", "ID"):
            row = time_one(n, case, repeats)
            target = ""
            if n == 200:
                target = "PASS (< 10 s)" if row["median_s"] < 10 else "MISS (< 10 s)"
                target += ", goal < 1 s: " + ("met" if row["median_s"] < 1 else "missed")
            print(f"{n:>6} {row['edges']:>6} {case:>7} {row['median_s']:>9.3f}s {row['method']:>10} "
                  f"{row['estimand_chars']:>9}  {target}")
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
