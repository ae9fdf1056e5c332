"""A gradient-free kernel: a Gaussian random walk in the model's unconstrained space (Pyro's ``RandomWalkKernel``).

Each iteration proposes ``z' = z + step_size * eps`` with ``eps ~ N(0, I)`` and
accepts it with probability ``min(1, exp(U(z) - U(z')))`` (Metropolis). During
warmup the log step size moves by ``max(0.001, 0.1 / sqrt(1 + t)) *
(accept_prob - target_accept_prob)``, so the acceptance rate settles near the
target (0.234, optimal for random walks in many dimensions).

>>> import torch, causalppl as cp
>>> cp.set_rng_seed(0)
>>> def model():
...     cp.sample("x", cp.dist.Normal(3.0, 0.5))
>>> mcmc = cp.infer.MCMC(RandomWalkKernel(model, init_step_size=0.5), num_samples=2000, warmup_steps=500)
>>> mcmc.run()
>>> x = mcmc.get_samples()["x"]
>>> abs(x.mean().item() - 3.0) < 0.1, abs(x.std().item() - 0.5) < 0.1
(True, True)
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

from causalppl.infer.mcmc.mcmc_kernel import MCMCKernel
from causalppl.infer.mcmc.util import initialize_model

__all__ = ["RandomWalkKernel"]


class RandomWalkKernel(MCMCKernel):
    """Random-walk Metropolis over every latent site's unconstrained value, with a step size adapted in warmup.

    Parameters
    ----------
    model : callable
    init_step_size : float
        The walk's initial standard deviation (positive).
    target_accept_prob : float
        The acceptance rate warmup steers to, in ``(0, 1)``.
    """

    def __init__(self, model, init_step_size=0.1, target_accept_prob=0.234):
        if not callable(model):
            raise TypeError(f"RandomWalkKernel: model must be callable, got {model!r}")
        if isinstance(init_step_size, bool) or not isinstance(init_step_size, (int, float)) or init_step_size <= 0:
            raise ValueError(f"RandomWalkKernel: init_step_size must be a positive float, got {init_step_size!r}")
        if isinstance(target_accept_prob, bool) or not isinstance(target_accept_prob, (int, float)) \
                or not 0 < target_accept_prob < 1:
            raise ValueError("RandomWalkKernel: target_accept_prob must be a float in the interval (0, 1), "
                             f"got {target_accept_prob!r}")
        self.model = model
        self.init_step_size = float(init_step_size)
        self.target_accept_prob = float(target_accept_prob)
        self._initial_params = None
        self.transforms = None
        self.potential_fn = None
        self._reset()

    def _reset(self):
        self._t = 0
        self._warmup_steps = 0
        self._log_step_size = math.log(self.init_step_size)
        self._accept_cnt = 0
        self._mean_accept_prob = 0.0
        self._energy = None

    @property
    def step_size(self):
        return math.exp(self._log_step_size)

    @property
    def initial_params(self):
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = params

    def setup(self, warmup_steps, *args, **kwargs):
        """Find the latent sites and a starting point (unless ``initial_params`` was set)."""
        self._reset()
        self._warmup_steps = int(warmup_steps)
        start, self.potential_fn, self.transforms, self._prototype_trace = initialize_model(
            self.model, model_args=args, model_kwargs=kwargs)
        if self._initial_params is None:
            self._initial_params = start
        with torch.no_grad():
            self._energy = self.potential_fn(self._initial_params)

    def sample(self, params):
        """One Metropolis step from ``params`` (site -> unconstrained tensor)."""
        step_size = self.step_size
        proposal = {name: value + step_size * torch.randn_like(value) for name, value in params.items()}
        with torch.no_grad():
            energy = self.potential_fn(proposal)
        delta = float(energy - self._energy)
        accept_prob = 1.0 if delta <= 0 else math.exp(-delta)  # a NaN energy gives exp(nan) = nan: rejected
        accepted = float(torch.rand(())) < accept_prob
        if accepted:
            params, self._energy = proposal, energy
        warmup = self._t < self._warmup_steps
        if warmup:
            rate = max(0.001, 0.1 / math.sqrt(1 + self._t))
            accept = accept_prob if math.isfinite(accept_prob) else 0.0
            self._log_step_size += rate * (accept - self.target_accept_prob)
        self._t += 1
        n = self._t if warmup else self._t - self._warmup_steps
        if not warmup and accepted:
            self._accept_cnt += 1
        self._mean_accept_prob += ((accept_prob if math.isfinite(accept_prob) else 0.0) - self._mean_accept_prob) / n
        return dict(params)

    def logging(self):
        return OrderedDict([("step size", f"{self.step_size:.2e}"), ("acc. prob", f"{self._mean_accept_prob:.3f}")])

    def diagnostics(self):
        """The acceptance rate of the draws and the final step size."""
        draws = self._t - self._warmup_steps
        return {"acceptance rate": self._accept_cnt / draws if draws > 0 else float("nan"),
                "step size": self.step_size}
