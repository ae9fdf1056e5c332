"""Pyro's kernel protocol: what :class:`~causalppl.infer.MCMC` needs from a transition kernel.

A kernel of one's own subclasses :class:`MCMCKernel` and defines ``sample``
(and usually ``setup`` and ``initial_params``); ``MCMC`` then calls
``setup(warmup_steps, *args, **kwargs)``, starts from ``initial_params``,
calls ``params = kernel.sample(params)`` once per iteration, keeps the draws
after warmup (mapped to the support by ``transforms[name].inv`` where MCMC
or the kernel has transforms), and asks ``diagnostics()`` and ``cleanup()``
at the end. :class:`~causalppl.infer.NUTS` and :class:`~causalppl.infer.HMC`
are such kernels.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod


class MCMCKernel(metaclass=ABCMeta):
    """Base class of MCMC transition kernels (Pyro's interface)."""

    def setup(self, warmup_steps, *args, **kwargs):
        """Prepare a chain of ``warmup_steps`` warmup iterations for the model arguments given."""
        return None

    def cleanup(self):
        """Drop what one chain left behind."""
        return None

    def logging(self):
        """A dict (or None) of progress information for the progress bar."""
        return None

    def diagnostics(self):
        """A dict of this chain's diagnostics, reported per chain by ``MCMC.diagnostics()``."""
        return {}

    def end_warmup(self):
        """Called once, when warmup ends."""
        return None

    @property
    def initial_params(self):
        """The unconstrained values the chain starts from (site -> tensor)."""
        raise NotImplementedError

    @initial_params.setter
    def initial_params(self, params):
        raise NotImplementedError

    @abstractmethod
    def sample(self, params):
        """One transition: new unconstrained values from ``params``."""
        raise NotImplementedError

    def __call__(self, params):
        return self.sample(params)
