"""Pyro's "Gaussian Mixture Model" tutorial, transliterated to causalppl.

A two-component 1-D mixture on five points. The component assignments are
discrete latents: ``config_enumerate`` marks them and ``TraceEnum_ELBO`` sums
them out exactly (two values per point in one batch dim, not 2**5 joint
assignments), so SVI fits MAP estimates of the globals (weights, locs,
scale) with an ``AutoDelta`` guide. Then:

- ``infer_discrete`` gives each point's MAP component (temperature 0) or a
  posterior draw of it (temperature 1), the fitted globals replayed;
- a second guide enumerates the assignments *in the guide*, with learned
  per-point probabilities, and fits them.

The tutorial's last part (collapsed NUTS over the globals) is left out.

Run ``python examples/gmm_enumeration.py [--steps N]``.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.distributions import constraints

import causalppl as cp
import causalppl.distributions as dist
from causalppl import handlers as poutine
from causalppl.infer import SVI, TraceEnum_ELBO, config_enumerate, infer_discrete
from causalppl.infer.autoguide import AutoDelta

DATA = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0])
K = 2  # Fixed number of components.


@config_enumerate
def model(data):
    # Global variables.
    weights = cp.sample("weights", dist.Dirichlet(0.5 * torch.ones(K)))
    scale = cp.sample("scale", dist.LogNormal(0.0, 2.0))
    with cp.plate("components", K):
        locs = cp.sample("locs", dist.Normal(0.0, 10.0))

    with cp.plate("data", len(data)):
        # Local variables.
        assignment = cp.sample("assignment", dist.Categorical(weights))
        cp.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def init_loc_fn(site, data=DATA):
    if site["name"] == "weights":
        # Initialize weights to uniform.
        return torch.ones(K) / K
    if site["name"] == "scale":
        return (data.var() / 2).sqrt()
    if site["name"] == "locs":
        return data[torch.multinomial(torch.ones(len(data)) / len(data), K)]
    raise ValueError(site["name"])


def initialize(seed, data, optim, elbo):
    cp.set_rng_seed(seed)
    cp.clear_param_store()
    global_guide = AutoDelta(poutine.block(model, expose=["weights", "locs", "scale"]), init_loc_fn=init_loc_fn)
    svi = SVI(model, global_guide, optim, loss=elbo)
    return svi.loss(model, global_guide, data), global_guide, svi


def fit_map(data=DATA, steps=200, seeds=100, quiet=True):
    """The tutorial's MAP fit: the best of ``seeds`` initialisations, then ``steps`` SVI steps."""
    optim = cp.optim.Adam({"lr": 0.1, "betas": [0.8, 0.99]})
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    # Choose the best among `seeds` random initializations.
    loss, seed = min((initialize(seed, data, optim, elbo)[0], seed) for seed in range(seeds))
    _, global_guide, svi = initialize(seed, data, optim, elbo)
    if not quiet:
        print(f"seed = {seed}, initial_loss = {loss}")

    # Register hooks to monitor gradient norms.
    gradient_norms = defaultdict(list)
    for name, value in cp.get_param_store().named_parameters():
        value.register_hook(lambda g, name=name: gradient_norms[name].append(g.norm().item()))

    losses = []
    for i in range(steps):
        loss = svi.step(data)
        losses.append(loss)
        if not quiet:
            print("." if i % 100 else "\n", end="")
    return global_guide, losses, gradient_norms


def classifier(trained_model, data, temperature=0):
    inferred_model = infer_discrete(trained_model, temperature=temperature,
                                    first_available_dim=-2)  # avoid conflict with data plate
    trace = poutine.trace(inferred_model).get_trace(data)
    return trace.nodes["assignment"]["value"]


def fit_guide_enumeration(global_guide, data=DATA, steps=200):
    """The tutorial's second guide: the globals as learned, the assignments enumerated in the guide."""

    @config_enumerate
    def full_guide(data):
        # Global variables.
        with poutine.block(hide_types=["param"]):  # Keep our learned values of global parameters.
            global_guide(data)

        # Local variables.
        with cp.plate("data", len(data)):
            assignment_probs = cp.param("assignment_probs", torch.ones(len(data), K) / K,
                                        constraint=constraints.unit_interval)
            cp.sample("assignment", dist.Categorical(assignment_probs))

    optim = cp.optim.Adam({"lr": 0.2, "betas": [0.8, 0.99]})
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    svi = SVI(model, full_guide, optim, loss=elbo)
    svi.loss(model, full_guide, data)  # Initializes param store.
    losses = [svi.step(data) for _ in range(steps)]
    probs = cp.param("assignment_probs").detach()
    return probs / probs.sum(-1, keepdim=True), losses


def main(steps=200, seeds=100, quiet=False):
    """Run the tutorial; return a dict of what it prints."""
    global_guide, losses, gradient_norms = fit_map(DATA, steps, seeds, quiet)
    map_estimates = global_guide(DATA)
    weights, locs, scale = (map_estimates[k].detach() for k in ("weights", "locs", "scale"))
    if not quiet:
        print(f"\nweights = {weights.numpy()}")
        print(f"locs = {locs.numpy()}")
        print(f"scale = {scale.numpy()}")

    # Predicting membership: replay the globals, infer the discrete assignments.
    guide_trace = poutine.trace(global_guide).get_trace(DATA)  # record the globals
    trained_model = poutine.replay(model, trace=guide_trace)  # replay the globals
    map_assignment = classifier(trained_model, DATA)
    new_data = torch.arange(-3, 15, 0.1)
    new_assignment = classifier(trained_model, new_data)
    sampled_assignment = classifier(trained_model, DATA, temperature=1)
    if not quiet:
        print("MAP assignment:", map_assignment.tolist())
        print("a posterior draw:", sampled_assignment.tolist())

    assignment_probs, guide_losses = fit_guide_enumeration(global_guide, DATA, steps)
    if not quiet:
        print("assignment probabilities (guide enumeration):")
        print(assignment_probs.numpy().round(3))
    return {
        "losses": losses, "gradient_norms": dict(gradient_norms), "weights": weights, "locs": locs, "scale": scale,
        "map_assignment": map_assignment, "new_data": new_data, "new_assignment": new_assignment,
        "sampled_assignment": sampled_assignment, "assignment_probs": assignment_probs, "guide_losses": guide_losses,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="SVI steps (default 200)")
    args = parser.parse_args()
    main(steps=args.steps)
