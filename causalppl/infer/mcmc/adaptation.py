"""Warmup adaptation for HMC and NUTS: step size by dual averaging, mass matrix in windows.

- :class:`DualAveraging` (Nesterov's scheme as in Hoffman & Gelman's NUTS
  paper, with ``t0=10, kappa=0.75, gamma=0.05``) drives ``log(step_size)``
  so that the mean acceptance statistic reaches ``target_accept_prob``.
- :class:`WelfordCovariance` accumulates the (diagonal or dense) sample
  covariance of the unconstrained draws; Stan's regularisation shrinks it
  towards ``1e-3 * I``: ``n/(n+5) * cov + 1e-3 * 5/(n+5)``.
- :class:`MassMatrix` holds the inverse mass matrix (the covariance
  estimate), samples momenta ``p ~ N(0, M)`` and gives velocities ``M^-1 p``.
- :class:`WarmupAdapter` runs Stan's schedule: an initial fast buffer (75
  steps) where only the step size adapts, slow windows doubling from 25
  steps where the covariance is estimated too (at the end of each the mass
  matrix is updated and the step size search restarts), and a terminal fast
  buffer (50 steps); at the end of warmup the step size is the dual
  averaging's average. Short warmups scale the buffers to 15% / 75% / 10%.

>>> [tuple(w) for w in adaptation_schedule(1000)]
[(0, 74), (75, 99), (100, 149), (150, 249), (250, 449), (450, 949), (950, 999)]
"""

from __future__ import annotations

import math
from collections import namedtuple

import torch

from causalppl.ops.welford import WelfordCovariance  # noqa: F401 - also importable from here

adapt_window = namedtuple("adapt_window", "start end")  # Pyro's name
Window = adapt_window


class DualAveraging:
    """Dual averaging of a scalar ``x`` from noisy gradients ``g`` (``target - accept_prob``).

    ``x_t = prox_center - sqrt(t) / gamma * mean(g)``; the iterates' weighted
    average (weights ``t**-kappa``) is the final answer.
    """

    def __init__(self, prox_center=0.0, t0=10.0, kappa=0.75, gamma=0.05):
        self.prox_center = prox_center
        self.t0 = t0
        self.kappa = kappa
        self.gamma = gamma
        self.reset()

    def reset(self):
        self._t = 0
        self._g_avg = 0.0
        self._x_t = 0.0
        self._x_avg = 0.0

    def step(self, g):
        self._t += 1
        t = self._t
        self._g_avg = (1 - 1 / (t + self.t0)) * self._g_avg + g / (t + self.t0)
        self._x_t = self.prox_center - math.sqrt(t) / self.gamma * self._g_avg
        weight = t ** (-self.kappa)
        self._x_avg = (1 - weight) * self._x_avg + weight * self._x_t

    def get_state(self):
        """``(x_t, x_avg)``: the latest iterate and the weighted average."""
        return self._x_t, self._x_avg


class MassMatrix:
    """The inverse mass matrix (identity at first): kinetic energy, momenta, velocities.

    ``inverse_mass_matrix`` is a vector (diagonal) or a matrix (``dense=True``).
    """

    def __init__(self, size, dense=False, dtype=None, device=None):
        self.size = size
        self.dense = dense
        self.dtype = dtype or torch.get_default_dtype()
        self.device = device
        self.set(torch.eye(size, dtype=self.dtype, device=device) if dense
                 else torch.ones(size, dtype=self.dtype, device=device))

    def set(self, inverse_mass_matrix):
        inverse_mass_matrix = inverse_mass_matrix.to(dtype=self.dtype, device=self.device)
        self.inverse_mass_matrix = inverse_mass_matrix
        if self.dense:
            # p ~ N(0, M) with M = inv(Sigma): p = L^-T eps where Sigma = L L^T.
            self._chol = torch.linalg.cholesky(inverse_mass_matrix.double()).to(self.dtype)
        else:
            self._sqrt_mass = inverse_mass_matrix.rsqrt()

    def sample_momentum(self):
        eps = torch.randn(self.size, dtype=self.dtype, device=self.device)
        if self.dense:
            return torch.linalg.solve_triangular(self._chol.T, eps.unsqueeze(-1), upper=True).squeeze(-1)
        return eps * self._sqrt_mass

    def velocity(self, p):
        """``M^-1 p``."""
        if self.dense:
            return self.inverse_mass_matrix @ p
        return self.inverse_mass_matrix * p

    def kinetic_energy(self, p, velocity=None):
        velocity = self.velocity(p) if velocity is None else velocity
        return 0.5 * float(p.dot(velocity))


def adaptation_schedule(warmup_steps, initial_buffer=75, window=25, terminal_buffer=50):
    """Stan's warmup windows ``[(start, end), ...]`` (inclusive) over ``warmup_steps`` iterations.

    The first and last are the fast buffers (step size only); those between
    are the slow windows (mass matrix too). Fewer than 20 steps: one window.
    """
    if warmup_steps < 1:
        return []
    if warmup_steps < 20:
        return [Window(0, warmup_steps - 1)]
    if initial_buffer + window + terminal_buffer > warmup_steps:
        initial_buffer = int(0.15 * warmup_steps)
        terminal_buffer = int(0.1 * warmup_steps)
        window = warmup_steps - initial_buffer - terminal_buffer
    schedule = [Window(0, initial_buffer - 1)]
    end_of_slow = warmup_steps - terminal_buffer
    start, size = initial_buffer, window
    while start < end_of_slow:
        # A window that would leave less than twice its size runs to the end of the slow phase.
        if 3 * size <= end_of_slow - start:
            next_size = 2 * size
        else:
            size = end_of_slow - start
            next_size = size
        schedule.append(Window(start, start + size - 1))
        start, size = start + size, next_size
    schedule.append(Window(end_of_slow, warmup_steps - 1))
    return schedule


class WarmupAdapter:
    """Step size and mass matrix adaptation over the warmup iterations (see the module docstring).

    ``find_step_size(z) -> float`` (set by the kernel) looks for a reasonable
    step size at ``z`` by doubling or halving.
    """

    def __init__(self, step_size=1.0, adapt_step_size=True, adapt_mass_matrix=True, target_accept_prob=0.8,
                 dense_mass=False):
        if not 0 < float(target_accept_prob) < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}")
        step_size = 1.0 if step_size is None else step_size  # Pyro accepts None: start from 1
        if not float(step_size) > 0:
            raise ValueError(f"step_size must be positive, got {step_size!r}")
        self.initial_step_size = float(step_size)
        self.step_size = float(step_size)
        self.adapt_step_size = bool(adapt_step_size)
        self.adapt_mass_matrix = bool(adapt_mass_matrix)
        self.target_accept_prob = float(target_accept_prob)
        self.dense_mass = bool(dense_mass)
        self.find_step_size = None
        self.mass_matrix = None
        self.schedule = []
        self._window = 0
        self._dual = DualAveraging()
        self._welford = WelfordCovariance(diagonal=not self.dense_mass)

    def configure(self, warmup_steps, size=None, find_step_size=None, dtype=None, device=None,
                  inverse_mass_matrix=None, inv_mass_matrix=None):
        """Start a chain: fresh windows, identity (or given) mass matrix, step size as given.

        ``size`` (the number of unconstrained coordinates) defaults to the
        size of ``inverse_mass_matrix``; a matrix given for a diagonal
        adapter contributes its diagonal (``inv_mass_matrix`` is Pyro's older name).
        """
        inverse_mass_matrix = inv_mass_matrix if inverse_mass_matrix is None else inverse_mass_matrix
        if inverse_mass_matrix is not None:
            inverse_mass_matrix = torch.as_tensor(inverse_mass_matrix)
            if size is None:
                size = inverse_mass_matrix.shape[-1]
            if not self.dense_mass and inverse_mass_matrix.dim() == 2:
                inverse_mass_matrix = inverse_mass_matrix.diagonal()
            elif self.dense_mass and inverse_mass_matrix.dim() == 1:
                inverse_mass_matrix = inverse_mass_matrix.diag()
            dtype = dtype or inverse_mass_matrix.dtype
        if size is None:
            raise ValueError("WarmupAdapter.configure: give the size of the mass matrix (or inverse_mass_matrix)")
        self.warmup_steps = int(warmup_steps)
        self.schedule = adaptation_schedule(self.warmup_steps)
        self._window = 0
        self.find_step_size = find_step_size
        self.step_size = self.initial_step_size
        self.mass_matrix = MassMatrix(size, dense=self.dense_mass, dtype=dtype, device=device)
        if inverse_mass_matrix is not None:
            self.mass_matrix.set(inverse_mass_matrix)
        self._welford = WelfordCovariance(diagonal=not self.dense_mass)

    @property
    def adaptation_schedule(self):
        """The warmup windows in use (empty when nothing adapts), as Pyro's ``adapt_window(start, end)``."""
        return self.schedule if (self.adapt_step_size or self.adapt_mass_matrix) else []

    def reset_step_size_adaptation(self, z):
        """Find a reasonable step size at ``z`` and restart dual averaging around ``log(10 * it)``."""
        if self.find_step_size is not None:
            self.step_size = self.find_step_size(z)
        self._dual = DualAveraging(prox_center=math.log(10 * self.step_size))

    def step(self, iteration, z, accept_prob):
        """Adapt after warmup iteration ``iteration`` (0-based) that ended at ``z``."""
        if iteration >= self.warmup_steps or not self.schedule:
            return
        last = len(self.schedule) - 1
        window = self.schedule[self._window]
        slow = self.adapt_mass_matrix and 0 < self._window < last
        if self.adapt_step_size:
            accept_prob = accept_prob if math.isfinite(accept_prob) else 0.0
            self._dual.step(self.target_accept_prob - accept_prob)
            log_step, _ = self._dual.get_state()
            self.step_size = math.exp(min(max(log_step, -23.0), 23.0))
        if slow:
            self._welford.update(z)
        if iteration != window.end:
            return
        if self._window == last:
            if self.adapt_step_size:
                _, log_step_avg = self._dual.get_state()
                self.step_size = math.exp(min(max(log_step_avg, -23.0), 23.0))
        elif slow and self._welford.n >= 2:
            self.mass_matrix.set(self._welford.get_covariance())
            self._welford.reset()
            if self.adapt_step_size:
                self.reset_step_size_adaptation(z)
        self._window += 1
