"""SVGD: particles reach known posteriors; the particle layout of several sites; bad input."""

import math

import pytest
import torch

import causalppl as cp
from causalppl.infer import SVGD, IMQSteinKernel, RBFSteinKernel

pytestmark = pytest.mark.usefixtures("one_thread_seeded")


@pytest.mark.parametrize("kernel", [RBFSteinKernel, IMQSteinKernel])
@pytest.mark.parametrize("mode", ["univariate", "multivariate"])
def test_particles_match_a_gaussian_target(kernel, mode):
    def model():
        cp.sample("z", cp.dist.Normal(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])).to_event(1))

    svgd = SVGD(model, kernel(), cp.optim.Adam({"lr": 0.1}), num_particles=50, max_plate_nesting=0, mode=mode)
    for _ in range(300):
        svgd.step()
    z = svgd.get_named_particles()["z"]
    assert z.shape == (50, 2)
    # SVGD's particles are a deterministic quadrature, not draws: a loose tolerance on the moments.
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.1)
    assert torch.allclose(z.std(0), torch.tensor([0.5, 2.0]), rtol=0.25)


def test_conjugate_gamma_poisson_posterior_mean():
    counts = torch.tensor([1.0, 2.0, 3.0, 3.0, 5.0])

    def model():
        rate = cp.sample("rate", cp.dist.Gamma(2.0, 1.0))
        with cp.plate("data", 5):
            cp.sample("obs", cp.dist.Poisson(rate), obs=counts)

    svgd = SVGD(model, RBFSteinKernel(), cp.optim.Adam({"lr": 0.05}), num_particles=100, max_plate_nesting=1)
    for _ in range(400):
        svgd.step()
    rate = svgd.get_named_particles()["rate"]
    assert rate.shape == (100, 1)  # Pyro's layout: the particle dim left of the model's one plate
    assert bool((rate > 0).all())
    posterior = cp.dist.Gamma(2.0 + counts.sum(), 1.0 + 5)  # mean 16 / 6
    assert abs(rate.mean().item() - posterior.mean.item()) < 0.1
    assert abs(rate.std().item() - posterior.stddev.item()) < 0.3 * posterior.stddev.item()


def test_several_sites_share_one_particle_tensor():
    loc = torch.arange(6.0).reshape(2, 3)

    def model():
        cp.sample("a", cp.dist.LogNormal(loc, 1e-6).to_event(2))
        cp.sample("b", cp.dist.Normal(0.0, 1.0))
        cp.sample("c", cp.dist.Dirichlet(torch.ones(4)))

    svgd = SVGD(model, RBFSteinKernel(), cp.optim.Adam({"lr": 0.0}), num_particles=5, max_plate_nesting=0)
    squared = svgd.step()
    assert set(squared) == {"a", "b", "c"}
    particles = cp.param("svgd_particles")
    assert particles.shape == (5, 6 + 1 + 3)  # a simplex of 4 has 3 unconstrained coordinates
    named = svgd.get_named_particles()
    assert named["a"].shape == (5, 2, 3) and torch.allclose(named["a"], loc.exp().expand(5, 2, 3), rtol=1e-4)
    assert named["c"].shape == (5, 4) and torch.allclose(named["c"].sum(-1), torch.ones(5))


def test_bad_input_is_named():
    def discrete():
        cp.sample("k", cp.dist.Bernoulli(0.5))

    with pytest.raises(ValueError, match="'k' is discrete"):
        SVGD(discrete, RBFSteinKernel(), cp.optim.Adam({"lr": 0.1}), 4, 0).step()
    with pytest.raises(ValueError, match="mode"):
        SVGD(discrete, RBFSteinKernel(), cp.optim.Adam({"lr": 0.1}), 4, 0, mode="bivariate")
    with pytest.raises(ValueError, match="two particles"):
        SVGD(discrete, RBFSteinKernel(), cp.optim.Adam({"lr": 0.1}), 1, 0)
    with pytest.raises(ValueError, match="bandwidth_factor"):
        RBFSteinKernel(bandwidth_factor=-1.0)


def test_rbf_kernel_bandwidth_is_the_median_heuristic():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    log_k, grad = RBFSteinKernel().log_kernel_and_grad(x)
    h = 4.0 / math.log(4)  # median of squared distances 1, 9, 4 is 4
    assert torch.allclose(log_k[0, 1, 0], torch.tensor(-1.0 / h))
    assert torch.allclose(grad[0, 2, 0], torch.tensor(2.0 * 3.0 / h))
