"""End to end: examples/scale_graph.py draws its DAGs and reaches the analytic posterior."""

import importlib.util
import shutil
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "scale_graph.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("scale_graph", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scale_graph_example(example, tmp_path, capsys):
    results = example.main(out_dir=tmp_path, steps=800, seed=0)
    printed = capsys.readouterr().out
    assert "a = " in printed and "b = " in printed

    assert abs(results["a"] - 9.14) < 0.12
    assert abs(results["b"] - 0.6) < 0.08
    assert abs(results["a"] - example.POSTERIOR_LOC) < 0.12
    assert len(results["losses"]) == 800

    # do(weight=9): measurement ~ Normal(9, 0.75) from 10,000 draws
    assert abs(results["do_mean"] - 9.0) < 4 * 0.75 / 100
    assert abs(results["do_std"] - 0.75) < 0.03
    # condition(measurement=9.5) by importance resampling
    assert abs(results["importance_mean"] - 9.14) < 0.1

    suffix = ".svg" if shutil.which("dot") else ".dot"
    for name in ("scale", "scale_do"):
        path = tmp_path / f"{name}{suffix}"
        assert path.exists() and path.stat().st_size > 0
    if suffix == ".svg":
        assert "weight = 9.0" in (tmp_path / "scale_do.svg").read_text()


def test_build_scale_matches_the_graph_file(example):
    import causalppl as cp

    built, loaded = example.build_scale(), cp.graphs.load("scale")
    assert built.nodes == loaded.nodes and built.inputs == loaded.inputs
    texts = [{n: scm.mechanism(n).text for n in scm.nodes} for scm in (built, loaded)]
    assert texts[0] == texts[1]


def test_cli_arguments(example):
    args = example.parse_args(["--steps", "5", "--out-dir", "somewhere"])
    assert args.steps == 5 and args.out_dir == "somewhere"
