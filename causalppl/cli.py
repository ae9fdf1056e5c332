"""The ``causalppl`` command: draw, sample, query, fit, ate and identify from graph files.

GRAPH is a graph file (DOT, GML, dagitty, BIF, XMLBIF: see
:func:`causalppl.graph.formats.read_graph`), the name of a ready-made graph
(``causalppl list``), or a fitted model saved by ``fit`` (a ``.cpm`` file, or
any file ``cp.load`` reads).

    causalppl draw confounded -o confounded.svg --do x=1
    causalppl sample confounded -n 1000 --do x=1
    causalppl query confounded --target y --do "x=x+1"          # a shift; "x=Bernoulli(0.3)" is stochastic
    causalppl query confounded --target y --condition x=1 --json
    causalppl fit confounded data.csv -o model.cpm
    causalppl ate model.cpm --treatment x --outcome y
    causalppl identify smoking --treatment smoking --outcome cancer

Every error is one line on standard error: exit status 1 for a bad input, 2
for bad usage; no traceback, and no partial output file.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import networkx as nx


class CLIError(Exception):
    """A bad argument or input file: reported as one line, exit status 1."""

    status = 1


class UsageError(CLIError):
    """Bad usage found after parsing (a value a node cannot take): exit status 2."""

    status = 2


def _assignment(text):
    """``NAME=VALUE``: a finite number, or a state label (checked against the node's labels later)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        if not value:
            raise argparse.ArgumentTypeError(f"{name}: expected a number, got {value!r}") from None
        return name, value  # a label, such as smoke=yes
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{name}: expected a finite number, got {value!r}")
    return name, number


def _values(scm, pairs, option):
    """``--do``/``--condition`` pairs as a dict; a label must be one of a labelled node's labels.

    A ``--do`` (or ``--treated``/``--control``) value may also be an expression, parsed (never
    evaluated as Python) by :func:`causalppl.graph.intervention.parse_intervention`: one of the
    node's own name is a shift (``x=x+1``), a distribution a stochastic intervention (``x=Bernoulli(0.3)``).
    """
    values = {}
    for name, value in pairs or []:
        if isinstance(value, str) and name in scm and option != "--condition" and _intervention(scm, name, value,
                                                                                             option):
            values[name] = value
            continue
        if isinstance(value, str) and name in scm:
            labels = scm.labels(name)
            if labels is None or value not in [str(label) for label in labels]:
                raise UsageError(f"{option} {name}: expected a number"
                                 + (f" or one of its labels ({', '.join(map(str, labels))})" if labels else "")
                                 + f", got {value!r}")
            value = next(label for label in labels if str(label) == value)
        values[name] = value
    return values


def _intervention(scm, name, value, option):
    """Whether ``value`` is an intervention expression for node ``name`` (a shift, a stochastic law);
    a bad one is a usage error naming the option and the node."""
    from causalppl.graph.intervention import parse_intervention

    labels = scm.labels(name)
    if labels is not None and value in [str(label) for label in labels]:
        return False
    try:
        return parse_intervention(scm, name, value) is not None
    except (ValueError, TypeError) as err:
        raise UsageError(f"{option} {name}={value}: {_one_line(err)}") from None


ZIP_MAGIC = b"PK\x03\x04"  # how a torch.save file (a saved SCM) starts


def _is_saved_scm(path):
    if path.suffix == ".cpm":
        return True
    try:
        with open(path, "rb") as file:
            return file.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    except OSError:  # missing, a folder, unreadable: not one of ours
        return False


GRAPH_SUFFIXES = (".dot", ".gv", ".gml", ".dagitty", ".bif", ".gz", ".xmlbif", ".xml")


def _load(graph):
    from causalppl import graphs
    from causalppl.graph.formats import read_graph
    from causalppl.graph.persist import load

    path = Path(graph)
    if _is_saved_scm(path):
        if not path.exists():
            raise CLIError(f"no such file: {graph}")
        return load(path)
    if path.suffix.lower() in GRAPH_SUFFIXES or path.exists():
        if not path.exists():
            raise CLIError(f"no such file: {graph}")
        if path.is_dir():
            raise CLIError(f"{graph} is a folder, not a graph file")
        return read_graph(path)
    if graph in graphs.names():
        return graphs.load(graph)
    raise CLIError(f"{graph!r} is neither a graph file (DOT, GML, dagitty, BIF, XMLBIF), a saved model nor a "
                   f"known graph ({', '.join(graphs.names())})")


def _replaced(scm, args):
    """``scm`` with the mechanisms ``--replace X=MECHANISM`` gives (expressions, parsed, never evaluated)."""
    pairs = getattr(args, "replace", None)
    if not pairs:
        return scm
    replaced = {}
    for name, value in pairs:
        if name not in scm:
            raise CLIError(f"--replace: '{name}' is not a node (nodes: {', '.join(scm.nodes)})")
        replaced[name] = str(value) if not isinstance(value, str) else value
    try:
        return scm.replace(**replaced)
    except (ValueError, TypeError) as err:
        raise UsageError(f"--replace: {_one_line(err)}") from None


def _surgery(scm, args):
    scm = _replaced(scm, args)
    if getattr(args, "do", None):
        scm = scm.do(**_values(scm, args.do, "--do"))
    if getattr(args, "condition", None):
        scm = scm.condition(**_values(scm, args.condition, "--condition"))
    return scm


def _inputs(args):
    inputs = dict(args.input or [])
    for name, value in inputs.items():
        if isinstance(value, str):
            raise UsageError(f"--input {name}: expected a number, got {value!r}")
    return inputs


def _check_output(path, option="-o"):
    """Refuse an output path in a missing folder or that is a folder, before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{option} {path}: is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise CLIError(f"{option} {path}: the folder '{folder}' does not exist")


def _write_atomically(path, text):
    """Write ``text`` to ``path`` through a temporary file in its folder: never a partial file."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", newline="") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _read_csv(path):
    """A CSV file as a pandas DataFrame (bool, numbers, strings as labels), errors naming file and column."""
    from causalppl.csvfile import read_csv

    return read_csv(path)


def cmd_list(args):
    from causalppl import graphs

    for name in graphs.names():
        print(name)


def cmd_draw(args):
    from causalppl.graph.draw import GraphvizNotFound

    _check_output(args.output)
    scm = _surgery(_load(args.graph), args)
    try:
        scm.draw(args.output, show=args.show, **({"rankdir": args.rankdir} if args.rankdir else {}))
    except GraphvizNotFound as err:
        raise CLIError(str(err)) from None
    print(f"wrote {args.output}")


def cmd_sample(args):
    import io

    if args.output:
        _check_output(args.output)
    scm = _surgery(_load(args.graph), args)
    samples = scm.sample(args.n, **_inputs(args))
    names = list(samples)
    columns = [samples[name].reshape(args.n, -1)[:, 0].tolist() for name in names]
    if args.labels:
        for i, name in enumerate(names):
            labels = scm.labels(name)
            if labels is not None:
                columns[i] = [labels[int(v)] for v in columns[i]]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(names)
    writer.writerows(zip(*columns))
    if args.output:
        _write_atomically(args.output, text.getvalue())
        print(f"wrote {args.n} rows to {args.output}")
    else:
        sys.stdout.write(text.getvalue())


# --method of `query` -> interventional's method: "auto" answers exactly where exact inference applies.
_QUERY_METHODS = {"auto": "auto", "exact": "exact", "importance": "sample"}


def cmd_query(args):
    from causalppl.causal import interventional
    from causalppl.causal.exact import ExactResult
    from causalppl.causal.queries import summarize

    scm = _load(args.graph)
    if args.target not in scm:
        raise CLIError(f"--target: '{args.target}' is not a node (nodes: {', '.join(scm.nodes)})")
    scm.require_mechanisms()
    scm = _replaced(scm, args)
    args.replace = None  # applied
    do, evidence = _values(scm, args.do, "--do"), _values(scm, args.condition, "--condition")
    result, method = None, args.method
    if method != "svi":
        result = interventional(scm, do=do, evidence=evidence, n=args.n, method=_QUERY_METHODS[method],
                                **_inputs(args))
        summary = result.summary(args.target)
        method = "exact" if isinstance(result, ExactResult) else "importance"  # what "auto" chose
    else:
        query = _surgery(scm, args)
        if not query.observed:
            raise CLIError("--method svi needs --condition evidence to fit")
        fitted = query.fit(steps=args.steps, progress=False, **_inputs(args))
        summary = summarize(fitted.sample(args.n)[args.target])
    if args.json:
        out = {"target": args.target, "do": do, "evidence": evidence, "method": method,
               "mean": summary.mean, "sd": summary.std, "stderr": summary.stderr, "n": summary.n}
        if result is not None and args.target in result.levels:
            out["distribution"] = result.distribution(args.target).probs
        _print_json(out)
        return
    shown = lambda v: f"{v:g}" if isinstance(v, (int, float)) else str(v)  # noqa: E731
    parts = [f"do({', '.join(f'{k}={shown(v)}' for k, v in do.items())})" if do else "",
             f"given {', '.join(f'{k}={shown(v)}' for k, v in evidence.items())}" if evidence else ""]
    print(f"E[{args.target}] {' '.join(p for p in parts if p)} = {summary} [{method}]".replace("  ", " "))


def _print_json(data):
    from causalppl.tables import plain

    print(json.dumps(plain(data), indent=2))


def cmd_ate(args):
    from causalppl.causal import ate

    scm = _load(args.graph)
    for option, name in (("--treatment", args.treatment), ("--outcome", args.outcome)):
        if name not in scm:
            raise CLIError(f"{option}: '{name}' is not a node (nodes: {', '.join(scm.nodes)})")
    scm.require_mechanisms()
    treated = _values(scm, [_assignment(f"{args.treatment}={args.treated}")], "--treated")[args.treatment]
    control = None if args.control.strip() == "natural" else \
        _values(scm, [_assignment(f"{args.treatment}={args.control}")], "--control")[args.treatment]
    level = args.level
    if level is not None:
        labels = scm.labels(args.outcome)
        matches = [label for label in (labels or ()) if str(label) == level]
        level = matches[0] if matches else float(level) if _is_number(level) else level
    effect = ate(scm, args.treatment, args.outcome, treated=treated, control=control,
                 evidence=_values(scm, args.condition, "--condition") or None, n=args.n,
                 outcome_level=level, **_inputs(args))
    if args.json:
        _print_json(effect.to_dict())
    else:
        print(effect)


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def cmd_fit(args):
    from causalppl.causal.learn import from_graph
    from causalppl.graph.dot import with_meta
    from causalppl.params import check_save_path

    _check_output(args.output)
    check_save_path(args.output)  # say so now, not after the fit
    if args.batch_size is not None and args.batch_size < 1:
        raise CLIError(f"--batch-size must be a whole number >= 1, got {args.batch_size}")
    if _start_workers(args):
        return
    scm = _load(args.graph)
    data = _read_csv(args.data)
    unknown = [str(name) for name in data.columns if name not in scm]
    if unknown:
        raise CLIError(f"{args.data}: columns {unknown} are not nodes (nodes: {', '.join(scm.nodes)})")
    if args.mechanisms == "auto" or not scm.specified:
        scm = with_meta(from_graph(scm, data=data), scm._meta)
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
    roles = {role: node for node, role in scm.roles.items()}
    treatment = args.treatment or roles.get("exposure")
    outcome = args.outcome or roles.get("outcome")
    if treatment is None or outcome is None:
        missing = "--treatment" if treatment is None else "--outcome"
        raise UsageError(f"{missing} is required (the graph declares no "
                         f"{'exposure' if treatment is None else 'outcome'} role)")
    given = args.given or []
    for name in (treatment, outcome, *given):
        if name not in scm:
            raise CLIError(f"'{name}' is not a node (nodes: {', '.join(scm.nodes)})")
    found = identify(scm, treatment, outcome, given=given)
    if args.json:
        _print_json(found.to_dict())
    else:
        print(found)  # the report ends with the estimand, or the hedge


def build_parser():
    parser = argparse.ArgumentParser(
        prog="causalppl",
        description="Draw, sample, query, fit and identify structural causal models "
                    "(GRAPH: a DOT file, a ready-made graph name (see `causalppl list`), "
                    "or a model saved by `causalppl fit`).",
    )
    from causalppl import __version__

    parser.add_argument("--version", action="version", version=f"causalppl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help):
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(func=func)
        if name != "list":
            sub.add_argument("graph", metavar="GRAPH",
                             help="graph file (DOT, GML, dagitty, BIF, XMLBIF), ready-made graph name, "
                                  "or fitted model (.cpm)")
        return sub

    def surgery(sub):
        sub.add_argument("--do", type=_assignment, action="append", metavar="X=V",
                         help="intervene (repeatable): a value or label; an expression of X (x=x+1: a shift); "
                              "a distribution (x=Bernoulli(0.3): stochastic)")
        sub.add_argument("--replace", type=_assignment, action="append", metavar="X=MECHANISM",
                         help="replace X's mechanism, e.g. x='Normal(z, 0.5)' (repeatable)")
        sub.add_argument("--condition", type=_assignment, action="append", metavar="X=V",
                         help="observe (repeatable)")

    def inputs(sub):
        sub.add_argument("--input", type=_assignment, action="append", metavar="NAME=V",
                         help="value of a model input (repeatable)")

    command("list", cmd_list, "list the ready-made graphs")

    sub = command("draw", cmd_draw, "render the DAG to SVG, PNG or DOT")
    sub.add_argument("-o", "--output", required=True, help="output file (.svg, .png or .dot)")
    sub.add_argument("--show", choices=("mechanisms",), default=None, help="write each node's mechanism under it")
    sub.add_argument("--rankdir", choices=("LR", "TB", "RL", "BT"), default=None,
                     help="layout direction (default: the file's, else LR)")
    surgery(sub)

    sub = command("sample", cmd_sample, "draw joint samples as CSV")
    sub.add_argument("-n", type=int, default=10, help="number of samples (default 10)")
    sub.add_argument("-o", "--output", help="CSV file (default: standard output)")
    sub.add_argument("--labels", action="store_true", help="write labelled nodes' labels instead of codes")
    surgery(sub)
    inputs(sub)

    sub = command("query", cmd_query, "estimate E[target] under do/condition")
    sub.add_argument("--target", required=True, help="node whose mean to report")
    sub.add_argument("--method", choices=(*_QUERY_METHODS, "svi"), default="auto",
                     help="auto (default): exact on a discrete SCM (variable elimination), else importance "
                          "sampling; exact; importance; svi (fits a guide to the evidence)")
    sub.add_argument("-n", type=int, default=20000, help="Monte Carlo draws (default 20000)")
    sub.add_argument("--steps", type=int, default=1500, help="SVI steps for --method svi")
    sub.add_argument("--json", action="store_true", help="print the answer as JSON")
    surgery(sub)
    inputs(sub)

    sub = command("ate", cmd_ate, "average treatment effect E[outcome | do(treated)] - E[outcome | do(control)]")
    sub.add_argument("--treatment", required=True)
    sub.add_argument("--outcome", required=True)
    sub.add_argument("--treated", default="1", help="the treated value or label (default 1)")
    sub.add_argument("--control", default="0", help="the control value or label (default 0); 'natural': no "
                                                     "intervention (with --treated x+1: the effect of a shift)")
    sub.add_argument("--level", default=None, help="for a discrete outcome: the effect on P(outcome = LEVEL)")
    sub.add_argument("--condition", type=_assignment, action="append", metavar="X=V",
                     help="conditional effect given this evidence (repeatable)")
    sub.add_argument("-n", type=int, default=20000, help="Monte Carlo draws (default 20000)")
    sub.add_argument("--json", action="store_true", help="print the effect as JSON")
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
    sub.add_argument("--treatment", help="the cause (default: the graph's exposure role)")
    sub.add_argument("--outcome", help="the effect (default: the graph's outcome role)")
    sub.add_argument("--given", action="append", metavar="Z", help="condition on Z (repeatable): IDC")
    sub.add_argument("--json", action="store_true", help="print the findings as JSON")
    return parser


def _one_line(err):
    """An exception's message on one line (torch's validation text spans several)."""
    message = err.args[0] if isinstance(err, KeyError) and err.args else err
    text = " ".join(str(message).split())
    return text if len(text) <= 400 else text[:397] + "..."


def main(argv=None):
    """Run the command; return its exit status (0 ok, 1 bad input, 2 bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given, for `fit --workers` to pass on
    for name in ("n", "steps"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            parser.error(f"-{'-' if len(name) > 1 else ''}{name} must be at least 1")
    try:
        args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `head`) has gone: stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except CLIError as err:
        print(f"causalppl {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        print(f"causalppl {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, TypeError, ImportError, RuntimeError, OSError, nx.NetworkXException) as err:
        print(f"causalppl {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug of ours: still one line, and no traceback
        print(f"causalppl {args.command}: error: {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from causalppl.causal.distributed import leave  # a --workers process ends through it

    leave(main())
