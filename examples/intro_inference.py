"""Pyro's "Introduction to Inference" tutorial, transliterated to causalppl.

A shopkeeper weighs an object on an unreliable scale. Our prior guess of its
weight is ``guess``; the scale reads the true weight plus Gaussian noise::

    weight      ~ Normal(guess, 1)
    measurement ~ Normal(weight, 0.75)

Having seen ``measurement = 9.5`` with ``guess = 8.5`` the exact posterior is
``Normal(9.14, 0.6)``. We condition the model, check a couple of ways of
scoring it, intervene on it with ``do``, and then recover the posterior with
SVI, both with ``cp.infer.SVI`` and with a hand-written torch.optim loop.

Run ``python examples/intro_inference.py [--steps N] [--no-plots] [--out-dir DIR]``.
"""

from __future__ import annotations

import argparse
import math
import os

import torch
from torch.distributions import constraints

import causalppl as cp
import causalppl.distributions as dist

MEASUREMENT = torch.tensor(9.5)
# The analytic posterior of the weight given measurement 9.5 and guess 8.5.
POSTERIOR_LOC = (0.75**2 * 8.5 + 9.5) / (1 + 0.75**2)  # 9.14
POSTERIOR_SCALE = math.sqrt(0.75**2 / (1 + 0.75**2))  # 0.6


# ---------------------------------------------------------------------------
# The model and its conditioned versions
# ---------------------------------------------------------------------------


def scale(guess):
    weight = cp.sample("weight", dist.Normal(guess, 1.0))
    return cp.sample("measurement", dist.Normal(weight, 0.75))


conditioned_scale = cp.condition(scale, data={"measurement": MEASUREMENT})


def deferred_conditioned_scale(measurement, guess):
    """Condition at call time, so the observed value can be an argument."""
    return cp.condition(scale, data={"measurement": measurement})(guess)


def scale_obs(guess):
    """The same as ``conditioned_scale``, with the observation written in the model."""
    weight = cp.sample("weight", dist.Normal(guess, 1.0))
    return cp.sample("measurement", dist.Normal(weight, 0.75), obs=torch.tensor(9.5))


# ---------------------------------------------------------------------------
# Guides
# ---------------------------------------------------------------------------


def perfect_guide(guess):
    """The exact posterior, worked out by hand (possible only for this toy model)."""
    loc = (0.75**2 * guess + 9.5) / (1 + 0.75**2)  # 9.14
    scale = math.sqrt(0.75**2 / (1 + 0.75**2))  # 0.6
    return cp.sample("weight", dist.Normal(loc, scale))


def some_nonlinear_function(weight):
    return weight + 0.5 * torch.sin(weight)


def intractable_scale(guess):
    """With a nonlinear scale the posterior has no closed form."""
    weight = cp.sample("weight", dist.Normal(guess, 1.0))
    return cp.sample("measurement", dist.Normal(some_nonlinear_function(weight), 0.75))


def scale_parametrized_guide(guess):
    a = cp.param("a", torch.tensor(guess))
    b = cp.param("b", torch.tensor(1.0))
    return cp.sample("weight", dist.Normal(a, torch.abs(b)))


def scale_parametrized_guide_constrained(guess):
    a = cp.param("a", torch.tensor(guess))
    b = cp.param("b", torch.tensor(1.0), constraint=constraints.positive)
    return cp.sample("weight", dist.Normal(a, b))  # no more torch.abs


# ---------------------------------------------------------------------------
# Scoring: a log joint two ways
# ---------------------------------------------------------------------------


def make_log_joint(model):
    """``log p(data)`` of a fully conditioned model, via a trace."""

    def _log_joint(cond_data, *args, **kwargs):
        conditioned_model = cp.condition(model, data=cond_data)
        trace = cp.handlers.trace(conditioned_model).get_trace(*args, **kwargs)
        return trace.log_prob_sum()

    return _log_joint


def log_joint_by_hand(model, cond_data, *args, **kwargs):
    """The same number, summing each sample site's log density ourselves."""
    with cp.handlers.TraceMessenger() as tracer:
        cp.condition(model, data=cond_data)(*args, **kwargs)
    logp = 0.0
    for site in tracer.trace.nodes.values():
        if site["type"] == "sample":
            logp = logp + site["fn"].log_prob(site["value"]).sum()
    return logp


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------


def fit_svi(guess, num_steps):
    """SVI with the library's optimiser wrapper; returns losses and a/b trajectories."""
    cp.clear_param_store()
    svi = cp.infer.SVI(
        model=conditioned_scale,
        guide=scale_parametrized_guide_constrained,
        optim=cp.optim.SGD({"lr": 0.001, "momentum": 0.1}),
        loss=cp.infer.Trace_ELBO(),
    )
    losses, a, b = [], [], []
    for _ in range(num_steps):
        losses.append(svi.step(guess))
        a.append(cp.param("a").item())
        b.append(cp.param("b").item())
    return losses, a, b


def fit_by_hand(guess, num_steps):
    """The same fit with a plain torch optimiser on the unconstrained leaves."""
    cp.clear_param_store()
    # One dry run records which params the loss uses (and creates them).
    with cp.handlers.trace(param_only=True) as param_capture:
        loss = cp.infer.Trace_ELBO().differentiable_loss(
            conditioned_scale, scale_parametrized_guide_constrained, guess
        )
    params = [site["value"].unconstrained() for site in param_capture.trace.nodes.values()]
    optimizer = torch.optim.SGD(params, lr=0.001, momentum=0.1)
    elbo = cp.infer.Trace_ELBO()
    losses = []
    for _ in range(num_steps):
        optimizer.zero_grad()
        loss = elbo.differentiable_loss(conditioned_scale, scale_parametrized_guide_constrained, guess)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, cp.param("a").item(), cp.param("b").item()


def elbo_estimate(model, guide, guess, num_particles=2000):
    """A low-variance estimate of the loss (negative ELBO) of ``guide``."""
    elbo = cp.infer.Trace_ELBO(num_particles=num_particles, vectorize_particles=True)
    return elbo.loss(model, guide, guess)


def save_plots(losses, a, b, out_dir):
    """Write elbo.png and params.png to ``out_dir``; return their paths (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    os.makedirs(out_dir, exist_ok=True)
    num_steps = len(losses)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(losses)
    ax.set_title("ELBO")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    fig.tight_layout()
    elbo_path = os.path.join(out_dir, "elbo.png")
    fig.savefig(elbo_path)
    plt.close(fig)

    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(8, 3.5))
    ax_a.plot([0, num_steps], [9.14, 9.14], "k:")
    ax_a.plot(a)
    ax_a.set_ylabel("a")
    ax_a.set_xlabel("step")
    ax_b.plot([0, num_steps], [0.6, 0.6], "k:")
    ax_b.plot(b)
    ax_b.set_ylabel("b")
    ax_b.set_xlabel("step")
    fig.tight_layout()
    params_path = os.path.join(out_dir, "params.png")
    fig.savefig(params_path)
    plt.close(fig)
    return elbo_path, params_path


# ---------------------------------------------------------------------------
# The tutorial, top to bottom
# ---------------------------------------------------------------------------


def main(steps=2500, plots=True, out_dir="."):
    """Run the tutorial; return a dict of the numbers it prints."""
    cp.set_rng_seed(101)
    guess = 8.5
    results = {}

    print("A draw from the model:", scale(guess).item())
    print("Conditioned on measurement 9.5:", conditioned_scale(guess).item())
    print("Deferred conditioning:", deferred_conditioned_scale(torch.tensor(9.5), guess).item())
    print("With obs= in the model:", scale_obs(guess).item())
    intractable_scale(guess)  # runs, but has no closed-form posterior

    # do(weight=9): the measurement then follows Normal(9, 0.75) whatever the prior.
    intervened_scale = cp.do(scale, data={"weight": torch.tensor(9.0)})
    draws = torch.stack([intervened_scale(guess) for _ in range(2000)])
    results["do_mean"], results["do_std"] = draws.mean().item(), draws.std().item()
    print(f"do(weight=9): measurement mean {results['do_mean']:.3f}, std {results['do_std']:.3f}"
          " (expected 9, 0.75)")

    # The log joint at weight=8.23, measurement=9.5, computed two ways.
    data = {"measurement": torch.tensor(9.5), "weight": torch.tensor(8.23)}
    results["log_joint"] = make_log_joint(scale)(data, guess).item()
    results["log_joint_by_hand"] = float(log_joint_by_hand(scale, data, guess))
    print(f"log p(weight=8.23, measurement=9.5) = {results['log_joint']:.4f} "
          f"(by hand: {results['log_joint_by_hand']:.4f})")

    # How good is the perfect guide compared with a poor one?
    poor_guide = lambda guess: cp.sample("weight", dist.Normal(guess, 2.0))  # noqa: E731
    results["perfect_guide_loss"] = elbo_estimate(conditioned_scale, perfect_guide, guess)
    results["poor_guide_loss"] = elbo_estimate(conditioned_scale, poor_guide, guess)
    print(f"loss with the perfect guide {results['perfect_guide_loss']:.4f}, "
          f"with a poor guide {results['poor_guide_loss']:.4f}")

    # The unconstrained guide (torch.abs keeps the scale positive) for a few steps.
    cp.clear_param_store()
    svi = cp.infer.SVI(conditioned_scale, scale_parametrized_guide,
                       cp.optim.SGD({"lr": 0.001, "momentum": 0.1}), cp.infer.Trace_ELBO())
    for _ in range(min(steps, 100)):
        svi.step(guess)

    # SVI with the constrained guide.
    losses, a, b = fit_svi(guess, steps)
    results["svi"] = (a[-1], b[-1])
    results["losses"] = losses
    print("SVI:          a =", a[-1], " b =", b[-1])

    # The same, by hand.
    manual_losses, manual_a, manual_b = fit_by_hand(guess, steps)
    results["manual"] = (manual_a, manual_b)
    results["manual_losses"] = manual_losses
    print("by hand:      a =", manual_a, " b =", manual_b)
    print(f"analytic:     a = {POSTERIOR_LOC:.4f}  b = {POSTERIOR_SCALE:.4f}")

    results["plots"] = None
    if plots:
        results["plots"] = save_plots(losses, a, b, out_dir)
        if results["plots"] is None:
            print("matplotlib is not installed: plots were skipped")
        else:
            print("wrote", ", ".join(results["plots"]))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2500, help="SVI steps (default 2500)")
    parser.add_argument("--no-plots", action="store_true", help="do not write elbo.png / params.png")
    parser.add_argument("--out-dir", default=".", help="folder for the plots (default: here)")
    args = parser.parse_args()
    main(steps=args.steps, plots=not args.no_plots, out_dir=args.out_dir)
