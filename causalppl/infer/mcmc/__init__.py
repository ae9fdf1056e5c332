"""Markov chain Monte Carlo: ``MCMC`` with the ``NUTS`` and ``HMC`` kernels (Pyro's API).

>>> import torch, causalppl as cp
>>> cp.set_rng_seed(1)
>>> def model():
...     cp.sample("p", cp.dist.Beta(2.0, 2.0))
>>> mcmc = cp.infer.MCMC(cp.infer.NUTS(model), num_samples=300, warmup_steps=150)
>>> mcmc.run()
>>> p = mcmc.get_samples()["p"]
>>> bool((p > 0).all() and (p < 1).all()), abs(p.mean().item() - 0.5) < 0.08
(True, True)

- :mod:`causalppl.infer.mcmc.api`: :class:`MCMC` (chains, draws, summary, diagnostics);
- :mod:`causalppl.infer.mcmc.nuts` and :mod:`causalppl.infer.mcmc.hmc`: the kernels
  (:class:`MCMCKernel`, Pyro's protocol, for kernels of one's own);
- :mod:`causalppl.infer.mcmc.adaptation`: dual averaging and the windowed mass matrix;
- :mod:`causalppl.infer.mcmc.util`: the potential energy of a model, initialisation, summaries;
- :mod:`causalppl.infer.diagnostics`: effective sample size, split R-hat, intervals.
"""

from causalppl.infer.mcmc.api import MCMC
from causalppl.infer.mcmc.hmc import HMC
from causalppl.infer.mcmc.mcmc_kernel import MCMCKernel
from causalppl.infer.mcmc.nuts import NUTS
from causalppl.infer.mcmc.rwkernel import RandomWalkKernel
from causalppl.infer.mcmc.util import init_to_uniform, initialize_model

__all__ = ["HMC", "MCMC", "MCMCKernel", "NUTS", "RandomWalkKernel", "init_to_uniform", "initialize_model"]
