"""The velocity Verlet integrator (causalppl.ops.integrator) on systems with closed-form orbits."""

import math

import torch

from causalppl.ops.integrator import potential_grad, velocity_verlet


def test_harmonic_oscillator_follows_its_circle_and_reverses():
    potential = lambda q: 0.5 * q["x"].pow(2).sum()  # noqa: E731
    z0, r0 = {"x": torch.tensor([0.5], dtype=torch.float64)}, {"x": torch.tensor([1.0], dtype=torch.float64)}
    z, r, grads, energy = velocity_verlet(z0, r0, potential, torch.tensor([1.0]), 0.001, 2000)
    # Exact: z(t) = 0.5 cos t + sin t, r(t) = -0.5 sin t + cos t, at t = 2.
    torch.testing.assert_close(z["x"], torch.tensor([0.5 * math.cos(2) + math.sin(2)], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(r["x"], torch.tensor([-0.5 * math.sin(2) + math.cos(2)], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(grads["x"], z["x"])
    torch.testing.assert_close(energy, potential(z))
    assert torch.equal(z0["x"], torch.tensor([0.5], dtype=torch.float64))  # inputs untouched
    back, _, _, _ = velocity_verlet(z, {"x": -r["x"]}, potential, torch.tensor([1.0]), 0.001, 2000)
    torch.testing.assert_close(back["x"], z0["x"])


def test_dense_inverse_mass_and_kinetic_grad_function_agree():
    potential = lambda q: 0.5 * (q["a"].pow(2).sum() + 4 * q["b"].pow(2).sum())  # noqa: E731
    z0 = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor(0.5)}
    r0 = {"a": torch.tensor([0.0, 1.0]), "b": torch.tensor(-1.0)}
    inverse_mass = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]])
    scales = {"a": torch.tensor([2.0, 1.0]), "b": torch.tensor(0.5)}
    z1, r1, _, e1 = velocity_verlet(z0, r0, potential, inverse_mass, 0.05, 20)
    z2, r2, _, e2 = velocity_verlet(z0, r0, potential, lambda r: {k: scales[k] * v for k, v in r.items()}, 0.05, 20)
    for name in z0:
        torch.testing.assert_close(z1[name], z2[name])
        torch.testing.assert_close(r1[name], r2[name])
    torch.testing.assert_close(e1, e2)
    # The Hamiltonian is nearly conserved.
    kinetic = lambda r: 0.5 * sum((v.pow(2) * scales[k]).sum() for k, v in r.items())  # noqa: E731
    assert abs(float(potential(z0) + kinetic(r0) - e1 - kinetic(r1))) < 5e-3


def test_potential_grad():
    grads, energy = potential_grad(lambda q: (q["x"] ** 3).sum(), {"x": torch.tensor([1.0, 2.0])})
    torch.testing.assert_close(grads["x"], torch.tensor([3.0, 12.0]))
    assert float(energy) == 9.0
