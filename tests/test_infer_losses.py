"""The less common losses and diagnostics: EnergyDistance, TraceTailAdaptive_ELBO, PSIS,
Stable with LatentStableReparam, and Pyro's module paths for them."""

import math
import warnings

import pytest
import torch

import causalppl as cp
from causalppl.infer import EnergyDistance, TraceTailAdaptive_ELBO
from causalppl.infer.psis import fit_generalized_pareto, psis_diagnostic
from causalppl.infer.reparam import LatentStableReparam
from causalppl.infer.tracegraph_elbo import _compute_downstream_costs
from causalppl.infer.util import MultiFrameTensor, get_plate_stacks
from causalppl.runtime import CondIndepStackFrame


def test_energy_distance_of_a_point_predictive_is_the_distance_to_the_data():
    data = torch.tensor([1.0, 2.0, 4.0])

    def model():
        loc = cp.sample("loc", cp.dist.Normal(0.0, 10.0))
        with cp.plate("data", 3):
            cp.sample("obs", cp.dist.Normal(loc, 1e-4), obs=data)

    def guide():
        cp.sample("loc", cp.dist.Delta(torch.tensor(2.0)))

    cp.set_rng_seed(0)
    loss = EnergyDistance(num_particles=4)(model, guide)
    # Every particle predicts (2, 2, 2): E||X - x|| = ||(1, 0, 2)|| and X - X' is ~0.
    assert abs(loss.item() - math.sqrt(5.0)) < 1e-3
    with pytest.raises(NotImplementedError, match="only surrogate loss"):
        EnergyDistance().loss(model, guide)


def test_energy_distance_fits_a_stable_likelihood_without_its_density():
    cp.set_rng_seed(1)
    data = cp.dist.Stable(torch.tensor(1.8), torch.tensor(0.0), 1.0, 3.0).sample((200,))

    def model():
        loc = cp.sample("loc", cp.dist.Normal(0.0, 10.0))
        with cp.plate("data", len(data)):
            cp.sample("obs", cp.dist.Stable(1.8, 0.0, 1.0, loc), obs=data)

    def guide():
        cp.sample("loc", cp.dist.Delta(cp.param("loc_map", torch.tensor(0.0))))

    cp.clear_param_store()
    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.1}), EnergyDistance(num_particles=8))
    for _ in range(300):
        svi.step()
    assert abs(cp.param("loc_map").item() - 3.0) < 0.4  # the median of 200 draws is within ~0.15 of 3
    with pytest.raises(ValueError, match="Expected beta in"):
        EnergyDistance(beta=2.0)


def test_tail_adaptive_needs_vectorised_particles_and_has_no_loss():
    def model():
        cp.sample("x", cp.dist.Normal(0.0, 1.0))

    def guide():
        cp.sample("x", cp.dist.Normal(0.0, 2.0))

    with pytest.raises(NotImplementedError, match="not implemented"):
        TraceTailAdaptive_ELBO(num_particles=3, vectorize_particles=True).loss(model, guide)
    with pytest.raises(NotImplementedError, match="vectorize_particles==True"):
        TraceTailAdaptive_ELBO(num_particles=3).differentiable_loss(model, guide)
    with pytest.warns(UserWarning, match="num_particles==1"):
        TraceTailAdaptive_ELBO(vectorize_particles=True).differentiable_loss(model, guide)


def test_tail_adaptive_surrogate_is_the_rank_weighted_log_weight():
    cp.set_rng_seed(0)
    loc = torch.tensor(0.5, requires_grad=True)

    def model():
        cp.sample("x", cp.dist.Normal(0.0, 1.0))

    def guide():
        cp.sample("x", cp.dist.Normal(loc, 1.0))

    elbo = TraceTailAdaptive_ELBO(num_particles=4, vectorize_particles=True)
    surrogate = elbo.differentiable_loss(model, guide)
    x = elbo.last_traces[1][1].nodes["x"]["value"]
    log_w = cp.dist.Normal(0.0, 1.0).log_prob(x) - cp.dist.Normal(loc, 1.0).log_prob(x)
    rank = torch.empty(4)
    rank[log_w.argsort()] = torch.arange(1.0, 5.0)
    gamma = rank.reciprocal()  # tail_adaptive_beta = -1
    assert torch.allclose(surrogate, -(log_w * gamma).sum() / gamma.sum(), atol=1e-6)


def test_stable_at_stability_two_is_normal_and_has_no_density():
    cp.set_rng_seed(0)
    x = cp.dist.Stable(torch.tensor(2.0), torch.tensor(0.3), 1.5, -1.0).sample((40000,))
    # Stable(2, ., s, m) is Normal(m, s * sqrt(2)): variance 4.5; sd of the sample variance ~ 4.5 * sqrt(2 / n)
    assert abs(x.mean().item() + 1.0) < 0.05 and abs(x.var().item() - 4.5) < 0.15
    with pytest.raises(NotImplementedError, match="no closed form"):
        cp.dist.Stable(1.5, 0.0).log_prob(torch.tensor(0.0))


def test_latent_stable_reparam_maps_its_auxiliaries_through_chambers_mallows_stuck():
    def model():
        return cp.sample("z", cp.dist.Stable(torch.tensor(1.5), torch.tensor(0.0), 2.0, 1.0))

    u = 0.3
    data = {"z_uniform": torch.tensor(u), "z_exponential": torch.tensor(1.0)}
    tr = cp.trace(cp.condition(cp.handlers.reparam(model, {"z": LatentStableReparam()}), data)).get_trace()
    # Chambers-Mallows-Stuck for a symmetric law: sin(a u) / cos(u)^(1/a) * (cos((1 - a) u) / w)^((1 - a) / a)
    a = 1.5
    standard = math.sin(a * u) / math.cos(u) ** (1 / a) * math.cos((1 - a) * u) ** ((1 - a) / a)
    assert abs(tr.nodes["z"]["value"].item() - (1.0 + 2.0 * standard)) < 1e-5
    with pytest.raises(ValueError, match="needs a Stable distribution"):
        cp.trace(cp.handlers.reparam(lambda: cp.sample("z", cp.dist.Normal(0.0, 1.0)),
                                     {"z": LatentStableReparam()})).get_trace()


def test_generalized_pareto_fit_recovers_the_shape():
    cp.set_rng_seed(0)
    exceedances = torch.distributions.Pareto(1.0, 4.0).sample((20000,)) - 1.0  # k = 1/4, sigma = 1/4
    k, sigma = fit_generalized_pareto(exceedances)
    assert abs(k - 0.25) < 0.04 and abs(sigma - 0.25) < 0.02
    with pytest.raises(ValueError, match="positive values"):
        fit_generalized_pareto(torch.tensor([1.0, -1.0]))


def test_psis_shape_of_a_too_narrow_guide_is_large():
    def model():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))

    def narrow():
        cp.sample("z", cp.dist.Normal(0.0, 0.5))

    def wide():
        cp.sample("z", cp.dist.Normal(0.0, 0.95))

    cp.set_rng_seed(0)
    # A Normal(0, s) proposal for Normal(0, 1) has weight tail index k = 1 - s**2.
    assert 0.6 < psis_diagnostic(model, narrow, num_particles=200000, max_simultaneous_particles=100000) < 0.9
    assert psis_diagnostic(model, wide, num_particles=200000, max_simultaneous_particles=100000) < 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert psis_diagnostic(model, model, num_particles=100, max_simultaneous_particles=100) == float("inf")


def test_downstream_costs_follow_the_dense_graph_and_sum_to_the_site_plates():
    def model():
        a = cp.sample("a", cp.dist.Bernoulli(0.3))
        with cp.plate("rows", 3):
            b = cp.sample("b", cp.dist.Bernoulli(0.4).expand([3]))
            cp.sample("y", cp.dist.Normal(a + b, 1.0), obs=torch.zeros(3))

    def guide():
        cp.sample("a", cp.dist.Bernoulli(0.6))
        with cp.plate("rows", 3):
            cp.sample("b", cp.dist.Bernoulli(0.5).expand([3]))

    guide_tr = cp.handlers.trace(guide, graph_type="dense").get_trace()
    model_tr = cp.handlers.trace(cp.handlers.replay(model, trace=guide_tr), graph_type="dense").get_trace()
    model_tr.compute_log_prob()
    guide_tr.compute_log_prob()
    costs, nodes = _compute_downstream_costs(model_tr, guide_tr, {"a", "b"})
    lp = {n: model_tr.nodes[n]["log_prob"] for n in ("a", "b", "y")}
    lq = {n: guide_tr.nodes[n]["log_prob"] for n in ("a", "b")}
    assert nodes["a"] == {"a", "b", "y"} and nodes["b"] == {"b", "y"}
    assert torch.allclose(costs["a"], lp["a"] - lq["a"] + (lp["b"] - lq["b"] + lp["y"]).sum())
    assert torch.allclose(costs["b"], lp["b"] - lq["b"] + lp["y"])  # per row: one row cannot change another
    stacks = get_plate_stacks(model_tr)
    assert [f.name for f in stacks["y"]] == ["rows"] and stacks["a"] == []
    total = MultiFrameTensor((stacks["y"], lp["y"]), (stacks["a"], lp["a"]))
    assert torch.allclose(total.sum_to([]), lp["y"].sum() + lp["a"])


def test_a_frame_sized_by_a_tensor_equals_its_int_twin():
    x, y = CondIndepStackFrame("a", -1, torch.tensor(2000), 2), CondIndepStackFrame("a", -1, 2000, 2)
    assert x == y and not x != y and hash(x) == hash(y)
    assert CondIndepStackFrame("a", -1, 3, 3) != CondIndepStackFrame("b", -1, 3, 3)


def test_pyro_module_paths():
    from causalppl.contrib.autoguide import AutoDiagonalNormal
    from causalppl.handlers.indep_messenger import CondIndepStackFrame as Frame
    from causalppl.handlers.plate_messenger import PlateMessenger, SubsampleMessenger
    from causalppl.infer.importance import psis_diagnostic as psis
    from causalppl.ops.jit import trace
    from causalppl.util import ignore_jit_warnings

    assert AutoDiagonalNormal is cp.infer.autoguide.AutoDiagonalNormal and Frame is CondIndepStackFrame
    assert PlateMessenger is cp.plate and SubsampleMessenger is cp.plate and psis is psis_diagnostic
    assert trace(lambda x: x + 1)(torch.tensor(1.0)).item() == 2.0
    with ignore_jit_warnings():
        warnings.warn("silenced", torch.jit.TracerWarning, stacklevel=1)
