"""Autoguides as torch modules: parameters, state dicts, serving with TorchScript; flows; discrete parts."""

import io
import warnings

import pytest
import torch

import causalppl as cp
from causalppl.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoDiscreteParallel,
    AutoGuideList,
    AutoIAFNormal,
    AutoNormal,
    init_to_mean,
)


@pytest.fixture(autouse=True)
def fresh_store():
    cp.clear_param_store()
    cp.set_rng_seed(0)


def positive_model():
    cp.sample("x", cp.dist.Normal(1.0, 1.0))
    with cp.plate("rows", 3):
        cp.sample("s", cp.dist.LogNormal(0.0, 1.0))


def test_guide_params_are_module_parameters_and_store_entries():
    guide = AutoNormal(positive_model)
    guide()
    names = {name for name, _ in guide.named_parameters()}
    assert names == {"locs.x_unconstrained", "locs.s_unconstrained", "scales.x_unconstrained",
                     "scales.s_unconstrained"}
    store = cp.get_param_store()
    assert guide.locs.s_unconstrained is store.leaf("AutoNormal.locs.s")  # one tensor, two views
    assert torch.allclose(guide.scales.s, torch.full((3,), 0.1))  # constrained value as an attribute


def test_state_dict_round_trips_into_a_fresh_guide_and_store():
    guide = AutoDelta(positive_model, init_loc_fn=init_to_mean)
    guide()
    with torch.no_grad():
        guide.s_unconstrained.add_(1.0)
    state = guide.state_dict()
    cp.clear_param_store()
    other = AutoDelta(positive_model, init_loc_fn=init_to_mean)
    other()
    other.load_state_dict(state)
    # exp(mean of LogNormal(0, 1)) = e^(1/2); shifted by one in log space.
    assert torch.allclose(other.median()["s"], torch.full((3,), 1.5).exp())


def test_a_traced_guide_reproduces_its_draws_and_keeps_its_parameters():
    guide = AutoDiagonalNormal(positive_model)
    guide()
    cp.set_rng_seed(1)
    expected = guide.call()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(guide, {"call": ()}, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    cp.set_rng_seed(1)
    actual = loaded.call()
    assert len(actual) == len(expected) == 2
    for a, e in zip(actual, expected, strict=True):
        assert torch.allclose(a, e)
    assert {n for n, _ in loaded.named_parameters()} == {n for n, _ in guide.named_parameters()}


def test_auto_normal_samples_unconstrained_aux_sites_with_the_jacobian_on_the_site():
    guide = AutoNormal(lambda: cp.sample("s", cp.dist.LogNormal(0.0, 1.0)))
    tr = cp.handlers.trace(guide).get_trace()
    aux, site = tr.nodes["s_unconstrained"], tr.nodes["s"]
    assert aux["infer"]["is_auxiliary"]
    u = aux["value"]
    assert torch.allclose(site["value"], u.exp())
    # log q(s) = log N(u; 0, 0.1) - u: the point mass carries -log|ds/du| = -u.
    assert torch.allclose(site["fn"].log_prob(site["value"]), -u)
    total = aux["fn"].log_prob(u) + site["fn"].log_prob(site["value"])
    expected = torch.distributions.LogNormal(0.0, 0.1).log_prob(site["value"])
    assert torch.allclose(total, expected, atol=1e-5)


def test_guide_list_parts_are_named_submodules_that_answer_to_the_list():
    guide = AutoGuideList(positive_model)
    guide.append(AutoDelta(cp.handlers.block(positive_model, expose=["x"])))
    inner = AutoGuideList(cp.handlers.block(positive_model, expose=["s"]))
    inner.flow = AutoNormal(cp.handlers.block(positive_model, expose=["s"]))
    guide.append(inner)
    assert all(m.master() is guide for _, m in guide.named_modules() if m is not guide)
    values = guide()
    assert sorted(values) == ["s", "x"]
    assert sorted(cp.get_param_store().keys()) == ["AutoGuideList.0.x", "AutoGuideList.1.flow.locs.s",
                                                   "AutoGuideList.1.flow.scales.s"]
    with pytest.raises(RuntimeError, match="already added"):
        AutoGuideList(positive_model).append(inner)


def test_iaf_guide_learns_a_correlated_gaussian_posterior():
    # z ~ N(0, I_2), y ~ N(z1 + z2, 0.5^2) observed at 1: posterior mean of z1 + z2 is 2 / (2 + 0.25) = 0.889.
    def model():
        z = cp.sample("z", cp.dist.Normal(torch.zeros(2), 1.0).to_event(1))
        cp.sample("y", cp.dist.Normal(z.sum(-1), 0.5), obs=torch.tensor(1.0))

    guide = AutoIAFNormal(model, hidden_dim=[10])
    svi = cp.infer.SVI(model, guide, cp.optim.ClippedAdam({"lr": 0.05}), cp.infer.Trace_ELBO(num_particles=4,
                                                                                     vectorize_particles=True))
    for _ in range(100):
        svi.step()
    with torch.no_grad():
        draws = guide.get_posterior().sample((1000,)).sum(-1)  # z is unconstrained: the joint is z
    # 1000 draws, posterior sd of the sum 0.47: Monte Carlo error 0.015; the fit is allowed 0.1.
    assert draws.mean().item() == pytest.approx(8 / 9, abs=0.1)
    assert any(name.startswith("AutoIAFNormal.transforms$$$") for name in cp.get_param_store().keys())


def test_discrete_parallel_guide_enumerates_and_its_loss_is_exact():
    # One Bernoulli latent, observed Normal: the guide-enumerated ELBO with q = posterior is log p(x).
    def model():
        c = cp.sample("c", cp.dist.Bernoulli(0.3))
        cp.sample("x", cp.dist.Normal(2.0 * c, 1.0), obs=torch.tensor(1.5))

    guide = AutoDiscreteParallel(model)
    tr = cp.handlers.trace(guide).get_trace()
    assert tr.nodes["c"]["infer"]["enumerate"] == "parallel"
    normal = torch.distributions.Normal(torch.tensor([0.0, 2.0]), 1.0)
    joint = torch.tensor([0.7, 0.3]).log() + normal.log_prob(torch.tensor(1.5))
    posterior = (joint - joint.logsumexp(0)).exp()
    cp.get_param_store()["AutoDiscreteParallel.c_probs"] = posterior[1]
    loss = cp.infer.TraceEnum_ELBO(max_plate_nesting=0).loss(model, guide)
    assert loss == pytest.approx(-joint.logsumexp(0).item(), abs=1e-5)


def test_unit_jacobian_reparam_keeps_the_density_and_honours_an_enclosing_initialiser():
    from torch.distributions.transforms import AffineTransform

    from causalppl.infer.autoguide import InitMessenger, init_to_value
    from causalppl.infer.reparam import UnitJacobianReparam

    loc = torch.tensor([1.0, -2.0, 0.5])

    def model():
        return cp.sample("x", cp.dist.Normal(loc, 1.0).to_event(1))

    flip = UnitJacobianReparam(AffineTransform(0.0, -1.0, event_dim=1))
    tr = cp.handlers.trace(cp.handlers.reparam(model, {"x": flip})).get_trace()
    x, y = tr.nodes["x"]["value"], tr.nodes["x_transformed"]["value"]
    assert torch.equal(x, -y) and tr.nodes["x"]["is_observed"]
    # Same density as the original site: the flipped Normal's log prob at y is that of x.
    expected = torch.distributions.Normal(loc, 1.0).log_prob(x).sum()
    assert torch.allclose(tr.nodes["x_transformed"]["fn"].log_prob(y), expected)
    start = torch.tensor([0.1, 0.2, 0.3])
    with InitMessenger(init_to_value(values={"x": start})):
        assert torch.equal(model(), start)
        with cp.handlers.reparam(config={"x": flip}):
            assert torch.allclose(model(), start)


def test_elbo_of_two_modules_is_a_module_whose_loss_trains_with_a_torch_optimiser():
    # z ~ N(0, 1), x ~ N(z, 1) observed at 2: the posterior is N(1, 1/2); a plain torch Adam finds its mean.
    class Model(cp.nn.PyroModule):
        def forward(self, x):
            z = cp.sample("z", cp.dist.Normal(0.0, 1.0))
            return cp.sample("x", cp.dist.Normal(z, 1.0), obs=x)

    model = Model()
    guide = AutoNormal(model)
    guide(torch.tensor(2.0))
    loss = cp.infer.Trace_ELBO(num_particles=16, vectorize_particles=True)(model, guide)
    assert isinstance(loss, torch.nn.Module)
    assert {n for n, _ in loss.named_parameters()} == {"guide.locs.z_unconstrained", "guide.scales.z_unconstrained"}
    adam = torch.optim.Adam(loss.parameters(), lr=0.05)
    for _ in range(300):
        adam.zero_grad()
        loss(torch.tensor(2.0)).backward()
        adam.step()
    assert guide.locs.z.item() == pytest.approx(1.0, abs=0.15)


def test_model_guide_match_names_the_site_whose_shapes_disagree_and_entropy_sums_sites():
    from causalppl.infer.autoguide_utils import mean_field_entropy
    from causalppl.util import check_model_guide_match

    model = cp.handlers.trace(lambda: cp.sample("z", cp.dist.Normal(torch.zeros(2), 1.0).to_event(1))).get_trace()
    guide = cp.handlers.trace(lambda: cp.sample("z", cp.dist.Normal(torch.zeros(3), 1.0).to_event(1))).get_trace()
    with pytest.raises(ValueError, match="'z'"):
        check_model_guide_match(model, guide)

    def coins():
        cp.sample("a", cp.dist.Bernoulli(torch.full((2,), 0.5)))
        cp.sample("b", cp.dist.Bernoulli(torch.full((2,), 0.2)))

    p = torch.tensor(0.2)
    h = -(p * p.log() + (1 - p) * (1 - p).log())
    assert torch.allclose(mean_field_entropy(coins, ()), torch.full((2,), 0.5).log().neg() + h)
