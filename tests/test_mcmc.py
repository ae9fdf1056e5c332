"""MCMC: NUTS and HMC against conjugate posteriors, adaptation, diagnostics, and scm.fit(method="nuts").

Tolerances come from each run's effective sample size: a posterior mean is
off by about ``sd / sqrt(n_eff)``, a posterior sd by about
``sd / sqrt(2 n_eff)``; the checks allow five of those (runs are seeded, so
they are deterministic; the margin is for other platforms' arithmetic).
"""

import math

import pytest
import torch

import causalppl as cp
from causalppl.causal.learnable import LinearGaussian
from causalppl.infer import diagnostics as stats
from causalppl.infer.mcmc.adaptation import DualAveraging, WelfordCovariance, adaptation_schedule
from causalppl.infer.mcmc.util import ModelPotential


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_posterior(draws, n_eff, mean, sd, k=5.0):
    """The draws' mean and sd agree with the analytic ``mean`` and ``sd`` within ``k`` Monte Carlo errors."""
    n_eff = float(torch.as_tensor(n_eff).min())
    assert n_eff > 50, f"too few effective draws ({n_eff:.0f}) to check anything"
    got_mean, got_sd = float(draws.mean()), float(draws.std())
    assert abs(got_mean - mean) < k * sd / math.sqrt(n_eff), (got_mean, mean, n_eff)
    assert abs(got_sd - sd) < k * sd / math.sqrt(2 * n_eff), (got_sd, sd, n_eff)


# ---------------------------------------------------------------------------
# Conjugate posteriors
# ---------------------------------------------------------------------------


def scale_model(measurement):
    """Pyro's intro: a weight guessed as 8.5 +- 1, measured 9.5 on a scale with noise 0.75."""
    weight = cp.sample("weight", cp.dist.Normal(8.5, 1.0))
    return cp.sample("measurement", cp.dist.Normal(weight, 0.75), obs=measurement)


def test_normal_normal_scale_model_posterior():
    cp.set_rng_seed(0)
    mcmc = cp.infer.MCMC(cp.infer.NUTS(scale_model, jit_compile=True), num_samples=600, warmup_steps=300,
                         num_chains=2)
    mcmc.run(torch.tensor(9.5))
    precision = 1 / 1.0**2 + 1 / 0.75**2
    mean, sd = (8.5 / 1.0**2 + 9.5 / 0.75**2) / precision, precision**-0.5
    assert (round(mean, 2), round(sd, 2)) == (9.14, 0.6)
    draws = mcmc.get_samples()["weight"]
    assert draws.shape == (1200,)
    assert_posterior(draws, mcmc.diagnostics()["weight"]["n_eff"], mean, sd)
    assert float(mcmc.diagnostics()["weight"]["r_hat"]) < 1.05


def test_eager_and_traced_potentials_give_the_same_chain():
    runs = []
    for jit in (False, True):
        cp.set_rng_seed(3)
        mcmc = cp.infer.MCMC(cp.infer.NUTS(scale_model, jit_compile=jit), num_samples=40, warmup_steps=30)
        mcmc.run(torch.tensor(9.5))
        runs.append(mcmc.get_samples()["weight"])
    torch.testing.assert_close(runs[0], runs[1])


def test_beta_bernoulli_on_the_unit_interval():
    cp.set_rng_seed(1)
    data = torch.tensor([1.0, 1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1])

    def model(data):
        p = cp.sample("p", cp.dist.Beta(2.0, 3.0))
        with cp.plate("flips", len(data)):
            cp.sample("x", cp.dist.Bernoulli(p), obs=data)

    mcmc = cp.infer.MCMC(cp.infer.NUTS(model, jit_compile=True), num_samples=600, warmup_steps=300)
    mcmc.run(data)
    p = mcmc.get_samples()["p"]
    assert bool(((p > 0) & (p < 1)).all())
    a, b = 2 + data.sum().item(), 3 + (1 - data).sum().item()
    mean, sd = a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    assert_posterior(p, mcmc.diagnostics()["p"]["n_eff"], mean, sd)


def test_gamma_poisson_on_the_positive_reals():
    cp.set_rng_seed(2)
    counts = torch.tensor([3.0, 5, 2, 4, 6, 1])

    def model(counts):
        rate = cp.sample("rate", cp.dist.Gamma(2.0, 0.5))
        with cp.plate("days", len(counts)):
            cp.sample("count", cp.dist.Poisson(rate), obs=counts)

    mcmc = cp.infer.MCMC(cp.infer.NUTS(model, jit_compile=True), num_samples=600, warmup_steps=300)
    mcmc.run(counts)
    rate = mcmc.get_samples()["rate"]
    assert bool((rate > 0).all())
    shape, inverse_scale = 2 + counts.sum().item(), 0.5 + len(counts)
    assert_posterior(rate, mcmc.diagnostics()["rate"]["n_eff"], shape / inverse_scale,
                     math.sqrt(shape) / inverse_scale)


def test_correlated_gaussian_with_a_dense_mass_matrix():
    cp.set_rng_seed(4)
    loc = torch.tensor([1.0, -2.0])
    cov = torch.tensor([[1.0, 0.95 * 10], [0.95 * 10, 100.0]])

    def model():
        cp.sample("x", cp.dist.MultivariateNormal(loc, cov))

    kernel = cp.infer.NUTS(model, full_mass=True, jit_compile=True)
    mcmc = cp.infer.MCMC(kernel, num_samples=500, warmup_steps=400)
    mcmc.run()
    x = mcmc.get_samples()["x"]
    n_eff = mcmc.diagnostics()["x"]["n_eff"]
    for i in range(2):
        assert_posterior(x[:, i], n_eff[i], float(loc[i]), math.sqrt(cov[i, i]))
    correlation = torch.corrcoef(x.T)[0, 1]
    assert abs(float(correlation) - 0.95) < 0.03
    # The adapted inverse mass matrix is the posterior covariance, correlation and all.
    estimate = kernel.inverse_mass_matrix
    assert estimate.shape == (2, 2)
    adapted = estimate[0, 1] / (estimate[0, 0] * estimate[1, 1]).sqrt()
    assert abs(float(adapted) - 0.95) < 0.05
    assert 0.5 < float(estimate[1, 1] / estimate[0, 0]) / 100 < 2


def test_hmc_with_a_fixed_trajectory():
    cp.set_rng_seed(5)
    kernel = cp.infer.HMC(scale_model, trajectory_length=1.5, jit_compile=True)
    mcmc = cp.infer.MCMC(kernel, num_samples=600, warmup_steps=300)
    mcmc.run(torch.tensor(9.5))
    assert kernel.num_steps == max(1, int(1.5 / kernel.step_size))
    assert_posterior(mcmc.get_samples()["weight"], mcmc.diagnostics()["weight"]["n_eff"], 9.1398, 0.6)
    fixed = cp.infer.HMC(scale_model, step_size=0.1, num_steps=7, adapt_step_size=False)
    assert (fixed.trajectory_length, fixed.num_steps) == (pytest.approx(0.7), 7)


def test_dependent_support_follows_the_other_latent():
    """x ~ Uniform(0, theta): x's support moves with theta on every step, not fixed at the first run."""
    cp.set_rng_seed(6)

    def model():
        theta = cp.sample("theta", cp.dist.Gamma(4.0, 2.0))
        cp.sample("x", cp.dist.Uniform(0.0, theta))

    mcmc = cp.infer.MCMC(cp.infer.NUTS(model, jit_compile=True), num_samples=500, warmup_steps=300)
    mcmc.run()
    samples = mcmc.get_samples()
    assert bool((samples["x"] < samples["theta"]).all() and (samples["x"] > 0).all())
    # The prior itself: theta's marginal stays Gamma(4, 2) (mean 2, sd 1).
    assert_posterior(samples["theta"], mcmc.diagnostics()["theta"]["n_eff"], 2.0, 1.0)


# ---------------------------------------------------------------------------
# Adaptation
# ---------------------------------------------------------------------------


def test_stan_windows():
    assert adaptation_schedule(1000) == [(0, 74), (75, 99), (100, 149), (150, 249), (250, 449), (450, 949),
                                         (950, 999)]
    assert adaptation_schedule(100) == [(0, 14), (15, 89), (90, 99)]  # short warmups: 15% / 75% / 10%
    assert adaptation_schedule(10) == [(0, 9)]
    assert adaptation_schedule(0) == []
    for steps in (20, 150, 151, 333, 2000):
        windows = adaptation_schedule(steps)
        assert windows[0].start == 0 and windows[-1].end == steps - 1
        assert all(b.start == a.end + 1 for a, b in zip(windows, windows[1:]))


def test_dual_averaging_finds_the_root_of_a_noisy_gradient():
    torch.manual_seed(0)
    dual = DualAveraging(prox_center=0.0)
    for _ in range(2000):
        x_t, _ = dual.get_state()
        dual.step(x_t - 1.5 + 0.1 * float(torch.randn(())))  # g(x) = x - 1.5 + noise
    assert dual.get_state()[1] == pytest.approx(1.5, abs=0.05)


def test_welford_covariance_and_its_regularisation():
    torch.manual_seed(0)
    x = torch.randn(400, 3, dtype=torch.float64) @ torch.tensor([[1.0, 0.5, 0.0], [0.0, 2.0, 0.0],
                                                                 [0.0, 0.0, 0.3]], dtype=torch.float64)
    dense, diagonal = WelfordCovariance(diagonal=False), WelfordCovariance(diagonal=True)
    for row in x:
        dense.update(row)
        diagonal.update(row)
    torch.testing.assert_close(dense.get_covariance(regularize=False), torch.cov(x.T))
    torch.testing.assert_close(diagonal.get_covariance(regularize=False), x.var(0))
    n = 400
    torch.testing.assert_close(diagonal.get_covariance(), n / (n + 5) * x.var(0) + 1e-3 * 5 / (n + 5))


@pytest.mark.parametrize("target", [0.65, 0.9])
def test_step_size_adaptation_reaches_the_target_acceptance(target):
    cp.set_rng_seed(7)
    scales = torch.linspace(0.5, 3.0, 20)

    def model():
        cp.sample("x", cp.dist.Independent(cp.dist.Normal(torch.zeros(20), scales), 1))

    kernel = cp.infer.NUTS(model, target_accept_prob=target, jit_compile=True)
    mcmc = cp.infer.MCMC(kernel, num_samples=150, warmup_steps=300)
    mcmc.run()
    diagnostics = mcmc.diagnostics()
    # Dual averaging steers the warmup's acceptance statistic to the target; the draws, at the
    # averaged step size, accept at least as often (as in Stan and Pyro).
    assert abs(diagnostics["warmup accept prob"]["chain 0"] - target) < 0.05
    assert target - 0.05 < diagnostics["mean accept prob"]["chain 0"] < target + 0.2
    # The diagonal mass matrix learned the scales (variances 0.25 .. 9; the last window has 100 draws).
    ratio = kernel.inverse_mass_matrix / scales**2
    assert bool(((ratio > 0.4) & (ratio < 2.5)).all()), ratio
    assert float(ratio.log().mean().abs()) < 0.2
    assert diagnostics["divergences"]["chain 0"] == []


def test_a_higher_target_takes_smaller_steps():
    sizes = []
    for target in (0.6, 0.95):
        cp.set_rng_seed(8)
        kernel = cp.infer.NUTS(scale_model, target_accept_prob=target, jit_compile=True)
        cp.infer.MCMC(kernel, num_samples=10, warmup_steps=200).run(torch.tensor(9.5))
        sizes.append(kernel.step_size)
    assert sizes[1] < 0.7 * sizes[0]


# ---------------------------------------------------------------------------
# Chains, r-hat, and what MCMC reports
# ---------------------------------------------------------------------------


def two_bumps():
    """Two modes at -6 and +6, too far apart for a chain to cross."""
    x = cp.sample("x", cp.dist.Normal(0.0, 10.0))
    bumps = torch.stack([cp.dist.Normal(-6.0, 0.5).log_prob(x), cp.dist.Normal(6.0, 0.5).log_prob(x)])
    cp.factor("bumps", torch.logsumexp(bumps, 0))


def test_r_hat_is_one_for_mixing_chains_and_large_for_chains_stuck_apart():
    cp.set_rng_seed(9)
    good = cp.infer.MCMC(cp.infer.NUTS(scale_model, jit_compile=True), num_samples=300, warmup_steps=200,
                         num_chains=3)
    good.run(torch.tensor(9.5))
    assert float(good.diagnostics()["weight"]["r_hat"]) < 1.05
    stuck = cp.infer.MCMC(cp.infer.NUTS(two_bumps, jit_compile=True), num_samples=200, warmup_steps=100,
                          num_chains=2, initial_params={"x": torch.tensor([-6.0, 6.0])})
    stuck.run()
    x = stuck.get_samples(group_by_chain=True)["x"]
    assert bool((x[0] < 0).all() and (x[1] > 0).all())  # each chain stayed at its own mode
    assert float(stuck.diagnostics()["x"]["r_hat"]) > 1.1


def test_samples_summary_and_diagnostics(capsys):
    cp.set_rng_seed(10)

    def model():
        cp.sample("w", cp.dist.Normal(torch.zeros(2), 1.0).to_event(1))
        cp.sample("s", cp.dist.HalfNormal(1.0))

    mcmc = cp.infer.MCMC(cp.infer.NUTS(model), num_samples=60, warmup_steps=40, num_chains=2)
    mcmc.run()
    grouped = mcmc.get_samples(group_by_chain=True)
    assert {k: tuple(v.shape) for k, v in grouped.items()} == {"w": (2, 60, 2), "s": (2, 60)}
    assert tuple(mcmc.get_samples()["w"].shape) == (120, 2)
    assert tuple(mcmc.get_samples(num_samples=50)["s"].shape) == (50,)
    table = mcmc.summary(prob=0.8)
    printed = capsys.readouterr().out
    for text in ("mean", "std", "median", "10.0%", "90.0%", "n_eff", "r_hat", "w[0]", "w[1]", "Number of divergences"):
        assert text in printed
    assert set(table) == {"w", "s"} and tuple(table["w"]["mean"].shape) == (2,)
    assert float(table["s"]["10.0%"]) < float(table["s"]["median"]) < float(table["s"]["90.0%"])
    diagnostics = mcmc.diagnostics()
    assert set(diagnostics["w"]) == {"n_eff", "r_hat"}
    assert set(diagnostics["divergences"]) == {"chain 0", "chain 1"}
    assert 0 < diagnostics["acceptance rate"]["chain 0"] <= 1


def test_seeded_runs_repeat():
    runs = []
    for _ in range(2):
        cp.set_rng_seed(11)
        mcmc = cp.infer.MCMC(cp.infer.NUTS(scale_model), num_samples=30, warmup_steps=20)
        mcmc.run(torch.tensor(9.5))
        runs.append(mcmc.get_samples()["weight"])
    torch.testing.assert_close(runs[0], runs[1])


def test_initialisation_is_uniform_in_unconstrained_space():
    cp.set_rng_seed(12)

    def model():
        cp.sample("s", cp.dist.LogNormal(5.0, 0.1))

    potential = ModelPotential(model)
    starts = torch.stack([potential.initial_point(cp.infer.mcmc.init_to_uniform) for _ in range(200)])
    assert float(starts.min()) > -2 and float(starts.max()) < 2 and float(starts.std()) > 0.9
    kernel = cp.infer.NUTS(model)
    mcmc = cp.infer.MCMC(kernel, num_samples=5, warmup_steps=0, initial_params={"s": torch.tensor(5.0)})
    mcmc.run()
    assert kernel.initial_params == {"s": torch.tensor(5.0)}


def test_potential_fn_kernel_with_initial_params():
    cp.set_rng_seed(13)

    def potential_fn(params):
        return 0.5 * ((params["z"] - 3.0) ** 2).sum()

    kernel = cp.infer.NUTS(potential_fn=potential_fn)
    with pytest.raises(ValueError, match="initial_params"):
        cp.infer.MCMC(kernel, num_samples=10)
    mcmc = cp.infer.MCMC(kernel, num_samples=400, warmup_steps=200, initial_params={"z": torch.zeros(2)})
    mcmc.run()
    z = mcmc.get_samples()["z"]
    assert tuple(z.shape) == (400, 2)
    n_eff = mcmc.diagnostics()["z"]["n_eff"]
    assert_posterior(z[:, 0], n_eff[0], 3.0, 1.0)


class PriorKernel(cp.infer.mcmc.MCMCKernel):
    """Pyro's test kernel: ignores the chain and draws from the model's prior."""

    def __init__(self, model):
        self.model, self.data, self._initial_params = model, None, None

    def setup(self, warmup_steps, data):
        self.data = data

    def diagnostics(self):
        return {"dummy_key": "dummy_value"}

    @property
    def initial_params(self):
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = params

    def sample(self, params):
        tr = cp.handlers.trace(self.model).get_trace(self.data)
        new = {name: tr.nodes[name]["value"] for name in tr.stochastic_nodes}
        assert params.keys() == new.keys()
        return new


def normal_normal_model(data):
    y = cp.sample("y", cp.dist.Normal(torch.tensor([0.0]), torch.ones(data.shape)))
    cp.sample("obs", cp.dist.Normal(y, torch.tensor([1.0])), obs=data)


@pytest.mark.parametrize("num_chains", [1, 2])
def test_a_kernel_of_ones_own_runs_under_pyros_protocol(num_chains):
    cp.set_rng_seed(17)
    data = torch.tensor([1.0])
    initial_params, potential_fn, transforms, _ = cp.infer.mcmc.initialize_model(
        normal_normal_model, model_args=(data,), num_chains=num_chains)
    assert float(potential_fn({"y": torch.tensor([0.0])})) == pytest.approx(2 * 0.9189385 + 0.5, abs=1e-5)
    mcmc = cp.infer.MCMC(PriorKernel(normal_normal_model), num_samples=400, warmup_steps=20,
                         num_chains=num_chains, initial_params=initial_params, transforms=transforms)
    mcmc.run(data)
    y = mcmc.get_samples()["y"]
    assert tuple(y.shape) == (400 * num_chains, 1)
    assert abs(float(y.mean())) < 0.2 and abs(float(y.std()) - 1) < 0.15
    assert mcmc.diagnostics()["dummy_key"] == {f"chain {i}": "dummy_value" for i in range(num_chains)}


@pytest.mark.parametrize("kernel", [cp.infer.HMC, cp.infer.NUTS])
def test_a_model_without_latent_sites_and_the_hook(kernel):
    initial_params, potential_fn, transforms, _ = cp.infer.mcmc.initialize_model(lambda: torch.tensor(1.0))
    calls = []

    def hook(kernel, params, stage, i):
        assert params == {}
        calls.append((stage, i))

    mcmc = cp.infer.MCMC(kernel(potential_fn=potential_fn, transforms=transforms), num_samples=4, warmup_steps=3,
                         initial_params=initial_params, hook_fn=hook)
    mcmc.run()
    assert mcmc.get_samples() == {}
    assert calls == [("Warmup", i) for i in range(3)] + [("Sample", i) for i in range(4)]


def test_random_walk_kernel_matches_the_beta_posterior():
    from causalppl.infer.mcmc import RandomWalkKernel

    cp.set_rng_seed(21)
    data = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 1.0])

    def model():
        p = cp.sample("p", cp.dist.Beta(2.0, 2.0))
        with cp.plate("data", 6):
            cp.sample("obs", cp.dist.Bernoulli(p), obs=data)

    kernel = RandomWalkKernel(model, init_step_size=0.5)
    mcmc = cp.infer.MCMC(kernel, num_samples=3000, warmup_steps=500)
    mcmc.run()
    p = mcmc.get_samples()["p"]
    # Beta(2 + 5, 2 + 1): mean 0.7, sd sqrt(0.7 * 0.3 / 11) = 0.138; the walk's ESS is a few hundred.
    assert abs(float(p.mean()) - 0.7) < 0.04 and abs(float(p.std()) - math.sqrt(0.21 / 11)) < 0.03
    assert 0.1 < mcmc.diagnostics()["acceptance rate"]["chain 0"] < 0.5  # near the 0.234 target
    with pytest.raises(ValueError, match="init_step_size must be a positive float"):
        RandomWalkKernel(model, init_step_size=-1.0)
    with pytest.raises(ValueError, match="target_accept_prob must be a float in the interval"):
        RandomWalkKernel(model, target_accept_prob=1.5)


def test_chains_run_in_worker_processes_when_the_cpus_allow(monkeypatch):
    from causalppl.infer.mcmc.api import _MultiSampler, _UnarySampler

    cp.set_rng_seed(22)
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: 3)
    mcmc = cp.infer.MCMC(cp.infer.NUTS(scale_model), num_samples=150, warmup_steps=100, num_chains=2)
    assert isinstance(mcmc.sampler, _MultiSampler)
    mcmc.run(torch.tensor(9.5))
    grouped = mcmc.get_samples(group_by_chain=True)["weight"]
    assert tuple(grouped.shape) == (2, 150)
    assert not torch.equal(grouped[0], grouped[1])  # each worker has its own seed
    assert abs(float(grouped.mean()) - 9.14) < 0.25
    assert set(mcmc.diagnostics()["divergences"]) == {"chain 0", "chain 1"}
    # More chains than CPUs (but one): drawn one after another here, with Pyro's warning.
    monkeypatch.setattr(torch.multiprocessing, "cpu_count", lambda: 2)
    with pytest.warns(UserWarning, match="num_chains=2 is more than available_cpu=1"):
        mcmc = cp.infer.MCMC(cp.infer.NUTS(scale_model), num_samples=10, warmup_steps=10, num_chains=2)
    assert isinstance(mcmc.sampler, _UnarySampler) and mcmc.num_chains == 2


def test_select_samples_and_the_predictive_function():
    from causalppl.infer.mcmc.util import predictive, select_samples

    grouped = {"w": torch.arange(12.0).reshape(2, 6)}
    assert torch.equal(select_samples(grouped)["w"], torch.arange(12.0))
    assert torch.equal(select_samples(grouped, group_by_chain=True)["w"], grouped["w"])
    cp.set_rng_seed(24)
    picked = select_samples(grouped, num_samples=50)["w"]
    assert picked.shape == (50,) and bool(((picked >= 0) & (picked < 12)).all())
    with pytest.raises(ValueError, match="no samples"):
        select_samples({}, num_samples=3)
    draws = {"weight": torch.full((40,), 9.0)}
    with pytest.warns(FutureWarning, match="deprecated"):
        out = predictive(scale_model, draws, None)
    assert out["measurement"].shape == (40,) and abs(float(out["measurement"].mean()) - 9.0) < 0.4


def test_predictive_from_posterior_samples():
    cp.set_rng_seed(14)
    mcmc = cp.infer.MCMC(cp.infer.NUTS(scale_model, jit_compile=True), num_samples=200, warmup_steps=100)
    mcmc.run(torch.tensor(9.5))
    predictive = cp.infer.Predictive(scale_model, posterior_samples=mcmc.get_samples())
    measurement = predictive(None)["measurement"]
    assert tuple(measurement.shape) == (200,)
    assert abs(float(measurement.mean()) - 9.14) < 0.3


def test_discrete_latent_sites_without_a_finite_support_are_refused_by_name():
    def model():
        c = cp.sample("count", cp.dist.Poisson(3.0))
        cp.sample("y", cp.dist.Normal(c, 1.0), obs=torch.tensor(0.5))

    with pytest.raises(ValueError, match="latent site 'count' is discrete"):
        cp.infer.MCMC(cp.infer.NUTS(model), num_samples=5).run()


def normal_density(x, loc):
    return math.exp(-0.5 * (x - loc) ** 2) / math.sqrt(2 * math.pi)


def test_enumerated_discrete_sites_are_summed_out_of_the_potential():
    data = torch.tensor([0.2, 2.9, 3.4])

    def model():
        mu = cp.sample("mu", cp.dist.Normal(0.0, 2.0))
        with cp.plate("rows", 3):
            z = cp.sample("z", cp.dist.Bernoulli(0.4))
            cp.sample("x", cp.dist.Normal(mu * z, 1.0), obs=data)

    potential = ModelPotential(model)
    assert list(potential.sites) == ["mu"] and potential.enumerated == ["z"] and potential.max_plate_nesting == 1
    mu = 2.5
    energy, grad, values = potential.evaluate(torch.tensor([mu]))
    exact = -(torch.distributions.Normal(0.0, 2.0).log_prob(torch.tensor(mu)).item()
              + sum(math.log(0.6 * normal_density(x, 0.0) + 0.4 * normal_density(x, mu)) for x in data.tolist()))
    assert float(energy) == pytest.approx(exact, abs=1e-5)
    assert float(values["mu"]) == mu
    # A discrete site outside every plate, with a continuous parent.
    x = 1.5

    def mixture():
        p = cp.sample("p", cp.dist.Beta(2.0, 2.0))
        z = cp.sample("z", cp.dist.Bernoulli(p))
        cp.sample("x", cp.dist.Normal(2.0 * z, 1.0), obs=torch.tensor(x))

    potential = ModelPotential(mixture)
    u = 0.3  # unconstrained: p = sigmoid(u), log|dp/du| = log p(1-p)
    p = 1 / (1 + math.exp(-u))
    energy, _, _ = potential.evaluate(torch.tensor([u]))
    beta = math.log(6 * p * (1 - p))  # Beta(2, 2) density
    exact = -(beta + math.log(p * (1 - p)) + math.log(p * normal_density(x, 2.0) + (1 - p) * normal_density(x, 0.0)))
    assert float(energy) == pytest.approx(exact, abs=1e-5)


def test_nuts_samples_the_continuous_sites_and_then_the_discrete_ones():
    cp.set_rng_seed(23)
    x = 1.5

    def mixture():
        p = cp.sample("p", cp.dist.Beta(2.0, 2.0))
        z = cp.sample("z", cp.dist.Bernoulli(p))
        cp.sample("x", cp.dist.Normal(2.0 * z, 1.0), obs=torch.tensor(x))

    mcmc = cp.infer.MCMC(cp.infer.NUTS(mixture), num_samples=600, warmup_steps=200)
    mcmc.run()
    samples = mcmc.get_samples()
    a1, a0 = normal_density(x, 2.0), normal_density(x, 0.0)
    # E[p | x] and P(z = 1 | x) under Beta(2, 2): E p = 0.5, E p^2 = 0.3, E p(1 - p) = 0.2.
    mean_p = (0.3 * a1 + 0.2 * a0) / (0.5 * a1 + 0.5 * a0)
    prob_z = a1 / (a1 + a0)
    assert abs(float(samples["p"].mean()) - mean_p) < 0.05  # sd 0.2, a few hundred effective draws
    assert abs(float(samples["z"].mean()) - prob_z) < 0.08  # Bernoulli(0.6): sd 0.02 per 600 draws, plus p's error
    assert samples["z"].shape == (600,) and set(samples["z"].unique().tolist()) <= {0.0, 1.0}
    assert sorted(mcmc.get_samples(include_discrete=False)) == ["p"]


def test_subsampled_plates_are_refused():
    def model():
        with cp.plate("rows", 100, subsample_size=10):
            cp.sample("z", cp.dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="plate 'rows'.*subsamples"):
        cp.infer.MCMC(cp.infer.HMC(model), num_samples=5).run()


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one of model or potential_fn"):
        cp.infer.NUTS()
    with pytest.raises(ValueError, match="num_samples"):
        cp.infer.MCMC(cp.infer.NUTS(scale_model), num_samples=0)
    with pytest.raises(ValueError, match="target_accept_prob"):
        cp.infer.NUTS(scale_model, target_accept_prob=1.5)
    mcmc = cp.infer.MCMC(cp.infer.NUTS(scale_model), num_samples=5, num_chains=2,
                         initial_params={"weight": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="leading dim must be the chains"):
        mcmc.run(torch.tensor(9.5))
    with pytest.raises(RuntimeError, match="run"):
        cp.infer.MCMC(cp.infer.NUTS(scale_model), num_samples=5).get_samples()


# ---------------------------------------------------------------------------
# Diagnostics on chains with known answers
# ---------------------------------------------------------------------------


def ar1(phi, chains, draws, seed):
    """AR(1) chains started from their stationary law: autocorrelation phi^k, variance 1 / (1 - phi^2)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(chains, draws, generator=generator, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[:, 0] = noise[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_effective_sample_size_of_ar1_chains(phi):
    chains, draws = 4, 5000
    x = ar1(phi, chains, draws, seed=int(10 * phi))
    exact = chains * draws * (1 - phi) / (1 + phi)  # N / tau, tau = (1 + phi) / (1 - phi)
    assert float(stats.effective_sample_size(x)) == pytest.approx(exact, rel=0.12)
    assert float(stats.split_gelman_rubin(x)) < 1.01


def test_autocorrelation_matches_a_direct_sum_and_ar1():
    x = ar1(0.7, 1, 20000, seed=3)[0]
    acorr = stats.autocorrelation(x)
    assert acorr[0] == 1
    for k in (1, 2, 5):
        assert float(acorr[k]) == pytest.approx(0.7**k, abs=0.03)
    short = torch.tensor([0.3, -1.2, 2.0, 0.7, -0.4, 1.1], dtype=torch.float64)
    centred = short - short.mean()
    # Each lag's autocovariance is the mean of its n - k products (Pyro's and Stan's estimator).
    direct = torch.stack([(centred[: len(short) - k] * centred[k:]).mean() for k in range(len(short))])
    torch.testing.assert_close(stats.autocorrelation(short), direct / direct[0])
    # Along another dim, and a constant chain.
    torch.testing.assert_close(stats.autocorrelation(short.repeat(3, 1).T, dim=0)[:, 1], direct / direct[0])
    assert bool((stats.autocorrelation(torch.ones(5)) == 1).all())


def test_gelman_rubin_on_chains_apart_and_per_entry_shapes():
    x = ar1(0.3, 4, 1000, seed=5)
    shifted = x + torch.tensor([0.0, 0.0, 3.0, 3.0], dtype=torch.float64)[:, None]
    assert float(stats.split_gelman_rubin(shifted)) > 1.5
    assert float(stats.gelman_rubin(x)) < 1.01
    # A chain that drifts halfway through shows up in the split version only.
    drifting = x[:1].clone()
    drifting[0, 500:] += 3.0
    assert float(stats.split_gelman_rubin(drifting)) > 1.5
    both = torch.stack([x, shifted], dim=-1)  # (chains, draws, 2)
    assert tuple(stats.split_gelman_rubin(both).shape) == (2,)
    assert tuple(stats.effective_sample_size(both).shape) == (2,)
    # Pyro's argument order: chain_dim, sample_dim.
    torch.testing.assert_close(stats.effective_sample_size(x.T, chain_dim=1, sample_dim=0),
                               stats.effective_sample_size(x))


def test_single_chain_ess_uses_the_chain_autocorrelation():
    # One chain: rho_k is the chain's autocorrelation. 0..9 has rho_1 = 7/9 (mean of 9 products / variance).
    x = torch.arange(10.0)
    torch.testing.assert_close(stats.autocorrelation(x)[1], torch.tensor(6.41666 / 8.25), atol=1e-4, rtol=0)
    torch.testing.assert_close(stats.autocovariance(x)[0], torch.tensor(8.25))
    # Ten steadily rising chains of 100: a value ArviZ also gives.
    assert float(stats.effective_sample_size(torch.arange(1000.0).reshape(100, 10))) == pytest.approx(52.64, abs=0.01)


def test_quantile_keeps_its_dim_and_waic_by_hand():
    from causalppl.ops.stats import resample, waic

    x = torch.rand(3, 10)
    q = stats.quantile(x, [0.1, 0.6], dim=-1)
    assert q.shape == (3, 2)
    torch.testing.assert_close(q, stats.quantile(x.T, [0.1, 0.6], dim=0).T)
    assert stats.quantile(x, 0.5, dim=1).shape == (3,)
    cp.set_rng_seed(0)
    picked = resample(torch.arange(20.0), 20)
    torch.testing.assert_close(picked.sort().values, torch.arange(20.0))  # no replacement: a permutation
    # Two draws of the log likelihood of two points: lpd = log mean(exp), p_waic = unbiased variance.
    log_lik = torch.tensor([[-1.0, -2.0], [-3.0, -2.0]])
    w, p = waic(log_lik, pointwise=True)
    lpd = torch.log((torch.exp(torch.tensor([-1.0, -2.0])) + torch.exp(torch.tensor([-3.0, -2.0]))) / 2)
    torch.testing.assert_close(p, torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(w, -2 * (lpd - p))
    # Frequency weights: draw 0 counted twice is the same as weight 2.
    w2, p2 = waic(torch.stack([log_lik[0], log_lik[0], log_lik[1]]))
    w3, p3 = waic(log_lik, torch.tensor([2.0, 1.0]).log())
    torch.testing.assert_close(-0.5 * w2 + p2, -0.5 * w3 + p3)


def test_intervals():
    x = torch.arange(101.0)
    torch.testing.assert_close(stats.quantile(x, [0.05, 0.95]), torch.tensor([5.0, 95.0]))
    skewed = torch.cat([torch.zeros(80), torch.linspace(1, 100, 20)])
    low, high = stats.hpdi(skewed, 0.8)
    assert float(low) == 0 and float(high) < 10  # the narrowest 80%: the pile of zeros


# ---------------------------------------------------------------------------
# scm.fit(method="nuts")
# ---------------------------------------------------------------------------


def regression_data(n=40, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=generator)
    y = 0.5 + 1.5 * x + 0.8 * torch.randn(n, generator=generator)
    return {"x": x, "y": y}


def bayesian_regression(prior_scale=2.0, noise=0.8):
    scm = cp.SCM().add("x", "Normal(0, 1)")
    scm.add("y", LinearGaussian("y", ["x"], bayesian=True, prior_scale=prior_scale))
    scm.params["y.scale"] = torch.tensor(noise)  # known noise: the weights' posterior is Gaussian
    return scm


def conjugate_posterior(data, prior_scale, noise):
    """Mean and covariance of (bias, weight) under N(0, prior_scale^2) priors and known noise."""
    design = torch.stack([torch.ones_like(data["x"]), data["x"]], dim=1).double()
    precision = torch.eye(2, dtype=torch.float64) / prior_scale**2 + design.T @ design / noise**2
    cov = torch.linalg.inv(precision)
    return cov @ design.T @ data["y"].double() / noise**2, cov


def test_fit_nuts_recovers_the_bayesian_regression_posterior_and_ate_answers_from_it():
    cp.set_rng_seed(15)
    data = regression_data()
    scm = bayesian_regression()
    result = scm.fit(data, method="nuts", num_samples=300, warmup_steps=200, num_chains=2, learn_params=False,
                     progress=False)
    assert result.method == "nuts" and result.converged
    mean, cov = conjugate_posterior(data, 2.0, 0.8)
    posterior = scm._state.posterior  # where an SVI fit keeps its draws too
    assert set(posterior) == {"y.weight", "y.bias"}
    assert tuple(posterior["y.weight"].shape) == (600, 1) and tuple(posterior["y.bias"].shape) == (600,)
    n_eff = result.mcmc.diagnostics()
    assert_posterior(posterior["y.bias"], n_eff["y.bias"]["n_eff"], float(mean[0]), float(cov[0, 0].sqrt()))
    assert_posterior(posterior["y.weight"][:, 0], n_eff["y.weight"]["n_eff"], float(mean[1]),
                     float(cov[1, 1].sqrt()))
    # The ATE of x on y is the weight: its estimate and spread are the posterior's.
    effect = cp.causal.ate(scm, "x", "y")
    assert effect.ate == pytest.approx(float(mean[1]), abs=0.06)
    assert 0.6 * float(cov[1, 1].sqrt()) < effect.sd < 1.6 * float(cov[1, 1].sqrt())
    low, high = effect.interval(0.9)
    assert low < float(mean[1]) < high
    assert "posterior of the weights" in effect.covers
    # The fit reads like any other: per-row draws, medians, the coefficient table, notes.
    draws = result.sample(50)
    assert tuple(draws["y"].shape) == (50, 40)
    assert set(result.median()) == {"y.weight", "y.bias"}
    rows = {(r.parameter, r.parent): r for r in report_rows(result)}
    assert rows[("weight", "x")].estimate == pytest.approx(float(mean[1]), abs=0.06)
    assert "NUTS: 2 chain(s) x 300 draws" in str(result)


def report_rows(result):
    from causalppl.causal.report import summary_rows

    return summary_rows(result)


def test_fit_nuts_learns_point_params_first_and_keeps_the_draws_asked_for():
    cp.set_rng_seed(16)
    data = regression_data(n=60, seed=2)
    scm = cp.SCM.from_graph([("x", "y")], data, bayesian=True)
    result = scm.fit(data, method="nuts", num_samples=150, warmup_steps=100, steps=300, lr=0.05, tol=0.05,
                     posterior_draws_kept=100, progress=False)
    assert result.method == "svi+nuts"
    assert any("fitted by SVI first" in note for note in result.notes)
    assert {name: tuple(v.shape) for name, v in scm._state.posterior.items()} == {
        "x.bias": (100,), "y.weight": (100, 1), "y.bias": (100,)}
    effect = cp.causal.ate(scm, "x", "y")
    assert effect.ate == pytest.approx(1.5, abs=0.35)
    assert "method svi+nuts, 1 chain(s) x 150 NUTS draws after 100 warmup steps" in str(result)


def test_fit_nuts_refuses_what_it_cannot_do():
    data = regression_data()
    scm = bayesian_regression()
    with pytest.raises(ValueError, match="subsample_size"):
        scm.fit(data, method="nuts", subsample_size=10, progress=False)
    with pytest.raises(ValueError, match="no guide"):
        scm.fit(data, method="nuts", guide="mvn", progress=False)
    with pytest.raises(ValueError, match="num_samples"):
        scm.fit(data, method="nuts", num_samples=0, progress=False)
    latent = cp.SCM().add("u", "Poisson(2.0)").add("y", "Normal(u, 1)")
    with pytest.raises(ValueError, match="'u' is discrete"):  # no finite support to sum over
        latent.fit({"y": torch.randn(5)}, method="nuts", progress=False)
