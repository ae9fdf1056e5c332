"""Tests for causalppl.distributions: torch's names, Delta and Unit."""

import math

import pytest
import torch
import torch.distributions

import causalppl as cp
from causalppl.distributions import Delta, Unit


def test_torch_distribution_names_are_re_exported():
    for name in torch.distributions.__all__:
        assert getattr(cp.dist, name) is getattr(torch.distributions, name), name
    assert "Delta" in cp.dist.__all__ and "Unit" in cp.dist.__all__
    assert cp.dist.Normal is torch.distributions.Normal


def test_delta_log_prob_is_zero_at_the_point_and_minus_inf_elsewhere():
    d = Delta(torch.tensor([1.0, 2.0]))
    assert d.batch_shape == (2,) and d.event_shape == ()
    log_prob = d.log_prob(torch.tensor([1.0, 3.0]))
    assert log_prob[0].item() == 0.0 and log_prob[1].item() == -math.inf


def test_delta_log_density_is_added():
    d = Delta(torch.tensor(1.5), log_density=-2.0)
    assert d.log_prob(torch.tensor(1.5)).item() == -2.0


def test_delta_event_dim_sums_over_the_event():
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    d = Delta(v, event_dim=1)
    assert d.batch_shape == (2,) and d.event_shape == (2,)
    log_prob = d.log_prob(torch.tensor([[1.0, 2.0], [3.0, 5.0]]))
    assert log_prob.shape == (2,)
    assert log_prob.tolist() == [0.0, -math.inf]
    with pytest.raises(ValueError, match="event_dim"):
        Delta(torch.tensor(1.0), event_dim=1)


def test_delta_expand():
    d = Delta(torch.tensor([1.0, 2.0]), event_dim=1).expand((3,))
    assert d.batch_shape == (3,) and d.event_shape == (2,)
    assert d.sample().shape == (3, 2)
    assert d.log_prob(torch.tensor([1.0, 2.0])).tolist() == [0.0, 0.0, 0.0]
    # The plate broadcasting path uses expand too.
    with cp.plate("rows", 4):
        x = cp.sample("x", Delta(torch.tensor(7.0)))
    assert x.tolist() == [7.0] * 4


def test_delta_mean_variance_and_sample_shape():
    d = Delta(torch.tensor([1.0, -1.0]))
    assert torch.equal(d.mean, d.v) and torch.equal(d.variance, torch.zeros(2))
    assert d.sample((5,)).shape == (5, 2)


def test_delta_rsample_passes_gradients():
    v = torch.tensor(2.0, requires_grad=True)
    d = Delta(v)
    assert d.has_rsample
    (3.0 * d.rsample()).backward()
    assert v.grad.item() == 3.0


def test_unit_carries_the_log_factor():
    u = Unit(torch.tensor([-1.0, -2.0]))
    assert u.batch_shape == (2,) and u.event_shape == (0,)
    value = u.sample()
    assert value.shape == (2, 0)
    assert u.log_prob(value).tolist() == [-1.0, -2.0]
    assert u.expand((3, 2)).log_prob(u.expand((3, 2)).sample()).shape == (3, 2)


def test_factor_inside_a_plate():
    def model():
        with cp.plate("rows", 3):
            cp.factor("f", torch.tensor(-0.5))

    tr = cp.trace(model).get_trace()
    assert tr.log_prob_sum().item() == pytest.approx(-1.5)
