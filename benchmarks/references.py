"""Pyro and NumPyro running the workloads: optional references, used when installed.

``pip install -e .[bench]`` installs both (``pyro-ppl``, ``numpyro``, ``jax``).
Each model is the text of ``causalppl_runs.runtime``'s with the library's
own primitives (``.to_event`` for ``Independent``); both use
``AutoNormal(init_loc_fn=init_to_feasible)``, whose scales go through softplus
(causalppl's and the floor's through exp), so their answers agree with the
floor's to the workload's tolerance, not exactly.

NumPyro's step is ``jax.jit(svi.update)``, one Python call per step, and
blocks until the new state is computed. It runs on the CPU only here: for
``--device cuda`` it is skipped. XLA's thread count is set by ``compare.py``
(``XLA_FLAGS``) before jax is first imported.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch
from workloads import CONFOUNDER_PRIOR_SD, CONFOUNDER_SD, GUESS, MEASUREMENT, NOISE_SD, PRIOR_SD


def missing(backend):
    """Why ``backend`` ("pyro" or "numpyro") cannot run here, or None when it can."""
    needs = {"pyro": ("pyro",), "numpyro": ("numpyro", "jax")}[backend]
    absent = [name for name in needs if importlib.util.find_spec(name) is None]
    if absent:
        return f"not installed ({', '.join(absent)}; pip install -e .[bench])"
    return None


class Run:
    def __init__(self, step, answer):
        self.step = step
        self._answer = answer

    def answer(self):
        return self._answer()


# ---------------------------------------------------------------------------
# Pyro
# ---------------------------------------------------------------------------


def pyro_run(workload, data, device, seed):
    """A run of ``workload`` with stock Pyro (``Trace_ELBO``, ``pyro.optim``)."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoNormal
    from pyro.infer.autoguide.initialization import init_to_feasible
    from torch.distributions import constraints

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    if workload.kind == "scale":
        guess = torch.tensor(GUESS, device=device)

        def model(guess):
            weight = pyro.sample("weight", dist.Normal(guess, PRIOR_SD))
            return pyro.sample("measurement", dist.Normal(weight, NOISE_SD))

        def guide(guess):
            a = pyro.param("a", lambda: torch.tensor(GUESS, device=device))
            b = pyro.param("b", lambda: torch.tensor(1.0, device=device), constraint=constraints.positive)
            return pyro.sample("weight", dist.Normal(a, b))

        conditioned = pyro.condition(model, data={"measurement": torch.tensor(MEASUREMENT, device=device)})
        svi = SVI(conditioned, guide, pyro.optim.SGD({"lr": 1e-3, "momentum": 0.1}), loss=Trace_ELBO())
        return Run(lambda: svi.step(guess),
                   lambda: {"a": pyro.param("a").item(), "b": pyro.param("b").item()})

    if workload.kind == "linear":
        X = torch.as_tensor(data["X"], device=device)
        N, D, parents, batch = data["N"], data["D"], data["parents"], workload.batch
        columns = [torch.as_tensor(pa, dtype=torch.long, device=device) for pa in parents]
        blocks = [X[:, pa].contiguous() for pa in columns] if batch is None else None
        own = [X[:, j].contiguous() for j in range(D)] if batch is None else None
        zero, one = torch.zeros((), device=device), torch.ones((), device=device)

        def model():
            bias, weight = [], []
            for j in range(D):
                bias.append(pyro.sample(f"b_{j}", dist.Normal(zero, one)))
                weight.append(pyro.sample(f"w_{j}", dist.Normal(zero, one).expand([len(parents[j])]).to_event(1))
                              if parents[j] else None)
            with pyro.plate("rows", N, subsample_size=batch, device=device) as idx:
                if batch is None:
                    pa_values, x = blocks, own
                else:
                    rows = X.index_select(0, idx)
                    pa_values, x = [rows[:, pa] for pa in columns], [rows[:, j] for j in range(D)]
                for j in range(D):
                    mean = bias[j] + pa_values[j] @ weight[j] if parents[j] else bias[j]
                    pyro.sample(f"x_{j}", dist.Normal(mean, one), obs=x[j])

        guide = AutoNormal(model, init_loc_fn=init_to_feasible)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": workload.lr}), loss=Trace_ELBO())

        def answer():
            median = guide.median()
            w = [v for j in range(D) if parents[j] for v in median[f"w_{j}"].tolist()]
            return {"w": w, "b": [median[f"b_{j}"].item() for j in range(D)]}

        return Run(svi.step, answer)

    if workload.kind == "confounder":
        X = torch.as_tensor(data["X"], device=device)
        Y = torch.as_tensor(data["Y"], device=device)
        N, sd, psd = data["N"], CONFOUNDER_SD, CONFOUNDER_PRIOR_SD
        zero = torch.zeros((), device=device)

        def model(X, Y):
            a = pyro.sample("a", dist.Normal(zero, psd))
            beta = pyro.sample("beta", dist.Normal(zero, psd))
            c = pyro.sample("c", dist.Normal(zero, psd))
            with pyro.plate("rows", N, device=device):
                u = pyro.sample("u", dist.Normal(zero, 1.0))
                pyro.sample("x", dist.Normal(a * u, sd), obs=X)
                pyro.sample("y", dist.Normal(beta * X + c * u, sd), obs=Y)

        guide = AutoNormal(model, init_loc_fn=init_to_feasible)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": workload.lr}), loss=Trace_ELBO())

        def answer():
            median = guide.median(X, Y)
            return {k: median[k].item() for k in ("a", "beta", "c")}

        return Run(lambda: svi.step(X, Y), answer)
    raise ValueError(workload.kind)


# ---------------------------------------------------------------------------
# NumPyro
# ---------------------------------------------------------------------------


class NumPyro:
    """NumPyro runs; the jitted update of each workload is compiled once and reused by every repeat."""

    def __init__(self):
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax

        self.jax = jax
        self._compiled = {}

    def versions(self):
        import numpyro

        return {"jax": self.jax.__version__, "numpyro": numpyro.__version__}

    def run(self, workload, data, device, seed):
        if torch.device(device).type != "cpu":
            raise RuntimeError("numpyro runs on the CPU here; skipped for a GPU run")
        key = (workload, data["sha"])
        if key not in self._compiled:
            svi, args, answer_of = self._svi(workload, data)
            self._compiled[key] = (svi, self.jax.jit(svi.update), args, answer_of)
        svi, update, args, answer_of = self._compiled[key]
        state = {"s": svi.init(self.jax.random.PRNGKey(seed), *args)}

        def step():
            new, loss = update(state["s"], *args)
            state["s"] = new
            return float(loss)  # blocks until the step is computed

        return Run(step, lambda: answer_of(svi.get_params(state["s"])))

    def _svi(self, workload, data):
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist
        from numpyro import handlers
        from numpyro.infer import SVI, Trace_ELBO
        from numpyro.infer.autoguide import AutoNormal
        from numpyro.infer.initialization import init_to_feasible
        from numpyro.optim import Adam, Momentum

        if workload.kind == "scale":
            def model(guess):
                weight = numpyro.sample("weight", dist.Normal(guess, PRIOR_SD))
                return numpyro.sample("measurement", dist.Normal(weight, NOISE_SD))

            def guide(guess):
                a = numpyro.param("a", jnp.float32(GUESS))
                b = numpyro.param("b", jnp.float32(1.0), constraint=dist.constraints.positive)
                return numpyro.sample("weight", dist.Normal(a, b))

            conditioned = handlers.condition(model, data={"measurement": jnp.float32(MEASUREMENT)})
            svi = SVI(conditioned, guide, Momentum(1e-3, 0.1), loss=Trace_ELBO())  # torch's SGD(momentum)
            return svi, (jnp.float32(GUESS),), lambda p: {"a": float(p["a"]), "b": float(p["b"])}

        if workload.kind == "linear":
            X = jnp.asarray(data["X"])
            N, D, parents, batch = data["N"], data["D"], data["parents"], workload.batch
            columns = [np.asarray(pa, dtype=np.int32) for pa in parents]

            def model(X):
                bias, weight = [], []
                for j in range(D):
                    bias.append(numpyro.sample(f"b_{j}", dist.Normal(0.0, 1.0)))
                    weight.append(numpyro.sample(f"w_{j}", dist.Normal(0.0, 1.0).expand([len(parents[j])])
                                                 .to_event(1)) if parents[j] else None)
                with numpyro.plate("rows", N, subsample_size=batch) as idx:
                    rows = X if batch is None else X[idx]
                    for j in range(D):
                        mean = bias[j] + rows[:, columns[j]] @ weight[j] if parents[j] else bias[j]
                        numpyro.sample(f"x_{j}", dist.Normal(mean, 1.0), obs=rows[:, j])

            guide = AutoNormal(model, init_loc_fn=init_to_feasible)

            def answer_of(params):
                median = guide.median(params)
                w = [float(v) for j in range(D) if parents[j] for v in np.asarray(median[f"w_{j}"])]
                return {"w": w, "b": [float(median[f"b_{j}"]) for j in range(D)]}

            return SVI(model, guide, Adam(workload.lr), loss=Trace_ELBO()), (X,), answer_of

        if workload.kind == "confounder":
            X, Y = jnp.asarray(data["X"]), jnp.asarray(data["Y"])
            N, sd, psd = data["N"], CONFOUNDER_SD, CONFOUNDER_PRIOR_SD

            def model(X, Y):
                a = numpyro.sample("a", dist.Normal(0.0, psd))
                beta = numpyro.sample("beta", dist.Normal(0.0, psd))
                c = numpyro.sample("c", dist.Normal(0.0, psd))
                with numpyro.plate("rows", N):
                    u = numpyro.sample("u", dist.Normal(0.0, 1.0))
                    numpyro.sample("x", dist.Normal(a * u, sd), obs=X)
                    numpyro.sample("y", dist.Normal(beta * X + c * u, sd), obs=Y)

            guide = AutoNormal(model, init_loc_fn=init_to_feasible)

            def answer_of(params):
                median = guide.median(params)
                return {k: float(median[k]) for k in ("a", "beta", "c")}

            return SVI(model, guide, Adam(workload.lr), loss=Trace_ELBO()), (X, Y), answer_of
        raise ValueError(workload.kind)
