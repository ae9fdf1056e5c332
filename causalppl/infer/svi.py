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

from causalppl.handlers import trace
from causalppl.infer.elbo import NonFiniteLossError, first_nonfinite_site


class SVI:
    """``SVI(model, guide, optim, loss)``; ``step(*args, **kwargs) -> float``.

    ``loss`` is an ELBO object (e.g. ``Trace_ELBO()``) or a callable
    ``loss(model, guide, *args, **kwargs) -> tensor`` to be minimised.
    """

    def __init__(self, model, guide, optim, loss):
        if not callable(model) or not callable(guide):
            raise TypeError("SVI needs callable model and guide")
        if not callable(optim):
            raise TypeError(f"optim must be a causalppl.optim optimiser, got {type(optim).__name__}")
        self.model = model
        self.guide = guide
        self.optim = optim
        self.loss = loss
        self.num_steps = 0

    def _loss_and_grads(self, *args, **kwargs):
        if hasattr(self.loss, "loss_and_grads"):
            return self.loss.loss_and_grads(self.model, self.guide, *args, **kwargs)
        value = self.loss(self.model, self.guide, *args, **kwargs)
        value.backward()
        return float(value)

    def step(self, *args, **kwargs):
        """Take one gradient step; return the loss before it (a float)."""
        with trace(param_only=True) as capture:
            loss = self._loss_and_grads(*args, **kwargs)
        params = [site["value"].unconstrained() for site in capture.trace.nodes.values()]
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
        traces = getattr(self.loss, "last_traces", None) or ()
        culprit = first_nonfinite_site(*traces) if traces else None
        where = f"; the log density of {culprit} is not finite" if culprit else ""
        raise NonFiniteLossError(
            f"SVI step {self.num_steps}: the loss is {loss}{where}. "
            "Parameters were left as they were before this step."
        )

    def evaluate_loss(self, *args, **kwargs):
        """The loss at the current parameters, without taking a step."""
        if hasattr(self.loss, "loss"):
            return self.loss.loss(self.model, self.guide, *args, **kwargs)
        return float(self.loss(self.model, self.guide, *args, **kwargs).detach())
