"""The ``causalppl`` command: draw, sample, query, fit and identify SCMs from DOT files.

GRAPH is a DOT file path, the name of a ready-made graph (``causalppl list``),
or a fitted model saved by ``fit`` (a ``.cpm`` file, or any file ``cp.load`` reads).

    causalppl draw confounded -o confounded.svg --do x=1
    causalppl sample confounded -n 1000 --do x=1
    causalppl query confounded --target y --condition x=1
    causalppl fit confounded data.csv -o model.cpm
    causalppl query model.cpm --target y --do x=1
    causalppl identify smoking --treatment smoking --outcome cancer
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import torch


class CLIError(Exception):
    """A bad argument or input file: reported as one line, exit status 1."""


def _assignment(text):
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{name}: expected a finite number, got {value!r}")
    return name, number


ZIP_MAGIC = b"PK\x03\x04"  # how a torch.save file (a saved SCM) starts


def _is_saved_scm(path):
    if path.suffix == ".cpm":
        return True
    try:
        with open(path, "rb") as file:
            return file.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    except OSError:  # missing, a folder, unreadable: not one of ours
        return False


def _load(graph):
    from causalppl import graphs
    from causalppl.graph.dot import read_dot
    from causalppl.graph.persist import load

    path = Path(graph)
    if _is_saved_scm(path):
        if not path.exists():
            raise CLIError(f"no such file: {graph}")
        return load(path)
    if path.suffix in (".dot", ".gv") or path.exists():
        if not path.exists():
            raise CLIError(f"no such file: {graph}")
        return read_dot(path)
    if graph in graphs.names():
        return graphs.load(graph)
    raise CLIError(f"{graph!r} is neither a DOT file, a saved model nor a known graph "
                   f"({', '.join(graphs.names())})")


def _surgery(scm, args):
    if getattr(args, "do", None):
        scm = scm.do(**dict(args.do))
    if getattr(args, "condition", None):
        scm = scm.condition(**dict(args.condition))
    return scm


def _inputs(args):
    return dict(args.input or [])


def _read_csv(path):
    try:
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
    except OSError as err:
        raise CLIError(f"cannot read {path}: {err.strerror}") from None
    if not rows:
        raise CLIError(f"{path}: no data rows")
    columns = {}
    for name in rows[0]:
        try:
            columns[name] = torch.tensor([float(row[name]) for row in rows])
        except (TypeError, ValueError):
            raise CLIError(f"{path}: column '{name}' has a value that is not a number") from None
    return columns


def cmd_list(args):
    from causalppl import graphs

    for name in graphs.names():
        print(name)


def cmd_draw(args):
    from causalppl.graph.draw import GraphvizNotFound

    scm = _surgery(_load(args.graph), args)
    try:
        scm.draw(args.output)
    except GraphvizNotFound as err:
        raise CLIError(str(err)) from None
    print(f"wrote {args.output}")


def cmd_sample(args):
    scm = _surgery(_load(args.graph), args)
    samples = scm.sample(args.n, **_inputs(args))
    names = list(samples)
    columns = [samples[name].reshape(args.n, -1)[:, 0].tolist() for name in names]
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(names)
        writer.writerows(zip(*columns))
    finally:
        if args.output:
            out.close()
            print(f"wrote {args.n} rows to {args.output}")


def cmd_query(args):
    from causalppl.causal import interventional
    from causalppl.causal.queries import summarize

    scm = _load(args.graph)
    if args.target not in scm:
        raise CLIError(f"--target: '{args.target}' is not a node (nodes: {', '.join(scm.nodes)})")
    do, evidence = dict(args.do or []), dict(args.condition or [])
    if args.method == "importance":
        result = interventional(scm, do=do, evidence=evidence, n=args.n, method="sample", **_inputs(args))
        summary = result.summary(args.target)
    else:
        query = _surgery(scm, args)
        if not query.observed:
            raise CLIError("--method svi needs --condition evidence to fit")
        fitted = query.fit(steps=args.steps, progress=False, **_inputs(args))
        summary = summarize(fitted.sample(args.n)[args.target])
    parts = [f"do({', '.join(f'{k}={v:g}' for k, v in do.items())})" if do else "",
             f"given {', '.join(f'{k}={v:g}' for k, v in evidence.items())}" if evidence else ""]
    print(f"E[{args.target}] {' '.join(p for p in parts if p)} = {summary} [{args.method}]".replace("  ", " "))


def cmd_fit(args):
    from causalppl.causal.learn import from_graph
    from causalppl.params import check_save_path

    check_save_path(args.output)  # say so now, not after the fit
    if _start_workers(args):
        return
    scm = _load(args.graph)
    data = _read_csv(args.data)
    unknown = [name for name in data if name not in scm]
    if unknown:
        raise CLIError(f"{args.data}: columns {unknown} are not nodes (nodes: {', '.join(scm.nodes)})")
    if args.mechanisms == "auto":
        scm = from_graph(scm.graph, data=data)
    result = scm.fit(data=data, steps=args.steps, lr=args.lr, subsample_size=args.batch_size,
                     progress=False, seed=args.seed, distributed=args.workers > 1, **_inputs(args))
    if not _is_main_worker():
        return
    scm.save(args.output)
    steps = "no SVI steps" if result.method == "mle" else f"{args.steps} SVI steps"
    print(f"method {result.method}: final loss {result.losses[-1]:.4g} ({steps}); params:")
    for name, value in result.params.items():
        shown = f"{value.item():.4g}" if value.numel() == 1 else f"tensor of shape {tuple(value.shape)}"
        print(f"  {name} = {shown}")
    print(f"wrote {args.output}")


def _workers_option(sub):
    sub.add_argument("--workers", type=int, default=1, metavar="K",
                     help="fit on K local processes (torch.distributed: gloo on CPU, nccl on GPU), "
                          "started by torch.distributed.run; each fits its share of the rows")


def _start_workers(args):
    """Run this same command on ``--workers K`` processes under ``torch.distributed.run``; False when
    there is nothing to start (one worker, or this process is already one of them)."""
    import subprocess

    from causalppl.causal.distributed import under_torchrun

    if args.workers < 1:
        raise CLIError(f"--workers must be at least 1, got {args.workers}")
    if args.workers == 1 or under_torchrun():
        return False
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={args.workers}", "-m", "causalppl.cli", *args.argv]
    finished = subprocess.run(command, check=False)
    if finished.returncode != 0:
        raise CLIError(f"the {args.workers} workers failed (exit status {finished.returncode})")
    return True


def _is_main_worker():
    from causalppl.causal.distributed import Parallel

    return Parallel.start().is_main


def cmd_identify(args):
    from causalppl.causal import identify

    scm = _load(args.graph)
    given = args.given or []
    for name in (args.treatment, args.outcome, *given):
        if name not in scm:
            raise CLIError(f"'{name}' is not a node (nodes: {', '.join(scm.nodes)})")
    result = identify(scm, args.treatment, args.outcome, given=given)
    if args.json:
        import json

        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(result)  # the report ends with the estimand, or the hedge


def build_parser():
    parser = argparse.ArgumentParser(
        prog="causalppl",
        description="Draw, sample, query, fit and identify structural causal models "
                    "(GRAPH: a DOT file, a ready-made graph name (see `causalppl list`), "
                    "or a model saved by `causalppl fit`).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help):
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(func=func)
        if name != "list":
            sub.add_argument("graph", metavar="GRAPH",
                             help="DOT file, ready-made graph name, or fitted model (.cpm)")
        return sub

    def surgery(sub):
        sub.add_argument("--do", type=_assignment, action="append", metavar="X=V", help="intervene (repeatable)")
        sub.add_argument("--condition", type=_assignment, action="append", metavar="X=V",
                         help="observe (repeatable)")

    def inputs(sub):
        sub.add_argument("--input", type=_assignment, action="append", metavar="NAME=V",
                         help="value of a model input (repeatable)")

    command("list", cmd_list, "list the ready-made graphs")

    sub = command("draw", cmd_draw, "render the DAG to SVG, PNG or DOT")
    sub.add_argument("-o", "--output", required=True, help="output file (.svg, .png or .dot)")
    surgery(sub)

    sub = command("sample", cmd_sample, "draw joint samples as CSV")
    sub.add_argument("-n", type=int, default=10, help="number of samples (default 10)")
    sub.add_argument("-o", "--output", help="CSV file (default: standard output)")
    surgery(sub)
    inputs(sub)

    sub = command("query", cmd_query, "estimate E[target] under do/condition")
    sub.add_argument("--target", required=True, help="node whose mean to report")
    sub.add_argument("--method", choices=("importance", "svi"), default="importance")
    sub.add_argument("-n", type=int, default=20000, help="Monte Carlo draws (default 20000)")
    sub.add_argument("--steps", type=int, default=1500, help="SVI steps for --method svi")
    surgery(sub)
    inputs(sub)

    sub = command("fit", cmd_fit, "fit mechanisms to a CSV of observations and save the fitted model")
    sub.add_argument("data", help="CSV file whose columns are nodes")
    sub.add_argument("-o", "--output", required=True,
                     help="where to save the fitted model (.cpm: graph, mechanisms and params; cp.load reads it)")
    sub.add_argument("--mechanisms", choices=("auto", "given"), default="auto",
                     help="auto: learnable mechanisms chosen from the data; given: the file's own")
    sub.add_argument("--steps", type=int, default=1000)
    sub.add_argument("--lr", type=float, default=0.05)
    sub.add_argument("--batch-size", type=int, default=None, help="mini-batch rows per step")
    sub.add_argument("--seed", type=int, default=0)
    inputs(sub)
    _workers_option(sub)

    sub = command("identify", cmd_identify, "is the effect identifiable: estimand or hedge, adjustment sets")
    sub.add_argument("--treatment", required=True)
    sub.add_argument("--outcome", required=True)
    sub.add_argument("--given", action="append", metavar="Z", help="condition on Z (repeatable): IDC")
    sub.add_argument("--json", action="store_true", help="print the findings as JSON")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given, for `fit --workers` to pass on
    for name in ("n", "steps"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            parser.error(f"-{'-' if len(name) > 1 else ''}{name} must be at least 1")
    try:
        args.func(args)
    except (CLIError, ValueError, KeyError, TypeError, ImportError, RuntimeError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"causalppl {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from causalppl.causal.distributed import leave  # a --workers process ends through it

    leave(main())
