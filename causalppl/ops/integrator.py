"""The velocity Verlet (leapfrog) integrator of Hamilton's equations, on dicts of tensors (Pyro's API).

Positions ``z`` and momenta ``r`` map site names to tensors; the potential
``potential_fn(z)`` gives the force ``-dU/dz`` and the kinetic term gives the
velocity ``dK/dr``: either a function ``kinetic_grad(r) -> dict`` or an inverse
mass matrix (a vector for a diagonal one, a matrix for a dense one, over the
sites' entries concatenated in ``r``'s order), for ``K = r' M^-1 r / 2``.

A harmonic oscillator ``U = z^2 / 2`` runs round its circle: after time 1 from
``(z, r) = (0, 1)`` it is at ``(sin 1, cos 1)``:

>>> import torch
>>> z, r, grads, energy = velocity_verlet({"x": torch.tensor([0.0])}, {"x": torch.tensor([1.0])},
...                                       lambda q: 0.5 * q["x"].pow(2).sum(), torch.tensor([1.0]), 0.01, 100)
>>> bool(torch.allclose(z["x"], torch.sin(torch.tensor(1.0)), atol=1e-4))
True
>>> bool(torch.allclose(r["x"], torch.cos(torch.tensor(1.0)), atol=1e-4))
True
"""

import torch

__all__ = ["potential_grad", "velocity_verlet"]


def potential_grad(potential_fn, z):
    """``(dU/dz as a dict, U)`` at ``z``; the values of ``z`` are not changed."""
    names = list(z)
    with torch.enable_grad():
        leaves = [z[name].detach().requires_grad_(True) for name in names]
        energy = potential_fn(dict(zip(names, leaves)))
        grads = torch.autograd.grad(energy, leaves, allow_unused=True)
    grads = {name: torch.zeros_like(leaf) if g is None else g for name, leaf, g in zip(names, leaves, grads)}
    return grads, energy.detach()


def _kinetic_grad_fn(kinetic_grad):
    """``kinetic_grad`` as a function of the momenta: given, or from an inverse mass matrix."""
    if callable(kinetic_grad):
        return kinetic_grad
    inverse_mass = torch.as_tensor(kinetic_grad)

    def velocity(r):
        names = list(r)
        flat = torch.cat([r[name].reshape(-1) for name in names])
        if inverse_mass.dim() >= 2:
            flat = inverse_mass @ flat
        else:
            flat = inverse_mass * flat
        out, offset = {}, 0
        for name in names:
            size = r[name].numel()
            out[name] = flat[offset:offset + size].reshape(r[name].shape)
            offset += size
        return out

    return velocity


def velocity_verlet(z, r, potential_fn, kinetic_grad, step_size, num_steps=1, z_grads=None):
    """``num_steps`` leapfrog steps of size ``step_size`` from ``(z, r)``.

    Returns ``(z_next, r_next, z_grads, potential_energy)``: the end point, and
    the potential's gradient and value there. ``z_grads`` (the gradient at
    ``z``) saves one evaluation when known. The input dicts are not changed.
    """
    velocity = _kinetic_grad_fn(kinetic_grad)
    z_next = {name: value.detach() for name, value in z.items()}
    r_next = dict(r)
    energy = None
    if z_grads is None:
        z_grads, energy = potential_grad(potential_fn, z_next)
    for _ in range(num_steps):
        r_half = {name: r_next[name] - 0.5 * step_size * z_grads[name] for name in r_next}
        v = velocity(r_half)
        z_next = {name: z_next[name] + step_size * v[name] for name in z_next}
        z_grads, energy = potential_grad(potential_fn, z_next)
        r_next = {name: r_half[name] - 0.5 * step_size * z_grads[name] for name in r_half}
    if energy is None:
        _, energy = potential_grad(potential_fn, z_next)
    return z_next, r_next, z_grads, energy
