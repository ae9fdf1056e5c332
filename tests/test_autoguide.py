"""Automatic guides: AutoNormal, AutoDelta, AutoMultivariateNormal."""

import math

import pytest
import torch

import causalppl as cp
from causalppl.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoMultivariateNormal,
    AutoNormal,
    init_to_feasible,
    init_to_mean,
    init_to_value,
)

POST_LOC = (9.5 + 0.75**2 * 8.5) / (1 + 0.75**2)
POST_SD = math.sqrt(0.75**2 / (1 + 0.75**2))


pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def scale(guess):
    weight = cp.sample("weight", cp.dist.Normal(guess, 1.0))
    return cp.sample("measurement", cp.dist.Normal(weight, 0.75))


conditioned_scale = cp.condition(scale, data={"measurement": torch.tensor(9.5)})


def fit(model, guide, steps, *args, lr=0.1, particles=8, loss=cp.infer.Trace_ELBO):
    """SVI with a decaying learning rate (the last steps average out the gradient noise)."""
    optim = cp.optim.ClippedAdam({"lr": lr, "lrd": 0.02 ** (1 / steps)})
    svi = cp.infer.SVI(model, guide, optim, loss(num_particles=particles, vectorize_particles=True))
    for _ in range(steps):
        svi.step(*args)
    return guide


@pytest.mark.parametrize("auto", [AutoNormal, AutoMultivariateNormal, AutoDiagonalNormal])
def test_scale_model_reaches_the_analytic_posterior(auto):
    guide = fit(conditioned_scale, auto(conditioned_scale), 600, 8.5)
    loc = guide.median(8.5)["weight"].item()
    lo, hi = guide.quantiles([0.15865525, 0.84134475], 8.5)["weight"].tolist()
    assert loc == pytest.approx(POST_LOC, abs=0.1)
    assert (hi - lo) / 2 == pytest.approx(POST_SD, abs=0.08)


def test_auto_delta_reaches_the_map():
    guide = fit(conditioned_scale, AutoDelta(conditioned_scale), 600, 8.5, particles=1)
    assert guide.median(8.5)["weight"].item() == pytest.approx(POST_LOC, abs=0.02)
    quantiles = guide.quantiles([0.1, 0.9], 8.5)["weight"]
    assert quantiles[0] == quantiles[1]
    assert sorted(cp.get_param_store().keys()) == ["AutoDelta.weight"]


def test_auto_normal_param_names_and_returned_values():
    guide = AutoNormal(conditioned_scale, init_loc_fn=init_to_mean, init_scale=0.3)
    values = guide(8.5)
    assert list(values) == ["weight"]
    store = cp.get_param_store()
    assert sorted(store.keys()) == ["AutoNormal.locs.weight", "AutoNormal.scales.weight"]
    assert store["AutoNormal.locs.weight"].item() == pytest.approx(8.5)
    assert store["AutoNormal.scales.weight"].item() == pytest.approx(0.3)
    assert cp.get_param_store().get_constraint("AutoNormal.scales.weight") is cp.constraints.positive
    assert set(guide.sample_posterior(8.5)) == {"weight"}


def lognormal_prior():
    cp.sample("s", cp.dist.LogNormal(0.5, 0.4))


@pytest.mark.parametrize("auto", [AutoNormal, AutoMultivariateNormal, AutoDiagonalNormal])
def test_positive_site_density_includes_the_jacobian(auto):
    # No data: the posterior is the prior, LogNormal(0.5, 0.4), i.e. Normal(0.5, 0.4) in log space,
    # which both guides can represent exactly -- only if log q carries log|det J|.
    guide = fit(lognormal_prior, auto(lognormal_prior), 600)
    quantiles = guide.quantiles([0.15865525, 0.5, 0.84134475])["s"].log()
    assert quantiles[1].item() == pytest.approx(0.5, abs=0.05)
    assert ((quantiles[2] - quantiles[0]) / 2).item() == pytest.approx(0.4, abs=0.05)
    assert bool((guide()["s"] > 0).all())


def test_auto_delta_on_a_positive_site_finds_the_mode():
    def model():
        cp.sample("s", cp.dist.Gamma(3.0, 1.0))

    guide = fit(model, AutoDelta(model, init_loc_fn=init_to_feasible), 500, particles=1)
    # MAP in the constrained space: the Gamma(3, 1) mode, (3 - 1) / 1.
    assert guide.median()["s"].item() == pytest.approx(2.0, abs=0.05)


def test_auto_multivariate_normal_learns_correlations():
    def model():
        a = cp.sample("a", cp.dist.Normal(0.0, 1.0))
        cp.sample("b", cp.dist.Normal(a, 0.5))

    guide = fit(model, AutoMultivariateNormal(model), 800)
    scale_tril = cp.param("AutoMultivariateNormal.scale_tril").detach()
    cov = scale_tril @ scale_tril.T
    assert torch.allclose(cov, torch.tensor([[1.0, 1.0], [1.0, 1.25]]), atol=0.12)
    assert "_AutoMultivariateNormal_latent" not in guide()
    posterior = guide.get_posterior()
    assert posterior.event_shape == (2,)


def plated_model(data):
    with cp.plate("rows", len(data)):
        z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
        cp.sample("x", cp.dist.Normal(z, 1.0), obs=data)


def test_auto_normal_in_a_plate_learns_each_row():
    data = torch.linspace(-2.0, 2.0, 5)
    guide = fit(plated_model, AutoNormal(plated_model), 600, data)
    # Posterior of each z_i: Normal(x_i / 2, sqrt(1/2)).
    assert torch.allclose(guide.median(data)["z"], data / 2, atol=0.1)
    tr = cp.handlers.trace(guide).get_trace(data)
    assert tr.nodes["z"]["cond_indep_stack"][0].name == "rows"


@pytest.mark.parametrize("auto", [AutoNormal, AutoMultivariateNormal, AutoDelta])
def test_vectorized_particles_with_plates(auto):
    data = torch.tensor([0.0, 1.0, 2.0])
    guide = auto(plated_model)
    elbo = cp.infer.Trace_ELBO(num_particles=7, vectorize_particles=True)
    assert math.isfinite(elbo.loss(plated_model, guide, data))
    model_trace, guide_trace = (tr for _, tr in elbo.last_traces)
    assert guide_trace.nodes["z"]["value"].shape == (7, 3)
    assert model_trace.nodes["z"]["value"].shape == (7, 3)


def test_subsampled_plates_need_matching_indices():
    full = torch.linspace(-2.0, 2.0, 20)

    def model(idx):
        with cp.plate("rows", 20, subsample=idx):
            z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
            cp.sample("x", cp.dist.Normal(z, 1.0), obs=full[idx])

    with pytest.raises(ValueError, match="create_plates"):
        AutoNormal(model)(torch.arange(5))
    with pytest.raises(ValueError, match="subsamples plate 'rows'"):
        AutoMultivariateNormal(model)(torch.arange(5))

    guide = AutoNormal(model, create_plates=lambda idx: cp.plate("rows", 20, subsample=idx))
    optim = cp.optim.ClippedAdam({"lr": 0.1, "lrd": 0.05 ** (1 / 800)})
    svi = cp.infer.SVI(model, guide, optim, cp.infer.Trace_ELBO(num_particles=8, vectorize_particles=True))
    for _ in range(800):
        svi.step(torch.randperm(20)[:5])
    # Params have the full plate size; each row learned its own posterior mean x_i / 2.
    assert cp.param("AutoNormal.locs.z").shape == (20,)
    assert torch.allclose(guide.median(torch.arange(5))["z"], full / 2, atol=0.15)
    tr = cp.handlers.trace(guide).get_trace(torch.tensor([3, 7]))
    assert tr.nodes["z"]["scale"] == pytest.approx(10.0)


def test_event_dims_and_simplex_support():
    def model():
        cp.sample("p", cp.dist.Dirichlet(torch.ones(3)))
        cp.sample("v", cp.dist.MultivariateNormal(torch.zeros(2), torch.eye(2)))

    for auto in (AutoNormal, AutoMultivariateNormal, AutoDelta):
        cp.clear_param_store()
        guide = auto(model)
        values = guide()
        assert values["p"].shape == (3,) and values["v"].shape == (2,)
        assert values["p"].sum().item() == pytest.approx(1.0, abs=1e-5)
        assert math.isfinite(cp.infer.Trace_ELBO().loss(model, guide))
        assert guide.quantiles([0.25, 0.75])["v"].shape == (2, 2)
    assert cp.param("AutoDelta.p").shape == (3,)


def test_only_latent_sites_get_a_guide():
    def model():
        a = cp.sample("a", cp.dist.Normal(0.0, 1.0))
        b = cp.sample("b", cp.dist.Normal(a, 1.0))
        cp.deterministic("c", 2 * b)
        cp.sample("d", cp.dist.Normal(b, 1.0), obs=torch.tensor(1.0))

    guide = AutoNormal(cp.do(model, {"b": torch.tensor(0.5)}))
    assert list(guide()) == ["a"]


def test_discrete_latent_sites_are_refused_by_name():
    def model():
        cp.sample("coin", cp.dist.Bernoulli(0.5))

    with pytest.raises(ValueError, match="'coin'.*discrete"):
        AutoNormal(model)()


def test_setup_leaks_no_sites_and_init_to_value():
    guide = AutoNormal(conditioned_scale, init_loc_fn=init_to_value(values={"weight": 9.0}))
    tr = cp.handlers.trace(guide).get_trace(8.5)
    # As in Pyro: an auxiliary unconstrained draw, then the site itself as a point mass at its image.
    assert [name for name in tr.nodes if tr.nodes[name]["type"] == "sample"] == ["weight_unconstrained", "weight"]
    assert tr.nodes["weight_unconstrained"]["infer"]["is_auxiliary"]
    assert cp.param("AutoNormal.locs.weight").item() == pytest.approx(9.0)


def test_mean_field_elbo_fits_with_auto_normal():
    # AutoNormal's model-facing sites are point masses (the Normal is the auxiliary site), so the
    # mean-field ELBO estimates their KL by Monte Carlo, as Pyro's does.
    guide = fit(conditioned_scale, AutoNormal(conditioned_scale), 600, 8.5, loss=cp.infer.TraceMeanField_ELBO)
    assert guide.median(8.5)["weight"].item() == pytest.approx(POST_LOC, abs=0.1)


def test_guide_and_model_share_the_rows_the_model_subsamples():
    full = torch.linspace(-2.0, 2.0, 20)

    def model():
        with cp.plate("rows", 20, subsample_size=5) as idx:
            z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
            cp.sample("x", cp.dist.Normal(z, 1.0), obs=full[idx])

    guide = AutoNormal(model)
    guide_trace = cp.handlers.trace(guide).get_trace()
    model_trace = cp.handlers.trace(cp.handlers.replay(model, trace=guide_trace)).get_trace()
    assert torch.equal(guide_trace.nodes["rows"]["value"], model_trace.nodes["rows"]["value"])

    optim = cp.optim.ClippedAdam({"lr": 0.05, "lrd": 0.05 ** (1 / 1500), "clip_norm": float("inf")})
    svi = cp.infer.SVI(model, guide, optim, cp.infer.Trace_ELBO(num_particles=8, vectorize_particles=True))
    for _ in range(1500):
        svi.step()
    # Each row's posterior is N(x_i / 2, sqrt(1/2)); every row was visited ~375 times.
    assert torch.allclose(cp.param("AutoNormal.locs.z").detach(), full / 2, atol=0.15)
    assert torch.allclose(cp.param("AutoNormal.scales.z").detach(), torch.full((20,), 0.5**0.5), atol=0.1)


@pytest.mark.parametrize("auto", [AutoNormal, AutoDelta, AutoMultivariateNormal])
def test_sequential_plate_sites_keep_their_own_shape(auto):
    # ``for i in plate(...)`` broadcasts nothing, so the guide must not either.
    def model():
        for i in cp.plate("seq", 3):
            cp.sample(f"x_{i}", cp.dist.Normal(0.0, 1.0))

    guide = auto(model)
    assert {name: tuple(value.shape) for name, value in guide().items()} == {
        "x_0": (), "x_1": (), "x_2": ()
    }


def test_auto_diagonal_normal_params_and_joint_posterior():
    def model():
        cp.sample("a", cp.dist.Normal(0.0, 1.0))
        cp.sample("b", cp.dist.LogNormal(torch.zeros(2), 1.0).to_event(1))

    guide = AutoDiagonalNormal(model, init_loc_fn=init_to_feasible, init_scale=0.2)
    values = guide()
    assert {k: tuple(v.shape) for k, v in values.items()} == {"a": (), "b": (2,)} and bool((values["b"] > 0).all())
    assert sorted(cp.get_param_store().keys()) == ["AutoDiagonalNormal.loc", "AutoDiagonalNormal.scale"]
    assert cp.get_param_store()["AutoDiagonalNormal.scale"].tolist() == pytest.approx([0.2] * 3)
    posterior = guide.get_posterior()
    assert posterior.event_shape == (3,) and posterior.batch_shape == ()
    assert guide.median()["b"].tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="AutoDiagonalNormal: the model subsamples plate 'rows'"):
        def subsampled():
            with cp.plate("rows", 10, subsample_size=2):
                cp.sample("z", cp.dist.Normal(0.0, 1.0))
        AutoDiagonalNormal(subsampled)()


# --- AutoLowRankMultivariateNormal, AutoLaplaceApproximation, AutoGuideList ------------------------------

from causalppl.infer.autoguide import (  # noqa: E402
    AutoCallable,
    AutoContinuous,
    AutoGuideList,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
)

# A correlated Gaussian "posterior": covariance v v^T + diag(d), rank one plus diagonal.
V = torch.tensor([1.0, -0.8, 0.5])
D = torch.tensor([0.3, 0.2, 0.4])
COV = torch.outer(V, V) + torch.diag(D)
MEAN = torch.tensor([1.0, -2.0, 0.5])


def correlated():
    cp.sample("z", cp.dist.MultivariateNormal(MEAN, covariance_matrix=COV))


def test_low_rank_guide_recovers_a_correlated_posterior_covariance():
    guide = AutoLowRankMultivariateNormal(correlated, rank=1)
    fit(correlated, guide, 1000, lr=0.05, particles=16)
    posterior = guide.get_posterior()
    assert isinstance(guide, AutoContinuous) and guide.rank == 1
    assert posterior.loc.tolist() == pytest.approx(MEAN.tolist(), abs=0.05)
    assert torch.allclose(posterior.covariance_matrix.detach(), COV, atol=0.06)
    sd = COV.diag().sqrt()
    quartiles = guide.quantiles([0.25, 0.75])["z"]
    assert (quartiles[1] - quartiles[0]).tolist() == pytest.approx((2 * 0.6745 * sd).tolist(), abs=0.06)
    assert guide.median()["z"].tolist() == pytest.approx(MEAN.tolist(), abs=0.05)


def test_low_rank_params_and_default_rank():
    model = lambda: cp.sample("x", cp.dist.Normal(torch.zeros(9), 1.0).to_event(1))  # noqa: E731
    guide = AutoLowRankMultivariateNormal(model, init_scale=0.2)
    guide()
    store = cp.get_param_store()
    assert guide.rank == 3  # round(sqrt(9))
    assert tuple(store["AutoLowRankMultivariateNormal.cov_factor"].shape) == (9, 3)
    assert store["AutoLowRankMultivariateNormal.scale"].tolist() == pytest.approx([0.2] * 9)
    with pytest.raises(ValueError, match="rank must be a positive int"):
        AutoLowRankMultivariateNormal(model, rank=0)


def conjugate(data):
    """mu ~ N(0, 2), log_sigma fixed: data ~ N(mu, 0.5); the posterior of mu is N(m, s^2) in closed form."""
    mu = cp.sample("mu", cp.dist.Normal(0.0, 2.0))
    with cp.plate("data", len(data)):
        cp.sample("obs", cp.dist.Normal(mu, 0.5), obs=data)


def conjugate_posterior(data):
    precision = 1 / 2.0 ** 2 + len(data) / 0.5 ** 2
    return data.sum().item() / 0.5 ** 2 / precision, precision ** -0.5


def test_laplace_approximation_of_a_conjugate_normal_model_is_the_analytic_posterior():
    data = torch.tensor([1.2, 0.7, 1.9, 1.4])
    mean, sd = conjugate_posterior(data)
    guide = AutoLaplaceApproximation(conjugate)
    svi = cp.infer.SVI(conjugate, guide, cp.optim.Adam({"lr": 0.05}), cp.infer.Trace_ELBO())
    for _ in range(300):
        svi.step(data)
    # The MAP of a Gaussian posterior is its mean, and the curvature there is its precision.
    assert guide.median(data)["mu"].item() == pytest.approx(mean, abs=1e-3)
    assert isinstance(guide.get_posterior(), cp.dist.Delta)
    gaussian = guide.laplace_approximation(data)
    assert isinstance(gaussian, AutoMultivariateNormal)
    assert gaussian.get_posterior().loc.item() == pytest.approx(mean, abs=1e-3)
    assert gaussian.get_posterior().covariance_matrix.item() == pytest.approx(sd ** 2, rel=1e-5)
    assert gaussian.quantiles([0.5])["mu"].item() == pytest.approx(mean, abs=1e-3)
    draws = cp.infer.Predictive(conjugate, guide=gaussian, num_samples=4000, parallel=True)(data)["mu"]
    assert draws.mean().item() == pytest.approx(mean, abs=4 * sd / 4000 ** 0.5)
    assert draws.std().item() == pytest.approx(sd, rel=0.06)


def test_laplace_approximation_in_unconstrained_space_includes_the_jacobian():
    """A Gamma(a, b) latent: in log space the density is exp(a u - b e^u), peak log(a/b), curvature a."""
    a, b = 3.0, 2.0
    model = lambda: cp.sample("s", cp.dist.Gamma(a, b))  # noqa: E731
    guide = AutoLaplaceApproximation(model, init_loc_fn=init_to_value(values={"s": torch.tensor(a / b)}))
    gaussian = guide.laplace_approximation().get_posterior()
    assert gaussian.loc.item() == pytest.approx(math.log(a / b), abs=1e-6)
    assert gaussian.covariance_matrix.item() == pytest.approx(1 / a, rel=1e-5)


def test_laplace_approximation_away_from_a_maximum_says_so():
    guide = AutoLaplaceApproximation(
        lambda: cp.sample("x", cp.dist.StudentT(1.0, 0.0, 1.0)), init_loc_fn=init_to_value(values={"x": 5.0}))
    with pytest.raises(ValueError, match="not positive definite"):
        guide.laplace_approximation()


def two_sites():
    """a and b independent with posteriors N(1, 1/2) and N(2, 1/2)."""
    a = cp.sample("a", cp.dist.Normal(0.0, 1.0))
    b = cp.sample("b", cp.dist.Normal(0.0, 1.0))
    cp.sample("xa", cp.dist.Normal(a, 1.0), obs=torch.tensor(2.0))
    cp.sample("xb", cp.dist.Normal(b, 1.0), obs=torch.tensor(4.0))


def test_guide_list_of_a_delta_and_a_normal_on_blocked_parts():
    guide = AutoGuideList(two_sites)
    guide.append(AutoDelta(cp.handlers.block(two_sites, expose=["b"])))
    guide.append(AutoNormal(cp.handlers.block(two_sites, hide=["b"])))
    assert len(guide) == 2 and isinstance(guide[0], AutoDelta)
    assert sorted(guide()) == ["a", "b"]
    assert sorted(cp.get_param_store().keys()) == ["AutoGuideList.0.b", "AutoGuideList.1.locs.a",
                                                   "AutoGuideList.1.scales.a"]
    fit(two_sites, guide, 800, lr=0.05, particles=8)
    median = guide.median()
    assert median["b"].item() == pytest.approx(2.0, abs=0.02)  # MAP
    assert median["a"].item() == pytest.approx(1.0, abs=0.05)
    assert cp.param("AutoGuideList.1.scales.a").item() == pytest.approx(0.5 ** 0.5, abs=0.05)
    quartiles = guide.quantiles([0.25, 0.75])
    assert quartiles["b"][0].item() == quartiles["b"][1].item()
    assert quartiles["a"][0].item() < quartiles["a"][1].item()


def test_guide_list_takes_plain_guide_functions_and_refuses_an_empty_list():
    guide = AutoGuideList(two_sites)
    with pytest.raises(ValueError, match="append at least one guide"):
        guide()
    guide.append(AutoDiagonalNormal(cp.handlers.block(two_sites, expose=["a"])))
    guide.append(lambda: {"b": cp.sample("b", cp.dist.Normal(cp.param("b_loc", torch.tensor(0.0)), 1.0))})
    assert sorted(guide()) == ["a", "b"]
    assert "AutoGuideList.0.loc" in cp.get_param_store()
    assert isinstance(guide[1], AutoCallable)
    assert sorted(guide.median()) == ["a"]  # a plain guide function has no median of its own
    with pytest.raises(NotImplementedError, match="has no quantiles"):
        guide.quantiles([0.5])


def test_requires_grad_turns_a_guides_gradients_off():
    guide = AutoDiagonalNormal(two_sites)
    guide()
    guide.requires_grad_(False)
    assert not cp.get_param_store().leaf("AutoDiagonalNormal.loc").requires_grad
    assert guide.requires_grad_(True) is guide
    assert cp.get_param_store().leaf("AutoDiagonalNormal.loc").requires_grad
