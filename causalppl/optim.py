"""Pyro-style optimisers: a dict of ``torch.optim`` arguments, one torch optimiser.

``SGD({"lr": 0.01})`` is called by SVI with the parameters a step touched;
parameters seen for the first time join the one underlying torch optimiser
(a new param group), so there is never one optimiser per parameter.

>>> import torch, causalppl as cp
>>> opt = cp.optim.SGD({"lr": 0.1})
>>> w = torch.tensor(1.0, requires_grad=True)
>>> (2 * w).backward()
>>> opt([w]); round(w.item(), 4)
0.8
"""

from __future__ import annotations

import torch


class PyroOptim:
    """Wrap a ``torch.optim.Optimizer`` class with fixed or per-parameter arguments.

    ``optim_args`` is a dict of keyword arguments, or a callable
    ``(param_name) -> dict`` for per-parameter settings (the name is the param
    store name, or ``None`` for tensors not in the store).
    """

    def __init__(self, optim_constructor, optim_args=None, clip_args=None):
        if optim_args is None:
            optim_args = {}
        if not (isinstance(optim_args, dict) or callable(optim_args)):
            raise TypeError(f"optim_args must be a dict or a callable, got {type(optim_args).__name__}")
        self.optim_constructor = optim_constructor
        self.optim_args = optim_args
        self.clip_args = clip_args
        self.optimizer = None
        self._known = set()

    def _args_for(self, param):
        if isinstance(self.optim_args, dict):
            return self.optim_args
        from causalppl.params import get_param_store

        store = get_param_store()
        name = next((n for n, leaf in store.named_parameters() if leaf is param), None)
        return self.optim_args(name)

    def _add(self, params):
        new = [p for p in params if p not in self._known]
        if not new:
            return
        self._known.update(new)
        if isinstance(self.optim_args, dict):
            groups = [{"params": new}]
        else:
            groups = [{"params": [p], **self._args_for(p)} for p in new]
        if self.optimizer is None:
            first_args = self.optim_args if isinstance(self.optim_args, dict) else {}
            self.optimizer = self.optim_constructor(groups, **first_args)
        else:
            for group in groups:
                self.optimizer.add_param_group(group)

    def __call__(self, params):
        """Take one step on ``params`` (an iterable of leaf tensors with gradients)."""
        params = list(params)
        self._add(params)
        if self.clip_args:
            torch.nn.utils.clip_grad_norm_(params, **self.clip_args)
        self.optimizer.step()

    def zero_grad(self):
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def get_state(self):
        return {} if self.optimizer is None else self.optimizer.state_dict()

    def set_state(self, state):
        if self.optimizer is None:
            raise RuntimeError("the optimizer has no parameters yet; take one step before set_state")
        self.optimizer.load_state_dict(state)


def SGD(optim_args=None, clip_args=None):
    """``torch.optim.SGD`` with Pyro's dict-of-arguments interface."""
    return PyroOptim(torch.optim.SGD, optim_args, clip_args)


def Adam(optim_args=None, clip_args=None):
    """``torch.optim.Adam`` with Pyro's dict-of-arguments interface."""
    return PyroOptim(torch.optim.Adam, optim_args, clip_args)


def AdamW(optim_args=None, clip_args=None):
    return PyroOptim(torch.optim.AdamW, optim_args, clip_args)


def RMSprop(optim_args=None, clip_args=None):
    return PyroOptim(torch.optim.RMSprop, optim_args, clip_args)


def Adagrad(optim_args=None, clip_args=None):
    return PyroOptim(torch.optim.Adagrad, optim_args, clip_args)
