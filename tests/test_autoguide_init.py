"""Autoguide initialisation: Pyro's init_to_* strategies, and AutoNormal starting at init_to_feasible like Pyro's."""

import csv
from pathlib import Path

import pytest
import torch

import causalppl as cp
from causalppl.infer import autoguide
from causalppl.infer.autoguide import (
    AutoNormal,
    init_to_feasible,
    init_to_generated,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_uniform,
    init_to_value,
)

pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def site(fn, name="s"):
    return {"name": name, "fn": fn, "value": fn.sample()}


def test_autonormal_starts_at_the_feasible_point():
    def model():
        cp.sample("a", cp.dist.Normal(3.0, 10.0))
        cp.sample("sigma", cp.dist.Uniform(0.0, 10.0))
        cp.sample("rate", cp.dist.LogNormal(2.0, 1.0))

    guide = AutoNormal(model)
    assert guide.init_loc_fn is init_to_feasible
    median = guide.median()
    assert median["a"].item() == 0.0  # unconstrained zero, whatever the prior's location
    assert median["sigma"].item() == pytest.approx(5.0)
    assert median["rate"].item() == pytest.approx(1.0)


def test_init_strategies_are_pyros():
    normal = cp.dist.Normal(torch.full((3,), 2.0), 1e-3)
    assert torch.allclose(init_to_median(site(normal)), torch.full((3,), 2.0), atol=1e-2)
    assert torch.equal(init_to_mean(site(normal)), torch.full((3,), 2.0))
    assert torch.equal(init_to_feasible(site(normal)), torch.zeros(3))
    assert init_to_sample(site(normal)).shape == (3,)
    draws = torch.stack([init_to_uniform(site(cp.dist.LogNormal(0.0, 1.0))) for _ in range(200)])
    assert draws.log().abs().max() < 2.0 and draws.log().std() > 0.5  # uniform on (-2, 2) before exp
    assert init_to_uniform(radius=0.1)(site(cp.dist.Normal(0.0, 1.0))).abs() < 0.1
    # a multivariate site has no median: the feasible point
    dirichlet = cp.dist.Dirichlet(torch.tensor([1.0, 5.0, 1.0]))
    assert torch.allclose(init_to_median(site(dirichlet)), torch.full((3,), 1 / 3))
    # the mean of a Cauchy is undefined: the fallback (the median by default)
    cauchy = cp.dist.Cauchy(4.0, 1e-3)
    assert init_to_mean(site(cauchy)).item() == pytest.approx(4.0, abs=0.05)
    assert init_to_mean(fallback=init_to_feasible)(site(cauchy)).item() == 0.0


def test_init_to_value_falls_back_and_fallback_none_names_the_site():
    init = init_to_value(values={"w": 9.0})
    assert init(site(cp.dist.Normal(0.0, 1.0), "w")).item() == 9.0
    assert abs(init(site(cp.dist.Normal(0.0, 1.0), "other")).item()) < 2.0  # init_to_uniform, as in Pyro
    with pytest.raises(ValueError, match="site 'other'"):
        init_to_value(values={"w": 9.0}, fallback=None)(site(cp.dist.Normal(0.0, 1.0), "other"))
    with pytest.raises(ValueError, match="site 'c'"):
        init_to_mean(fallback=None)(site(cp.dist.Cauchy(0.0, 1.0), "c"))


def test_init_to_generated_calls_the_generator_once_per_model_run():
    calls = []

    def generate():
        calls.append(1)
        return init_to_value(values={"a": torch.tensor(float(len(calls)))})

    init = init_to_generated(generate=generate)
    first = [init(site(cp.dist.Normal(0.0, 1.0), name)).item() for name in ("a", "b")]
    second = init(site(cp.dist.Normal(0.0, 1.0), "a")).item()  # "a" again: a new run
    assert first[0] == 1.0 and second == 2.0 and len(calls) == 2


def test_init_strategies_are_exported_like_pyros():
    for name in ("init_to_feasible", "init_to_median", "init_to_mean", "init_to_value", "init_to_sample",
                 "init_to_uniform", "init_to_generated"):
        assert callable(getattr(autoguide, name))


def test_intro_long_regression_converges_from_all_of_40_seeds():
    # Pyro's intro_long tutorial: a Bayesian linear regression of log GDP on terrain ruggedness
    # and being in Africa (the 170 countries of tests/data/rugged_data.csv), AutoNormal,
    # Adam(lr=0.02), 1,000 steps. The 40 seeds run at once: the model's globals sit in a plate of
    # 40 copies, each with its own guide params, and Adam moves every entry independently, so
    # this is 40 independent fits that differ in their random draws.
    with open(Path(__file__).parent / "data" / "rugged_data.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["rgdppc_2000"] not in ("", "NA")]
    cont = torch.tensor([float(row["cont_africa"]) for row in rows])
    rugged = torch.tensor([float(row["rugged"]) for row in rows])
    log_gdp = torch.tensor([float(row["rgdppc_2000"]) for row in rows]).log()
    n, seeds = len(rows), 40

    def model(is_cont_africa, ruggedness, log_gdp=None):
        with cp.plate("seeds", seeds, dim=-2):
            a = cp.sample("a", cp.dist.Normal(0.0, 10.0))
            b_a = cp.sample("bA", cp.dist.Normal(0.0, 1.0))
            b_r = cp.sample("bR", cp.dist.Normal(0.0, 1.0))
            b_ar = cp.sample("bAR", cp.dist.Normal(0.0, 1.0))
            sigma = cp.sample("sigma", cp.dist.Uniform(0.0, 10.0))
            mean = a + b_a * is_cont_africa + b_r * ruggedness + b_ar * is_cont_africa * ruggedness
            with cp.plate("data", len(ruggedness)):
                return cp.sample("obs", cp.dist.Normal(mean, sigma), obs=log_gdp)

    cp.set_rng_seed(0)
    guide = AutoNormal(model)
    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.02}), cp.infer.Trace_ELBO())
    for _ in range(1000):
        svi.step(cont, rugged, log_gdp)
    fitted = {name: value.squeeze(-1) for name, value in guide.median(cont, rugged, log_gdp).items()}
    design = torch.stack([torch.ones(n), cont, rugged, cont * rugged], -1)
    ols = torch.linalg.lstsq(design, log_gdp[:, None]).solution.squeeze(-1)
    residual_sd = (log_gdp - design @ ols).std()
    # The posterior sd of the intercept is about 0.1; every seed ends within 0.3 of least squares.
    for name, value in zip(("a", "bA", "bR", "bAR"), ols):
        assert (fitted[name] - value).abs().max() < 0.3, name
    assert (fitted["sigma"] - residual_sd).abs().max() < 0.15
