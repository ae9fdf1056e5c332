"""The workloads written with causalppl, two ways.

``runtime``: the Pyro-style runtime, as a Pyro user ports the code:
``cp.sample`` / ``cp.plate`` / ``cp.param`` / ``cp.condition``,
``cp.infer.SVI`` with ``Trace_ELBO``, ``AutoNormal(init_to_feasible)`` and
``cp.optim``. The linear SCM has one site per node for its weights, one for
its bias and one observed site per node (``b_j``, ``w_j``, ``x_j``).

``scm_fit``: the graph-first API. W3, W4 and the L-workloads are
``SCM.from_graph(G, data, bayesian=True).fit(data, optim=Adam(lr),
subsample_size=...)``: a ``LinearGaussian`` per node with N(0, 1) priors on
its weights and bias in standardised units and a learned noise scale (the
SCM API has no fixed-noise linear mechanism), fit's default AutoNormal. W1
is ``SCM().add("weight", ...).add("measurement", ...).condition(...)``
fitted with the tutorial's guide; W5 is ``SCM().add("u", latent=True)``
with mechanisms that read ``cp.param`` coefficients (point estimates).

A step of ``scm.fit`` is timed through the public API only:
``(fit(steps=K2) - fit(steps=K1)) / (K2 - K1)`` on fresh SCMs, so building
the SCM, checking the data, making the guide and what fit does after its
loop cancel out (see :class:`FitRun`).
"""

from __future__ import annotations

import time
import warnings

import networkx as nx
import numpy as np
import torch
from torch.distributions import constraints
from workloads import CONFOUNDER_PRIOR_SD, CONFOUNDER_SD, GUESS, MEASUREMENT, NOISE_SD, PRIOR_SD

import causalppl as cp
from causalppl.infer.autoguide import AutoNormal, init_to_feasible

dist = cp.dist


class Run:
    """A run of per-step calls: ``step()`` returns the loss, ``answer()`` the canonical final params."""

    def __init__(self, step, answer):
        self.step = step
        self._answer = answer

    def answer(self):
        return self._answer()


# ---------------------------------------------------------------------------
# the Pyro-style runtime
# ---------------------------------------------------------------------------


def runtime(workload, data, device, seed, elbo="Trace_ELBO", **elbo_options):
    """A :class:`Run` of ``workload`` with ``cp.infer.SVI`` and ``cp.infer.{elbo}(**elbo_options)``."""
    cp.clear_param_store()
    cp.set_rng_seed(seed)
    loss = getattr(cp.infer, elbo)(**elbo_options)
    if workload.kind == "scale":
        return _runtime_scale(device, loss)
    if workload.kind == "linear":
        return _runtime_linear(workload, data, device, loss)
    if workload.kind == "confounder":
        return _runtime_confounder(workload, data, device, loss)
    raise ValueError(workload.kind)


def scale_model(guess):
    weight = cp.sample("weight", dist.Normal(guess, PRIOR_SD))
    return cp.sample("measurement", dist.Normal(weight, NOISE_SD))


def scale_guide(guess=None):
    """The intro tutorial's guide: Normal(a, b), b positive."""
    a = cp.param("a", lambda: torch.tensor(GUESS))
    b = cp.param("b", lambda: torch.tensor(1.0), constraint=constraints.positive)
    return cp.sample("weight", dist.Normal(a, b))


def _runtime_scale(device, loss):
    with torch.device(device):
        guess = torch.tensor(GUESS)
        conditioned = cp.condition(scale_model, data={"measurement": torch.tensor(MEASUREMENT)})
        svi = cp.infer.SVI(conditioned, scale_guide, cp.optim.SGD({"lr": 1e-3, "momentum": 0.1}), loss)

    def step():
        return svi.step(guess)

    def answer():
        store = cp.get_param_store()
        return {"a": store["a"].item(), "b": store["b"].item()}

    return Run(step, answer)


def _runtime_linear(workload, data, device, loss):
    X = torch.as_tensor(data["X"], device=device)
    N, D, parents, batch = data["N"], data["D"], data["parents"], workload.batch
    zero, one = torch.zeros((), device=device), torch.ones((), device=device)
    prior = [dist.Independent(dist.Normal(zero, one).expand([len(pa)]), 1) if pa else None for pa in parents]
    columns = [torch.as_tensor(pa, dtype=torch.long, device=device) for pa in parents]
    # full batch: each node's parent block and own column, sliced once
    blocks = [X[:, pa].contiguous() for pa in columns] if batch is None else None
    own = [X[:, j].contiguous() for j in range(D)] if batch is None else None

    def model():
        bias, weight = [], []
        for j in range(D):
            bias.append(cp.sample(f"b_{j}", dist.Normal(zero, one)))
            weight.append(cp.sample(f"w_{j}", prior[j]) if parents[j] else None)
        with cp.plate("rows", N, subsample_size=batch, device=device) as idx:
            if batch is None:
                pa_values, x = blocks, own
            else:
                rows = X.index_select(0, idx)
                pa_values, x = [rows[:, pa] for pa in columns], [rows[:, j] for j in range(D)]
            for j in range(D):
                mean = bias[j] + pa_values[j] @ weight[j] if parents[j] else bias[j]
                cp.sample(f"x_{j}", dist.Normal(mean, one), obs=x[j])

    guide = AutoNormal(model, init_loc_fn=init_to_feasible)
    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": workload.lr}), loss)

    def answer():
        median = guide.median()
        w = [v for j in range(D) if parents[j] for v in median[f"w_{j}"].tolist()]
        return {"w": w, "b": [median[f"b_{j}"].item() for j in range(D)]}

    return Run(svi.step, answer)


def _runtime_confounder(workload, data, device, loss):
    X = torch.as_tensor(data["X"], device=device)
    Y = torch.as_tensor(data["Y"], device=device)
    N, sd, psd = data["N"], CONFOUNDER_SD, CONFOUNDER_PRIOR_SD
    zero = torch.zeros((), device=device)

    def model(X, Y):
        a = cp.sample("a", dist.Normal(zero, psd))
        beta = cp.sample("beta", dist.Normal(zero, psd))
        c = cp.sample("c", dist.Normal(zero, psd))
        with cp.plate("rows", N, device=device):
            u = cp.sample("u", dist.Normal(zero, 1.0))
            cp.sample("x", dist.Normal(a * u, sd), obs=X)
            cp.sample("y", dist.Normal(beta * X + c * u, sd), obs=Y)

    guide = AutoNormal(model, init_loc_fn=init_to_feasible)
    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": workload.lr}), loss)

    def answer():
        median = guide.median(X, Y)
        return {k: median[k].item() for k in ("a", "beta", "c")}

    return Run(lambda: svi.step(X, Y), answer)


# ---------------------------------------------------------------------------
# the graph-first API: scm.fit
# ---------------------------------------------------------------------------


class FitRun:
    """``scm.fit`` on one workload: its steps are timed as the difference of two whole fits.

    ``make()`` returns ``(scm, fit_kwargs)`` for a fresh SCM (built outside
    the timed region); ``answer_of(result)`` reads the canonical answer.
    ``timed(k1, k2)`` runs ``fit(steps=k1)`` and ``fit(steps=k2)`` and
    returns the wall and process CPU seconds of the ``k2 - k1`` extra steps.
    """

    def __init__(self, make, answer_of, seed, options=None):
        self.make, self.answer_of, self.seed = make, answer_of, seed
        self.options = dict(options or {})
        self.result = None
        self.base_s = 0.0

    def fit(self, steps, **extra):
        scm, kwargs = self.make()
        kwargs = {**kwargs, "posterior_draws_kept": 1, **self.options, **extra}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning after a short fit
            c0, t0 = time.process_time(), time.perf_counter()
            result = scm.fit(steps=steps, seed=self.seed, progress=False, **kwargs)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return result, wall, cpu

    def timed(self, k1, k2):
        _, wall1, cpu1 = self.fit(k1)
        _, wall2, cpu2 = self.fit(k2)
        self.base_s = wall1  # fit(steps=k1): mostly set-up, whose noise the window must outweigh
        return wall2 - wall1, cpu2 - cpu1

    def answer_after(self, steps):
        self.result, _, _ = self.fit(steps, posterior_draws_kept=200)
        return self.answer_of(self.result)


def scm_fit(workload, data, device, seed, options=None):
    """A :class:`FitRun` of ``workload`` through ``SCM.fit``; ``options`` go to every ``fit`` call."""
    if workload.kind == "scale":
        return _fit_scale(device, seed, options)
    if workload.kind == "linear":
        return _fit_linear(workload, data, device, seed, options)
    if workload.kind == "confounder":
        return _fit_confounder(workload, data, device, seed, options)
    raise ValueError(workload.kind)


def _on(device):
    """fit's ``device=`` for a GPU; none on the CPU, where fit's device context would slow every op."""
    return {} if torch.device(device).type == "cpu" else {"device": device}


def _fit_scale(device, seed, options):
    scm = (cp.SCM().add("weight", f"Normal(guess, {PRIOR_SD})").add("measurement", f"Normal(weight, {NOISE_SD})")
           .condition(measurement=MEASUREMENT))

    def make():
        return scm, {"guide": scale_guide, "optim": cp.optim.SGD({"lr": 1e-3, "momentum": 0.1}),
                     "guess": torch.tensor(GUESS, device=device), **_on(device)}

    def answer_of(result):
        params = result.params
        return {"a": params["a"].item(), "b": params["b"].item()}

    return FitRun(make, answer_of, seed, options)


def linear_graph(data):
    """The workload's DAG over nodes ``x0 .. x{D-1}``."""
    names = [f"x{j}" for j in range(data["D"])]
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    graph.add_edges_from((names[i], names[j]) for i, j in zip(data["src"].tolist(), data["dst"].tolist()))
    return graph, names


def _fit_linear(workload, data, device, seed, options):
    graph, names = linear_graph(data)
    X = torch.as_tensor(data["X"], device=device)
    columns = {name: X[:, j].contiguous() for j, name in enumerate(names)}

    def make():
        scm = cp.SCM.from_graph(graph, data=columns, bayesian=True)
        return scm, {"data": columns, "optim": cp.optim.Adam({"lr": workload.lr}),
                     "subsample_size": workload.batch, **_on(device)}

    def answer_of(result):
        return linear_answer_from_summary(result.summary(), data, names)

    return FitRun(make, answer_of, seed, options)


def linear_answer_from_summary(table, data, names):
    """The canonical linear answer (data units) from ``FitResult.summary()`` (a DataFrame or rows)."""
    rows = table.itertuples(index=False) if hasattr(table, "itertuples") else table
    found = {(r.node, r.parameter, r.parent): float(r.estimate) for r in rows}
    w = [found.get((names[j], "weight", names[i]), np.nan)
         for i, j in zip(data["src"].tolist(), data["dst"].tolist())]
    b = [found.get((name, "bias", ""), np.nan) for name in names]
    return {"w": w, "b": b}


def _fit_confounder(workload, data, device, seed, options):
    sd = CONFOUNDER_SD
    columns = {"x": torch.as_tensor(data["X"], device=device), "y": torch.as_tensor(data["Y"], device=device)}

    def coefficient(name):
        return cp.param(name, lambda: torch.zeros((), device=device))

    def make():  # a fresh SCM each time: its params (a, beta, c) start from 0 in every fit
        scm = (cp.SCM().add("u", "Normal(0, 1)", latent=True)
               .add("x", lambda u: dist.Normal(coefficient("a") * u, sd))
               .add("y", lambda x, u: dist.Normal(coefficient("beta") * x + coefficient("c") * u, sd)))
        return scm, {"data": columns, "optim": cp.optim.Adam({"lr": workload.lr}), **_on(device)}

    def answer_of(result):
        params = result.params
        return {k: params[k].item() for k in ("a", "beta", "c")}

    return FitRun(make, answer_of, seed, options)
