"""The command line as a workflow: graph formats, pandas CSV, fit -> query/ate/sample/identify, JSON, errors."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from test_formats import SPRINKLER_BIF

import causalppl as cp
from causalppl import cli


def run(capsys, *argv):
    try:
        status = cli.main([str(arg) for arg in argv])
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def test_version(capsys):
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.strip() == f"causalppl {cp.__version__}"


def test_fit_then_query_ate_sample_identify_on_a_pandas_csv(capsys, tmp_path):
    cp.set_rng_seed(0)
    rows = 3000
    z = pd.Series(cp.dist.Bernoulli(0.5).sample((rows,)).numpy().astype(bool))
    x = pd.Series(cp.dist.Normal(0, 1).sample((rows,)).numpy()) + z
    y = 2 * x + 3 * z + pd.Series(cp.dist.Normal(0, 1).sample((rows,)).numpy())
    pd.DataFrame({"z": z, "x": x, "y": y}).to_csv(tmp_path / "data.csv", index=False)  # z as True/False
    graph = tmp_path / "graph.dot"
    graph.write_text("digraph { z -> x; z -> y; x -> y }")  # no mechanisms: a causal DAG
    model = tmp_path / "model.cpm"
    status, out, err = run(capsys, "fit", graph, tmp_path / "data.csv", "-o", model)
    assert status == 0, err
    status, out, err = run(capsys, "ate", model, "--treatment", "x", "--outcome", "y", "-n", 5000, "--json")
    assert status == 0, err
    effect = json.loads(out)
    assert effect["ate"] == pytest.approx(2.0, abs=0.1) and effect["interval"][0] < effect["ate"]
    status, out, err = run(capsys, "query", model, "--target", "y", "--do", "x=1", "--do", "z=True", "--json")
    assert status == 0, err
    assert json.loads(out)["mean"] == pytest.approx(5.0, abs=0.2)
    status, out, err = run(capsys, "sample", model, "-n", 4, "--labels")
    assert status == 0 and out.splitlines()[0] == "z,x,y" and out.splitlines()[1].split(",")[0] in ("False", "True")
    status, out, err = run(capsys, "identify", model, "--treatment", "x", "--outcome", "y", "--json")
    assert status == 0 and json.loads(out)["backdoor_sets"] == [["z"]]
    status, out, err = run(capsys, "query", graph, "--target", "y")
    assert status == 1 and "no mechanism" in err and "from_graph" in err


def test_other_formats_on_the_command_line(capsys, tmp_path):
    bif = tmp_path / "garden.bif"
    bif.write_text(SPRINKLER_BIF)
    cp.set_rng_seed(1)
    status, out, err = run(capsys, "query", bif, "--target", "wet", "--do", "sprinkler=on", "--json")
    assert status == 0, err
    assert json.loads(out)["distribution"]["wet"] == pytest.approx(0.8 * 0.9 + 0.2 * 0.99, abs=0.02)
    status, out, err = run(capsys, "ate", bif, "--treatment", "sprinkler", "--outcome", "wet",
                           "--treated", "on", "--control", "off", "--level", "wet")
    assert status == 0 and out.startswith("ATE of sprinkler on P(wet=wet)"), err
    dagitty = tmp_path / "m.dagitty"
    dagitty.write_text("dag { E [exposure] D [outcome] E -> D  E <-> Z  D <-> Z }")
    status, out, err = run(capsys, "identify", dagitty)  # the roles give treatment and outcome
    assert status == 0 and "effect of 'E' on 'D': identifiable" in out, err
    status, out, err = run(capsys, "sample", bif, "--do", "sprinkler=sideways")
    assert status == 2 and "one of its labels (off, on)" in err


def bad(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


CASES = [
    (lambda t: ("sample", bad(t, "c.dot", "digraph { a -> b -> a }")), "cycle a -> b -> a"),
    (lambda t: ("identify", bad(t, "c.dot", "digraph { a -> b -> a }"), "--treatment", "a", "--outcome", "b"),
     "cycle"),
    (lambda t: ("draw", bad(t, "c.dot", "digraph { a -> b -> a }"), "-o", t / "c.svg"), "cycle"),
    (lambda t: ("sample", "confounded", "-o", t / "no" / "s.csv"), "does not exist"),
    (lambda t: ("draw", "confounded", "-o", t), "is a folder"),
    (lambda t: ("fit", "confounded", bad(t, "i.csv", "x,y\n1,2\ninf,3\n"), "-o", t / "m.cpm"),
     "i.csv: data column 'x': 1 infinite value"),
    (lambda t: ("fit", "confounded", bad(t, "n.csv", "x,y\n1,2\n,3\n"), "-o", t / "m.cpm"),
     "n.csv: data column 'x': 1 missing value"),
    (lambda t: ("fit", "confounded", bad(t, "r.csv", "x,y\n1,2\n1,2,3\n"), "-o", t / "m.cpm"),
     "r.csv: line 3 has 3 values but the header names 2 columns"),
    (lambda t: ("fit", "confounded", bad(t, "d.csv", "x,x\n1,2\n"), "-o", t / "m.cpm"), "column 'x' appears twice"),
    (lambda t: ("fit", "confounded", bad(t, "b.csv", b"x,y\n1,\xff\n"), "-o", t / "m.cpm"), "b.csv: not UTF-8"),
    (lambda t: ("query", bad(t, "e.dot", ""), "--target", "y"), "empty"),
]


@pytest.mark.parametrize("argv, message", CASES)
def test_bad_inputs_are_one_line_and_leave_no_file(capsys, tmp_path, argv, message):
    argv = argv(tmp_path)
    status, out, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"causalppl {argv[0]}: error: ") and message in lines[0], lines[0]
    assert not (tmp_path / "m.cpm").exists() and not (tmp_path / "c.svg").exists()


def test_broken_pipe_exits_quietly(tmp_path):
    done = subprocess.run(f"{sys.executable} -m causalppl.cli sample confounded -n 200000 | head -2",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[0] == "z,x,y" and "Traceback" not in done.stderr and "Broken" not in done.stderr
