"""The floor: each workload's SVI step written out by hand in eager torch.

The same estimator as ``Trace_ELBO`` with one reparameterised sample and the
same optimiser update, with nothing a PPL adds:

- log-densities written out (no distribution objects, no validation);
- every variational param in one flat leaf tensor, so the optimiser update
  is a handful of foreach ops over one list (:class:`ForeachSGD`,
  :class:`ForeachAdam`: ``torch.optim.SGD`` / ``Adam``'s update rules);
- the linear SCM vectorised over nodes: ``X - X @ W`` in one ``addmm``, with
  ``W`` the sampled weights scattered under the edge mask, one residual and
  one sum of squares. (Gathering each node's parent columns and summing them
  into their children, ``index_add_``, was slower here at 10, 50 and 200
  nodes, even at two parents per node.)
- ``log q`` of a mean-field Normal at its own reparameterised sample is
  ``-log s - eps^2 / 2 - log(2 pi) / 2``: the same value and gradients as
  evaluating the density at ``z = loc + s * eps``, without the pass over z.

Guide scales are ``exp`` of an unconstrained param (``transform_to(positive)``,
as causalppl's AutoNormal and ``param(constraint=positive)`` keep them),
initialised to 0.1 for AutoNormal workloads; locs start at 0.

>>> import torch
>>> from workloads import WORKLOADS, make_data
>>> w = WORKLOADS["L10"].scaled(rows=400)
>>> run = build(w, make_data(w), torch.device("cpu"), seed=0)
>>> loss = run.step(); isinstance(loss, float)
True
"""

from __future__ import annotations

import math

import torch
from workloads import (
    CONFOUNDER_PRIOR_SD,
    CONFOUNDER_SD,
    GUESS,
    LOG_2PI,
    MEASUREMENT,
    NOISE_SD,
    PRIOR_SD,
)

HALF_LOG_2PI = 0.5 * LOG_2PI
INIT_SCALE = 0.1


class ForeachSGD:
    """``torch.optim.SGD(lr, momentum)``'s update (first buffer = the gradient), foreach ops."""

    def __init__(self, params, lr, momentum=0.0):
        self.params, self.lr, self.momentum = list(params), lr, momentum
        self.buffers = None

    @torch.no_grad()
    def step(self):
        grads = [p.grad for p in self.params]
        if self.momentum and self.buffers is None:
            self.buffers = [g.clone() for g in grads]
        elif self.momentum:
            torch._foreach_mul_(self.buffers, self.momentum)
            torch._foreach_add_(self.buffers, grads)
        torch._foreach_add_(self.params, self.buffers if self.momentum else grads, alpha=-self.lr)
        for p in self.params:
            p.grad = None


class ForeachAdam:
    """``torch.optim.Adam(lr, betas, eps)``'s update (no weight decay, no amsgrad), foreach ops."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self):
        beta1, beta2 = self.betas
        self.t += 1
        grads = [p.grad for p in self.params]
        torch._foreach_lerp_(self.m, grads, 1 - beta1)
        torch._foreach_mul_(self.v, beta2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, math.sqrt(1 - beta2**self.t))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.m, denom, value=-self.lr / (1 - beta1**self.t))
        for p in self.params:
            p.grad = None


class Run:
    """One optimisation run: ``step()`` takes an SVI step and returns the loss as a float."""

    def __init__(self, step, answer):
        self.step = step
        self._answer = answer

    def answer(self):
        return self._answer()


def build(workload, data, device, seed):
    """A :class:`Run` of ``workload`` on ``data`` (from :func:`workloads.make_data`)."""
    torch.manual_seed(seed)
    if workload.kind == "scale":
        return _scale(device)
    if workload.kind == "linear":
        return _linear(workload, data, device)
    if workload.kind == "confounder":
        return _confounder(workload, data, device)
    raise ValueError(f"workload {workload.name}: unknown kind {workload.kind!r}")


def _flat_guide(size, device, init_scale=INIT_SCALE):
    """One leaf ``[locs | log scales]`` of a mean-field Normal over ``size`` numbers."""
    theta = torch.zeros(2 * size, device=device)
    theta[size:] = math.log(init_scale)
    return theta.requires_grad_(True)


def _scale(device):
    # theta = [a, log b]: the tutorial guide Normal(a, b), b positive, from a = 8.5, b = 1.
    theta = torch.tensor([GUESS, 0.0], device=device, requires_grad=True)
    optim = ForeachSGD([theta], lr=1e-3, momentum=0.1)
    const = -2 * HALF_LOG_2PI - math.log(PRIOR_SD) - math.log(NOISE_SD) + HALF_LOG_2PI

    def step():
        a, log_b = theta.unbind()
        eps = torch.randn((), device=device)
        z = a + log_b.exp() * eps
        log_p = -0.5 * ((z - GUESS) / PRIOR_SD) ** 2 - 0.5 * ((MEASUREMENT - z) / NOISE_SD) ** 2
        loss = -log_p - log_b - 0.5 * eps * eps  # -(log p - log q), constants aside
        loss.backward()
        optim.step()
        return loss.item() - const

    def answer():
        a, log_b = theta.detach().tolist()
        return {"a": a, "b": math.exp(log_b)}

    return Run(step, answer)


def _linear(workload, data, device):
    X = torch.as_tensor(data["X"], device=device)
    N, D, E = data["N"], data["D"], data["E"]
    src = torch.as_tensor(data["src"], device=device)
    dst = torch.as_tensor(data["dst"], device=device)
    flat = src * D + dst  # the edges' places in W.view(-1)
    batch = workload.batch
    K = E + D  # latent numbers: edge weights, then biases
    theta = _flat_guide(K, device)
    optim = ForeachAdam([theta], lr=workload.lr)
    rows = N if batch is None else batch
    lik_scale = 1.0 if batch is None else N / batch
    const = -rows * D * lik_scale * HALF_LOG_2PI  # the likelihood's; the prior's and q's cancel

    def step():
        loc, log_s = theta.split(K)
        eps = torch.randn(K, device=device)
        z = loc + log_s.exp() * eps
        w, b = z.split((E, D))
        Xb = X if batch is None else X.index_select(0, torch.randperm(N, device=device)[:batch])
        W = torch.zeros(D * D, device=device).index_put((flat,), w).view(D, D)
        R = (torch.addmm(Xb, Xb, W, alpha=-1) - b).view(-1)  # X - X @ W - b
        loss = 0.5 * lik_scale * torch.dot(R, R) + 0.5 * torch.dot(z, z) - log_s.sum() - 0.5 * torch.dot(eps, eps)
        loss.backward()
        optim.step()
        return loss.item() - const

    def answer():
        loc = theta.detach()[:K].cpu()
        return {"w": loc[:E].tolist(), "b": loc[E:].tolist()}

    return Run(step, answer)


def _confounder(workload, data, device):
    X = torch.as_tensor(data["X"], device=device)
    Y = torch.as_tensor(data["Y"], device=device)
    N = data["N"]
    K = 3 + N  # a, beta, c, then u per row
    theta = _flat_guide(K, device)
    optim = ForeachAdam([theta], lr=workload.lr)
    sd, psd = CONFOUNDER_SD, CONFOUNDER_PRIOR_SD
    const = (-3 * (math.log(psd) + HALF_LOG_2PI) - N * HALF_LOG_2PI
             - 2 * N * (math.log(sd) + HALF_LOG_2PI) + K * HALF_LOG_2PI)

    def step():
        loc, log_s = theta.split(K)
        eps = torch.randn(K, device=device)
        z = loc + log_s.exp() * eps
        g, u = z.split((3, N))
        a, beta, c = g.unbind()
        rx = X - a * u
        ry = Y - beta * X - c * u
        loss = (0.5 / sd**2 * (torch.dot(rx, rx) + torch.dot(ry, ry)) + 0.5 / psd**2 * torch.dot(g, g)
                + 0.5 * torch.dot(u, u) - log_s.sum() - 0.5 * torch.dot(eps, eps))
        loss.backward()
        optim.step()
        return loss.item() - const

    def answer():
        a, beta, c = theta.detach()[:3].tolist()
        return {"a": a, "beta": beta, "c": c}

    return Run(step, answer)
