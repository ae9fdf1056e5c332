"""Smoke test of benchmarks/svi_steps.py: every implementation computes the same loss.

With the same seed, causalppl, the pure-torch floor and Pyro draw the same
noise, start from the same parameters and so must report the same first
losses; causalppl and the floor also take identical optimiser steps (same
parameterisation), so their whole loss sequences agree. No timing assertions.
"""

import importlib.util
import math
import pathlib

import pytest
import torch

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "svi_steps.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("svi_steps", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Small data so that the test stays fast; W4 then subsamples rows // 4.
ROWS = {"W1": None, "W3": 2000, "W4": 2000, "W5": 500}


def losses(bench, workload, steps, seed=3):
    runners = bench.build(workload, "cpu", ROWS[workload])
    out = {}
    for name, step in runners.items():
        torch.manual_seed(seed)
        out[name] = [step() for _ in range(steps)]
    return out


@pytest.mark.parametrize("workload", ["W1", "W3", "W4", "W5"])
def test_implementations_agree(bench, workload):
    out = losses(bench, workload, steps=4)
    for name, values in out.items():
        assert all(math.isfinite(v) for v in values), (name, values)
    # causalppl and the floor: same math step by step.
    assert out["causalppl"] == pytest.approx(out["floor"], rel=1e-5)
    if "pyro" in out:
        # Pyro's AutoNormal keeps its scales through softplus rather than exp,
        # so after the first update only W1 (no autoguide) stays identical.
        compare = out["pyro"] if workload == "W1" else out["pyro"][:1]
        assert compare == pytest.approx(out["causalppl"][: len(compare)], rel=1e-5)


def test_losses_decrease(bench):
    out = losses(bench, "W5", steps=60)
    for name, values in out.items():
        assert sum(values[-10:]) < sum(values[:10]), name


def test_quick_run_prints_table(bench, capsys, tmp_path):
    rows = bench.main(["--quick", "--only", "W1", "--repeats", "1", "--json", str(tmp_path / "r.json")])
    assert rows[0]["workload"] == "W1" and rows[0]["causalppl_us"] > 0
    text = capsys.readouterr().out
    assert "cp/floor" in text and ("PASS" in text or "MISS" in text)
    assert (tmp_path / "r.json").exists()


LEARN = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "learn.py"


def test_learn_benchmark_quick_run(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("learn_bench", LEARN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        rows = module.main(["--quick", "--steps", "5", "--json", str(tmp_path / "learn.json")])
    finally:
        torch.set_num_threads(threads)
    assert [(r["workload"], r["method"]) for r in rows] == [
        ("discrete", "mle"), ("discrete", "svi"), ("linear", "mle"), ("linear", "svi")]
    assert all(r["seconds"] > 0 and math.isfinite(r["max_error"]) for r in rows)
    linear_mle = rows[2]
    assert linear_mle["max_error"] < 0.2  # exact ML from 2,000 rows: weights to a few percent
    text = capsys.readouterr().out
    assert "max err" in text and "faster than" in text
    assert (tmp_path / "learn.json").exists()


COVERAGE = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "ate_coverage.py"


def test_coverage_benchmark_quick_run(capsys):
    spec = importlib.util.spec_from_file_location("ate_coverage", COVERAGE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        covered = module.main(["--quick", "--rows", "500", "-n", "200"])
    finally:
        torch.set_num_threads(threads)
    assert covered["monte carlo only"] <= 1  # a Monte Carlo-only interval ignores the parameters
    assert covered["bootstrap"] >= 2  # of 3 seeds
    assert "covered it in" in capsys.readouterr().out


def test_identify_benchmark_quick_run(capsys):
    spec = importlib.util.spec_from_file_location("identify_bench", PATH.with_name("identify.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--sizes", "50", "200", "--repeats", "1"])
    assert [(r["nodes"], r["case"]) for r in rows] == [(50, "adjust"), (50, "ID"), (200, "adjust"), (200, "ID")]
    assert all(r["median_s"] > 0 for r in rows)
    assert rows[0]["method"] == "backdoor"
    assert "PASS" in capsys.readouterr().out
