"""Pyro's ``random_module``: an ``nn.Module`` whose parameters are drawn from a prior.

Deprecated in Pyro (use :class:`causalppl.nn.PyroModule` with
:class:`~causalppl.nn.PyroSample` instead) and kept so old scripts run.

>>> import torch, causalppl as cp
>>> cp.clear_param_store()
>>> draw = cp.random_module("net", torch.nn.Linear(2, 2), cp.dist.Bernoulli(torch.ones(2, 2)))
>>> net = draw()
>>> bool((net.weight == 1).all())
True
"""

from __future__ import annotations

import copy
import warnings

from causalppl.params import module


def random_module(name, nn_module, prior, *args, **kwargs):
    """A function that returns a copy of ``nn_module`` with its parameters drawn from ``prior``.

    ``prior`` is what :class:`causalppl.handlers.lift` takes: a distribution
    for every parameter, a dict of the module's own parameter names
    (``"fc.weight"``) to distributions or functions, or a function. Each call
    records one ``sample`` site per lifted parameter, named
    ``{name}$$${param}``.
    """
    from causalppl.handlers import lift

    warnings.warn("random_module is deprecated (as in Pyro): use causalppl.nn.PyroModule with PyroSample priors",
                  FutureWarning, stacklevel=2)
    if not hasattr(nn_module, "parameters"):
        raise TypeError(f"random_module '{name}': expected a torch.nn.Module, got {nn_module!r}")
    lifted = lift(module, prior=prior)

    def draw():
        # Sampled values replace the copy's parameters, so the original module is never changed.
        return lifted(name, copy.deepcopy(nn_module), True, *args, **kwargs)

    return draw
