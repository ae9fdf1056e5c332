"""Tests of causalppl.causal.fit: SVI on SCMs with the graph-aware guide."""

import math
import warnings

import pytest
import torch

import causalppl as cp
from causalppl import dist
from causalppl.causal import ConvergenceWarning
from causalppl.causal.fit import FitResult, guided_nodes, loss_change, loss_figure, loss_scale, moving_nodes
from causalppl.handlers import trace


@pytest.fixture
def confounded():
    return cp.graphs.load("confounded")


def guide_sites(guide):
    """The sample sites one run of ``guide`` records (auxiliary sites excluded)."""
    tr = trace(guide).get_trace()
    return {name for name, site in tr.nodes.items()
            if site["type"] == "sample" and not site["infer"].get("is_auxiliary")}


# -- the DESIGN's semantic test ------------------------------------------------------------


def test_guide_covers_only_the_latent_ancestors(confounded):
    conditioned = confounded.condition(x=1.0)
    assert guided_nodes(conditioned, conditioned.observed) == ["z"]  # y is latent but downstream
    assert guided_nodes(confounded, {"y"}) == ["z", "x"]
    assert guided_nodes(confounded.do(x=0.0), {"y"}) == ["z"]  # intervened nodes are not latent


def test_confounded_posterior_given_x(confounded):
    # z | x=1 ~ N(0.5, sqrt(0.5)); y | x=1 = 2 + 3z + noise has mean 3.5.
    cp.set_rng_seed(0)
    result = confounded.condition(x=1.0).fit(steps=1500, lr=0.02, progress=False)
    assert isinstance(result, FitResult)
    assert set(result.params) == {"AutoNormal.locs.z", "AutoNormal.scales.z"}
    assert guide_sites(result.guide) == {"z"}
    n = 4000
    draws = result.sample(n)
    assert set(draws) == {"z", "x", "y"}
    assert draws["z"].shape == (n,) and torch.all(draws["x"] == 1.0)
    z, y = draws["z"], draws["y"]
    assert abs(float(z.mean()) - 0.5) < 0.1
    assert float(z.std()) == pytest.approx(math.sqrt(0.5), abs=0.1)
    assert abs(float(y.mean()) - 3.5) < 0.25
    # y is drawn from its own mechanism given z, not from a guide: its spread includes the noise.
    assert float((y - 2 - 3 * z).std()) == pytest.approx(1.0, abs=0.1)
    assert len(result.losses) == 1500 and all(math.isfinite(loss) for loss in result.losses)
    assert result.median()["z"].item() == pytest.approx(0.5, abs=0.1)
    summary = result.node_summary(2000)
    assert summary["z"][0] == pytest.approx(0.5, abs=0.12)


# -- data: dict, DataFrame, minibatches --------------------------------------------------


def regression_scm():
    """x ~ N(0, 1); y ~ N(w x, 1) with a learnable slope w."""
    return (cp.SCM()
            .add("x", "Normal(0.0, 1.0)")
            .add("y", lambda x: dist.Normal(cp.param("w", torch.tensor(0.0)) * x, 1.0)))


def regression_data(n=2000, slope=1.7):
    x = torch.randn(n)
    return {"x": x, "y": slope * x + torch.randn(n)}


def least_squares_slope(data):
    return float((data["x"] * data["y"]).sum() / (data["x"] ** 2).sum())


def test_fit_with_a_dict_of_tensors():
    cp.set_rng_seed(1)
    data = regression_data()
    result = regression_scm().fit(data=data, steps=300, lr=0.05, progress=False)
    # The MLE of w is the least-squares slope through the origin.
    assert result.params["w"].item() == pytest.approx(least_squares_slope(data), abs=0.02)


def test_fit_with_a_dataframe():
    pd = pytest.importorskip("pandas")
    cp.set_rng_seed(2)
    data = regression_data()
    frame = pd.DataFrame({name: value.numpy() for name, value in data.items()})
    result = regression_scm().fit(data=frame, steps=300, lr=0.05, progress=False)
    assert result.params["w"].item() == pytest.approx(least_squares_slope(data), abs=0.02)


def test_fit_with_minibatches():
    cp.set_rng_seed(3)
    data = regression_data()
    full = regression_scm().fit(data=data, steps=300, lr=0.05, progress=False)
    full_loss = sum(full.losses[-50:]) / 50
    cp.clear_param_store()
    batched = regression_scm().fit(data=data, subsample_size=100, steps=300, lr=0.05, progress=False)
    assert batched.params["w"].item() == pytest.approx(least_squares_slope(data), abs=0.1)
    # Log-probs are rescaled by 2000 / 100: the loss estimates the full-data loss.
    assert sum(batched.losses[-50:]) / 50 == pytest.approx(full_loss, rel=0.1)


def test_minibatches_with_a_latent_node_per_row(confounded):
    # z is latent in every row: the guide and the model must subsample the same rows.
    cp.set_rng_seed(4)
    rows = confounded.sample(300)
    data = {"x": rows["x"], "y": rows["y"]}
    result = confounded.fit(data=data, subsample_size=50, steps=1000, lr=0.05, progress=False)
    exact = (data["x"] + 3 * (data["y"] - 2 * data["x"])) / 11  # E[z | x, y] per row
    locs = result.params["AutoNormal.locs.z"]
    assert locs.shape == (300,)
    assert float((locs - exact).abs().mean()) < 0.1
    assert float(result.params["AutoNormal.scales.z"].mean()) == pytest.approx(1 / math.sqrt(11), abs=0.08)
    draws = result.sample(400)  # every row, although the fit saw 50 at a time
    assert draws["z"].shape == (400, 300) and draws["x"].shape == (400, 300)
    assert float((draws["z"].mean(0) - exact).abs().mean()) < 0.15


# -- guides ---------------------------------------------------------------------------


def test_guide_kinds_on_a_correlated_posterior(confounded):
    # Given y = 7: (z, x) | y is Gaussian with means (7/6, 49/30) and correlation -0.67.
    conditioned = confounded.condition(y=7.0)
    means = {"z": 7 / 6, "x": 49 / 30}
    correlations = {}
    # (a full-covariance step costs more; it converges in fewer)
    for kind, steps in (("normal", 800), ("mvn", 300), ("delta", 500)):
        cp.clear_param_store()
        cp.set_rng_seed(5)
        result = conditioned.fit(guide=kind, steps=steps, lr=0.05, progress=False)
        assert guide_sites(result.guide) == {"z", "x"}
        draws = result.sample(3000)
        for node, mean in means.items():
            assert abs(float(draws[node].mean()) - mean) < 0.15, (kind, node)
        assert not draws["z"].requires_grad
        if kind == "delta":  # MAP: a point, which for a Gaussian is the posterior mean
            assert float(draws["z"].std()) < 1e-5
        else:
            correlations[kind] = float(torch.corrcoef(torch.stack([draws["z"], draws["x"]]))[0, 1])
    assert set(cp.get_param_store().keys()) == {"AutoDelta.z", "AutoDelta.x"}
    assert abs(correlations["normal"]) < 0.1  # mean field
    assert correlations["mvn"] < -0.4


def test_callable_guide(confounded):
    def guide():
        loc = cp.param("z_loc", torch.tensor(0.0))
        scale = cp.param("z_scale", torch.tensor(1.0), constraint=dist.constraints.positive)
        cp.sample("z", dist.Normal(loc, scale))

    cp.set_rng_seed(6)
    result = confounded.condition(x=1.0).fit(guide=guide, steps=1000, lr=0.02, progress=False)
    assert result.params["z_loc"].item() == pytest.approx(0.5, abs=0.1)
    assert result.params["z_scale"].item() == pytest.approx(math.sqrt(0.5), abs=0.1)
    assert abs(float(result.sample(2000)["y"].mean()) - 3.5) < 0.3


def test_bad_guide(confounded):
    with pytest.raises(ValueError, match="guide must be one of normal, mvn, delta or a callable guide, got 'gaussian'"):
        confounded.condition(x=1.0).fit(guide="gaussian", steps=1, progress=False)
    with pytest.raises(TypeError, match="guide must be one of"):
        confounded.condition(x=1.0).fit(guide=3, steps=1, progress=False)


def test_nothing_to_fit(confounded):
    with pytest.raises(ValueError, match="nothing to fit"):
        confounded.fit(steps=1)


def test_plot_losses_writes_a_png(confounded, tmp_path):
    pytest.importorskip("matplotlib")
    result = confounded.condition(x=1.0).fit(steps=20, progress=False)
    path = tmp_path / "losses.png"
    assert result.plot_losses(path) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda(confounded):
    cp.set_rng_seed(7)
    result = confounded.condition(x=1.0).fit(steps=1000, lr=0.02, device="cuda", progress=False)
    assert all(value.device.type == "cuda" for value in result.params.values())
    draws = result.sample(2000)
    assert all(value.device.type == "cuda" for value in draws.values())  # observed x too
    assert abs(float(draws["z"].mean()) - 0.5) < 0.15
    data = {name: value.cuda() for name, value in regression_data().items()}
    cp.clear_param_store()
    fitted = regression_scm().fit(data=data, steps=300, lr=0.05, device="cuda", progress=False)
    assert fitted.params["w"].device.type == "cuda"
    assert fitted.params["w"].item() == pytest.approx(least_squares_slope(data), abs=0.02)


# -- convergence diagnostics ---------------------------------------------------------------


def line_data(n=500, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=generator)
    return {"x": x, "y": 2 * x + 0.5 + torch.randn(n, generator=generator)}


def test_a_short_fit_warns_naming_the_nodes_that_still_move(one_thread_seeded):
    data = line_data()
    scm = cp.SCM.from_graph([("x", "y")], data)
    with pytest.warns(ConvergenceWarning, match=r"not converged after 30 steps.*still moving at node\(s\): .*y \("):
        result = scm.fit(data, method="svi", steps=30, lr=0.01, progress=False)
    assert result.converged is False
    assert "y" in result.moving and set(result.moving) <= {"x", "y"}
    assert issubclass(ConvergenceWarning, UserWarning)


def test_a_converged_fit_says_so_without_warning(one_thread_seeded):
    data = line_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = cp.SCM.from_graph([("x", "y")], data).fit(data, method="svi", steps=600, lr=0.05,
                                                           progress=False)
        # a loose tol accepts even a short fit
        loose = cp.SCM.from_graph([("x", "y")], data).fit(data, method="svi", steps=30, lr=0.01, tol=0.5,
                                                          progress=False)
    assert result.converged is True and result.moving == []
    assert loose.converged is True


def test_a_noisy_but_converged_elbo_is_converged(confounded, one_thread_seeded):
    # One observation and a sampled guide: the loss scatters by O(1) at every step, yet has settled.
    result = confounded.condition(x=1.0).fit(steps=1500, lr=0.02, progress=False)
    assert result.converged is True


def test_loss_change_separates_trend_from_noise():
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(200, generator=generator).tolist()
    flat = [100.0 + e for e in noise]
    assert not loss_change(flat, 20).moving(1e-3)
    falling = [100.0 - 0.5 * i + e for i, e in enumerate(noise)]
    change = loss_change(falling, 20)
    assert change.moving(1e-3) and change.delta == pytest.approx(-10.0, abs=1.5)
    assert loss_change([1.0, 2.0, 3.0], 2) is None  # fewer than two windows


def test_moving_nodes_group_params_by_node():
    before = {"y.weight": torch.tensor([2.0]), "y.bias": torch.tensor(0.0), "x.scale": torch.tensor(1.0),
              "AutoNormal.locs.z": torch.tensor(0.3), "w": torch.tensor(5.0)}
    after = {"y.weight": torch.tensor([2.5]), "y.bias": torch.tensor(0.2), "x.scale": torch.tensor(1.0),
             "AutoNormal.locs.z": torch.tensor(0.4), "w": torch.tensor(5.0001)}
    expected = [("y", ["y.weight", "y.bias"]), ("z", ["AutoNormal.locs.z"])]
    assert moving_nodes(before, after, ("x", "y", "z"), 1e-3) == expected
    assert moving_nodes(before, after, ("x", "y", "z"), 0.5) == []


def test_fit_records_its_data_and_options(one_thread_seeded):
    data = line_data(50)
    scm = cp.SCM.from_graph([("x", "y")], data)
    assert scm._state.fit is None
    scm.fit(data, steps=5, lr=0.02, progress=False, tol=1.0)
    record = scm._state.fit
    assert torch.equal(record["data"]["y"], data["y"])
    assert record["options"]["steps"] == 5 and record["options"]["lr"] == 0.02
    assert record["options"]["guide"] == "normal" and record["options"]["inputs"] == {}
    assert "seed" not in record["options"] and "progress" not in record["options"]
    # a fit that holds the params fixed (as counterfactual(method="svi") does) records nothing
    scm.condition(y=1.0).fit(steps=2, learn_params=False, progress=False, tol=1.0)
    assert scm._state.fit is record


def test_loss_plot_scale():
    assert loss_scale([1e5, 1e3, 50.0, 40.0]) == "log"
    assert loss_scale([50.0, 40.0, 39.0]) == "linear"
    assert loss_scale([1e5, 10.0, -3.0, -4.0]) == "symlog"
    assert loss_scale([3.0, -1.0, -2.0]) == "linear"
    plt = pytest.importorskip("matplotlib.pyplot")
    figure, axis = loss_figure([1e5, 1e3, 50.0, 40.0], "test", plt)
    assert axis.get_yscale() == "log"
    plt.close(figure)
    figure, axis = loss_figure([1e5, 10.0, -3.0, -4.0], "test", plt)
    assert axis.get_yscale() == "symlog"
    plt.close(figure)


# -- method="auto" | "mle" | "svi" ----------------------------------------------------


def job_training_lstsq(frame, node, parents):
    """Least squares of ``node`` on ``parents`` in the raw units of the table (float64)."""
    columns = [torch.tensor(frame[p].to_numpy(), dtype=torch.float64) for p in parents]
    target = torch.tensor(frame[node].to_numpy(), dtype=torch.float64)
    design = torch.stack([torch.ones_like(target), *columns], dim=1)
    coef = torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
    rss = ((target - design @ coef) ** 2).sum()
    se = (rss / (len(target) - design.shape[1]) * torch.linalg.inv(design.T @ design)).diagonal().sqrt()
    return coef.tolist(), se.tolist()


EARNINGS_PARENTS = ["age", "education", "married", "training", "hours"]


@pytest.fixture(scope="module")
def job_frame():
    pytest.importorskip("pandas")
    from causalppl import datasets

    return datasets.job_training(n=2000, seed=0)


def test_mle_on_raw_columns_is_least_squares(job_frame, one_thread_seeded):
    from causalppl import datasets

    scm = cp.SCM.from_graph(datasets.job_training_graph())  # no data: standardised by fit
    result = scm.fit(job_frame, method="mle")
    assert result.method == "mle" and len(result.losses) == 1 and result.guide.median() == {}
    coef, _ = job_training_lstsq(job_frame, "earnings", EARNINGS_PARENTS)
    fitted = scm.mechanism("earnings").fn.coefficients(scm.params)
    assert fitted["bias"] == pytest.approx(coef[0], abs=1e-4)
    assert [fitted["weights"][p] for p in EARNINGS_PARENTS] == pytest.approx(coef[1:], abs=1e-4)
    assert scm.mechanism("age").fn.standardization["age"][0] == pytest.approx(35, abs=1)
    # The final loss is the exact negative log-likelihood: the same as the model's.
    data = {name: torch.tensor(job_frame[name].to_numpy(), dtype=torch.float32) for name in job_frame.columns}
    assert result.losses[0] == pytest.approx(-float(scm.log_prob(data).sum().detach()), rel=1e-5)


def test_svi_on_raw_columns_converges_once_standardised(job_frame, one_thread_seeded):
    from causalppl import datasets

    scm = cp.SCM.from_graph(datasets.job_training_graph())
    # (1500 steps at lr 0.01 get there too; 600 at 0.05 keep the test fast.)
    result = scm.fit(job_frame, method="svi", steps=600, lr=0.05, progress=False)
    assert result.method == "svi" and len(result.losses) == 600
    coef, se = job_training_lstsq(job_frame, "earnings", EARNINGS_PARENTS)
    fitted = scm.mechanism("earnings").fn.coefficients(scm.params)
    training = EARNINGS_PARENTS.index("training") + 1
    # SVI reaches the MLE to a small fraction of its standard error ...
    assert fitted["weights"]["training"] == pytest.approx(coef[training], abs=0.1 * se[training])
    # ... which is within 4 standard errors of the truth (1.5).
    assert abs(coef[training] - 1.5) < 4 * se[training]
    age = scm.mechanism("age").fn.coefficients(scm.params)
    sd_age = float(job_frame["age"].std())
    assert age["bias"] == pytest.approx(float(job_frame["age"].mean()), abs=0.1 * sd_age / math.sqrt(2000))
    assert age["bias"] == pytest.approx(35, abs=4 * 10 / math.sqrt(2000))
    assert math.isnan(result.summary().set_index(["node", "parameter", "parent"]).loc[
        ("earnings", "weight", "training"), "sd"])


def test_auto_fits_observed_nodes_exactly_and_leaves_the_rest_to_svi(one_thread_seeded):
    from causalppl.causal.mle import fit_node

    generator = torch.Generator().manual_seed(0)
    n = 1000
    u = torch.randn(n, generator=generator)
    z = torch.randn(n, generator=generator)
    x = 1.5 * z + u + torch.randn(n, generator=generator)
    y = 2 * x + 0.5 * torch.randn(n, generator=generator)
    data = {"z": z, "x": x, "y": y}  # u is latent
    scm = cp.SCM.from_graph([("z", "x"), ("u", "x"), ("x", "y")], data)
    result = scm.fit(data, steps=50, lr=0.05, progress=False)
    assert result.method == "mle+svi" and len(result.losses) == 50
    assert set(result.estimates) == {"z", "y"}
    # The exact fits were held at the MLE while SVI learned x and the guide of u.
    exact = fit_node(scm.mechanism("y").fn, data)
    for suffix, value in exact.params.items():
        assert torch.allclose(scm.params[f"y.{suffix}"].detach(), value, rtol=1e-6, atol=0), suffix
    assert "x.weight" in scm.params and "AutoNormal.locs.u" in result.guide_params
    with pytest.raises(ValueError, match=r"node 'u': it is latent.*node 'x': its parent 'u' has no data"):
        scm.fit(data, method="mle")


def test_mle_refuses_bayesian_and_mlp_mechanisms_and_unknown_methods(one_thread_seeded):
    data = {"x": torch.randn(50), "y": torch.randn(50)}
    bayes = cp.SCM.from_graph([("x", "y")], data, bayesian=True)
    with pytest.raises(ValueError, match="node 'x': its mechanism is Bayesian"):
        bayes.fit(data, method="mle")
    mlp = cp.SCM.from_graph([("x", "y")], data, mechanisms={"y": "mlp"})
    with pytest.raises(ValueError, match="node 'y': MLPGaussian has no closed-form maximum likelihood"):
        mlp.fit(data, method="mle")
    with pytest.raises(ValueError, match="method must be one of auto, mle, svi, got 'exact'"):
        mlp.fit(data, method="exact")
    hand_written = regression_scm()
    with pytest.raises(ValueError, match="these need SVI: param 'w'"):
        hand_written.fit(regression_data(20), method="mle")
    # auto: x is fitted exactly; the MLP (y) is left to SVI.
    result = mlp.fit(data, steps=5, progress=False)
    assert result.method == "mle+svi" and set(result.estimates) == {"x"}


# -- options out of range are refused before anything runs (issue 9) ------------------------------


@pytest.mark.parametrize("options, fragment", [
    ({"steps": -5}, "steps must be a whole number >= 0, got -5"),
    ({"steps": 10.5}, "steps must be a whole number >= 0, got 10.5"),
    ({"steps": 100.0}, "steps must be a whole number >= 0, got 100.0"),
    ({"steps": "100"}, "steps must be a whole number >= 0, got '100'"),
    ({"steps": True}, "steps must be a whole number >= 0, got True"),
    ({"steps": None}, "steps must be a whole number >= 0, got None"),
    ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
    ({"lr": float("inf")}, "lr must be a finite number > 0, got inf"),
    ({"lr": 0}, "lr must be a finite number > 0, got 0"),
    ({"lr": -0.01}, "lr must be a finite number > 0, got -0.01"),
    ({"lr": "0.01"}, "lr must be a finite number > 0, got '0.01'"),
    ({"num_particles": 0}, "num_particles must be a whole number >= 1, got 0"),
    ({"subsample_size": 0}, "subsample_size must be a whole number >= 1, got 0"),
    ({"subsample_size": 2.5}, "subsample_size must be a whole number >= 1, got 2.5"),
    ({"tol": float("nan")}, "tol must be a finite number >= 0, got nan"),
    ({"alpha": -1.0}, "alpha must be a finite number >= 0, got -1.0"),
    ({"posterior_draws_kept": 0}, "posterior_draws_kept must be a whole number >= 1, got 0"),
    ({"method": "exact"}, "method must be one of auto, mle, svi, got 'exact'"),
])
def test_bad_options_are_refused_before_anything_runs(confounded, options, fragment):
    scm = confounded.condition(x=1.0)
    with model_never_called(scm):
        with pytest.raises(ValueError) as info:
            scm.fit(progress=False, **options)
    assert fragment in str(info.value), str(info.value)
    assert len(scm.params) == 0


def test_integer_like_steps_are_accepted(confounded):
    import numpy as np

    result = confounded.condition(x=1.0).fit(steps=np.int64(3), progress=False, tol=1.0)
    assert len(result.losses) == 3


class model_never_called:  # noqa: N801 (used as a context manager, like a function)
    """Fail the test if the SCM's lowered model runs (the check must come first)."""

    def __init__(self, scm):
        self.model = scm.model

    def __enter__(self):
        self.call = type(self.model).__call__
        type(self.model).__call__ = lambda *args, **kwargs: pytest.fail("the model ran before the check")

    def __exit__(self, *exc):
        type(self.model).__call__ = self.call


def test_a_data_column_that_is_not_a_node_is_a_value_error(confounded):
    with pytest.raises(ValueError, match=r"data column 'wind' is not a node \(nodes: z, x, y\)"):
        confounded.fit(data={"x": torch.zeros(4), "wind": torch.zeros(4)}, steps=2, progress=False)


def test_a_nan_data_column_is_named_before_fitting(confounded):
    with pytest.raises(ValueError, match=r"data column 'y': 1 missing value \(NaN\), first at row 2"):
        confounded.fit(data={"x": torch.zeros(3), "y": torch.tensor([0.0, 1.0, float("nan")])}, steps=2,
                       progress=False)


def test_a_nan_loss_stops_the_fit_naming_the_step_and_the_site():
    from causalppl.infer.elbo import NonFiniteLossError

    def y(x):
        k = cp.param("k", torch.tensor(1.0))
        return dist.Normal(x * k + float("nan"), 1.0, validate_args=False)

    scm = cp.SCM().add("x", "Normal(0, 1)").add("y", y)
    with pytest.raises(NonFiniteLossError, match=r"SVI step 1: the loss is nan; .*site 'y'"):
        scm.fit(data={"y": torch.zeros(5)}, steps=5, progress=False)


def test_fit_with_zero_steps_warns_that_nothing_was_fitted():
    data = {"x": torch.tensor([0.0, 1.0, 2.0]), "y": torch.tensor([1.0, 0.0, 2.0])}
    scm = cp.SCM.from_graph([("x", "y")], data, bayesian=True)
    with pytest.warns(UserWarning, match=r"fit\(steps=0\) takes no SVI steps: .*y"):
        result = scm.fit(data, steps=0, progress=False)
    assert result.losses == []
