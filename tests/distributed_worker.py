"""One rank of the distributed tests: ``torchrun ... distributed_worker.py SCENARIO OUT_DIR``.

Rank 0 writes what the test checks to ``OUT_DIR/<scenario>.pt``. Not a test
module itself (tests/test_distributed.py starts it).
"""

import math
import os
import sys
import warnings

import torch

import causalppl as cp
from causalppl.causal.distributed import Parallel, leave, summarize

torch.set_num_threads(1)
warnings.simplefilter("ignore")  # convergence warnings of the short fits

SGD_STEPS = 3


def make_data(n=101, seed=0):
    """x -> y linear-Gaussian, x -> t logistic; 101 rows, so two shards differ by one row."""
    generator = torch.Generator().manual_seed(seed)
    x = 1.0 + 2.0 * torch.randn(n, generator=generator)
    y = 0.5 + 1.5 * x + 0.7 * torch.randn(n, generator=generator)
    t = (torch.rand(n, generator=generator) < torch.sigmoid(0.8 * x - 0.5)).float()
    return {"x": x, "y": y, "t": t}


def new_scm():
    return cp.SCM.from_graph([("x", "y"), ("x", "t")], data=make_data())


def params(scm):
    return {name: value.detach().clone() for name, value in scm.params.items()}


def sgd_trajectory(distributed):
    """Params after each of the first SGD_STEPS full-batch SVI steps (SGD: linear in the gradient)."""
    out = []
    for steps in range(1, SGD_STEPS + 1):
        scm = new_scm()
        scm.fit(make_data(), method="svi", steps=steps, optim=cp.optim.SGD({"lr": 0.002}),
                distributed=distributed, seed=0, progress=False)
        out.append(params(scm))
    return out


def slope(scm):
    return scm.mechanism("y").fn.coefficients(scm.params)["weights"]["x"]


class DieOnce:
    """An optimiser that kills this process at call ``at`` on the first attempt of rank 1."""

    def __init__(self, optim, at):
        self.optim, self.at, self.calls = optim, at, 0

    def __call__(self, params):
        self.calls += 1
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if self.at is not None and self.calls == self.at and first_attempt and Parallel.start().rank == 1:
            os._exit(17)
        self.optim(params)


def checkpointed_fit(path, die_at):
    scm = new_scm()
    optim = DieOnce(cp.optim.ClippedAdam({"lr": 0.05, "lrd": 0.99, "clip_norm": 10.0}), die_at)
    resume = path if os.path.exists(path) else None
    result = scm.fit(make_data(), method="svi", steps=12, optim=optim, distributed=True, seed=0,
                     progress=False, checkpoint=path, checkpoint_every=4, resume=resume)
    return {"params": params(scm), "losses": result.losses,
            "restarts": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))}


def main(scenario, out_dir):
    parallel = Parallel.start()
    out = {"world_size": parallel.size}
    if scenario == "fits":
        out["sgd"] = sgd_trajectory(distributed=True)
        exact = new_scm()
        exact.fit(make_data(), distributed=True, seed=0, progress=False)
        out["mle"] = params(exact)
        big = make_data(n=2000, seed=1)
        minibatch = new_scm()
        minibatch.fit(big, method="svi", steps=200, lr=0.05, subsample_size=100, distributed=True, seed=0,
                      progress=False)
        out["minibatch_slope"] = slope(minibatch)
        query = cp.causal.interventional(exact, do={"x": 1.0}, n=4000, distributed=True)
        out["do_mean"], out["do_n"] = query.mean("y"), query.summary("y").n
        out["do_t"] = query.distribution("t").probs
        effect = cp.causal.ate(exact, "x", "y", treated=1.0, control=0.0, n=2000, distributed=True)
        out["ate"], out["ate_stderr"] = effect.ate, effect.stderr
        draws = exact.sample(3000, distributed=True)
        out["sample_rows"] = len(draws["x"])
        out["sample_mean_x"] = summarize(draws)["x"].mean
        out["sample_n"] = summarize(draws)["x"].n
    elif scenario in ("uninterrupted", "killed"):
        path = os.path.join(out_dir, f"{scenario}.ckpt")
        out.update(checkpointed_fit(path, die_at=7 if scenario == "killed" else None))
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    if parallel.is_main:
        torch.save(out, os.path.join(out_dir, f"{scenario}.pt"))
    assert math.isfinite(float(len(out)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    leave(0)
