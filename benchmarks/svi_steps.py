"""Time SVI steps: causalppl against a hand-written pure-torch floor and Pyro.

Each workload is built three times -- (a) with causalppl, (b) as a "floor":
the same ``torch.distributions`` objects, the same ``torch.optim`` optimiser,
the same ``transform_to`` for constrained params, the same loss and backward,
and no PPL machinery, (c) with Pyro when it is importable. The three are timed
in the same process, interleaved (the order rotates every repeat), and each
reports the median over repeats of the mean microseconds per step of a window
of K steps. A step includes returning the loss as a Python float, as
``SVI.step`` does.

Workloads (see ``WORKLOADS``):

- W1: the intro tutorial's scale model and hand-written guide, SGD.
- W3: a seeded 20-node linear-Gaussian SCM, 100,000 observed rows, Normal
  priors on every edge weight / bias, AutoNormal, Adam, full batch.
- W4: W3 with the rows plate subsampled to 1,024 rows per step.
- W5: X <- U -> Y, X -> Y with a latent U per row (10,000 rows), AutoNormal over U.

Usage::

    python benchmarks/svi_steps.py                 # full run (~2 min on 2 CPU cores)
    python benchmarks/svi_steps.py --quick         # smoke run
    python benchmarks/svi_steps.py --device cuda --json results.json
    python benchmarks/svi_steps.py --only W1 W4 --no-validate

The autoguides use ``init_loc_fn=init_to_mean`` (prior mean, here 0) in both
causalppl and Pyro so that all three implementations start from the same
parameters; the floor initialises its locs to 0 and its scales to 0.1 (the
AutoNormal default ``init_scale``). Initialisation does not enter the timings.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

import torch
from torch.distributions import Independent, Normal, constraints, transform_to

import causalppl as cp
from causalppl.infer.autoguide import AutoNormal, init_to_mean

try:  # Pyro is an optional reference
    import pyro
    import pyro.distributions as pdist
    from pyro.infer.autoguide import AutoNormal as PyroAutoNormal
    from pyro.infer.autoguide import init_to_mean as pyro_init_to_mean

    PYRO_ERROR = None
except ImportError as err:  # pragma: no cover - depends on the environment
    pyro = None
    PYRO_ERROR = f"{type(err).__name__}: {err}"

IMPLS = ("causalppl", "floor", "pyro")

# ---------------------------------------------------------------------------
# W1: the intro tutorial's scale model
# ---------------------------------------------------------------------------

GUESS = 8.5
MEASUREMENT = 9.5


def w1_data(device, rows=None):
    return {"device": device, "obs": torch.tensor(MEASUREMENT, device=device)}


def w1_causalppl(data):
    cp.clear_param_store()
    device = data["device"]

    def scale(guess):
        weight = cp.sample("weight", cp.dist.Normal(guess, 1.0))
        return cp.sample("measurement", cp.dist.Normal(weight, 0.75))

    conditioned_scale = cp.condition(scale, data={"measurement": data["obs"]})

    def guide(guess):
        a = cp.param("a", torch.tensor(guess, device=device))
        b = cp.param("b", torch.tensor(1.0, device=device), constraint=constraints.positive)
        return cp.sample("weight", cp.dist.Normal(a, b))

    svi = cp.infer.SVI(conditioned_scale, guide, cp.optim.SGD({"lr": 0.001, "momentum": 0.1}),
                       cp.infer.Trace_ELBO())
    return lambda: svi.step(GUESS)


def w1_floor(data):
    device, obs = data["device"], data["obs"]
    positive = transform_to(constraints.positive)
    a = torch.tensor(GUESS, device=device).requires_grad_(True)
    b_u = positive.inv(torch.tensor(1.0, device=device)).clone().requires_grad_(True)
    optim = torch.optim.SGD([a, b_u], lr=0.001, momentum=0.1)

    def step():
        q = Normal(a, positive(b_u))
        weight = q.rsample()
        elbo = (Normal(GUESS, 1.0).log_prob(weight) + Normal(weight, 0.75).log_prob(obs)
                - q.log_prob(weight))
        loss = -elbo
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        return loss.item()

    return step


def w1_pyro(data):
    pyro.clear_param_store()
    device = data["device"]

    def scale(guess):
        weight = pyro.sample("weight", pdist.Normal(guess, 1.0))
        return pyro.sample("measurement", pdist.Normal(weight, 0.75))

    conditioned_scale = pyro.condition(scale, data={"measurement": data["obs"]})

    def guide(guess):
        a = pyro.param("a", torch.tensor(guess, device=device))
        b = pyro.param("b", torch.tensor(1.0, device=device), constraint=constraints.positive)
        return pyro.sample("weight", pdist.Normal(a, b))

    svi = pyro.infer.SVI(conditioned_scale, guide, pyro.optim.SGD({"lr": 0.001, "momentum": 0.1}),
                         pyro.infer.Trace_ELBO())
    return lambda: svi.step(GUESS)


# ---------------------------------------------------------------------------
# W3 / W4: a random 20-node linear-Gaussian SCM, fully observed
# ---------------------------------------------------------------------------

SCM_NODES = 20
SCM_EDGE_PROB = 0.2
SCM_ROWS = 100_000
SUBSAMPLE = 1024


def scm_data(device, rows=None, subsample=None):
    """Seeded DAG, true weights and ``rows`` observed rows (generated on the CPU)."""
    rows = SCM_ROWS if rows is None else rows
    gen = torch.Generator().manual_seed(20240607)
    parents = []
    for j in range(SCM_NODES):
        parents.append([i for i in range(j) if torch.rand((), generator=gen).item() < SCM_EDGE_PROB])
    X = torch.zeros(rows, SCM_NODES)
    for j, pa in enumerate(parents):
        weights = torch.randn(len(pa), generator=gen)
        bias = torch.randn((), generator=gen)
        X[:, j] = bias + X[:, pa] @ weights + torch.randn(rows, generator=gen)
    X = X.to(device)
    return {
        "device": device,
        "parents": parents,
        "rows": rows,
        "subsample": subsample,
        "X": X,
        # Per-node parent columns and own column, sliced once (full-batch W3).
        "Xpa": [X[:, pa].contiguous() for pa in parents],
        "xs": [X[:, j].contiguous() for j in range(SCM_NODES)],
        # Parent column indices (subsampled W4 slices the subsampled rows).
        "pa_idx": [torch.tensor(pa, dtype=torch.long, device=device) for pa in parents],
        "zero": torch.zeros((), device=device),
        "one": torch.ones((), device=device),
        "zeros": [torch.zeros(len(pa), device=device) for pa in parents],
    }


def w4_data(device, rows=None):
    return scm_data(device, rows, subsample=SUBSAMPLE if rows is None else min(SUBSAMPLE, rows // 4))


def _scm_model(prims, data):
    """The SCM's model for a PPL (``prims`` = sample, plate, dist module)."""
    sample, plate, D = prims
    parents, N, S = data["parents"], data["rows"], data["subsample"]
    X, Xpa, xs, pa_idx = data["X"], data["Xpa"], data["xs"], data["pa_idx"]
    zero, one, zeros = data["zero"], data["one"], data["zeros"]
    device = X.device

    def model():
        biases, weights = [], []
        for j, pa in enumerate(parents):
            biases.append(sample(f"b{j}", D.Normal(zero, one)))
            weights.append(sample(f"w{j}", D.Independent(D.Normal(zeros[j], one), 1)) if pa else None)
        if S is None:
            with plate("rows", N):
                for j in range(len(parents)):
                    mean = biases[j] if weights[j] is None else biases[j] + Xpa[j] @ weights[j]
                    sample(f"x{j}", D.Normal(mean, one), obs=xs[j])
        else:
            with plate("rows", N, subsample_size=S, device=device) as idx:
                Xb = X.index_select(0, idx)
                for j in range(len(parents)):
                    mean = biases[j] if weights[j] is None else biases[j] + Xb[:, pa_idx[j]] @ weights[j]
                    sample(f"x{j}", D.Normal(mean, one), obs=Xb[:, j])

    return model


def scm_causalppl(data):
    cp.clear_param_store()
    model = _scm_model((cp.sample, cp.plate, cp.dist), data)
    guide = AutoNormal(model, init_loc_fn=init_to_mean)
    with torch.no_grad():
        guide()  # set up the guide outside the timed steps
    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.01}), cp.infer.Trace_ELBO())
    return svi.step


def scm_floor(data):
    """AutoNormal's math by hand: loc, exp-transformed scale, Normal / Independent(Normal, 1)."""
    parents, N, S = data["parents"], data["rows"], data["subsample"]
    X, Xpa, xs, pa_idx = data["X"], data["Xpa"], data["xs"], data["pa_idx"]
    zero, one, zeros = data["zero"], data["one"], data["zeros"]
    device = X.device
    positive = transform_to(constraints.positive)
    leaves = []

    def new_site(shape):
        loc = torch.zeros(shape, device=device).requires_grad_(True)
        scale_u = positive.inv(torch.full(shape, 0.1, device=device)).requires_grad_(True)
        leaves.extend((loc, scale_u))
        return loc, scale_u

    bias_sites = [new_site(()) for _ in parents]
    weight_sites = [new_site((len(pa),)) if pa else None for pa in parents]
    optim = torch.optim.Adam(leaves, lr=0.01)

    def step():
        elbo = 0.0
        biases, weights = [], []
        for j, pa in enumerate(parents):  # guide and priors, in the model's site order
            loc, scale_u = bias_sites[j]
            q = Normal(loc, positive(scale_u))
            b = q.rsample()
            elbo = elbo + Normal(zero, one).log_prob(b) - q.log_prob(b)
            biases.append(b)
            if pa:
                loc, scale_u = weight_sites[j]
                q = Independent(Normal(loc, positive(scale_u)), 1)
                w = q.rsample()
                elbo = elbo + Independent(Normal(zeros[j], one), 1).log_prob(w) - q.log_prob(w)
                weights.append(w)
            else:
                weights.append(None)
        likelihood = 0.0
        if S is None:
            for j in range(len(parents)):
                mean = biases[j] if weights[j] is None else biases[j] + Xpa[j] @ weights[j]
                likelihood = likelihood + Normal(mean, one).log_prob(xs[j]).sum()
            elbo = elbo + likelihood
        else:
            idx = torch.randperm(N, device=device)[:S]
            Xb = X.index_select(0, idx)
            for j in range(len(parents)):
                mean = biases[j] if weights[j] is None else biases[j] + Xb[:, pa_idx[j]] @ weights[j]
                likelihood = likelihood + Normal(mean, one).log_prob(Xb[:, j]).sum()
            elbo = elbo + likelihood * (N / S)
        loss = -elbo
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        return loss.item()

    return step


def scm_pyro(data):
    pyro.clear_param_store()
    model = _scm_model((pyro.sample, pyro.plate, pdist), data)
    guide = PyroAutoNormal(model, init_loc_fn=pyro_init_to_mean)
    with torch.no_grad():
        guide()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), pyro.infer.Trace_ELBO())
    return svi.step


# ---------------------------------------------------------------------------
# W5: a latent confounder per row
# ---------------------------------------------------------------------------

W5_ROWS = 10_000


def w5_data(device, rows=None):
    rows = W5_ROWS if rows is None else rows
    gen = torch.Generator().manual_seed(5)
    u = torch.randn(rows, generator=gen)
    x = u + torch.randn(rows, generator=gen)
    y = 2 * x + 3 * u + torch.randn(rows, generator=gen)
    return {
        "device": device, "rows": rows, "x": x.to(device), "y": y.to(device),
        "zero": torch.zeros((), device=device), "one": torch.ones((), device=device),
    }


def _w5_model(prims, data):
    sample, plate, D = prims
    N, x, y, zero, one = data["rows"], data["x"], data["y"], data["zero"], data["one"]

    def model():
        with plate("rows", N):
            u = sample("u", D.Normal(zero, one))
            sample("x", D.Normal(u, one), obs=x)
            sample("y", D.Normal(2 * x + 3 * u, one), obs=y)

    return model


def w5_causalppl(data):
    cp.clear_param_store()
    model = _w5_model((cp.sample, cp.plate, cp.dist), data)
    guide = AutoNormal(model, init_loc_fn=init_to_mean)
    with torch.no_grad():
        guide()
    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.01}), cp.infer.Trace_ELBO())
    return svi.step


def w5_floor(data):
    N, x, y, zero, one = data["rows"], data["x"], data["y"], data["zero"], data["one"]
    positive = transform_to(constraints.positive)
    loc = torch.zeros(N, device=x.device).requires_grad_(True)
    scale_u = positive.inv(torch.full((N,), 0.1, device=x.device)).requires_grad_(True)
    optim = torch.optim.Adam([loc, scale_u], lr=0.01)

    def step():
        q = Normal(loc, positive(scale_u))
        u = q.rsample()
        elbo = (Normal(zero, one).log_prob(u).sum() + Normal(u, one).log_prob(x).sum()
                + Normal(2 * x + 3 * u, one).log_prob(y).sum() - q.log_prob(u).sum())
        loss = -elbo
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        return loss.item()

    return step


def w5_pyro(data):
    pyro.clear_param_store()
    model = _w5_model((pyro.sample, pyro.plate, pdist), data)
    guide = PyroAutoNormal(model, init_loc_fn=pyro_init_to_mean)
    with torch.no_grad():
        guide()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), pyro.infer.Trace_ELBO())
    return svi.step


# ---------------------------------------------------------------------------
# The table of workloads
# ---------------------------------------------------------------------------

# name -> description, data builder, builders per implementation, steps per
# timing window (full, quick), target causalppl/floor ratio, target pyro/causalppl.
WORKLOADS = {
    "W1": {
        "what": "intro scale model, hand guide, SGD",
        "data": w1_data,
        "build": {"causalppl": w1_causalppl, "floor": w1_floor, "pyro": w1_pyro},
        "steps": (300, 30),
        "max_vs_floor": 1.3,
        "min_vs_pyro": 3.0,
    },
    "W3": {
        "what": "20-node linear SCM, 100k rows, AutoNormal, Adam",
        "data": lambda device, rows=None: scm_data(device, rows),
        "build": {"causalppl": scm_causalppl, "floor": scm_floor, "pyro": scm_pyro},
        "steps": (5, 2),
        "max_vs_floor": 1.3,
        "min_vs_pyro": None,
    },
    "W4": {
        "what": "W3 subsampled 1024 rows/step",
        "data": w4_data,
        "build": {"causalppl": scm_causalppl, "floor": scm_floor, "pyro": scm_pyro},
        "steps": (15, 3),
        "max_vs_floor": 1.5,
        "min_vs_pyro": None,
    },
    "W5": {
        "what": "latent U per row, 10k rows, AutoNormal over U",
        "data": w5_data,
        "build": {"causalppl": w5_causalppl, "floor": w5_floor, "pyro": w5_pyro},
        "steps": (100, 10),
        "max_vs_floor": 1.5,
        "min_vs_pyro": None,
    },
}


def available_impls():
    return IMPLS if pyro is not None else IMPLS[:2]


def build(workload, device="cpu", rows=None, impls=None):
    """Build the data once and a ``step() -> float`` per implementation."""
    spec = WORKLOADS[workload]
    data = spec["data"](device, rows)
    return {name: spec["build"][name](data) for name in (impls or available_impls())}


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_window(step, steps, device):
    """Mean microseconds per step over one window of ``steps`` steps."""
    gc.collect()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps * 1e6


def run_workload(workload, device="cpu", repeats=7, steps=None, warmup=None, rows=None):
    """Interleaved timings: dict impl -> {"median_us", "windows_us", "first_loss", "last_loss"}."""
    spec = WORKLOADS[workload]
    steps = steps or spec["steps"][0]
    warmup = warmup if warmup is not None else max(2, steps // 5)
    names = list(available_impls())
    results = {}
    # Build and warm up one implementation at a time: causalppl and Pyro each
    # keep a global param store, so each builder clears its own.
    runners = build(workload, device, rows, names)
    for name in names:
        results[name] = {"windows_us": [], "first_loss": runners[name]()}
        for _ in range(warmup):
            runners[name]()
    for rep in range(repeats):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            results[name]["windows_us"].append(time_window(runners[name], steps, device))
    for name in names:
        results[name]["last_loss"] = runners[name]()
        results[name]["median_us"] = statistics.median(results[name]["windows_us"])
    return results


def _fmt_us(value):
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _verdict(ok):
    return "PASS" if ok else "MISS"


def summarise(workload, results):
    spec = WORKLOADS[workload]
    cpp = results["causalppl"]["median_us"]
    floor = results["floor"]["median_us"]
    pyro_us = results["pyro"]["median_us"] if "pyro" in results else None

    def paired(a, b):
        # Median over repeats of the ratio within each repeat: the windows of
        # one repeat run back to back, so this cancels slow drifts of the machine.
        return statistics.median(x / y for x, y in zip(results[a]["windows_us"], results[b]["windows_us"]))

    row = {
        "workload": workload,
        "what": spec["what"],
        "causalppl_us": cpp,
        "floor_us": floor,
        "pyro_us": pyro_us,
        "causalppl_over_floor": paired("causalppl", "floor"),
        "pyro_over_causalppl": None if pyro_us is None else paired("pyro", "causalppl"),
        # How much more Pyro adds to the floor than causalppl does.
        "overhead_pyro_over_causalppl": (
            None if pyro_us is None or cpp <= floor else (pyro_us - floor) / (cpp - floor)
        ),
        "target_max_vs_floor": spec["max_vs_floor"],
        "target_min_vs_pyro": spec["min_vs_pyro"],
    }
    targets = [f"cp/floor<={spec['max_vs_floor']}:{_verdict(row['causalppl_over_floor'] <= spec['max_vs_floor'])}"]
    if spec["min_vs_pyro"] is not None:
        if pyro_us is None:
            targets.append(f"pyro/cp>={spec['min_vs_pyro']}:n/a")
        else:
            targets.append(f"pyro/cp>={spec['min_vs_pyro']}:"
                           f"{_verdict(row['pyro_over_causalppl'] >= spec['min_vs_pyro'])}")
    row["targets"] = " ".join(targets)
    row["pass"] = "MISS" not in row["targets"]
    return row


def format_table(rows):
    header = ("work", "causalppl us", "floor us", "pyro us", "cp/floor", "pyro/cp", "ovh p/c", "targets")
    lines = [header]
    for row in rows:
        pyro_ratio = row["pyro_over_causalppl"]
        lines.append((
            row["workload"], _fmt_us(row["causalppl_us"]), _fmt_us(row["floor_us"]),
            _fmt_us(row["pyro_us"]), f"{row['causalppl_over_floor']:.2f}x",
            "-" if pyro_ratio is None else f"{pyro_ratio:.2f}x",
            "-" if row["overhead_pyro_over_causalppl"] is None else f"{row['overhead_pyro_over_causalppl']:.1f}x",
            row["targets"],
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        cells = [cell.ljust(w) if i in (0, 7) else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def environment(device):
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": None if pyro is None else pyro.__version__,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "validate_args": torch.distributions.Distribution._validate_args,
        "machine": platform.machine(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if str(device).startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few repeats, short windows")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument("--only", nargs="+", choices=sorted(WORKLOADS), help="run only these workloads")
    parser.add_argument("--repeats", type=int, help="timing windows per implementation (default 7, quick 3)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--no-validate", action="store_true",
                        help="turn torch.distributions argument validation off (it is on by default)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_validate:
        torch.distributions.Distribution.set_default_validate_args(False)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    repeats = args.repeats or (3 if args.quick else 7)
    env = environment(device)
    print(f"svi_steps: torch {env['torch']}, pyro {env['pyro'] or '(not installed: ' + PYRO_ERROR + ')'}, "
          f"device {device}{' (' + env['gpu'] + ')' if 'gpu' in env else ''}, "
          f"torch threads {env['torch_threads']} of {env['cpu_count']} CPUs, "
          f"validate_args={env['validate_args']}, median of {repeats} windows, us/step")
    if env["load_average"] is not None and env["load_average"] > (env["cpu_count"] or 1) * 0.75:
        print(f"warning: load average {env['load_average']:.1f} on {env['cpu_count']} CPUs: other processes "
              "compete for the cores; torch's intra-op threads then stall each other (try --threads 1)")
    rows, raw = [], {}
    for workload in args.only or list(WORKLOADS):
        steps = WORKLOADS[workload]["steps"][1 if args.quick else 0]
        cp.set_rng_seed(0)
        raw[workload] = run_workload(workload, device, repeats=repeats, steps=steps,
                                     warmup=2 if args.quick else None)
        rows.append(summarise(workload, raw[workload]))
        print(f"  {workload} done ({WORKLOADS[workload]['what']}, {steps} steps/window)", file=sys.stderr)
    print(format_table(rows))
    print("ovh p/c: (pyro - floor) / (causalppl - floor), the PPL overhead Pyro adds per unit causalppl adds")
    if pyro is None:
        print(f"pyro skipped: {PYRO_ERROR}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"environment": env, "quick": args.quick, "repeats": repeats,
                       "rows": rows, "raw": raw}, file, indent=2)
    return rows


if __name__ == "__main__":
    main()
