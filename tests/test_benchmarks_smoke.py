"""Smoke tests of benchmarks/: svi_steps.py's implementations compute the same loss; compare.py's
floor computes the ELBO and every backend reaches the floor's answer; the other scripts run.

svi_steps.py: with the same seed, causalppl, its pure-torch floor and Pyro draw the same
noise, start from the same parameters and so must report the same first
losses; causalppl and the floor also take identical optimiser steps (same
parameterisation), so their whole loss sequences agree. No timing assertions.
"""

import importlib.util
import json
import math
import pathlib
import sys

import pytest
import torch
from torch.distributions import Normal

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


# ---------------------------------------------------------------------------
# compare.py, floor.py and scaling.py: the side-by-side harness against the floor
# ---------------------------------------------------------------------------

BENCH = PATH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _floor_and_data(name, **size):
    import floor
    import workloads

    w = workloads.WORKLOADS[name].scaled(**size)
    data = workloads.make_data(w)
    torch.manual_seed(5)
    run = floor.build(w, data, torch.device("cpu"), seed=5)  # seeds torch with 5 again
    return w, data, run


def test_floor_loss_is_the_elbo_scale():
    import workloads as W

    _, _, run = _floor_and_data("W1")
    loss = run.step()
    torch.manual_seed(5)
    eps = torch.randn(())
    a, b = torch.tensor(W.GUESS), torch.tensor(1.0)
    z = a + b * eps
    elbo = (Normal(W.GUESS, W.PRIOR_SD).log_prob(z) + Normal(z, W.NOISE_SD).log_prob(torch.tensor(W.MEASUREMENT))
            - Normal(a, b).log_prob(z))
    assert loss == pytest.approx(-elbo.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["W3", "W4"])
def test_floor_loss_is_the_elbo_linear(name):
    w, data, run = _floor_and_data(name, nodes=6, rows=3000)
    loss = run.step()
    torch.manual_seed(5)
    X = torch.as_tensor(data["X"])
    D, E, N = data["D"], data["E"], data["N"]
    eps = torch.randn(E + D)
    loc, scale = torch.zeros(E + D), torch.full((E + D,), 0.1)
    z = loc + scale * eps
    W = torch.zeros(D, D)
    W[torch.as_tensor(data["src"]), torch.as_tensor(data["dst"])] = z[:E]
    rows = X if w.batch is None else X[torch.randperm(N)[: w.batch]]
    loglik = Normal(rows @ W + z[E:], 1.0).log_prob(rows).sum() * (1 if w.batch is None else N / w.batch)
    elbo = loglik + Normal(0.0, 1.0).log_prob(z).sum() - Normal(loc, scale).log_prob(z).sum()
    assert loss == pytest.approx(-elbo.item(), rel=1e-5)


def test_floor_loss_is_the_elbo_confounder():
    import workloads as W

    _, data, run = _floor_and_data("W5", rows=500)
    loss = run.step()
    torch.manual_seed(5)
    X, Y, N = torch.as_tensor(data["X"]), torch.as_tensor(data["Y"]), data["N"]
    eps = torch.randn(3 + N)
    loc, scale = torch.zeros(3 + N), torch.full((3 + N,), 0.1)
    z = loc + scale * eps
    (a, beta, c), u = z[:3], z[3:]
    sd = W.CONFOUNDER_SD
    elbo = (Normal(0.0, W.CONFOUNDER_PRIOR_SD).log_prob(z[:3]).sum() + Normal(0.0, 1.0).log_prob(u).sum()
            + Normal(a * u, sd).log_prob(X).sum() + Normal(beta * X + c * u, sd).log_prob(Y).sum()
            - Normal(loc, scale).log_prob(z).sum())
    assert loss == pytest.approx(-elbo.item(), rel=1e-5)


def test_compare_quick_run_agrees_with_the_floor(capsys, tmp_path, one_thread):
    import compare

    out = compare.main(["--quick", "--workloads", "W1,W4,W5", "--backends",
                        "causalppl,causalppl_jit,causalppl_scm,floor", "--repeats", "2", "--window", "20",
                        "--json", str(tmp_path / "compare.json")])
    text = capsys.readouterr().out
    assert "| workload | causalppl µs | causalppl JitTrace_ELBO µs | causalppl scm.fit µs | floor µs |" in text
    assert "causalppl ÷ floor" in text and "answers" in text
    assert text.count("| agree (max Δ") == 3, text
    for result in out["results"]:
        rows = result["backends"]
        assert set(rows) == {"causalppl", "causalppl_jit", "causalppl_scm", "floor"}
        for name, row in rows.items():
            assert row["error"] is None, (result["workload"], name, row["error"])
            assert row["wall_us"] > 0 and row["cpu_us"] > 0 and math.isfinite(row["error_vs_truth"])
            if name != "floor":
                # the same answer as the floor's, to the workload's tolerance
                assert row["agrees"], (result["workload"], name, row["error_vs_floor"])
                assert row["cpu_ratio"] > 0
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert [r["workload"] for r in saved["results"]] == ["W1", "W4", "W5"]
    assert saved["environment"]["torch_threads"] == 1


def test_compare_flags_a_wrong_answer():
    import compare
    import workloads

    w = workloads.WORKLOADS["W1"]
    truth = workloads.make_data(w)["truth"]
    rec = {"floor": {"wall_us": [10.0], "cpu_us": [10.0], "window": 3, "answer": truth, "error": None},
           "causalppl": {"wall_us": [5.0], "cpu_us": [5.0], "window": 3, "answer": {"a": 0.0, "b": 1.0},
                         "error": None}}
    result = compare.summarise(w, {"sha": "x", "truth": truth}, rec)
    assert result["backends"]["causalppl"]["agrees"] is False
    assert result["backends"]["causalppl"]["cpu_ratio"] == 0.5
    assert "**DIFFER**" in compare.answers_cell(result)
    # a repeat dropped (a difference of two fits <= 0) leaves the other repeats paired
    rec["floor"].update(wall_us=[10.0, 12.0], cpu_us=[10.0, 12.0])
    rec["causalppl"].update(wall_us=[None, 6.0], cpu_us=[None, 6.0], invalid=1)
    row = compare.summarise(w, {"sha": "x", "truth": truth}, rec)["backends"]["causalppl"]
    assert row["cpu_ratio"] == 0.5 and row["cpu_us"] == 6.0 and row["dropped_repeats"] == 1


def test_compare_refuses_cuda_without_a_gpu():
    import compare

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit):
        compare.main(["--device", "cuda", "--workloads", "W1"])


def test_scaling_quick_run_writes_a_table(capsys, tmp_path, one_thread):
    import scaling

    # windows long enough that fit(K2) - fit(K1) stays above the timer's noise on the compiled path
    out = scaling.main(["--quick", "--backends", "causalppl_scm,floor", "--repeats", "2", "--target-s", "0.2",
                        "--markdown", str(tmp_path / "s.md")])
    lines = [line for line in (tmp_path / "s.md").read_text().splitlines() if line.startswith("|")]
    assert lines[0] == "| nodes | rows | edges | causalppl scm.fit µs | floor µs | causalppl scm.fit ÷ floor |"
    assert len(lines) == 2 + 3  # header, rule, cells (4, 1000), (8, 1000), (4, 300)
    for result in out["results"]:
        for row in result["backends"].values():
            assert row["error"] is None and row["cpu_us"] > 0
    assert "floor µs" in capsys.readouterr().out


def test_paired_quick_run_prints_a_ratio_per_backend(capsys, one_thread):
    import paired

    paired.main(["--quick", "--workloads", "W1,W5", "--backends", "causalppl,causalppl_jit", "--window", "5"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| W")]
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| W1", "causalppl"], ["| W1", "causalppl JitTrace_ELBO"],
        ["| W5", "causalppl"], ["| W5", "causalppl JitTrace_ELBO"]]
    for row in rows:
        assert float(row.split(" | ")[3].rstrip("×")) > 0
    with pytest.raises(SystemExit):
        paired.main(["--backends", "causalppl_scm"])  # timed through whole fits: not here


def test_paired_without_rewrites_replays_the_capture_as_captured(capsys, one_thread):
    import paired

    import causalppl.infer.jit as jit

    simplify, seen = jit.simplify, []

    def spy(graph_module, no_grad):
        seen.append(graph_module)
        return simplify(graph_module, no_grad)

    jit.simplify = spy
    try:
        paired.main(["--quick", "--workloads", "W5", "--backends", "causalppl_jit", "--window", "5", "--no-rewrites"])
        assert jit.simplify is spy and not seen  # the rewrites were off while it ran, and are back after it
    finally:
        jit.simplify = simplify
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| W")]
    assert [row.split(" | ")[1] for row in rows] == ["causalppl JitTrace_ELBO (no rewrites)"]


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("pyro", "numpyro", "jax")),
                    reason="pyro-ppl, numpyro and jax are optional (pip install -e .[bench])")
def test_references_agree_with_the_floor(one_thread):
    import compare

    out = compare.main(["--quick", "--workloads", "W1", "--backends", "pyro,numpyro,floor", "--repeats", "1",
                        "--window", "3"])
    rows = out["results"][0]["backends"]
    assert rows["pyro"]["agrees"] and rows["numpyro"]["agrees"], rows
