"""End-to-end tests of the ``causalppl`` command (causalppl.cli)."""

import csv
import io
import json
import re
import shutil
import subprocess
import sys

import pytest

import causalppl as cp
from causalppl import cli


def run(capsys, *argv):
    """Run ``causalppl ARGV`` in-process: (exit status, stdout, stderr)."""
    try:
        status = cli.main([str(arg) for arg in argv])
    except SystemExit as exit:  # argparse usage errors
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def run_subprocess(*argv):
    return subprocess.run([sys.executable, "-m", "causalppl.cli", *map(str, argv)],
                          capture_output=True, text=True, timeout=120)


def mean_of(output):
    """The estimate in a `query` line: 'E[y] do(x=1) = 1.995 ± 0.022 (sd ..., n=...) [importance]'."""
    match = re.search(r"= (-?[\d.]+(?:e-?\d+)?) ± ([\d.]+(?:e-?\d+)?)", output)
    assert match, output
    return float(match.group(1)), float(match.group(2))


def read_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], [[float(v) for v in row] for row in rows[1:]]


def write_csv(path, columns):
    names = list(columns)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(names)
        writer.writerows(zip(*(columns[name].tolist() for name in names)))
    return path


# -- every subcommand ----------------------------------------------------------------------


def test_list(capsys):
    status, out, err = run(capsys, "list")
    assert status == 0 and err == ""
    assert out.split() == cp.graphs.names()
    assert {"confounded", "smoking", "sprinkler"} <= set(out.split())


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz dot")
def test_draw_svg(capsys, tmp_path):
    path = tmp_path / "sprinkler.svg"
    status, out, err = run(capsys, "draw", "sprinkler", "-o", path, "--do", "sprinkler=1")
    assert status == 0, err
    assert out.strip() == f"wrote {path}"
    svg = path.read_text()
    assert "<svg" in svg
    for node in ("cloudy", "sprinkler", "rain", "wet"):
        assert node in svg


def test_draw_dot_text(capsys, tmp_path):
    path = tmp_path / "confounded.dot"
    status, _, err = run(capsys, "draw", "confounded", "-o", path)
    assert status == 0, err
    again = cp.read_dot(path)  # what we wrote reads back
    assert again.nodes == ("z", "x", "y")


def test_sample_to_a_file(capsys, tmp_path):
    path = tmp_path / "rows.csv"
    status, out, _ = run(capsys, "sample", "confounded", "-n", 50, "-o", path)
    assert status == 0 and out.strip() == f"wrote 50 rows to {path}"
    header, rows = read_csv(path.read_text())
    assert header == ["z", "x", "y"]
    assert len(rows) == 50 and all(len(row) == 3 for row in rows)


def test_sample_with_do_changes_the_intervened_column(capsys):
    cp.set_rng_seed(0)
    status, out, _ = run(capsys, "sample", "confounded", "-n", 20)
    assert status == 0
    header, rows = read_csv(out)
    x = [row[header.index("x")] for row in rows]
    assert len(set(x)) == 20
    status, out, _ = run(capsys, "sample", "confounded", "-n", 20, "--do", "x=1.5")
    assert status == 0
    header, rows = read_csv(out)
    assert len(rows) == 20
    assert all(row[header.index("x")] == 1.5 for row in rows)
    assert len({row[header.index("z")] for row in rows}) == 20  # upstream of x: untouched


def test_sample_with_do_and_an_input_the_do_cut(capsys):
    status, out, err = run(capsys, "sample", "scale", "-n", 5, "--input", "guess=8.5", "--do", "weight=9")
    assert status == 0, err
    header, rows = read_csv(out)
    assert len(rows) == 5 and all(row[header.index("weight")] == 9.0 for row in rows)


def test_query_importance(capsys):
    cp.set_rng_seed(1)
    status, out, _ = run(capsys, "query", "confounded", "--target", "y", "--do", "x=1", "-n", 20000)
    assert status == 0
    assert out.startswith("E[y] do(x=1) = ") and out.rstrip().endswith("[importance]")
    mean, stderr = mean_of(out)
    assert abs(mean - 2.0) < 4 * stderr + 0.02  # E[y | do(x=1)] = 2
    status, out, _ = run(capsys, "query", "confounded", "--target", "y", "--condition", "x=1", "-n", 5000)
    assert status == 0 and "given x=1" in out
    assert abs(mean_of(out)[0] - 3.5) < 0.15  # E[y | x=1] = 3.5


def test_query_is_exact_by_default_on_a_discrete_graph(capsys):
    status, out, err = run(capsys, "query", "sprinkler", "--target", "wet", "--do", "sprinkler=1")
    assert status == 0, err
    assert out.startswith("E[wet] do(sprinkler=1) = 0.945 exact") and out.rstrip().endswith("[exact]")
    status, out, err = run(capsys, "query", "sprinkler", "--target", "wet", "--condition", "rain=1", "--json")
    answer = json.loads(out)
    assert status == 0 and answer["method"] == "exact" and answer["stderr"] == 0 and answer["n"] == 0
    # rain=1 makes cloudy=1 four times as likely (0.8), so P(sprinkler=1 | rain=1) = 0.8 * 0.1 + 0.2 * 0.5
    assert answer["mean"] == pytest.approx(0.18 * 0.99 + 0.82 * 0.9, abs=1e-6)
    cp.set_rng_seed(5)
    status, out, err = run(capsys, "query", "sprinkler", "--target", "wet", "--do", "sprinkler=1",
                           "--method", "importance", "-n", 20000)
    assert status == 0 and out.rstrip().endswith("[importance]"), err
    mean, stderr = mean_of(out)
    assert abs(mean - 0.945) < 4 * stderr


def test_query_method_exact_names_the_node_it_cannot_eliminate(capsys):
    status, out, err = run(capsys, "query", "confounded", "--target", "y", "--do", "x=1", "--method", "exact")
    assert status == 1 and "exact inference does not apply: node 'z'" in err and "Normal" in err


def test_query_svi(capsys):
    cp.set_rng_seed(2)
    status, out, err = run(capsys, "query", "confounded", "--target", "z", "--condition", "x=1",
                           "--method", "svi", "--steps", 1000, "-n", 2000)
    assert status == 0, err
    assert out.rstrip().endswith("[svi]")
    assert abs(mean_of(out)[0] - 0.5) < 0.1  # z | x=1 ~ N(0.5, sqrt(0.5))


def test_fit_writes_a_loadable_model(capsys, tmp_path):
    cp.set_rng_seed(3)
    data = write_csv(tmp_path / "data.csv", cp.graphs.load("confounded").sample(2000))
    path = tmp_path / "model.cpm"
    status, out, err = run(capsys, "fit", "confounded", data, "-o", path, "--steps", 800)
    assert status == 0, err
    assert path.exists() and out.rstrip().endswith(f"wrote {path}")
    assert "y.weight" in out  # the learned params are printed
    scm = cp.load(path)
    assert scm.nodes == ("z", "x", "y")
    # The params are in standardised units; coefficients() gives them in the data's.
    x, y = (scm.mechanism(node).fn.coefficients(scm.params) for node in ("x", "y"))
    assert x["weights"]["z"] == pytest.approx(1.0, abs=0.1)
    assert y["weights"]["x"] == pytest.approx(2.0, abs=0.15) and y["weights"]["z"] == pytest.approx(3.0, abs=0.15)
    assert y["scale"] == pytest.approx(1.0, abs=0.1)
    assert len(cp.get_param_store()) == 0  # the model carries its params; the global store is untouched
    assert "method mle" in out  # fully observed: exact maximum likelihood, no SVI


@pytest.fixture
def fitted_model(tmp_path_factory):
    """A model file fitted by the CLI to data from the confounded graph (E[y | do(x=1)] = 2)."""
    folder = tmp_path_factory.mktemp("fitted")
    cp.set_rng_seed(4)
    data = write_csv(folder / "data.csv", cp.graphs.load("confounded").sample(2000))
    path = folder / "model.cpm"
    assert cli.main(["fit", "confounded", str(data), "-o", str(path), "--steps", "800"]) == 0
    return path


def test_the_other_commands_take_a_fitted_model(capsys, tmp_path, fitted_model):
    capsys.readouterr()
    cp.set_rng_seed(5)
    status, out, err = run(capsys, "query", fitted_model, "--target", "y", "--do", "x=1", "-n", 20000)
    assert status == 0, err
    mean, stderr = mean_of(out)
    assert abs(mean - 2.0) < 4 * stderr + 0.15  # learned weights, within the fit's tolerance

    status, out, err = run(capsys, "sample", fitted_model, "-n", 5, "--do", "x=1")
    assert status == 0, err
    header, rows = read_csv(out)
    assert header == ["z", "x", "y"] and all(row[1] == 1.0 for row in rows)

    status, out, err = run(capsys, "identify", fitted_model, "--treatment", "x", "--outcome", "y")
    assert status == 0 and "backdoor sets:  {'z'}" in out

    status, out, err = run(capsys, "draw", fitted_model, "-o", tmp_path / "model.dot")
    assert status == 0, err
    assert "digraph" in (tmp_path / "model.dot").read_text()

    # Any file cp.load reads will do, whatever its name.
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(fitted_model.read_bytes())
    status, out, err = run(capsys, "identify", renamed, "--treatment", "x", "--outcome", "y")
    assert status == 0 and "backdoor sets:  {'z'}" in out, err


def test_identify(capsys):
    status, out, _ = run(capsys, "identify", "confounded", "--treatment", "x", "--outcome", "y")
    assert status == 0 and "backdoor sets:  {'z'}" in out
    status, out, _ = run(capsys, "identify", "smoking", "--treatment", "smoking", "--outcome", "cancer")
    assert status == 0
    assert "backdoor sets:  none" in out and "frontdoor sets: {'tar'}" in out
    status, out, _ = run(capsys, "identify", "instrument", "--treatment", "x", "--outcome", "y")
    assert status == 0 and "instruments:    'z'" in out


def test_identify_prints_estimand_or_hedge_and_json(capsys):
    import json

    status, out, _ = run(capsys, "identify", "smoking", "--treatment", "smoking", "--outcome", "cancer")
    assert status == 0 and "estimand:       P(cancer | do(smoking)) = Σ_tar P(tar|smoking)" in out
    status, out, _ = run(capsys, "identify", "instrument", "--treatment", "x", "--outcome", "y")
    assert status == 0 and "not identifiable" in out and "hedge F = {'x', 'y'}, F' = {'y'}" in out
    status, out, _ = run(capsys, "identify", "instrument", "--treatment", "x", "--outcome", "y", "--json")
    data = json.loads(out)
    assert status == 0 and data["identifiable"] is False and data["hedge"] == [["x", "y"], ["y"]]
    assert data["instruments"] == ["z"] and data["estimand"] is None
    status, out, _ = run(capsys, "identify", "confounded", "--treatment", "x", "--outcome", "y", "--json")
    data = json.loads(out)
    assert data["estimand"] == "Σ_z P(z)P(y|x,z)" and data["method"] == "backdoor"


def test_through_a_subprocess(tmp_path):
    done = run_subprocess("identify", "confounded", "--treatment", "x", "--outcome", "y")
    assert done.returncode == 0, done.stderr
    assert "{'z'}" in done.stdout
    done = run_subprocess("fit", "confounded", tmp_path / "missing.csv", "-o", tmp_path / "model.cpm")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"causalppl fit: error: cannot read {tmp_path / 'missing.csv'}: No such file or directory"]


# -- bad input: a one-line error, no traceback -------------------------------------------------


def bad_csv(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


RUNTIME_ERRORS = [
    (lambda tmp: ("query", "bogus", "--target", "y"), "'bogus' is neither a graph file"),
    (lambda tmp: ("sample", "confounded", "--do", "q=1"), "'q' is not a node"),
    (lambda tmp: ("query", "confounded", "--target", "nope"), "--target: 'nope' is not a node"),
    (lambda tmp: ("identify", "confounded", "--treatment", "t", "--outcome", "y"), "'t' is not a node"),
    (lambda tmp: ("draw", tmp / "missing.dot", "-o", tmp / "out.svg"), "no such file"),
    (lambda tmp: ("fit", "confounded", tmp / "missing.csv", "-o", tmp / "model.cpm"), "cannot read"),
    (lambda tmp: ("fit", "confounded", bad_csv(tmp, "w.csv", "x,w\n1,2\n"), "-o", tmp / "model.cpm"),
     "columns ['w'] are not nodes"),
    (lambda tmp: ("fit", "confounded", bad_csv(tmp, "abc.csv", "x,y\n1,2\n1,abc\n"), "-o", tmp / "model.cpm"),
     "column 'y' has a value that is not a number"),
    (lambda tmp: ("query", "confounded", "--target", "y", "--method", "svi"), "needs --condition"),
    (lambda tmp: ("query", tmp / "missing.cpm", "--target", "y"), "no such file"),
    (lambda tmp: ("query", bad_csv(tmp, "garbage.cpm", "not a model"), "--target", "y"),
     "garbage.cpm: not a causalppl SCM file"),
    (lambda tmp: ("fit", "confounded", bad_csv(tmp, "d.csv", "x,y\n1,2\n"), "-o", tmp / "no" / "model.cpm"),
     "the folder"),
    (lambda tmp: ("fit", "confounded", bad_csv(tmp, "d.csv", "x,y\n1,2\n"), "-o", tmp), "is a folder"),
]


@pytest.mark.parametrize("argv, message", RUNTIME_ERRORS)
def test_runtime_errors_exit_1_with_one_line(capsys, tmp_path, argv, message):
    argv = argv(tmp_path)
    status, out, err = run(capsys, *argv)
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"causalppl {argv[0]}: error: ")
    assert message in lines[0]
    assert "Traceback" not in err


USAGE_ERRORS = [
    (("sample", "confounded", "--do", "x1"), "expected NAME=VALUE, got 'x1'"),
    (("sample", "confounded", "--do", "x=abc"), "x: expected a number, got 'abc'"),
    (("sample", "confounded", "--do", "x=nan"), "expected a finite number"),
    (("sample", "confounded", "-n", "0"), "-n must be at least 1"),
    (("query", "confounded"), "--target"),
    (("frobnicate",), "invalid choice"),
]


@pytest.mark.parametrize("argv, message", USAGE_ERRORS)
def test_usage_errors_exit_2(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2
    last = err.strip().splitlines()[-1]
    assert re.match(r"causalppl( \w+)?: error: ", last), err
    assert message in last
    assert "Traceback" not in err



def test_fit_with_the_files_own_mechanisms_and_nothing_latent(tmp_path, capsys):
    data = tmp_path / "full.csv"
    assert cli.main(["sample", "confounded", "-n", "200", "-o", str(data)]) == 0
    out = tmp_path / "model.cpm"
    assert cli.main(["fit", "confounded", str(data), "-o", str(out), "--mechanisms", "given", "--steps", "5"]) == 0
    assert out.exists()
    assert "final loss" in capsys.readouterr().out
    assert cp.load(out).mechanism("y").text == "Normal(2*x + 3*z, 1.0)"  # the file's own expressions
