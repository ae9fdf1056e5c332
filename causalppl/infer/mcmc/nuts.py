"""The No-U-Turn Sampler: HMC that picks its own trajectory length.

Each iteration doubles a trajectory of leapfrog steps, forward or backward
in time at random, until the trajectory turns back on itself, a step
diverges, or ``max_tree_depth`` doublings were made. The next state is drawn
from the whole trajectory with probabilities ``exp(-H)`` (multinomial
sampling, biased towards the newest subtree at the top level), as in Stan.
Turning is the generalised no-U-turn criterion (Betancourt 2017): with
``rho`` the sum of the momenta over a (sub)trajectory and ``p#`` the
velocities ``M^-1 p`` at its ends, it continues while ``p#_minus . rho > 0``
and ``p#_plus . rho > 0``, checked for every subtree, the merged tree, and
(Stan 2.26) across each pair of merged subtrees extended by one point.

>>> import torch, causalppl as cp
>>> cp.set_rng_seed(0)
>>> def model(data):
...     loc = cp.sample("loc", cp.dist.Normal(0.0, 10.0))
...     with cp.plate("data", len(data)):
...         cp.sample("obs", cp.dist.Normal(loc, 1.0), obs=data)
>>> data = torch.tensor([1.0, 2.0, 3.0])
>>> mcmc = cp.infer.MCMC(cp.infer.NUTS(model), num_samples=300, warmup_steps=200)
>>> mcmc.run(data)
>>> abs(mcmc.get_samples()["loc"].mean().item() - 2.0) < 0.25
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from causalppl.infer.mcmc.hmc import MAX_DELTA_ENERGY, HMCKernelBase, State
from causalppl.infer.mcmc.util import init_to_uniform


@dataclass
class _Subtree:
    """A subtrajectory: its outer end (to grow from), end momenta/velocities, momentum sum, weight, proposal."""

    end: State  # the point farthest from where it started
    end_p: torch.Tensor
    p_beg: torch.Tensor  # momentum at the end nearest the start
    v_beg: torch.Tensor  # velocity M^-1 p there
    p_end: torch.Tensor  # ... and at the far end
    v_end: torch.Tensor
    rho: torch.Tensor
    log_weight: float
    proposal: State
    valid: bool


def _logaddexp(a, b):
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    high = max(a, b)
    return high + math.log1p(math.exp(-abs(a - b)))


def _no_turn(v_minus, v_plus, rho):
    """The generalised no-U-turn criterion: both end velocities still point along ``rho``."""
    return float(v_plus.dot(rho)) > 0 and float(v_minus.dot(rho)) > 0


class NUTS(HMCKernelBase):
    """The No-U-Turn Sampler with multinomial sampling and the generalised no-U-turn criterion.

    Pyro's arguments: ``model`` (or ``potential_fn`` with ``initial_params``
    given to :class:`~causalppl.infer.MCMC`), ``step_size`` (the starting
    step size), ``adapt_step_size``, ``adapt_mass_matrix``, ``full_mass``
    (a dense mass matrix), ``target_accept_prob``, ``max_tree_depth``,
    ``init_strategy`` (site -> constrained initial value; default
    ``init_to_uniform``: uniform in ``(-2, 2)`` in unconstrained space),
    ``transforms``, ``jit_compile`` (trace the potential with
    ``torch.jit.trace`` once: several times faster for a model whose control
    flow does not depend on its latent values). ``use_multinomial_sampling=True``,
    ``max_plate_nesting`` and the JIT options are accepted for Pyro's signature.
    """

    kernel_name = "NUTS"

    def __init__(self, model=None, potential_fn=None, step_size=1.0, adapt_step_size=True, adapt_mass_matrix=True,
                 full_mass=False, use_multinomial_sampling=True, transforms=None, max_plate_nesting=None,
                 jit_compile=False, jit_options=None, ignore_jit_warnings=False, target_accept_prob=0.8,
                 max_tree_depth=10, init_strategy=init_to_uniform, *, min_stepsize=1e-10, max_stepsize=1e10):
        super().__init__(model, potential_fn, step_size, adapt_step_size, adapt_mass_matrix, full_mass, transforms,
                         max_plate_nesting, jit_compile, jit_options, ignore_jit_warnings, target_accept_prob,
                         init_strategy, min_stepsize, max_stepsize)
        if int(max_tree_depth) < 1:
            raise ValueError(f"NUTS: max_tree_depth must be a positive integer, got {max_tree_depth!r}")
        self.max_tree_depth = int(max_tree_depth)
        self.use_multinomial_sampling = use_multinomial_sampling

    def _leaf(self, state, p, step_size, energy_start):
        new, p_new = self._leapfrog(state, p, step_size)
        self._n_leapfrog += 1
        v = self._mass.velocity(p_new)
        energy = self._hamiltonian(new, p_new, v)
        delta = math.inf if math.isnan(energy) else energy - energy_start
        diverged = delta > MAX_DELTA_ENERGY
        self._diverged = self._diverged or diverged
        log_weight = -delta
        self._sum_accept += 1.0 if log_weight > 0 else math.exp(log_weight)
        return _Subtree(new, p_new, p_new, v, p_new, v, p_new, log_weight, new, not diverged)

    def _build_tree(self, state, p, depth, step_size, energy_start):
        """A subtree of ``2**depth`` leapfrog steps from ``(state, p)`` (``step_size`` < 0: backward)."""
        if depth == 0:
            return self._leaf(state, p, step_size, energy_start)
        first = self._build_tree(state, p, depth - 1, step_size, energy_start)
        if not first.valid:
            return first
        second = self._build_tree(first.end, first.end_p, depth - 1, step_size, energy_start)
        if not second.valid:
            return second
        log_weight = _logaddexp(first.log_weight, second.log_weight)
        # Within a subtree: multinomial, in proportion to each half's weight.
        take_second = float(torch.rand(())) < math.exp(second.log_weight - log_weight)
        proposal = second.proposal if take_second else first.proposal
        rho = first.rho + second.rho
        valid = (_no_turn(first.v_beg, second.v_end, rho)
                 and _no_turn(first.v_beg, second.v_beg, first.rho + second.p_beg)
                 and _no_turn(first.v_end, second.v_end, second.rho + first.p_end))
        return _Subtree(second.end, second.end_p, first.p_beg, first.v_beg, second.p_end, second.v_end, rho,
                        log_weight, proposal, valid)

    def _transition(self):
        start = self._state
        step_size = self.step_size
        p0 = self._mass.sample_momentum()
        v0 = self._mass.velocity(p0)
        energy_start = start.potential_energy + self._mass.kinetic_energy(p0, v0)
        self._n_leapfrog, self._sum_accept, self._diverged = 0, 0.0, False
        # The trajectory is [backward subtree | forward subtree]; each end's (momentum, velocity).
        fwd_state, fwd_p, bck_state, bck_p = start, p0, start, p0
        p_fwd_fwd = p_fwd_bck = p_bck_fwd = p_bck_bck = p0
        v_fwd_fwd = v_fwd_bck = v_bck_fwd = v_bck_bck = v0
        rho = p0
        log_weight = 0.0
        sample = start
        depth = 0
        while depth < self.max_tree_depth:
            if float(torch.rand(())) < 0.5:
                rho_bck, p_bck_fwd, v_bck_fwd = rho, p_fwd_fwd, v_fwd_fwd
                tree = self._build_tree(fwd_state, fwd_p, depth, step_size, energy_start)
                fwd_state, fwd_p = tree.end, tree.end_p
                rho_fwd = tree.rho
                p_fwd_bck, v_fwd_bck, p_fwd_fwd, v_fwd_fwd = tree.p_beg, tree.v_beg, tree.p_end, tree.v_end
            else:
                rho_fwd, p_fwd_bck, v_fwd_bck = rho, p_bck_bck, v_bck_bck
                tree = self._build_tree(bck_state, bck_p, depth, -step_size, energy_start)
                bck_state, bck_p = tree.end, tree.end_p
                rho_bck = tree.rho
                p_bck_fwd, v_bck_fwd, p_bck_bck, v_bck_bck = tree.p_beg, tree.v_beg, tree.p_end, tree.v_end
            if not tree.valid:
                break
            depth += 1
            # Biased progressive sampling: favour the new subtree.
            if tree.log_weight > log_weight or float(torch.rand(())) < math.exp(tree.log_weight - log_weight):
                sample = tree.proposal
            log_weight = _logaddexp(log_weight, tree.log_weight)
            rho = rho_bck + rho_fwd
            if not (_no_turn(v_bck_bck, v_fwd_fwd, rho)
                    and _no_turn(v_bck_bck, v_fwd_bck, rho_bck + p_fwd_bck)
                    and _no_turn(v_bck_fwd, v_fwd_fwd, rho_fwd + p_bck_fwd)):
                break
        self._tree_depths.append(depth)
        accept_prob = self._sum_accept / max(self._n_leapfrog, 1)
        self._count_accept(sample is not start)
        return sample, accept_prob, self._diverged, self._n_leapfrog

    def diagnostics(self):
        out = super().diagnostics()
        depths = self._tree_depths[self._warmup_steps:]
        out["mean tree depth"] = sum(depths) / len(depths) if depths else float("nan")
        return out
