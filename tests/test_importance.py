"""Importance sampling: weights, log evidence, ESS, resampling, vectorised and looped runs."""

import math
import time

import pytest
import torch

import causalppl as cp
from causalppl.infer import Importance

PRIOR_LOC, PRIOR_SD, NOISE, OBS = 8.5, 1.0, 0.75, 9.5
POST_LOC = (OBS + NOISE**2 * PRIOR_LOC) / (1 + NOISE**2)
POST_SD = math.sqrt(NOISE**2 / (1 + NOISE**2))
# Marginal likelihood: measurement ~ Normal(8.5, sqrt(1 + 0.75^2)) at 9.5.
LOG_EVIDENCE = cp.dist.Normal(PRIOR_LOC, math.sqrt(PRIOR_SD**2 + NOISE**2)).log_prob(torch.tensor(OBS)).item()


pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def scale_model():
    weight = cp.sample("weight", cp.dist.Normal(PRIOR_LOC, PRIOR_SD))
    cp.sample("measurement", cp.dist.Normal(weight, NOISE), obs=torch.tensor(OBS))


def exact_guide():
    cp.sample("weight", cp.dist.Normal(POST_LOC, POST_SD))


@pytest.mark.parametrize("vectorize", [None, False])
def test_log_evidence_and_posterior_mean_from_the_prior(vectorize):
    n = 20000 if vectorize is None else 3000
    imp = Importance(scale_model, num_samples=n, vectorize=vectorize).run()
    ess = imp.effective_sample_size().item()
    assert 0.3 * n < ess <= n
    # Self-normalised estimates: standard errors ~ spread / sqrt(ESS).
    assert abs(imp.log_evidence().item() - LOG_EVIDENCE) < 4 / math.sqrt(ess)
    assert abs(imp.weighted_mean("weight").item() - POST_LOC) < 4 * POST_SD / math.sqrt(ess)


def test_exact_posterior_guide_gives_constant_weights():
    imp = Importance(scale_model, exact_guide, num_samples=500).run()
    # q = posterior: every log weight is log p(x) exactly.
    assert torch.allclose(imp.log_weights, torch.full((500,), LOG_EVIDENCE), atol=1e-4)
    assert imp.effective_sample_size().item() == pytest.approx(500.0, rel=1e-4)
    assert imp.log_evidence().item() == pytest.approx(LOG_EVIDENCE, abs=1e-4)


def test_resampled_posterior_samples_have_the_posterior_moments():
    imp = Importance(scale_model, num_samples=20000).run()
    samples = imp.posterior_samples(5000)["weight"]
    assert samples.shape == (5000,)
    ess = imp.effective_sample_size().item()
    tol = 4 * POST_SD * math.sqrt(1 / ess + 1 / 5000)
    assert abs(samples.mean().item() - POST_LOC) < tol
    assert abs(samples.std().item() - POST_SD) < 0.05
    assert imp.get_samples("weight").shape == (20000,)


def test_thousand_samples_are_fast():
    Importance(scale_model, num_samples=1000).run()  # warm-up
    start = time.perf_counter()
    Importance(scale_model, num_samples=1000).run()
    assert time.perf_counter() - start < 1.0


def test_models_that_are_not_batch_safe_fall_back_to_a_loop():
    def model():
        weight = cp.sample("weight", cp.dist.Normal(PRIOR_LOC, PRIOR_SD))
        # .item() fails on a batch of samples: the vectorised run raises, the loop works.
        cp.sample("measurement", cp.dist.Normal(weight.item(), NOISE), obs=torch.tensor(OBS))

    imp = Importance(model, num_samples=2000).run()
    assert imp.log_weights.shape == (2000,)
    ess = imp.effective_sample_size().item()
    assert abs(imp.log_evidence().item() - LOG_EVIDENCE) < 4 / math.sqrt(ess)
    with pytest.raises(RuntimeError):
        Importance(model, num_samples=10, vectorize=True).run()


def test_plated_model_samples_keep_their_shape():
    data = torch.tensor([0.0, 1.0, 2.0])

    def model():
        mu = cp.sample("mu", cp.dist.Normal(0.0, 1.0))
        with cp.plate("rows", 3):
            z = cp.sample("z", cp.dist.Normal(mu, 1.0))
            cp.deterministic("double", 2 * z)
            cp.sample("x", cp.dist.Normal(z, 0.5), obs=data)

    vectorized = Importance(model, num_samples=50).run()
    looped = Importance(model, num_samples=50, vectorize=False).run()
    for imp in (vectorized, looped):
        assert imp.get_samples("mu").shape == (50,)
        assert imp.get_samples("z").shape == (50, 3)
        assert torch.allclose(imp.get_samples("double"), 2 * imp.get_samples("z"))
        assert imp.weighted_mean("z").shape == (3,)


def test_errors_name_what_is_missing():
    imp = Importance(scale_model, num_samples=10)
    with pytest.raises(RuntimeError, match="run"):
        imp.log_evidence()
    imp.run()
    with pytest.raises(KeyError, match="'nope'.*weight"):
        imp.get_samples("nope")
    with pytest.raises(ValueError, match="num_samples"):
        Importance(scale_model, num_samples=0)


def test_unplated_data_vector_as_long_as_num_samples_is_not_mispaired():
    # A data vector outside any plate has a batch dim the sample plate would
    # collide with (sample i scored against row i only) when the lengths agree.
    data = torch.tensor([1.0, 2.0, 3.0])

    def model():
        w = cp.sample("w", cp.dist.Normal(0.0, 1.0))
        cp.sample("y", cp.dist.Normal(w, 1.0), obs=data)

    imp = Importance(model, num_samples=3).run()
    w = imp.get_samples("w")
    expected = torch.distributions.Normal(w[:, None], 1.0).log_prob(data).sum(-1)
    assert torch.allclose(imp.log_weights, expected)


def test_empirical_marginal_matches_the_conjugate_posterior_and_takes_return_and_site_lists():
    cp.set_rng_seed(1)

    def scale(guess):
        weight = cp.sample("weight", cp.dist.Normal(guess, 1.0))
        cp.sample("measurement", cp.dist.Normal(weight, 0.75), obs=torch.tensor(9.5))
        return weight * 2

    posterior = cp.infer.Importance(scale, num_samples=20000).run(8.5)
    marginal = cp.infer.EmpiricalMarginal(posterior, sites="weight")
    precision = 1.0 + 1.0 / 0.75 ** 2
    mean, var = (8.5 + 9.5 / 0.75 ** 2) / precision, 1.0 / precision
    # Monte Carlo error with an effective sample size of at least a few thousand: well under 0.03
    assert marginal.mean.item() == pytest.approx(mean, abs=0.03)
    assert marginal.variance.item() == pytest.approx(var, abs=0.03)
    returned = cp.infer.EmpiricalMarginal(posterior)  # the model's return value
    assert returned.mean.item() == pytest.approx(2 * marginal.mean.item(), rel=1e-5)
    both = cp.infer.EmpiricalMarginal(posterior, sites=["weight", "weight"])
    assert both.mean.shape == (2,)
    with pytest.raises(RuntimeError, match="call .run"):
        cp.infer.EmpiricalMarginal(cp.infer.Importance(scale, num_samples=10))
    with pytest.raises(TypeError, match="run posterior"):
        cp.infer.EmpiricalMarginal({"weight": torch.zeros(3)})
