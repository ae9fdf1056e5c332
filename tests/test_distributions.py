"""Tests for causalppl.distributions: torch's names, Delta and Unit."""

import math

import pytest
import torch
import torch.distributions

import causalppl as cp
from causalppl.distributions import Delta, Unit


def test_torch_distribution_names_are_re_exported_as_subclasses():
    for name in torch.distributions.__all__:
        ours, theirs = getattr(cp.dist, name), getattr(torch.distributions, name)
        if isinstance(theirs, type) and issubclass(theirs, torch.distributions.Distribution):
            assert issubclass(ours, theirs) and ours.__name__ == name, name
        else:
            assert ours is theirs, name
    assert "Delta" in cp.dist.__all__ and "Unit" in cp.dist.__all__
    assert isinstance(cp.dist.Normal(0.0, 1.0), torch.distributions.Normal)
    assert cp.dist.Distribution is torch.distributions.Distribution
    # torch itself is not patched.
    assert not hasattr(torch.distributions.Normal(0.0, 1.0), "to_event")


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


def test_to_event_moves_batch_dims_into_the_event():
    d = cp.dist.Normal(torch.zeros(2, 3, 4), 1.0)
    d1 = d.to_event(1)
    assert isinstance(d1, torch.distributions.Independent)
    assert (d1.batch_shape, d1.event_shape) == ((2, 3), (4,))
    d2 = d1.to_event(1)  # merged, not nested
    assert (d2.batch_shape, d2.event_shape) == ((2,), (3, 4)) and d2.base_dist is d
    assert d.to_event().event_shape == (2, 3, 4)
    assert d2.to_event(-2) is d and d.to_event(0) is d
    assert d1.log_prob(torch.zeros(2, 3, 4)).shape == (2, 3)
    assert d2.log_prob(torch.zeros(4)).shape == (2,)
    with pytest.raises(ValueError, match="no event dims"):
        d.to_event(-1)
    with pytest.raises(ValueError, match="only 3 batch dims"):
        d.to_event(4)


def test_expand_by_adds_batch_dims_on_the_left():
    d = cp.dist.Normal(torch.zeros(3), 1.0).expand_by([5, 2])
    assert isinstance(d, cp.dist.Normal) and d.batch_shape == (5, 2, 3)
    assert d().shape == (5, 2, 3) and d.shape((4,)) == (4, 5, 2, 3)
    assert cp.dist.Normal(0.0, 1.0).to_event(0).event_dim == 0


def test_mask_zeroes_the_log_density_of_masked_entries():
    mask = torch.tensor([True, False, True])
    d = cp.dist.Normal(0.0, 1.0).mask(mask)
    assert isinstance(d, cp.dist.MaskedDistribution) and d.batch_shape == (3,)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(torch.zeros(3))
    assert torch.allclose(d.log_prob(torch.zeros(3)), torch.where(mask, expected, torch.tensor(0.0)))
    assert d.sample().shape == (3,) and d.has_rsample
    assert cp.dist.Normal(0.0, 1.0).mask(False).log_prob(torch.zeros(2)).tolist() == [0.0, 0.0]
    assert d.expand((2, 3)).log_prob(torch.zeros(3))[:, 1].tolist() == [0.0, 0.0]
    with pytest.raises(TypeError, match="bool"):
        cp.dist.Normal(0.0, 1.0).mask(torch.tensor([1.0]))


def test_masked_sites_drop_out_of_the_joint_density():
    def model():
        cp.sample("x", cp.dist.Normal(0.0, 1.0).expand([3]).mask(torch.tensor([True, False, False])).to_event(1),
                  obs=torch.ones(3))

    tr = cp.trace(model).get_trace()
    assert tr.log_prob_sum().item() == pytest.approx(-0.5 - 0.5 * math.log(2 * math.pi))


def test_has_rsample_forbids_reparameterised_draws_and_survives_plates():
    loc = torch.tensor(0.0, requires_grad=True)
    d = cp.dist.Normal(loc, 1.0).has_rsample_(False)
    assert not d.has_rsample and not d().requires_grad
    with cp.plate("rows", 4):
        x = cp.sample("x", cp.dist.LogNormal(loc, 1.0).has_rsample_(False))
    assert x.shape == (4,) and not x.requires_grad
    assert cp.dist.Normal(0.0, 1.0).to_event(0).has_rsample_(True).has_rsample
    with pytest.raises(ValueError, match="True or False"):
        d.has_rsample_(1)


def test_expanded_distribution_draws_independently_per_entry():
    class Shifted(cp.dist.TorchDistribution):  # a user distribution without its own expand
        arg_constraints = {}

        def __init__(self, loc):
            self.loc = loc
            super().__init__(loc.shape, validate_args=False)

        def sample(self, sample_shape=torch.Size()):
            return self.loc + torch.randn(torch.Size(sample_shape) + self.loc.shape)

        def log_prob(self, value):
            return torch.distributions.Normal(self.loc, 1.0).log_prob(value)

    torch.manual_seed(0)
    d = Shifted(torch.tensor([[0.0], [10.0]])).expand((3, 2, 4))
    assert isinstance(d, cp.dist.ExpandedDistribution) and d.batch_shape == (3, 2, 4)
    x = d.sample((1000,))
    assert x.shape == (1000, 3, 2, 4)
    assert torch.allclose(x.mean(0)[:, 0], torch.tensor(0.0), atol=0.2)  # 1000 draws: se ~0.03
    assert torch.allclose(x.mean(0)[:, 1], torch.tensor(10.0), atol=0.2)
    assert x.std(0).min() > 0.9 and x[:, 0, 0, 0].sub(x[:, 1, 0, 1]).abs().min() > 0  # no shared draws
    assert d.log_prob(torch.zeros(2, 1)).shape == (3, 2, 4)
    with cp.plate("rows", 5):
        assert cp.sample("y", Shifted(torch.tensor(0.0))).shape == (5,)
