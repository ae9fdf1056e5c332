"""Pyro's ``pyro.infer.tracegraph_elbo`` path: :class:`TraceGraph_ELBO` and its downstream-cost rule.

``_compute_downstream_costs(model_trace, guide_trace, non_reparam_nodes)``
is the cost each non-reparameterised guide site's score is weighted by,
read off the traces' dependency graphs (``trace(graph_type="dense")``):

- the guide sites reachable from the site in the guide's graph (itself
  included) contribute ``log p - log q``;
- model sites that are children (in the model's graph) of those, and not
  among them, contribute ``log p``;
- the sum is taken down to the site's own plates.

It returns ``(costs, nodes)``: site name -> cost tensor, and site name ->
the names that went into it. Both traces need ``compute_log_prob()`` first.

>>> import torch, causalppl as cp
>>> def model():
...     z = cp.sample("z", cp.dist.Bernoulli(0.3))
...     cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.tensor(1.0))
>>> def guide():
...     cp.sample("z", cp.dist.Bernoulli(0.6))
>>> guide_tr = cp.handlers.trace(guide, graph_type="dense").get_trace()
>>> model_tr = cp.handlers.trace(cp.handlers.replay(model, trace=guide_tr), graph_type="dense").get_trace()
>>> model_tr.compute_log_prob(); guide_tr.compute_log_prob()
>>> costs, nodes = _compute_downstream_costs(model_tr, guide_tr, {"z"})
>>> sorted(nodes["z"])
['x', 'z']
"""

from causalppl.infer.elbo import TraceGraph_ELBO
from causalppl.infer.util import MultiFrameTensor, get_plate_stacks


def _reachable(trace, name):
    """``name`` and every site reachable from it along the trace's edges."""
    seen, stack = set(), [name]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(trace.successors(current))
    return seen


def _compute_downstream_costs(model_trace, guide_trace, non_reparam_nodes):
    stacks = get_plate_stacks(model_trace)
    guide_sites = [name for name, site in guide_trace.nodes.items() if site["type"] == "sample"]
    costs, nodes = {}, {}
    for name in guide_sites:
        downstream = {n for n in _reachable(guide_trace, name) if n in stacks}
        ordered = [name] + [n for n in guide_sites if n in downstream and n != name]  # the sum's order: the trace's
        costs[name] = MultiFrameTensor(*[
            (stacks[n], model_trace.nodes[n]["log_prob"] - guide_trace.nodes[n]["log_prob"]) for n in ordered])
        nodes[name] = downstream
    for name in non_reparam_nodes:
        children = set().union(*(model_trace.successors(n) for n in nodes[name])) - nodes[name]
        for child in (n for n in model_trace.nodes if n in children):
            costs[name].add((stacks[child], model_trace.nodes[child]["log_prob"]))
        nodes[name] = nodes[name] | children
        costs[name] = costs[name].sum_to(guide_trace.nodes[name]["cond_indep_stack"])
    return costs, nodes


__all__ = ["TraceGraph_ELBO", "_compute_downstream_costs"]
