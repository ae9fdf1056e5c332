"""Stochastic variational inference: one optimiser step on the ELBO per call.

>>> import torch, causalppl as cp
>>> cp.clear_param_store()
>>> def model():
...     cp.sample("z", cp.dist.Normal(0.0, 1.0))
>>> def guide():
...     cp.sample("z", cp.dist.Normal(cp.param("loc", torch.tensor(1.0)), 1.0))
>>> svi = cp.infer.SVI(model, guide, cp.optim.SGD({"lr": 0.1}), cp.infer.Trace_ELBO())
>>> isinstance(svi.step(), float)
True
"""

from __future__ import annotations

import math

import torch

from causalppl.handlers import trace
from causalppl.infer.elbo import ELBO, NonFiniteLossError, first_nonfinite_site


class SVI:
    """``SVI(model, guide, optim, loss)``; ``step(*args, **kwargs) -> float``.

    ``loss`` is an ELBO object (e.g. ``Trace_ELBO()``) or a callable
    ``loss(model, guide, *args, **kwargs) -> tensor`` to be minimised.
    """

    def __init__(self, model, guide, optim, loss, loss_and_grads=None, num_samples=0, num_steps=0, **kwargs):
        if not callable(model) or not callable(guide):
            raise TypeError("SVI needs callable model and guide")
        if not callable(optim):
            raise TypeError(f"optim must be a causalppl.optim optimiser, got {type(optim).__name__}")
        self.model = model
        self.guide = guide
        self.optim = optim
        self.loss = loss
        self.num_steps = 0
        # Pyro's deprecated TracePosterior side of SVI: ``run()`` takes ``num_steps`` steps, then draws
        # ``num_samples`` guide traces (a :class:`~causalppl.infer.abstract_infer.GuidePosterior`).
        self.num_samples = num_samples
        self.run_steps = num_steps
        # Pyro's public hook: ``svi.loss_and_grads(model, guide, *args)`` backpropagates
        # (accumulating ``.grad``) without an optimiser step.
        if loss_and_grads is not None:
            self.loss_and_grads = loss_and_grads
        elif isinstance(loss, ELBO):
            self.loss_and_grads = loss.loss_and_grads
        else:
            self.loss_and_grads = _backward_of(loss)
        self._validated = False  # torch's argument checks ran on a whole step

    def _loss_and_params(self, *args, **kwargs):
        """Backpropagate the loss; return it and the unconstrained params it touched."""
        if isinstance(self.loss, ELBO):
            loss = self.loss.loss_and_grads(self.model, self.guide, *args, **kwargs)
            # The ELBO's own traces saw every param site: no extra handler needed.
            sites = {name: site for _, tr in self.loss.last_traces for name, site in tr.nodes.items()
                     if site["type"] == "param"}
        else:
            with trace(param_only=True) as capture:
                value = self.loss(self.model, self.guide, *args, **kwargs)
                if isinstance(value, torch.Tensor) and value.requires_grad:  # no params: nothing to learn
                    value.backward()
            loss, sites = float(value.detach() if isinstance(value, torch.Tensor) else value), capture.trace.nodes
        # Params read as constants (a frozen param_scope) have no leaf to update.
        return loss, [site["value"].unconstrained() for site in sites.values()
                      if hasattr(site["value"], "unconstrained")]

    def step(self, *args, **kwargs):
        """Take one gradient step; return the loss before it (a float).

        The first step checks every distribution's arguments (when validation
        is on, the default); later steps of the same program skip those checks,
        which cost as much as the arithmetic on large plates. A loss that turns
        NaN or infinite later still stops with the site that caused it.
        """
        if self._validated:
            with _unchecked_arguments():
                loss, params = self._loss_and_params(*args, **kwargs)
        else:
            loss, params = self._loss_and_params(*args, **kwargs)
            self._validated = True
        self.num_steps += 1
        if not math.isfinite(loss):
            for param in params:
                param.grad = None
            self._raise_nonfinite(loss)
        self.optim(params)
        for param in params:
            param.grad = None
        return loss

    def _raise_nonfinite(self, loss):
        self._validated = False  # the next step (if any) checks everything again
        traces = getattr(self.loss, "last_traces", None) or ()
        culprit = first_nonfinite_site(*traces) if traces else None
        where = f"; the log density of {culprit} is not finite" if culprit else ""
        raise NonFiniteLossError(
            f"SVI step {self.num_steps}: the loss is {loss}{where}. "
            "Parameters were left as they were before this step."
        )

    def run(self, *args, **kwargs):
        """``run_steps`` (Pyro's ``num_steps``) steps, then ``num_samples`` posterior traces (Pyro's old API).

        Returns a :class:`~causalppl.infer.abstract_infer.GuidePosterior` (``exec_traces``,
        ``information_criterion()``); :class:`~causalppl.infer.Predictive` is the modern way.
        """
        from causalppl.infer.abstract_infer import GuidePosterior

        for _ in range(self.run_steps):
            self.step(*args, **kwargs)
        if not self.num_samples:
            raise ValueError("SVI.run: give SVI(..., num_samples=N) to draw posterior traces")
        return GuidePosterior(self.model, self.guide, self.num_samples).run(*args, **kwargs)

    def evaluate_loss(self, *args, **kwargs):
        """The loss at the current parameters, without taking a step."""
        if hasattr(self.loss, "loss"):
            return self.loss.loss(self.model, self.guide, *args, **kwargs)
        return float(self.loss(self.model, self.guide, *args, **kwargs).detach())


def _backward_of(loss):
    """``loss_and_grads`` for a plain loss callable: evaluate it and backpropagate."""
    def loss_and_grads(*args, **kwargs):
        value = loss(*args, **kwargs)
        if isinstance(value, torch.Tensor) and value.requires_grad:
            value.backward()
        return value
    return loss_and_grads


class _unchecked_arguments:
    """torch's distribution argument checks off for the block (explicit ``validate_args=True`` still checks)."""

    def __enter__(self):
        self.previous = torch.distributions.Distribution._validate_args
        torch.distributions.Distribution._validate_args = False

    def __exit__(self, *exc):
        torch.distributions.Distribution._validate_args = self.previous
        return False
