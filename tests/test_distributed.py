"""Data-parallel fits on two gloo processes on localhost (CPU), against one process.

Each test starts ``torch.distributed.run`` with two workers
(tests/distributed_worker.py) and compares what rank 0 saved with a fit in
this process on the same data.
"""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import causalppl as cp
from causalppl.causal.distributed import Parallel, shard_rows

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = HERE / "distributed_worker.py"
sys.path.insert(0, str(HERE))
import distributed_worker as worker  # noqa: E402

TIMEOUT = 300  # seconds for one launch of two workers (a loaded 2-core box takes up to ~80); nothing may hang


def environment():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def launch(scenario, out_dir, max_restarts=0):
    """Run the worker on two local processes; return what rank 0 saved (and the folder it used)."""
    # --standalone: torchrun picks a free localhost port for its rendezvous (kept across restarts).
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               f"--max-restarts={max_restarts}", str(WORKER), scenario, str(out_dir)]
    done = subprocess.run(command, env=environment(), cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, f"workers failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = torch.load(out_dir / f"{scenario}.pt", weights_only=True)
    out["folder"] = out_dir
    return out


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    return launch("fits", tmp_path_factory.mktemp("fits"))


def test_shards_hold_every_row_once_and_are_reproducible():
    shards = [shard_rows(101, Parallel(rank, 2), seed=3) for rank in range(2)]
    assert sorted(torch.cat(shards).tolist()) == list(range(101))
    assert [len(s) for s in shards] == [51, 50]
    assert torch.equal(shards[0], shard_rows(101, Parallel(0, 2), seed=3))
    assert not torch.equal(shards[0], shard_rows(101, Parallel(0, 2), seed=4))


def test_full_batch_steps_equal_one_process_after_every_step(fits):
    assert fits["world_size"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = worker.sgd_trajectory(distributed=False)
    for step, (two, one) in enumerate(zip(fits["sgd"], reference, strict=True), start=1):
        assert set(two) == set(one)
        for name in one:
            assert torch.allclose(two[name], one[name], atol=1e-5, rtol=0), (step, name, two[name], one[name])
    # The steps moved the params, so equality is not that of the initial values.
    assert (reference[-1]["y.weight"] - reference[0]["y.weight"]).abs().max() > 1e-3


def test_exact_fit_sums_the_statistics_of_both_shards(fits):
    scm = worker.new_scm()
    scm.fit(worker.make_data(), seed=0, progress=False)
    for name, value in scm.params.items():
        assert torch.allclose(fits["mle"][name], value.detach(), atol=1e-6, rtol=1e-6), name


def test_minibatch_fit_recovers_the_slope(fits):
    big = worker.make_data(n=2000, seed=1)
    scm = worker.new_scm()
    scm.fit(big, method="mle", progress=False)
    exact = worker.slope(scm)
    # MLE standard error of the slope ~ 0.7 / (2 sqrt(2000)) = 0.008; minibatch SVI noise on top.
    assert abs(fits["minibatch_slope"] - exact) < 0.05
    assert abs(fits["minibatch_slope"] - 1.5) < 0.06


def test_queries_share_the_draws_and_combine_the_summaries(fits):
    scm = worker.new_scm()
    scm.fit(worker.make_data(), seed=0, progress=False)
    cp.set_rng_seed(0)
    one = cp.causal.interventional(scm, do={"x": 1.0}, n=4000)
    assert fits["do_n"] == 4000
    sd = one.summary("y").std
    assert abs(fits["do_mean"] - one.mean("y")) < 5 * sd * (2 / 4000) ** 0.5
    assert abs(sum(fits["do_t"].values()) - 1) < 1e-9
    slope = worker.slope(scm)
    assert abs(fits["ate"] - slope) < 1e-4 and fits["ate_stderr"] < 1e-4  # shared noise: every row's effect
    assert fits["sample_rows"] == 1500 and fits["sample_n"] == 3000
    assert abs(fits["sample_mean_x"] - float(worker.make_data()["x"].mean())) < 0.25


def test_a_killed_worker_resumes_from_the_last_checkpoint(tmp_path):
    # Reliable since each attempt's process group reads only its own keys of torchrun's
    # shared store (causalppl.causal.distributed.attempt_store): exactly one restart, the kill's.
    reference = launch("uninterrupted", tmp_path)
    resumed = launch("killed", tmp_path, max_restarts=1)
    assert reference["restarts"] == 0 and resumed["restarts"] == 1
    assert len(resumed["losses"]) == len(reference["losses"]) == 12
    for name, value in reference["params"].items():
        assert torch.allclose(resumed["params"][name], value, atol=1e-6, rtol=0), name
    assert resumed["losses"] == pytest.approx(reference["losses"], rel=1e-6)
    # The checkpoint is a fitted-SCM file that cp.load reads.
    assert cp.load(resumed["folder"] / "killed.ckpt").nodes == ("x", "y", "t")


def readme_section():
    import re

    text = (ROOT / "README.md").read_text()
    section = text.split("## More data than one machine", 1)[1].split("\n## ", 1)[0]
    python = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    bash = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return python[0], [line for line in bash[0].splitlines() if line.strip()]


def test_the_readme_commands_run(tmp_path):
    """The section's script, saved as fit_big.py, under torchrun and through `causalppl fit --workers 2`."""
    script, commands = readme_section()
    (tmp_path / "fit_big.py").write_text(script)
    assert [c.split()[0] for c in commands] == ["torchrun", "causalppl"]
    for command in commands:
        words = command.split()
        if words[0] == "torchrun":
            words = [sys.executable, "-m", "torch.distributed.run", *words[1:]]
        else:
            words = [sys.executable, "-m", "causalppl.cli", *words[1:]]
        done = subprocess.run(words, env=environment(), cwd=tmp_path, capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert cp.load(tmp_path / "model.cpm").nodes == ("x", "y")
        (tmp_path / "model.cpm").unlink()


def test_each_restart_attempt_keeps_its_own_keys_in_the_shared_store(monkeypatch):
    """torchrun's store outlives a restart; an attempt must not read the gloo addresses a killed one left."""
    import socket
    from datetime import timedelta

    from causalppl.causal.distributed import attempt_store

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    first = attempt_store(0, 1)  # rank 0 hosts the server here
    first.set("rank_0", "address of the killed attempt")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    raw = torch.distributed.TCPStore("127.0.0.1", port, 1, False, timeout=timedelta(seconds=10))
    second = torch.distributed.PrefixStore("causalppl/attempt1/default_pg", raw)
    assert raw.get("causalppl/attempt0/default_pg/rank_0") == b"address of the killed attempt"
    assert second.check(["rank_0"]) is False  # the new attempt waits for its own rank 0, never reads the old
