"""WAIC and SVI.run's trace posterior against hand-computed values."""

import math

import pytest
import torch

import causalppl as cp
from causalppl.infer.abstract_infer import GuidePosterior
from causalppl.ops.stats import waic


def test_waic_by_hand():
    ll = torch.tensor([[-1.0, -2.0], [-3.0, -2.0]])  # 2 draws, 2 observations
    value, p = waic(ll, pointwise=True)
    lpd = torch.tensor([math.log((math.exp(-1) + math.exp(-3)) / 2), -2.0])
    p_expected = torch.tensor([2.0, 0.0])  # unbiased variance of (-1, -3) and of (-2, -2)
    assert torch.allclose(p, p_expected) and torch.allclose(value, -2 * (lpd - p_expected))
    total, p_total = waic(ll)
    assert total.item() == pytest.approx(value.sum().item()) and p_total.item() == pytest.approx(2.0)


def test_svi_run_draws_guide_traces_and_their_waic():
    data = torch.tensor([0.5, -0.5, 1.0])

    def model():
        mu = cp.sample("mu", cp.dist.Normal(0.0, 10.0))
        with cp.plate("data", 3):
            cp.sample("y", cp.dist.Normal(mu, 1.0), obs=data)

    def point_guide():
        cp.sample("mu", cp.dist.Delta(torch.tensor(1 / 3)))

    svi = cp.infer.SVI(model, point_guide, cp.optim.Adam({"lr": 0.1}), cp.infer.Trace_ELBO(), num_samples=4)
    posterior = svi.run()
    assert isinstance(posterior, GuidePosterior) and len(posterior.exec_traces) == 4
    ic = posterior.information_criterion()
    # A point posterior: no variance, so p_waic = 0 and waic = -2 * sum log N(y; 1/3, 1).
    expected = -2 * torch.distributions.Normal(1 / 3, 1.0).log_prob(data).sum()
    assert ic["p_waic"].item() == pytest.approx(0.0, abs=1e-6)
    assert ic["waic"].item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="num_samples"):
        cp.infer.SVI(model, point_guide, cp.optim.Adam({"lr": 0.1}), cp.infer.Trace_ELBO()).run()
