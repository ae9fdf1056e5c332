"""Per-step cost of SVI, causalppl against a hand-written floor, Pyro and NumPyro, side by side.

Backends (``--backends``, comma-separated):

- ``causalppl``: the Pyro-style runtime (``causalppl_runs.runtime``);
- ``causalppl_jit``: the same, with ``JitTrace_ELBO`` for ``Trace_ELBO``
  (the loss captured once and replayed); ``causalppl_compiled``: with
  ``JitTrace_ELBO(jit_options={"compile": True})`` (the capture compiled by
  ``torch.compile``; its compilation falls in the untimed warm-up);
- ``causalppl_scm``: the graph-first path, ``SCM.from_graph(bayesian=True)``
  and ``scm.fit`` (``causalppl_runs.scm_fit``), a step timed as
  ``(fit(steps=K2) - fit(steps=K1)) / (K2 - K1)``;
- ``pyro``, ``numpyro``: optional references (``references.py``), skipped
  with a note when not installed;
- ``floor``: the step written out by hand (``floor.py``), the baseline of
  every ratio.

Method: one process; every backend gets the same numpy data (fixed seed);
repeats are interleaved, the backends' order rotating each repeat; each
repeat builds a fresh run, takes ``--warmup`` untimed steps, then times a
window of steps (wall: ``perf_counter``; CPU: ``process_time``, all threads
of the process). Reported are the medians over repeats of µs per step and
the medians of the per-repeat ratios to the floor (paired ratios). On a
shared machine the CPU time is much steadier than the wall time; with one
thread it is what the wall time would be on an idle machine. The first
repeat also continues each run to the workload's ``steps`` and compares
the final params with the floor's (``answers``): a backend whose answer
differs by more than the workload's tolerance is flagged, so a fast wrong
step cannot win.

Usage::

    python benchmarks/compare.py                          # every workload, one thread
    python benchmarks/compare.py --workloads W3,W4 --repeats 7 --json out.json
    python benchmarks/compare.py --quick                  # tiny sizes, seconds (the smoke test)
    python benchmarks/compare.py --device cuda --workloads L50 --rows 10000000 \\
        --backends causalppl_scm,floor                    # a lent GPU
    python benchmarks/compare.py --fit-option compile=True  # passed to every scm.fit call
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
if os.path.isdir(os.path.join(ROOT, "causalppl")):
    sys.path.insert(0, ROOT)  # benchmark the checkout this file is in, not another installed copy

from workloads import WORKLOADS, answer_error, make_data  # noqa: E402

BACKENDS = ("causalppl", "causalppl_jit", "causalppl_compiled", "causalppl_scm", "pyro", "numpyro", "floor")
LABELS = {"causalppl": "causalppl", "causalppl_jit": "causalppl JitTrace_ELBO",
          "causalppl_compiled": "causalppl JitTrace_ELBO compiled", "causalppl_scm": "causalppl scm.fit",
          "pyro": "Pyro",
          "numpyro": "NumPyro (jit)", "floor": "floor"}
# The Pyro-style runtime's backends: the ELBO class each steps with, and its options.
RUNTIME_ELBOS = {"causalppl": ("Trace_ELBO", {}), "causalppl_jit": ("JitTrace_ELBO", {}),
                 "causalppl_compiled": ("JitTrace_ELBO", {"jit_options": {"compile": True}})}
DEFAULT_WORKLOADS = ("W1", "W3", "W4", "W5", "L10", "L50", "L200")
BASELINE = "floor"
QUICK_TOL = 0.2
# The targets (issue 11 "Done when"), read on the CPU-time paired ratios.
TARGETS = (
    ("W3", "causalppl_scm", 1.5, True), ("W4", "causalppl_scm", 1.5, True),
    ("W1", "causalppl", 1.5, False), ("W5", "causalppl", 1.5, False),
    ("W1", "causalppl_jit", 1.5, False), ("W5", "causalppl_jit", 1.5, False),
    ("W1", "causalppl_compiled", 1.5, False), ("W5", "causalppl_compiled", 1.5, False),
    ("L200", "causalppl_scm", 2.0, False),
)


def set_threads(threads):
    """One compute thread (or ``threads``) for torch and for XLA; XLA's flags must precede importing jax."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        if "jax" not in sys.modules:
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_cpu_multi_thread_eigen" not in flags:
                flags += f" --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={threads}"
            os.environ["XLA_FLAGS"] = flags.strip()


# ---------------------------------------------------------------------------
# backends: each builds a runner with ``timed`` and ``answer``
# ---------------------------------------------------------------------------


class StepRunner:
    """A run that is stepped from here: warm up, time a window, continue to the answer."""

    def __init__(self, run):
        self.run = run
        self.done = 0

    def steps(self, n):
        step = self.run.step
        for _ in range(n):
            step()
        self.done += n

    def timed(self, warmup, window):
        self.steps(warmup)
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        self.steps(window)
        return time.perf_counter() - t0, time.process_time() - c0

    def answer_after(self, steps):
        self.steps(max(0, steps - self.done))
        return self.run.answer()


class FitRunner:
    """``scm.fit``: the window is the difference of two whole fits (see ``causalppl_runs.FitRun``)."""

    def __init__(self, fit_run):
        self.fit_run = fit_run

    def timed(self, warmup, window):
        gc.collect()
        return self.fit_run.timed(warmup, warmup + window)

    @property
    def fixed_s(self):
        """Seconds of the shorter fit, set-up included: an auto window lasts at least twice this."""
        return self.fit_run.base_s

    def answer_after(self, steps):
        return self.fit_run.answer_after(steps)


class Backends:
    """Builds runners by name; knows which backends cannot run here, and why."""

    def __init__(self, names, device, fit_options=None):
        self.names, self.device, self.fit_options = list(names), device, dict(fit_options or {})
        self.skipped = {}
        self._numpyro = None
        self._primed = set()
        from references import missing

        for name in ("pyro", "numpyro"):
            if name in self.names:
                reason = missing(name)
                if reason is None and name == "numpyro" and device.type != "cpu":
                    reason = f"runs on the CPU only here (device {device})"
                if reason:
                    self.skipped[name] = reason
        self.names = [n for n in self.names if n not in self.skipped]

    def build(self, name, workload, data, seed):
        device = self.device
        if name == "floor":
            import floor

            return StepRunner(floor.build(workload, data, device, seed))
        if name in RUNTIME_ELBOS:
            import causalppl_runs

            elbo, options = RUNTIME_ELBOS[name]
            return StepRunner(causalppl_runs.runtime(workload, data, device, seed, elbo=elbo, **options))
        if name == "causalppl_scm":
            import causalppl_runs

            runner = FitRunner(causalppl_runs.scm_fit(workload, data, device, seed, self.fit_options))
            if (workload, data["sha"]) not in self._primed:  # one-time costs (first use of code paths)
                runner.fit_run.fit(1)
                self._primed.add((workload, data["sha"]))
            return runner
        if name == "pyro":
            import references

            return StepRunner(references.pyro_run(workload, data, device, seed))
        if name == "numpyro":
            import references

            if self._numpyro is None:
                self._numpyro = references.NumPyro()
            return StepRunner(self._numpyro.run(workload, data, device, seed))
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")

    def versions(self):
        import torch

        import causalppl

        out = {"torch": torch.__version__, "causalppl": causalppl.__version__,
               "causalppl_path": os.path.dirname(causalppl.__file__), "commit": git_commit()}
        if "pyro" in self.names:
            import pyro

            out["pyro"] = pyro.__version__
        if "numpyro" in self.names:
            import jax
            import numpyro

            out.update(jax=jax.__version__, numpyro=numpyro.__version__)
        return out


def git_commit():
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (head + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------------
# measuring one workload
# ---------------------------------------------------------------------------


def measure(workload, backends, repeats=5, warmup=5, window="auto", target_s=1.0, check=True, seed=0,
            min_window=3, max_window=2000, log=None):
    """Time every backend on ``workload``; returns one record (plain data) per backend.

    ``window="auto"`` sizes each backend's window from its first repeat so
    that it lasts about ``target_s``; an int fixes it.
    """
    import torch

    data = make_data(workload)
    names = backends.names
    # per repeat: µs per step, or None when a difference of two fits came out <= 0 (set-up noise won)
    rec = {n: {"wall_us": [None] * repeats, "cpu_us": [None] * repeats, "window": None, "answer": None,
               "error": None, "invalid": 0} for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            entry = rec[name]
            if entry["error"]:
                continue
            try:
                torch.manual_seed(seed)
                runner = backends.build(name, workload, data, seed)
                n = entry["window"] or (window if window != "auto" else min_window)
                wall, cpu = runner.timed(warmup, n)
                if window == "auto" and entry["window"] is None:
                    per_step = max(wall, 1e-9) / n
                    lasting = max(target_s, 2 * getattr(runner, "fixed_s", 0.0))
                    entry["window"] = int(min(max_window, max(min_window, round(lasting / per_step))))
                elif entry["window"] is None:
                    entry["window"] = n
                if wall > 0 and cpu > 0:
                    entry["wall_us"][r] = wall / n * 1e6
                    entry["cpu_us"][r] = cpu / n * 1e6
                else:
                    entry["invalid"] += 1
                if r == 0 and check:
                    entry["answer"] = runner.answer_after(workload.steps)
                del runner
            except Exception as err:  # keep measuring the others
                entry["error"] = f"{type(err).__name__}: {str(err)[:400]}"
            if log:
                wall_us, cpu_us = entry["wall_us"][r], entry["cpu_us"][r]
                log(f"  {workload.name} repeat {r + 1}/{repeats} {name}: " + (
                    entry["error"] or ("difference of fits <= 0: dropped" if wall_us is None
                                       else f"{wall_us:,.0f} us wall, {cpu_us:,.0f} us cpu")))
    return summarise(workload, data, rec)


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(workload, data, rec):
    """Medians, paired ratios to the floor and the answer check, as plain data."""
    base = rec.get(BASELINE)
    reference = base["answer"] if base and base["answer"] is not None else None
    out = {"workload": workload.name, "label": workload.label, "what": workload.what, "data_sha": data["sha"],
           "nodes": workload.nodes, "rows": workload.rows, "edges": data.get("E"), "batch": workload.batch,
           "tol": workload.tol,
           "answer_steps": workload.steps, "backends": {}}
    for name, entry in rec.items():
        row = {"wall_us": _median(entry["wall_us"]), "cpu_us": _median(entry["cpu_us"]),
               "wall_us_all": entry["wall_us"], "cpu_us_all": entry["cpu_us"], "window": entry["window"],
               "error": entry["error"], "dropped_repeats": entry.get("invalid", 0)}
        if base and name != BASELINE:
            for kind in ("wall_us", "cpu_us"):
                # paired: the repeats both measured
                pairs = [a / b for a, b in zip(entry[kind], base[kind]) if a is not None and b]
                if pairs:
                    row[f"{kind[:-3]}_ratio"] = statistics.median(pairs)
        answer = entry["answer"]
        if answer is not None:
            row["answer"] = answer
            row["error_vs_truth"] = answer_error(workload, answer, data["truth"])
            if reference is not None and name != BASELINE:
                row["error_vs_floor"] = answer_error(workload, answer, reference)
                row["agrees"] = bool(row["error_vs_floor"] <= workload.tol)
        out["backends"][name] = row
    return out


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------


def _us(value):
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _cell(row):
    if row is None:
        return "skipped"
    if row.get("error"):
        return "error"
    if row.get("wall_us") is None:
        return "-"
    return f"{_us(row['wall_us'])} ({_us(row['cpu_us'])})"


def _ratio(row):
    if row is None or row.get("error") or "wall_ratio" not in row:
        return "-"
    return f"{row['wall_ratio']:.2f}× ({row['cpu_ratio']:.2f}×)"


def answers_cell(result):
    rows = result["backends"]
    checked = {n: r for n, r in rows.items() if "agrees" in r}
    if not checked:
        floor_row = rows.get(BASELINE, {})
        return "floor only" if "answer" in floor_row else "not checked"
    bad = [f"{LABELS[n]} Δ{r['error_vs_floor']:.3g}" for n, r in checked.items() if not r["agrees"]]
    worst = max(r["error_vs_floor"] for r in checked.values())
    if bad:
        return f"**DIFFER** ({', '.join(bad)}; tol {result['tol']:g})"
    return f"agree (max Δ {worst:.3g} ≤ {result['tol']:g})"


def markdown_table(results, names):
    """One row per workload: µs per step, wall (CPU), each backend; paired ratios to the floor."""
    shown = [n for n in BACKENDS if n in names]
    ratios = [n for n in shown if n != BASELINE]
    header = (["workload"] + [f"{LABELS[n]} µs" for n in shown] + [f"{LABELS[n]} ÷ floor" for n in ratios]
              + ["answers"])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + ["---"]) + "|"]
    for result in results:
        rows = result["backends"]
        cells = ([result["label"]] + [_cell(rows.get(n)) for n in shown] + [_ratio(rows.get(n)) for n in ratios]
                 + [answers_cell(result)])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_lines(results):
    """The issue's done-when targets that this run can judge, on the CPU-time paired ratios."""
    by_name = {r["workload"]: r for r in results}
    out = []
    for workload, backend, limit, beat_numpyro in TARGETS:
        row = by_name.get(workload, {}).get("backends", {}).get(backend)
        if not row or "cpu_ratio" not in row:
            continue
        ok = row["cpu_ratio"] <= limit and row.get("agrees", True)
        text = f"{workload}: {LABELS[backend]} ÷ floor {row['cpu_ratio']:.2f}× (target ≤ {limit}×)"
        numpyro = by_name[workload]["backends"].get("numpyro")
        if beat_numpyro and numpyro and numpyro.get("cpu_us"):
            faster = row["cpu_us"] < numpyro["cpu_us"]
            ok = ok and faster
            text += (f", {'faster' if faster else 'slower'} than NumPyro "
                     f"({_us(row['cpu_us'])} vs {_us(numpyro['cpu_us'])} µs)")
        out.append(f"- {'PASS' if ok else 'MISS'} {text}")
    return out


def environment(device, args, backends):
    import torch

    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "xla_flags": os.environ.get("XLA_FLAGS"),
           "device": str(device), "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
           "argv": sys.argv[1:] if args is None else args}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    env.update(backends.versions())
    return env


def header_line(env, repeats):
    load = env["load_avg"]
    return (f"torch {env['torch']} · {env['torch_threads']} torch thread(s) of {env['cpus']} CPUs · "
            f"device {env['device']}{' (' + env['gpu'] + ')' if 'gpu' in env else ''} · "
            f"median of {repeats} interleaved repeats · load average {load:.1f} at start"
            if load is not None else "")


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


def parse_option(text):
    """``key=value`` with a Python literal value (``compile=True``, ``lr=0.1``), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def select_workloads(args):
    names = DEFAULT_WORKLOADS if args.workloads == "all" else tuple(args.workloads.split(","))
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(unknown)}; expected some of {', '.join(WORKLOADS)}")
    chosen = []
    for name in names:
        w = WORKLOADS[name]
        if args.quick:
            w = quick(w)
        if w.kind == "linear" and (args.rows or args.nodes):
            w = w.scaled(nodes=args.nodes, rows=args.rows)
        elif w.kind == "confounder" and args.rows:
            w = w.scaled(rows=args.rows)
        if args.answer_steps:
            w = w.scaled(steps=args.answer_steps)
        chosen.append(w)
    return chosen


def quick(workload):
    """Tiny sizes for a smoke run: seconds in all, answers still comparable.

    With 1,000 or 2,000 rows the posterior is wider and a short run less
    settled, so answers agree to ``QUICK_TOL`` only: still far below the
    error of a wrong step.
    """
    if workload.kind == "scale":
        sized = workload.scaled(steps=600)
    elif workload.kind == "confounder":
        sized = workload.scaled(rows=1000, steps=600)
    else:
        nodes = round(math.sqrt(workload.nodes)) + 1  # 10, 20, 50, 200 nodes -> 4, 5, 8, 15
        sized = workload.scaled(nodes=nodes, rows=2000, steps=500)
    return dataclasses.replace(sized, tol=max(sized.tol, QUICK_TOL))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="all",
                        help=f"comma-separated: {', '.join(WORKLOADS)} (default: {','.join(DEFAULT_WORKLOADS)})")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated subset of {','.join(BACKENDS)}")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5; quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per repeat (default 5; quick 2)")
    parser.add_argument("--window", default="auto", help="timed steps per repeat, or 'auto' (about --target-s each)")
    parser.add_argument("--target-s", type=float, default=None,
                        help="auto window length in seconds (default 1; quick 0.05)")
    parser.add_argument("--threads", type=int, default=1, help="torch and XLA threads (default 1; 0 = libraries' own)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--rows", type=int, help="rows of the linear SCMs (and W5)")
    parser.add_argument("--nodes", type=int, help="nodes of the linear SCMs")
    parser.add_argument("--answer-steps", type=int, help="steps of the answer run (default: the workload's)")
    parser.add_argument("--no-check", action="store_true", help="skip the answer runs")
    parser.add_argument("--fit-option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                        help="passed to every scm.fit call, e.g. compile=True (repeatable)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and short windows (smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="inference seed (the data's is fixed)")
    parser.add_argument("--json", metavar="PATH", help="write every number to PATH as JSON")
    parser.add_argument("--verbose", action="store_true", help="log each repeat to stderr")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args.threads)
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; expected some of {', '.join(BACKENDS)}")
    workloads = select_workloads(args)
    repeats = args.repeats or (2 if args.quick else 5)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    target_s = args.target_s or (0.05 if args.quick else 1.0)
    window = args.window if args.window == "auto" else int(args.window)
    backends = Backends(names, device, dict(args.fit_option))
    env = environment(device, argv, backends)
    log = (lambda text: print(text, file=sys.stderr, flush=True)) if args.verbose else None
    results = []
    for workload in workloads:
        results.append(measure(workload, backends, repeats=repeats, warmup=warmup, window=window,
                               target_s=target_s, check=not args.no_check, seed=args.seed, log=log))
        if not args.verbose:
            print(f"  {workload.label} done", file=sys.stderr, flush=True)
    env["load_avg_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(report(results, backends, env, repeats))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"environment": env, "repeats": repeats, "warmup": warmup, "results": results,
                       "skipped": backends.skipped}, file, indent=1)
    return {"environment": env, "results": results, "skipped": backends.skipped}


def report(results, backends, env, repeats):
    lines = [header_line(env, repeats), "",
             "µs per SVI step, wall (process CPU); ratios are medians of per-repeat ratios to the floor.", "",
             markdown_table(results, backends.names)]
    targets = target_lines(results)
    if targets:
        lines += ["", "Targets (issue 11, CPU-time ratios):"] + targets
    for name, reason in backends.skipped.items():
        lines.append(f"{LABELS[name]} skipped: {reason}")
    for result in results:
        for name, row in result["backends"].items():
            if row.get("error"):
                lines.append(f"{result['workload']} {LABELS[name]} failed: {row['error']}")
            if row.get("dropped_repeats"):
                lines.append(f"{result['workload']} {LABELS[name]}: {row['dropped_repeats']} repeat(s) dropped "
                             "(fit(K2) - fit(K1) <= 0: set-up noise outweighed the window; use a longer --target-s)")
        floor_row = result["backends"].get(BASELINE, {})
        if "error_vs_truth" in floor_row:
            lines.append(f"{result['workload']}: floor's answer after {result['answer_steps']} steps is "
                         f"{floor_row['error_vs_truth']:.3g} from the truth (max abs)")
    if env.get("load_avg") is not None and env["load_avg"] > 0.75 * (env["cpus"] or 1):
        lines.append(f"note: load average {env['load_avg']:.1f} (end {env['load_avg_end']:.1f}) on {env['cpus']} "
                     "CPUs: other processes share the cores; read the CPU-time columns")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
