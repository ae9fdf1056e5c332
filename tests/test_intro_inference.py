"""End-to-end test of examples/intro_inference.py (Pyro's intro tutorial)."""

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "intro_inference.py"

# The analytic posterior of the weight given measurement 9.5 and guess 8.5.
POSTERIOR_LOC = (0.75**2 * 8.5 + 9.5) / (1 + 0.75**2)
POSTERIOR_SCALE = math.sqrt(0.75**2 / (1 + 0.75**2))
# Over 20 seeds the fitted a and b (2500 SGD steps) had std 0.03 and 0.016:
# these tolerances are about four to five standard deviations.
TOL_A, TOL_B = 0.12, 0.08


def load_example():
    spec = importlib.util.spec_from_file_location("intro_inference", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results():
    return load_example().main(steps=2500, plots=False)


def test_svi_reaches_the_analytic_posterior(results):
    a, b = results["svi"]
    assert a == pytest.approx(POSTERIOR_LOC, abs=TOL_A)
    assert b == pytest.approx(POSTERIOR_SCALE, abs=TOL_B)
    assert len(results["losses"]) == 2500


def test_manual_loop_reaches_the_analytic_posterior(results):
    a, b = results["manual"]
    assert a == pytest.approx(POSTERIOR_LOC, abs=TOL_A)
    assert b == pytest.approx(POSTERIOR_SCALE, abs=TOL_B)


def test_perfect_guide_has_a_better_elbo_than_a_poor_one(results):
    assert results["perfect_guide_loss"] < results["poor_guide_loss"]
    # With the exact posterior as guide, log p - log q is the constant log p(9.5):
    # measurement ~ Normal(8.5, sqrt(1 + 0.75**2)) marginally.
    var = 1 + 0.75**2
    neg_log_evidence = 0.5 * math.log(2 * math.pi * var) + 0.5 * (9.5 - 8.5) ** 2 / var
    assert results["perfect_guide_loss"] == pytest.approx(neg_log_evidence, abs=1e-3)


def test_do_and_log_joint(results):
    # 2000 draws from Normal(9, 0.75): five standard errors.
    assert results["do_mean"] == pytest.approx(9.0, abs=5 * 0.75 / math.sqrt(2000))
    assert results["do_std"] == pytest.approx(0.75, abs=0.05)
    expected = (
        -0.5 * (8.23 - 8.5) ** 2 - 0.5 * math.log(2 * math.pi)
        - 0.5 * ((9.5 - 8.23) / 0.75) ** 2 - math.log(0.75) - 0.5 * math.log(2 * math.pi)
    )
    assert results["log_joint"] == pytest.approx(expected, abs=1e-4)
    assert results["log_joint_by_hand"] == pytest.approx(expected, abs=1e-4)


def test_script_runs_and_writes_plots(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--steps", "50", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "a =" in proc.stdout
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "skipped" in proc.stdout
        return
    assert (tmp_path / "elbo.png").stat().st_size > 0
    assert (tmp_path / "params.png").stat().st_size > 0


def test_script_without_plots(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--steps", "5", "--no-plots", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []
