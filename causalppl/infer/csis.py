"""Compiled sequential importance sampling (Le, Baydin & Wood 2017): train a guide on the model's own draws.

Training draws ``(z, x)`` from the model's joint (observed sites sampled
too) and minimises ``E[-log q(z | x)]``: the guide is called with keyword
``observations`` = the drawn observed values, so it learns to propose for
whatever data it is later given. Inference is then importance sampling with
that guide (:class:`~causalppl.infer.Importance`): ``run(observations)``.

>>> import torch, causalppl as cp
>>> cp.clear_param_store(); cp.set_rng_seed(0)
>>> def model(observations={"y": 0.0}):
...     x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
...     cp.sample("y", cp.dist.Normal(x, 1.0), obs=observations["y"])
>>> def guide(observations={"y": 0.0}):
...     w = cp.param("w", torch.tensor(0.0))
...     cp.sample("x", cp.dist.Normal(w * torch.as_tensor(observations["y"]), 1.0))
>>> csis = CSIS(model, guide, cp.optim.Adam({"lr": 0.05}), training_batch_size=20)
>>> for _ in range(300):
...     _ = csis.step()
>>> abs(cp.param("w").item() - 0.5) < 0.15  # the posterior mean of x given y is y / 2
True
"""

from __future__ import annotations

import torch

from causalppl.handlers import replay, trace, uncondition
from causalppl.infer.importance import Importance
from causalppl.trace import contributes_log_prob, log_prob_of


class CSIS(Importance):
    """``CSIS(model, guide, optim, num_inference_samples=10, training_batch_size=10, validation_batch_size=20)``.

    ``step(*args, **kwargs)`` takes one optimiser step on a fresh batch of
    joint draws and returns the loss; ``validation_loss()`` evaluates a fixed
    batch (drawn on first use); ``run(*args, **kwargs)`` importance-samples
    ``num_inference_samples`` draws (``exec_traces``, ``log_weights``).
    """

    def __init__(self, model, guide, optim, num_inference_samples=10, training_batch_size=10,
                 validation_batch_size=20):
        super().__init__(model, guide, num_samples=num_inference_samples, vectorize=False)
        if not callable(optim):
            raise TypeError(f"CSIS: optim must be a causalppl.optim optimiser, got {type(optim).__name__}")
        self.optim = optim
        self.training_batch_size = int(training_batch_size)
        self.validation_batch_size = int(validation_batch_size)
        self.validation_batch = None

    def set_validation_batch(self, *args, **kwargs):
        """Draw (and keep) the joint samples :meth:`validation_loss` evaluates."""
        with torch.no_grad():
            self.validation_batch = [self._sample_from_joint(*args, **kwargs)
                                     for _ in range(self.validation_batch_size)]

    def _sample_from_joint(self, *args, **kwargs):
        return trace(uncondition(self.model)).get_trace(*args, **kwargs)

    def _guide_trace_for(self, model_trace, *args, **kwargs):
        """The guide's trace proposing ``model_trace``'s latents, given its sampled observations."""
        observations = {name: site["value"] for name, site in model_trace.nodes.items()
                        if site["type"] == "sample" and site["infer"].get("was_observed")}
        kwargs = {**kwargs, "observations": observations}
        return trace(replay(self.guide, trace=model_trace)).get_trace(*args, **kwargs)

    @staticmethod
    def _negative_log_q(guide_trace):
        total = 0.0
        for site in guide_trace.nodes.values():
            if contributes_log_prob(site) and not site["is_observed"]:
                total = total - log_prob_of(site).sum()
        return torch.as_tensor(total)

    def loss_and_grads(self, grads=True, *args, **kwargs):
        """The mean of ``-log q(z | x)`` over a training batch; backpropagated when ``grads``."""
        loss, params = 0.0, {}
        for _ in range(self.training_batch_size):
            with torch.no_grad():
                model_trace = self._sample_from_joint(*args, **kwargs)
            with trace(param_only=True) as capture:
                particle = self._negative_log_q(self._guide_trace_for(model_trace, *args, **kwargs))
            particle = particle / self.training_batch_size
            if grads and particle.requires_grad:
                particle.backward()
            params.update({name: site["value"] for name, site in capture.trace.nodes.items()})
            loss = loss + float(particle.detach())
        return loss, params

    def step(self, *args, **kwargs):
        """One optimiser step of the guide's params on a fresh training batch; returns the loss."""
        loss, params = self.loss_and_grads(True, *args, **kwargs)
        leaves = [value.unconstrained() for value in params.values() if hasattr(value, "unconstrained")]
        self.optim(leaves)
        for leaf in leaves:
            leaf.grad = None
        return loss

    def validation_loss(self, *args, **kwargs):
        """The mean ``-log q(z | x)`` over the fixed validation batch (a float)."""
        if self.validation_batch is None:
            self.set_validation_batch(*args, **kwargs)
        with torch.no_grad():
            total = sum(float(self._negative_log_q(self._guide_trace_for(model_trace, *args, **kwargs)))
                        for model_trace in self.validation_batch)
        return total / len(self.validation_batch)


__all__ = ["CSIS"]
