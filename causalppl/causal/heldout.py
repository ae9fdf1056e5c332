"""Does an MLP fit a continuous node clearly better than a linear mechanism? A held-out check.

``from_graph(..., mechanisms="auto")`` asks this for every continuous node
with a continuous parent. Both models are fitted on 80% of the rows (at most
:data:`MAX_ROWS`) in standardised units: the linear one by least squares, the
MLP (one tanh hidden layer) by a short full-batch Adam run. Each predicts
the other 20% with a Gaussian whose scale is its training residuals' RMS,
and the per-row held-out log-likelihoods are compared. Everything draws from
local generators, so the answer is the same on every call and leaves the
global random state alone.

>>> import torch
>>> x = torch.linspace(-3, 3, 1000)[:, None]
>>> noise = 0.1 * torch.randn(1000, generator=torch.Generator().manual_seed(0))
>>> mlp_versus_linear(x, torch.sin(2 * x[:, 0]) + noise).clear
True
>>> mlp_versus_linear(x, 2 * x[:, 0] + noise).clear
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MAX_ROWS = 2000
MIN_ROWS = 50  # fewer rows cannot show a clear gain
HIDDEN = 16
STEPS = 200
LEARNING_RATE = 0.05
MIN_GAIN = 0.05  # nats per row
MIN_STANDARD_ERRORS = 3.0


@dataclass(frozen=True)
class Comparison:
    """Held-out Gaussian log-likelihood per row (in the data's units) of both fits."""

    linear: float
    mlp: float
    standard_error: float  # of the mean per-row difference mlp - linear
    rows: int  # held-out rows

    @property
    def gain(self):
        return self.mlp - self.linear

    @property
    def clear(self):
        """True when the MLP wins by more than MIN_GAIN nats/row and MIN_STANDARD_ERRORS standard errors."""
        return self.gain > MIN_GAIN and self.gain > MIN_STANDARD_ERRORS * self.standard_error

    def __str__(self):
        verdict = (f"gain {self.gain:.2f} +- {self.standard_error:.2f}" if self.clear else "no clear gain")
        return (f"held-out log-lik linear {self.linear:.2f} vs MLP {self.mlp:.2f} per row "
                f"({verdict}, {self.rows} rows)")


def mlp_versus_linear(features, target, seed=0):
    """Compare a linear and an MLP regression of ``target`` (n,) on ``features`` (n, p).

    Returns a :class:`Comparison`; its ``clear`` says whether to use the MLP.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # at most 2,000 rows by 16 units: more threads only add contention
    try:
        return _compare(features, target, seed)
    finally:
        torch.set_num_threads(threads)


def _compare(features, target, seed):
    features = features.detach().to("cpu", torch.float32)
    target = target.detach().to("cpu", torch.float32)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(target), generator=generator)[:MAX_ROWS]
    cut = int(0.8 * len(order))
    train, test = order[:cut], order[cut:]
    x_train, x_test = _standardise(features[train], features[test])
    y_train, y_test = _standardise(target[train, None], target[test, None])
    with torch.no_grad():
        linear = _held_out(_least_squares(x_train, y_train), x_train, y_train, x_test, y_test)
    mlp = _held_out(_train_mlp(x_train, y_train, seed), x_train, y_train, x_test, y_test)
    # Back to the data's units: the density of y is that of y_std over the spread.
    units = math.log(float(target[train].std())) if len(train) > 1 and float(target[train].std()) > 0 else 0.0
    difference = mlp - linear
    return Comparison(
        linear=float(linear.mean()) - units,
        mlp=float(mlp.mean()) - units,
        standard_error=float(difference.std() / math.sqrt(len(difference))),
        rows=len(test),
    )


def _standardise(train, test):
    """Centre and scale both by the training rows' mean and sd (constant columns scale 1)."""
    centre = train.mean(0)
    scale = train.std(0) if len(train) > 1 else torch.ones_like(centre)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (train - centre) / scale, (test - centre) / scale


def _least_squares(x, y):
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    coef = torch.linalg.lstsq(design, y).solution
    return lambda inputs: torch.cat([inputs, torch.ones(len(inputs), 1)], dim=1) @ coef


def _train_mlp(x, y, seed):
    """A full-batch Adam fit of a one-hidden-layer tanh network (squared error)."""
    generator = torch.Generator().manual_seed(seed + 1)

    def uniform(*shape):  # torch.nn.Linear's initialisation, from the local generator
        bound = 1 / math.sqrt(shape[-1])
        return ((torch.rand(shape, generator=generator) * 2 - 1) * bound).requires_grad_()

    params = [uniform(HIDDEN, x.shape[1]), uniform(HIDDEN, x.shape[1])[:, 0].detach().requires_grad_(),
              uniform(1, HIDDEN), uniform(1, HIDDEN)[:, 0].detach().requires_grad_()]

    def net(inputs):
        w1, b1, w2, b2 = params
        return torch.tanh(inputs @ w1.T + b1) @ w2.T + b2

    with torch.enable_grad():
        _adam(params, lambda: ((net(x) - y) ** 2).mean())
    return lambda inputs: net(inputs).detach()


def _adam(params, loss_fn, beta1=0.9, beta2=0.999, eps=1e-8):
    """STEPS plain Adam steps (written out: torch.optim's first use imports the compiler stack)."""
    first = [torch.zeros_like(p) for p in params]
    second = [torch.zeros_like(p) for p in params]
    for step in range(1, STEPS + 1):
        grads = torch.autograd.grad(loss_fn(), params)
        with torch.no_grad():
            for p, g, m, v in zip(params, grads, first, second):
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
                p.sub_(LEARNING_RATE * m_hat / (v_hat.sqrt() + eps))


def _held_out(predict, x_train, y_train, x_test, y_test):
    """Per-row log-likelihood of the test rows under Normal(predict(x), training RMS)."""
    with torch.no_grad():
        scale = ((predict(x_train) - y_train) ** 2).mean().sqrt().clamp_min(1e-6)
        return torch.distributions.Normal(predict(x_test), scale).log_prob(y_test).squeeze(-1)
