"""Hamiltonian Monte Carlo: the shared kernel machinery, and HMC with a fixed trajectory length.

A kernel works on one flat vector ``z`` of every latent site's unconstrained
value (see :class:`causalppl.infer.mcmc.util.ModelPotential`). Each
iteration draws a momentum ``p ~ N(0, M)``, follows Hamilton's equations
for ``H(z, p) = U(z) + p' M^-1 p / 2`` with the leapfrog integrator, and
accepts the end point with probability ``min(1, exp(H_0 - H_end))``. During
warmup the step size and the mass matrix adapt (see
:mod:`causalppl.infer.mcmc.adaptation`).

>>> import torch, causalppl as cp
>>> cp.set_rng_seed(0)
>>> def model():
...     cp.sample("x", cp.dist.Normal(1.0, 2.0))
>>> mcmc = cp.infer.MCMC(cp.infer.HMC(model, trajectory_length=3.0), num_samples=400, warmup_steps=200)
>>> mcmc.run()
>>> x = mcmc.get_samples()["x"]
>>> abs(x.mean().item() - 1.0) < 0.6, abs(x.std().item() - 2.0) < 0.6
(True, True)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from causalppl.infer.mcmc.adaptation import WarmupAdapter
from causalppl.infer.mcmc.mcmc_kernel import MCMCKernel
from causalppl.infer.mcmc.util import LatentSite, ModelPotential, _inf_like, _is_numerical_failure, init_to_uniform

MAX_DELTA_ENERGY = 1000.0  # an energy error above this is a divergent transition (Stan's threshold)


@dataclass
class State:
    """A point of the chain: unconstrained ``z``, its potential, gradient and constrained values."""

    z: torch.Tensor
    potential_energy: float
    grad: torch.Tensor
    values: dict = field(default_factory=dict)


class FunctionPotential:
    """A user's ``potential_fn(params: dict of unconstrained tensors) -> energy`` in the flat layout.

    ``transforms`` (site -> transform from the support to unconstrained
    space) turn samples back into constrained values; without it samples are
    the unconstrained values themselves.
    """

    def __init__(self, potential_fn, prototype, transforms=None):
        self.potential_fn = potential_fn
        self.transforms = dict(transforms or {})
        self.sites = OrderedDict()
        offset = 0
        for name, value in prototype.items():
            value = torch.as_tensor(value)
            self.sites[name] = LatentSite(name, value.shape, value.shape, offset, value.numel(), value.dtype,
                                          value.device)
            offset += value.numel()
        self.size = offset
        first = next(iter(self.sites.values()), None)
        self.dtype = first.dtype if first is not None else torch.get_default_dtype()
        self.device = first.device if first is not None else torch.get_default_device()
        self.prototype_trace = None

    def split(self, z):
        return {name: z[s.offset:s.offset + s.numel].reshape(s.shape) for name, s in self.sites.items()}

    def join(self, pieces):
        if not self.sites:
            return torch.zeros(0, dtype=self.dtype, device=self.device)
        return torch.cat([torch.as_tensor(pieces[name], dtype=self.dtype, device=self.device).reshape(-1)
                          for name in self.sites])

    def _values(self, pieces):
        return {name: (self.transforms[name].inv(value) if name in self.transforms else value).detach()
                for name, value in pieces.items()}

    def evaluate(self, z, grad=True):
        z = z.detach()
        with torch.enable_grad():
            leaf = z.clone().requires_grad_(grad)
            try:
                energy = torch.as_tensor(self.potential_fn(self.split(leaf)))
            except (ValueError, RuntimeError) as err:
                if not _is_numerical_failure(err):
                    raise
                return _inf_like(z), torch.zeros_like(z), {}
            if not math.isfinite(float(energy.detach())):
                return _inf_like(z), torch.zeros_like(z), {}
            gradient = torch.zeros_like(z)
            if grad and energy.requires_grad:
                (found,) = torch.autograd.grad(energy, leaf, allow_unused=True)
                gradient = gradient if found is None else found
        return energy.detach(), gradient.detach(), self._values(self.split(z))

    def constrained(self, z):
        return self._values(self.split(z.detach()))

    def initial_point(self, init_strategy, max_tries=100):
        raise ValueError("a kernel built from potential_fn needs initial_params (unconstrained values)")


class HMCKernelBase(MCMCKernel):
    """What HMC and NUTS share: the potential, initialisation, adaptation, leapfrog, bookkeeping."""

    kernel_name = "HMC"

    def __init__(self, model=None, potential_fn=None, step_size=1.0, adapt_step_size=True, adapt_mass_matrix=True,
                 full_mass=False, transforms=None, max_plate_nesting=None, jit_compile=False, jit_options=None,
                 ignore_jit_warnings=False, target_accept_prob=0.8, init_strategy=init_to_uniform,
                 min_stepsize=1e-10, max_stepsize=1e10):
        if (model is None) == (potential_fn is None):
            raise ValueError(f"{self.kernel_name}: give exactly one of model or potential_fn")
        if model is not None and not callable(model):
            raise TypeError(f"{self.kernel_name}: model must be callable, got {model!r}")
        if full_mass not in (True, False):
            raise ValueError(f"{self.kernel_name}: full_mass must be True or False (one dense mass matrix over "
                             f"every site), got {full_mass!r}")
        self.model = model
        self.potential_fn = potential_fn
        self.transforms = transforms
        self.max_plate_nesting = max_plate_nesting
        self.jit_compile = bool(jit_compile)  # trace the potential once (see ModelPotential._compile)
        self._init_strategy = init_strategy
        self._min_stepsize = float(min_stepsize)
        self._max_stepsize = float(max_stepsize)
        self._adapter = WarmupAdapter(step_size, adapt_step_size=adapt_step_size,
                                      adapt_mass_matrix=adapt_mass_matrix, target_accept_prob=target_accept_prob,
                                      dense_mass=bool(full_mass))
        self._potential = None
        self._potential_key = None
        self._reuse_potential = False  # MCMC sets it for the chains after the first
        self._initial_params = None
        self._reset()

    # -- Pyro's attributes -----------------------------------------------------------

    @property
    def step_size(self):
        return self._adapter.step_size

    @step_size.setter
    def step_size(self, value):
        self._adapter.step_size = float(value)

    @property
    def inverse_mass_matrix(self):
        mass = self._adapter.mass_matrix
        return None if mass is None else mass.inverse_mass_matrix

    @property
    def target_accept_prob(self):
        return self._adapter.target_accept_prob

    @property
    def initial_params(self):
        """Unconstrained starting values, site -> tensor (set before ``setup`` to choose them)."""
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = params

    @property
    def prototype_trace(self):
        return None if self._potential is None else self._potential.prototype_trace

    @property
    def potential(self):
        """The :class:`~causalppl.infer.mcmc.util.ModelPotential` (or function potential) in use."""
        return self._potential

    # -- one chain ---------------------------------------------------------------------

    def _reset(self):
        self._t = 0
        self._warmup_steps = 0
        self._accept_cnt = 0
        self._mean_accept_prob = 0.0
        self._warmup_accept_prob = 0.0
        self._divergences = []
        self._num_steps_total = 0
        self._tree_depths = []
        self._state = None

    def _make_potential(self, args, kwargs):
        key = (tuple(map(id, args)), tuple(sorted((name, id(value)) for name, value in kwargs.items())))
        if self._potential is not None and self._reuse_potential and self._potential_key == key:
            return self._potential  # the next chain of one MCMC run: same model, same arguments
        self._potential_key = key
        if self.model is not None:
            potential = ModelPotential(self.model, args, kwargs, self.transforms, kernel=self.kernel_name,
                                       jit_compile=self.jit_compile, max_plate_nesting=self.max_plate_nesting)
            if self.transforms is None:
                self.transforms = potential.transforms
            return potential
        if self._initial_params is None:
            raise ValueError(f"{self.kernel_name}: a kernel built from potential_fn needs initial_params "
                             "(a dict of unconstrained tensors) to start from")
        return FunctionPotential(self.potential_fn, self._initial_params, self.transforms)

    def setup(self, warmup_steps, *args, **kwargs):
        """Start a chain: find the latent sites, the initial point and a first step size."""
        self._reset()
        self._warmup_steps = int(warmup_steps)
        self._potential = self._make_potential(args, kwargs)
        potential = self._potential
        if self._initial_params is not None and (self._initial_params or not potential.sites):
            unknown = [name for name in self._initial_params if name not in potential.sites]
            missing = [name for name in potential.sites if name not in self._initial_params]
            if unknown or missing:
                raise ValueError(
                    f"{self.kernel_name}: initial_params must name exactly the latent sites "
                    f"({', '.join(potential.sites) or 'none'}); "
                    + "; ".join(part for part in (f"unknown: {', '.join(unknown)}" if unknown else "",
                                                   f"missing: {', '.join(missing)}" if missing else "") if part))
            params = {}
            for name, value in self._initial_params.items():
                expected = potential.sites[name].unconstrained_shape
                value = torch.as_tensor(value)
                if value.shape == (1,) + tuple(expected):
                    value = value[0]  # Pyro's layout for one chain: a leading chain dim of 1
                params[name] = value
                if value.shape != expected:
                    raise ValueError(f"{self.kernel_name}: initial_params['{name}'] has shape "
                                     f"{tuple(value.shape)}, but the site's unconstrained value "
                                     f"has shape {tuple(expected)}")
            z = potential.join(params)
        else:
            z = potential.initial_point(self._init_strategy)
            self._initial_params = potential.split(z.clone())  # Pyro: the chosen start, unconstrained
        energy, grad, values = potential.evaluate(z)
        if not math.isfinite(float(energy.detach())):
            raise ValueError(f"{self.kernel_name}: the potential energy at the initial point is not finite "
                             "(check initial_params: they are unconstrained values)")
        self._state = State(z, float(energy), grad, values)
        self._adapter.configure(self._warmup_steps, potential.size, self._find_reasonable_step_size,
                                dtype=z.dtype, device=z.device)
        if self._adapter.adapt_step_size and potential.size and self._warmup_steps > 0:
            self._adapter.reset_step_size_adaptation(z)

    def cleanup(self):
        self._reset()

    # -- dynamics ------------------------------------------------------------------------

    @property
    def _mass(self):
        return self._adapter.mass_matrix

    def _leapfrog(self, state, p, step_size):
        """One leapfrog step from ``(state, p)``: returns ``(new state, new p)``."""
        p_half = p - (0.5 * step_size) * state.grad
        z = state.z + step_size * self._mass.velocity(p_half)
        energy, grad, values = self._potential.evaluate(z)
        p_new = p_half - (0.5 * step_size) * grad
        return State(z, float(energy), grad, values), p_new

    def _hamiltonian(self, state, p, velocity=None):
        return state.potential_energy + self._mass.kinetic_energy(p, velocity)

    def _find_reasonable_step_size(self, z):
        """Double or halve the step size until one leapfrog step's acceptance crosses 0.8 (Stan)."""
        step_size = self.step_size
        state = self._state if self._state is not None and torch.equal(self._state.z, z) else None
        if state is None:
            energy, grad, values = self._potential.evaluate(z)
            state = State(z, float(energy), grad, values)
        if not math.isfinite(state.potential_energy):
            return step_size
        threshold = math.log(0.8)

        def direction_at(size):
            p = self._mass.sample_momentum()
            new, p_new = self._leapfrog(state, p, size)
            delta = self._hamiltonian(new, p_new) - self._hamiltonian(state, p)
            return 1 if threshold < -delta else -1  # NaN: smaller

        direction = direction_at(step_size)
        scale = 2.0 ** direction
        for _ in range(100):
            if not self._min_stepsize < step_size < self._max_stepsize:
                break
            step_size = step_size * scale
            if direction_at(step_size) != direction:
                break
        return min(max(step_size, self._min_stepsize), self._max_stepsize)

    # -- the iteration loop --------------------------------------------------------------

    def _transition(self):
        """One transition from ``self._state``: returns ``(new state, accept_prob, diverged, info)``."""
        raise NotImplementedError

    def step(self):
        """One iteration (warmup or sampling); returns the state reached."""
        warmup = self._t < self._warmup_steps
        if self._potential.size == 0:
            accept_prob, diverged = 1.0, False
            self._count_accept(True)
        else:
            state, accept_prob, diverged, steps = self._transition()
            self._state = state
            self._num_steps_total += steps
        if warmup:
            self._adapter.step(self._t, self._state.z, accept_prob)
            n = self._t + 1
            self._warmup_accept_prob += (accept_prob - self._warmup_accept_prob) / n
        else:
            n = self._t - self._warmup_steps + 1
            self._mean_accept_prob += (accept_prob - self._mean_accept_prob) / n
            if diverged:
                self._divergences.append(n - 1)
        self._t += 1
        return self._state

    def clear_cache(self):
        """Forget the cached point: the next ``sample(params)`` starts from ``params`` afresh (Pyro)."""
        self._stale = True

    _stale = False

    def sample(self, params=None):
        """Pyro's kernel step: one iteration; returns the new unconstrained values (site -> tensor)."""
        if params is not None and self._state is not None:
            z = self._potential.join(params)
            if self._stale or not torch.equal(z, self._state.z):
                self._stale = False
                energy, grad, values = self._potential.evaluate(z)
                self._state = State(z, float(energy), grad, values)
        self.step()
        return self._potential.split(self._state.z.clone())

    def __call__(self, params=None):
        return self.sample(params)

    def values(self):
        """The constrained values of the latent sites at the current point."""
        state = self._state
        if not state.values and self._potential.size:
            state.values = self._potential.constrained(state.z)
        return state.values

    def logging(self):
        return OrderedDict([("step size", f"{self.step_size:.2e}"), ("acc. prob", f"{self._mean_accept_prob:.3f}")])

    def diagnostics(self):
        """This chain's divergences (indices of divergent draws), acceptance rate (the share of draws that
        moved), the mean acceptance statistic of the draws and of the warmup (what step size adaptation
        steers to ``target_accept_prob``), and the step size."""
        samples = max(self._t - self._warmup_steps, 0)
        return {
            "divergences": list(self._divergences),
            "acceptance rate": self._accept_cnt / samples if samples else float("nan"),
            "mean accept prob": self._mean_accept_prob,
            "warmup accept prob": self._warmup_accept_prob,
            "step size": self.step_size,
        }

    def _count_accept(self, accepted):
        if self._t >= self._warmup_steps and accepted:
            self._accept_cnt += 1


class HMC(HMCKernelBase):
    """Hamiltonian Monte Carlo with ``num_steps = trajectory_length / step_size`` leapfrog steps.

    Pyro's arguments: ``trajectory_length`` (default ``step_size * num_steps``
    when ``num_steps`` is given, else ``2 pi``), ``num_steps``, and the
    adaptation options shared with :class:`~causalppl.infer.mcmc.nuts.NUTS`.
    As the step size adapts, the number of steps follows it so the
    trajectory length stays fixed.
    """

    kernel_name = "HMC"

    def __init__(self, model=None, potential_fn=None, step_size=1.0, trajectory_length=None, num_steps=None,
                 adapt_step_size=True, adapt_mass_matrix=True, full_mass=False, transforms=None,
                 max_plate_nesting=None, jit_compile=False, jit_options=None, ignore_jit_warnings=False,
                 target_accept_prob=0.8, init_strategy=init_to_uniform, *, min_stepsize=1e-10, max_stepsize=1e10):
        super().__init__(model, potential_fn, step_size, adapt_step_size, adapt_mass_matrix, full_mass, transforms,
                         max_plate_nesting, jit_compile, jit_options, ignore_jit_warnings, target_accept_prob,
                         init_strategy, min_stepsize, max_stepsize)
        if trajectory_length is not None:
            self.trajectory_length = float(trajectory_length)
        elif num_steps is not None:
            if int(num_steps) < 1:
                raise ValueError(f"HMC: num_steps must be a positive integer, got {num_steps!r}")
            self.trajectory_length = float(1.0 if step_size is None else step_size) * int(num_steps)
        else:
            self.trajectory_length = 2 * math.pi  # Stan's default
        if not self.trajectory_length > 0:
            raise ValueError(f"HMC: trajectory_length must be positive, got {trajectory_length!r}")

    @property
    def num_steps(self):
        return max(1, int(self.trajectory_length / self.step_size))

    def _transition(self):
        start = self._state
        p = self._mass.sample_momentum()
        energy_start = self._hamiltonian(start, p)
        state, p_new, steps = start, p, 0
        for _ in range(self.num_steps):
            state, p_new = self._leapfrog(state, p_new, self.step_size)
            steps += 1
            if not math.isfinite(state.potential_energy):
                break
        delta = self._hamiltonian(state, p_new) - energy_start
        delta = math.inf if math.isnan(delta) else delta
        diverged = delta > MAX_DELTA_ENERGY
        accept_prob = math.exp(min(0.0, -delta))
        accepted = float(torch.rand(())) < accept_prob
        self._count_accept(accepted)
        return (state if accepted else start), accept_prob, diverged, steps
