"""Helpers for handler code: which sites to escape at, how to extend a partial trace.

These are the building blocks of :func:`causalppl.handlers.queue`, which
enumerates the discrete choices of a model one complete trace at a time.

>>> import torch, causalppl as cp
>>> def model():
...     cp.sample("coin", cp.dist.Bernoulli(torch.tensor(0.5)))
>>> partial = cp.handlers.Trace()
>>> site = cp.handlers.trace(model).get_trace().nodes["coin"]
>>> discrete_escape(partial, site)
True
>>> [tr.nodes["coin"]["value"].item() for tr in enum_extend(partial, site)]
[0.0, 1.0]
"""

from __future__ import annotations


def site_is_subsample(site):
    """True for the site a subsampled plate records (its drawn row indices)."""
    return site.get("type") == "plate"


def prune_subsample_sites(trace):
    """A copy of ``trace`` without the plates' subsample sites."""
    pruned = trace.copy()
    for name, site in list(pruned.nodes.items()):
        if site_is_subsample(site):
            pruned.remove_node(name)
    return pruned


def _is_new_latent(trace, msg):
    return msg["type"] == "sample" and not msg["is_observed"] and msg["name"] not in trace


def all_escape(trace, msg):
    """Escape at every latent sample site that ``trace`` has not fixed yet."""
    return _is_new_latent(trace, msg)


def discrete_escape(trace, msg):
    """Escape at every discrete latent sample site that ``trace`` has not fixed yet."""
    return _is_new_latent(trace, msg) and bool(getattr(msg["fn"], "has_enumerate_support", False))


def enum_extend(trace, msg, num_samples=None):
    """One copy of ``trace`` per value of the site's support, each with that value recorded.

    ``num_samples`` is accepted for Pyro's signature and ignored: every value is taken.
    """
    extended = []
    for value in msg["fn"].enumerate_support():  # each value fills the site's whole batch shape
        new = trace.copy()
        new.add_site({**msg, "value": value})
        extended.append(new)
    return extended


def mc_extend(trace, msg, num_samples=None):
    """``num_samples`` copies of ``trace`` (1 if not given), each with a fresh draw at the site."""
    extended = []
    for _ in range(1 if num_samples in (None, -1) else num_samples):
        new = trace.copy()
        new.add_site({**msg, "value": msg["fn"].sample()})
        extended.append(new)
    return extended


def identify_dense_edges(trace):
    """Add an edge to each sample site from every earlier one it may depend on.

    Two sites are independent when they sit in different passes of the same
    sequential plate; every other earlier sample site may feed a later one.
    """
    samples = [(name, site) for name, site in trace.nodes.items() if site.get("type") == "sample"]
    for later, (name, site) in enumerate(samples):
        for past_name, past in samples[:later]:
            if not _in_different_passes(site["cond_indep_stack"], past["cond_indep_stack"]):
                trace.add_edge(past_name, name)


def _in_different_passes(stack, other):
    return any(a.name == b.name and a.counter != b.counter for a in stack for b in other)
