"""Probe: about a hundred bad inputs, by issue 9's classes, each with what a careful library must do.

    python tools/probe_bad_inputs.py            # every probe; a line per failure, then a count
    python tools/probe_bad_inputs.py -v         # a line per probe
    python tools/probe_bad_inputs.py cli        # only one class (cli, wrong, lost, culprit, scale)

Classes (issue 9): ``cli`` -- the CLI prints one line and exits 1 (2 for bad
usage), with no traceback and no partial output file; ``wrong`` -- nothing is
silently wrong (a refusal or the right answer); ``lost`` -- a failed load or
save leaves what was there; ``culprit`` -- the error names the node, column,
file or option; ``scale`` -- nothing hangs. These inputs differ from the
tests' (tests/test_values.py, test_cli.py, test_reliability.py), so the probe
is a second opinion rather than a rerun. Each probe runs under a 180 s alarm.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import causalppl as cp  # noqa: E402

TMP = Path(tempfile.mkdtemp(prefix="cp-probe-"))
PROBES = []  # (class, description, run) where run() returns None (passed) or a failure text


def probe(kind, description):
    def register(fn):
        PROBES.append((kind, description, fn))
        return fn
    return register


def write(name, text, mode="w"):
    path = TMP / name
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# --------------------------------------------------------------------------- helpers


def refuses(fn, *names, error=Exception):
    """None when ``fn()`` raises ``error`` on one line naming every one of ``names``; else why not."""
    try:
        result = fn()
    except error as err:
        message = str(err)
        missing = [name for name in names if name.lower() not in message.lower()]
        if missing:
            return f"{type(err).__name__} does not name {missing}: {message[:300]!r}"
        if "\n" in message.strip():
            return f"message is {message.count(chr(10)) + 1} lines: {message[:300]!r}"
        return None
    except Exception as err:  # noqa: BLE001 -- the wrong kind of error
        return f"raised {type(err).__name__} (expected {error.__name__}): {str(err)[:300]!r}"
    return f"accepted; returned {str(result)[:200]!r}"


def cli(*args, code=1, names=(), absent=(), stdin=None):
    """None when ``causalppl ARGS`` exits ``code`` with one stderr line naming ``names``; else why not."""
    done = subprocess.run([sys.executable, "-m", "causalppl.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=TMP, timeout=120, input=stdin,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))
    err = done.stderr.strip()
    problems = []
    if "Traceback" in done.stderr:
        problems.append("traceback")
    if done.returncode != code:
        problems.append(f"exit {done.returncode}, expected {code}")
    if code == 1 and len(err.splitlines()) != 1:
        problems.append(f"stderr has {len(err.splitlines())} lines")
    missing = [name for name in names if name.lower() not in err.lower()]
    if missing:
        problems.append(f"does not name {missing}")
    for path in absent:
        if Path(path).exists():
            problems.append(f"left a file {path}")
    return None if not problems else "; ".join(problems) + f": {err[-400:]!r}"


def scm_rain():
    return (cp.SCM().add("rain", "Bernoulli(0.3)").add("sprinkler", "Bernoulli(where(rain > 0.5, 0.1, 0.6))")
            .add("wet", "Normal(2*rain + sprinkler, 0.5)"))


def scm_xy():
    return cp.SCM().add("x", "Normal(0, 1)").add("y", "Normal(2*x + 1, 0.5)")


GOOD_DOT = write("good.dot", 'digraph { x [mechanism="Normal(0, 1)"]; y [mechanism="Normal(2*x, 1)"]; x -> y; }')
RAIN_DOT = write("rain.dot", scm_rain().to_dot())
GOOD_CSV = write("good.csv", "x,y\n" + "\n".join(f"{i / 10},{i / 5 + 0.3}" for i in range(40)) + "\n")


# --------------------------------------------------------------------------- 1. CLI: one line, exit 1


CYCLES = {
    "cycle.dot": 'digraph { a [mechanism="Normal(c, 1)"]; b [mechanism="Normal(a, 1)"]; '
                 'c [mechanism="Normal(b, 1)"]; a -> b -> c -> a; }',
    "loop.dot": "digraph { a -> a; a -> b }",
    "cycle.gml": 'graph [ directed 1 node [ id 0 label "a" ] node [ id 1 label "b" ] '
                 'edge [ source 0 target 1 ] edge [ source 1 target 0 ] ]',
    "cycle.dagitty": "dag { a -> b ; b -> a }",
}
for _name, _text in CYCLES.items():
    for _command, _extra in (("sample", ()), ("identify", ("--treatment", "a", "--outcome", "b")),
                             ("draw", ("-o", TMP / f"{_name}.svg"))):
        probe("cli", f"{_command} on a cyclic {_name}")(
            lambda n=_name, t=_text, c=_command, e=_extra: cli(c, write(n, t), *e, names=("cycle",)))

probe("cli", "sample -o into a folder that does not exist")(
    lambda: cli("sample", GOOD_DOT, "-o", TMP / "nowhere" / "s.csv", names=("nowhere",)))
probe("cli", "sample -o below a regular file")(
    lambda: cli("sample", GOOD_DOT, "-o", GOOD_CSV / "s.csv", names=("good.csv",)))
probe("cli", "draw -o an existing folder")(lambda: cli("draw", GOOD_DOT, "-o", TMP, names=(str(TMP.name),)))
probe("cli", "fit -o into a missing folder, refused before fitting")(
    lambda: cli("fit", GOOD_DOT, GOOD_CSV, "-o", TMP / "missing" / "m.cpm", "--steps", "5", names=("missing",)))
probe("cli", "fit a CSV holding -inf")(
    lambda: cli("fit", GOOD_DOT, write("minf.csv", "x,y\n1,2\n-inf,3\n2,4\n"), "-o", TMP / "m1.cpm",
                names=("x",), absent=(TMP / "m1.cpm",)))
probe("cli", "fit a CSV holding the word nan in a column")(
    lambda: cli("fit", GOOD_DOT, write("nanword.csv", "x,y\n1,2\n2,nan\n3,4\n"), "-o", TMP / "m2.cpm",
                names=("y",), absent=(TMP / "m2.cpm",)))
probe("cli", "fit an empty CSV")(lambda: cli("fit", GOOD_DOT, write("empty.csv", ""), "-o", TMP / "m3.cpm",
                                             names=("empty.csv",), absent=(TMP / "m3.cpm",)))
probe("cli", "fit a header-only CSV")(lambda: cli("fit", GOOD_DOT, write("header.csv", "x,y\n"), "-o",
                                                  TMP / "m4.cpm", names=("header.csv",), absent=(TMP / "m4.cpm",)))
probe("cli", "fit a CSV with a short row")(
    lambda: cli("fit", GOOD_DOT, write("short.csv", "x,y\n1,2\n3\n4,5\n"), "-o", TMP / "m5.cpm",
                names=("short.csv",), absent=(TMP / "m5.cpm",)))
probe("cli", "fit a CSV with a long row")(
    lambda: cli("fit", GOOD_DOT, write("long.csv", "x,y\n1,2\n3,4,5\n4,5\n"), "-o", TMP / "m6.cpm",
                names=("long.csv",), absent=(TMP / "m6.cpm",)))
probe("cli", "fit a CSV whose header repeats a column")(
    lambda: cli("fit", GOOD_DOT, write("dup.csv", "x,x\n1,2\n3,4\n"), "-o", TMP / "m7.cpm",
                names=("x",), absent=(TMP / "m7.cpm",)))
probe("cli", "fit a CSV in Latin-1")(
    lambda: cli("fit", GOOD_DOT, write("latin.csv", "x,y\n1,2\n\xe9,3\n".encode("latin-1"), "wb"), "-o",
                TMP / "m8.cpm", names=("latin.csv",), absent=(TMP / "m8.cpm",)))
probe("cli", "fit a CSV path that is a folder")(
    lambda: cli("fit", GOOD_DOT, TMP, "-o", TMP / "m9.cpm", names=(TMP.name,), absent=(TMP / "m9.cpm",)))
probe("cli", "fit a CSV that does not exist")(
    lambda: cli("fit", GOOD_DOT, TMP / "no.csv", "-o", TMP / "m10.cpm", names=("no.csv",)))
probe("cli", "fit a CSV column that is not a node")(
    lambda: cli("fit", GOOD_DOT, write("extra.csv", "x,y,zz\n1,2,3\n2,3,4\n"), "-o", TMP / "m11.cpm",
                names=("zz",), absent=(TMP / "m11.cpm",)))
probe("cli", "fit --steps -3")(
    lambda: _usage_or_one("fit", GOOD_DOT, GOOD_CSV, "-o", TMP / "m12.cpm", "--steps", "-3", names=("steps",)))


def _usage_or_one(*args, names=()):
    """Bad option values: exit 2 (usage) or 1 (a checked value), one line either way, naming the option."""
    first = cli(*args, code=2, names=names)
    if first is None:
        return None
    second = cli(*args, code=1, names=names)
    return None if second is None else first


for _option, _value in (("--lr", "nan"), ("--lr", "-0.1"), ("--batch-size", "0"), ("--workers", "0"),
                        ("--steps", "2.5")):
    probe("cli", f"fit {_option} {_value}")(
        lambda o=_option, v=_value: _usage_or_one("fit", GOOD_DOT, GOOD_CSV, "-o", TMP / "m13.cpm", o, v,
                                                  names=(o.lstrip("-").split("-")[0],)))
for _flag in ("x=abc", "x", "=1", "x=1e999", "nosuch=1", "x=nan"):
    probe("cli", f"sample --do {_flag}")(
        lambda f=_flag: _usage_or_one("sample", GOOD_DOT, "--do", f,
                                      names=(f.split("=")[0] or "=",) if f != "=1" else ("do",)))
probe("cli", "sample -n 0")(lambda: _usage_or_one("sample", GOOD_DOT, "-n", "0", names=("n",)))
probe("cli", "sample -n -5")(lambda: _usage_or_one("sample", GOOD_DOT, "-n", "-5", names=("n",)))
probe("cli", "query --target that is not a node")(
    lambda: cli("query", GOOD_DOT, "--target", "zz", names=("zz",)))
probe("cli", "ate --treatment that is not a node")(
    lambda: cli("ate", GOOD_DOT, "--treatment", "zz", "--outcome", "y", names=("zz",)))
probe("cli", "ate on a Bernoulli treatment with --treated 2")(
    lambda: cli("ate", RAIN_DOT, "--treatment", "rain", "--outcome", "wet", "--treated", "2", names=("rain", "2")))
probe("cli", "identify --treatment equal to --outcome")(
    lambda: cli("identify", GOOD_DOT, "--treatment", "x", "--outcome", "x", names=("x",)))
probe("cli", "sample an empty DOT file")(lambda: cli("sample", write("empty.dot", ""), names=("empty.dot",)))
probe("cli", "sample a binary file")(
    lambda: cli("sample", write("binary.dot", bytes(range(256)), "wb"), names=("binary.dot",)))
probe("cli", "sample a corrupt .cpm")(lambda: cli("sample", write("bad.cpm", b"PK\x03\x04garbage", "wb"),
                                                  names=("bad.cpm",)))
probe("cli", "sample a text file named .cpm")(lambda: cli("sample", write("text.cpm", "digraph {}"),
                                                          names=("text.cpm",)))
probe("cli", "sample an unknown graph name")(lambda: cli("sample", "no_such_graph", names=("no_such_graph",)))
probe("cli", "query a BIF with a short table")(
    lambda: cli("query", write("short.bif", "network n {}\nvariable a { type discrete [ 2 ] { no, yes }; }\n"
                                            "probability ( a ) { table 0.5; }\n"), "--target", "a",
                names=("a",)))
probe("cli", "sample malformed XMLBIF")(
    lambda: cli("sample", write("bad.xml", "<BIF><NETWORK><VARIABLE TYPE='nature'><NAME>a</NAME>"),
                names=("bad.xml",)))
probe("cli", "sample --condition on a Bernoulli with 3")(
    lambda: cli("sample", RAIN_DOT, "--condition", "rain=3", names=("rain", "3")))
probe("cli", "sample --input for a graph without inputs")(
    lambda: _usage_or_one("sample", GOOD_DOT, "--input", "guess=1", names=("guess",)))
probe("cli", "query -n abc (bad usage)")(lambda: cli("query", GOOD_DOT, "--target", "y", "-n", "abc", code=2))
probe("cli", "no command at all (bad usage)")(lambda: cli(code=2))


# --------------------------------------------------------------------------- 2. nothing silently wrong


def _dot_refused(name):
    return refuses(lambda: cp.read_dot(f'digraph {{ "{name}" [mechanism="Normal(0, 1)"]; '
                                       f'y [mechanism="Normal(1, 1)"]; }}'), name)


for _name in ("pi", "Normal", "sigmoid", "where", "tensor", "Bernoulli"):
    probe("wrong", f"a DOT node named {_name}")(lambda n=_name: _dot_refused(n))
probe("wrong", "a fullwidth name in DOT")(lambda: _dot_refused("\uff59"))
probe("wrong", "a decomposed accent in a node name (NFKC changes it)")(
    lambda: refuses(lambda: cp.SCM().add("cafe\u0301", "Normal(0, 1)"), "cafe"))
probe("wrong", "a ligature in an expression")(
    lambda: refuses(lambda: cp.SCM().add("fi", "Normal(0, 1)").add("y", "Normal(\ufb01, 1)"), "y"))


@probe("wrong", "node [latent=true] inside a subgraph applies only there")
def _():
    scm = cp.read_dot("digraph { subgraph s { node [latent=true]; u } x -> y; u -> x; u -> y }")
    return None if scm.latent == frozenset({"u"}) else f"latent = {set(scm.latent)}"


@probe("wrong", "edge [...] defaults do not make nodes")
def _():
    scm = cp.read_dot("digraph { edge [color=red]; a -> b }")
    return None if scm.nodes == ("a", "b") else f"nodes {scm.nodes}"


for _value in (float("-inf"), torch.tensor(float("nan")), np.float64("nan"), np.array([1.0, np.inf])):
    probe("wrong", f"do(x={_value!r})")(lambda v=_value: refuses(lambda: scm_xy().do(x=v), "x"))
    probe("wrong", f"condition(y={_value!r})")(lambda v=_value: refuses(lambda: scm_xy().condition(y=v), "y"))
probe("wrong", "do(rain=0.5) on a Bernoulli")(lambda: refuses(lambda: scm_rain().do(rain=0.5), "rain", "0.5"))
probe("wrong", "condition(sprinkler=-1) on a Bernoulli with parents")(
    lambda: refuses(lambda: scm_rain().condition(sprinkler=-1), "sprinkler", "-1"))
probe("wrong", "do(k=1.5) on a Poisson")(
    lambda: refuses(lambda: cp.SCM().add("k", "Poisson(3.0)").do(k=1.5), "k", "1.5"))
probe("wrong", "condition(c=3) on a 3-way Categorical")(
    lambda: refuses(lambda: cp.SCM().add("c", "Categorical(probs=[0.2, 0.3, 0.5])").condition(c=3), "c", "3"))
probe("wrong", "condition(g=-2) on a Gamma")(
    lambda: refuses(lambda: cp.SCM().add("g", "Gamma(2.0, 1.0)").condition(g=-2.0), "g", "-2"))
for _steps in (-1, 2.5, True, "10"):  # steps=0 is allowed: a fit that only sets up
    probe("wrong", f"fit(steps={_steps!r})")(
        lambda s=_steps: refuses(lambda: scm_xy().fit({"x": torch.randn(20), "y": torch.randn(20)}, method="svi",
                                                      steps=s, progress=False), "steps"))
for _lr in (0.0, -0.5, float("inf")):
    probe("wrong", f"fit(lr={_lr!r})")(
        lambda v=_lr: refuses(lambda: scm_xy().fit({"x": torch.randn(20), "y": torch.randn(20)}, method="svi",
                                                   steps=3, lr=v, progress=False), "lr"))
probe("wrong", "a complex numpy data column")(
    lambda: refuses(lambda: scm_xy().fit({"x": np.ones(5) + 1j, "y": np.ones(5)}, progress=False), "x"))
probe("wrong", "a data column of None objects")(
    lambda: refuses(lambda: scm_xy().fit({"x": np.array([None] * 5), "y": np.ones(5)}, progress=False), "x"))
probe("wrong", "a pandas Int64 column with NA")(
    lambda: refuses(lambda: scm_xy().fit(__import__("pandas").DataFrame(
        {"x": __import__("pandas").array([1, None, 3], dtype="Int64"), "y": [1.0, 2.0, 3.0]}), progress=False), "x"))


@probe("wrong", "a dagitty latent confounder is latent, not an edge")
def _():
    scm = cp.read_graph("dag { x -> y ; x <-> y }")
    latent = set(scm.latent)
    return None if len(latent) == 1 and ("x", "y") in scm.graph.edges else f"latent {latent}"


# --------------------------------------------------------------------------- 3. nothing lost


def _fitted():
    scm = scm_xy()
    scm.fit({"x": torch.randn(30), "y": torch.randn(30)}, progress=False)
    return scm


@probe("lost", "ParamStore.load of a truncated file keeps the params")
def _():
    store = cp.params.ParamStore()
    store.get_param("a", torch.tensor(1.5))
    path = TMP / "p.pt"
    store.save(path)
    path.write_bytes(path.read_bytes()[:20])
    error = refuses(lambda: store.load(path), "p.pt", error=ValueError)
    kept = float(store["a"].detach()) == 1.5 and list(store.keys()) == ["a"]
    return error or (None if kept else "params changed")


@probe("lost", "ParamStore.load of a file holding a list keeps the params")
def _():
    store = cp.params.ParamStore()
    store.get_param("a", torch.tensor(2.5))
    path = TMP / "list.pt"
    torch.save([1, 2, 3], path)
    error = refuses(lambda: store.load(path), "list.pt", error=ValueError)
    return error or (None if float(store["a"].detach()) == 2.5 else "params changed")


@probe("lost", "fit -o over an existing model, with bad data, keeps the old file")
def _():
    target = TMP / "keep.cpm"
    first = cli("fit", GOOD_DOT, GOOD_CSV, "-o", target, "--steps", "20", code=0)
    if first is not None and not target.exists():
        return f"could not make the first model: {first}"
    before = target.read_bytes()
    second = cli("fit", GOOD_DOT, write("bad_again.csv", "x,y\n1,2\nzz,3\n"), "-o", target, names=("x",))
    return second or (None if target.read_bytes() == before else "the old model file changed")


@probe("lost", "sample -o over an existing CSV, with a bad --do, keeps it")
def _():
    target = write("keep.csv", "old\n")
    error = _usage_or_one("sample", GOOD_DOT, "-o", target, "--do", "x=abc", names=("x",))
    return error or (None if target.read_text() == "old\n" else "the old CSV changed")


@probe("lost", "scm.save to a folder that does not exist leaves no temp file")
def _():
    error = refuses(lambda: _fitted().save(TMP / "nope" / "m.cpm"), "nope")
    return error or (None if not (TMP / "nope").exists() else "made the folder")


@probe("lost", "cp.load of a non-model file names it")
def _():
    return refuses(lambda: cp.load(write("notmodel.cpm", "hello")), "notmodel.cpm")


@probe("lost", "a fitted SCM saved and loaded keeps its params")
def _():
    scm = _fitted()
    scm.save(TMP / "roundtrip.cpm")
    back = cp.load(TMP / "roundtrip.cpm")
    same = all(torch.allclose(back.params[k], v) for k, v in scm.params.items())
    return None if same and set(back.params.keys()) == set(scm.params.keys()) else "params differ"


# --------------------------------------------------------------------------- 4. errors name the culprit


probe("culprit", "SCM.add with a syntax error names the node")(
    lambda: refuses(lambda: cp.SCM().add("height", "Normal(x,, 1)"), "height"))
probe("culprit", "SCM.add with an int mechanism names the node")(lambda: refuses(lambda: cp.SCM().add("h", 5), "'h'"))
probe("culprit", "SCM.add with one label names the node")(
    lambda: refuses(lambda: cp.SCM().add("t", "Bernoulli(0.5)", labels=("only",)), "t"))
probe("culprit", "SCM.add twice names the node")(
    lambda: refuses(lambda: cp.SCM().add("a", "Normal(0, 1)").add("a", "Normal(0, 1)"), "a"))
probe("culprit", "condition with a ragged list names the node")(
    lambda: refuses(lambda: scm_xy().condition(y=[1, [2]]), "y"))
probe("culprit", "do with an object names the node")(lambda: refuses(lambda: scm_xy().do(x=object()), "x"))
probe("culprit", "do on a node that does not exist names it")(lambda: refuses(lambda: scm_xy().do(zz=1), "zz"))
probe("culprit", "do with a set names the node")(lambda: refuses(lambda: scm_xy().do(x={1.0}), "x"))
probe("culprit", "condition with bytes names the node")(lambda: refuses(lambda: scm_xy().condition(x=b"1"), "x"))
probe("culprit", "a 2-d data column names it")(
    lambda: refuses(lambda: scm_xy().fit({"x": torch.randn(5, 2), "y": torch.randn(5)}, progress=False), "x"))
probe("culprit", "a 0-d data column names it")(
    lambda: refuses(lambda: scm_xy().fit({"x": torch.tensor(1.0), "y": torch.randn(5)}, progress=False), "x"))
probe("culprit", "a string data column names it")(
    lambda: refuses(lambda: scm_xy().fit({"x": ["a", "b", "c"], "y": [1.0, 2.0, 3.0]}, progress=False), "x"))
probe("culprit", "an inf in a data column names it")(
    lambda: refuses(lambda: scm_xy().fit({"x": [1.0, math.inf, 2.0], "y": [1.0, 2.0, 3.0]}, progress=False), "x"))
probe("culprit", "columns of unequal length are named")(
    lambda: refuses(lambda: scm_xy().fit({"x": torch.randn(4), "y": torch.randn(5)}, progress=False), "x", "y"))
probe("culprit", "an extra data column is named")(
    lambda: refuses(lambda: scm_xy().fit({"x": torch.randn(4), "y": torch.randn(4), "w": torch.randn(4)},
                                         progress=False), "w"))
probe("culprit", "read_dot(b'...') says what it needs")(lambda: refuses(lambda: cp.read_dot(b"digraph {}"), "bytes"))
probe("culprit", "read_dot(None) says what it needs")(lambda: refuses(lambda: cp.read_dot(None), "None"))
probe("culprit", "read_dot of a Latin-1 file names the file")(
    lambda: refuses(lambda: cp.read_dot(write("latin.dot", "digraph { \xe9 }".encode("latin-1"), "wb")),
                    "latin.dot"))
probe("culprit", "read_graph of unclosed DOT gives the line")(
    lambda: refuses(lambda: cp.read_graph("digraph {\n a -> b\n"), "line"))
probe("culprit", "read_graph of a file in no known format names it")(
    lambda: refuses(lambda: cp.read_graph(write("junk.txt", "hello world")), "junk.txt"))
probe("culprit", "cp.load of a missing file names it")(lambda: refuses(lambda: cp.load(TMP / "gone.cpm"), "gone.cpm"))
probe("culprit", "interventional with a string do value names the node")(
    lambda: refuses(lambda: cp.causal.interventional(scm_xy(), do={"x": "abc"}, n=10), "x"))
probe("culprit", "ate with a string treated value names the node")(
    lambda: refuses(lambda: cp.causal.ate(scm_xy(), "x", "y", treated="hi", n=10), "x"))
probe("culprit", "sample(-1) names n")(lambda: refuses(lambda: scm_xy().sample(-1), "n"))
probe("culprit", "sample(2.5) names n")(lambda: refuses(lambda: scm_xy().sample(2.5), "n"))
probe("culprit", "an input given NaN names the input")(
    lambda: refuses(lambda: cp.graphs.load("scale").sample(3, guess=float("nan")), "guess"))
probe("culprit", "an input given a string names the input")(
    lambda: refuses(lambda: cp.graphs.load("scale").sample(3, guess="eight"), "guess"))
probe("culprit", "an input given inf names the input")(
    lambda: refuses(lambda: cp.graphs.load("scale").sample(3, guess=float("inf")), "guess"))
probe("culprit", "a mechanism that returns a number names the node")(
    lambda: refuses(lambda: cp.SCM().add("z", "1.5").sample(3), "z"))
probe("culprit", "a DOT edge to an undeclared node names it")(
    lambda: refuses(lambda: cp.read_dot('digraph { x [mechanism="Normal(0, 1)"]; x -> ghost }'), "ghost"))
probe("culprit", "a DOT mechanism error names the node")(
    lambda: refuses(lambda: cp.read_dot('digraph { q [mechanism="Normal(0,"]; }'), "q"))
probe("culprit", "a DOT observed value that is a name names the node")(
    lambda: refuses(lambda: cp.read_dot('digraph { x [mechanism="Normal(0, 1)", observed="abc"]; }'), "x"))


# --------------------------------------------------------------------------- 5. no hang


@probe("scale", "20,000 nested list brackets in a DOT value are refused fast")
def _():
    text = 'digraph { x [mechanism="Normal(0, 1)", observed="' + "[" * 20000 + "1" + "]" * 20000 + '"]; }'
    return refuses(lambda: cp.read_dot(text), "x")


@probe("scale", "100,000 nested subgraphs are refused, not a crash")
def _():
    return refuses(lambda: cp.read_dot("digraph { " + "{" * 100000 + "a" + "}" * 100000 + " }"), "nested")


@probe("scale", "a 5 MB node name is handled")
def _():
    scm = cp.read_dot("digraph { " + "a" * 5_000_000 + " }")
    return None if len(scm.nodes) == 1 else "wrong"


# --------------------------------------------------------------------------- run


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout("took more than 180 s")


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args
    kinds = [a for a in args if not a.startswith("-")]
    signal.signal(signal.SIGALRM, _alarm)
    failed = 0
    ran = 0
    for kind, description, fn in PROBES:
        if kinds and kind not in kinds:
            continue
        ran += 1
        signal.alarm(180)
        try:
            outcome = fn()
        except Timeout as err:
            outcome = str(err)
        except Exception:  # noqa: BLE001 -- the probe itself crashed: a failure too
            outcome = "probe crashed: " + traceback.format_exc(limit=3).replace("\n", " | ")[-500:]
        finally:
            signal.alarm(0)
        if outcome is not None:
            failed += 1
            print(f"FAIL [{kind}] {description}: {outcome}")
        elif verbose:
            print(f"ok   [{kind}] {description}")
    print(f"{ran - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
