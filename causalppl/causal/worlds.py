"""Worlds that share exogenous noise: the engine behind attribution, mediation and PN/PS.

Each node is read as ``value = f(parents, noise)`` (see
:mod:`causalppl.causal.counterfactual` for the noise models). A forward draw
of the SCM, with each node's noise recovered from its value, is a draw of
the noise from its prior; :func:`propagate` then pushes any noise -- the
same, mixed between draws, or replaced at some nodes -- through the
mechanisms again, with some nodes held at given (per-row) values. Every
step is one batched call per node, over all rows at once.

>>> import causalppl as cp
>>> cp.set_rng_seed(0)
>>> scm = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(a, 1)")
>>> draw = sample_noise(scm, 5)
>>> again = propagate(scm, draw.noise, draw.weights)
>>> bool((again["b"] - draw.values["b"]).abs().max() < 1e-6)
True
>>> shifted = propagate(scm, draw.noise, draw.weights, fixed={"a": draw.values["a"] + 1})
>>> bool(((shifted["b"] - draw.values["b"]) - 1).abs().max() < 1e-6)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import torch

from causalppl.causal.counterfactual import abduct, predict
from causalppl.handlers import param_scope, substitute
from causalppl.interventions import draw_like


@dataclass
class NoiseDraw:
    """``n`` forward draws of an SCM: node values, each node's noise, and each row's Bayesian weights.

    ``noise[node]`` is ``None`` for a deterministic (Delta) node; intervened
    nodes have no entry.
    """

    values: dict
    noise: dict
    weights: dict
    n: int


def require_plain(scm, what):
    """Raise unless ``scm`` has no observed nodes (these queries read the SCM's own distribution)."""
    if scm.observed:
        raise ValueError(f"{what} needs an SCM without condition(); it has observed node(s) "
                         f"{', '.join(sorted(scm.observed))}")


def require_nodes(scm, *names):
    for name in names:
        if name not in scm:
            raise KeyError(f"'{name}' is not a node (nodes: {', '.join(scm.nodes)})")


def mechanism_dist(scm, node, values, inputs=None):
    """The distribution ``scm``'s mechanism gives ``node`` for the parent ``values`` (call in its param scope)."""
    mechanism = scm.mechanism(node)
    env = {**(inputs or {}), **values}
    return mechanism(**{parent: env[parent] for parent in mechanism.parents})


def take_rows(tensors, index):
    """Rows ``index`` of every tensor in a dict (per-row Bayesian weights follow their rows)."""
    return {name: value.index_select(0, index.to(value.device)) for name, value in tensors.items()}


def sample_noise(scm, n, **inputs):
    """``n`` forward draws of ``scm`` with each node's noise recovered: a :class:`NoiseDraw`.

    The recovered noise of a forward draw is a draw from the noise's prior,
    so rows of independent draws can be mixed freely.
    """
    with torch.no_grad():
        values, weights = scm.model.simulate(n, **inputs)
        with param_scope(store=scm.params):
            scm.model.prepare_with(weights)
            noise = {node: abduct(node, mechanism_dist(scm, node, values, inputs), values[node])
                     for node in scm.nodes if node not in scm.interventions}
    return NoiseDraw(values, noise, weights, n)


def _rows(noise, fixed):
    for value in list(noise.values()) + list(fixed.values()):
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.shape[0], value.device
    raise ValueError("propagate: no per-row noise or values to say how many rows there are")


def _held(value, rows, device):
    value = torch.as_tensor(value, device=device)
    if value.dim() == 0:
        value = value.expand(rows)
    return value


def propagate(scm, noise, weights=None, fixed=None, inputs=None):
    """Node values from ``noise`` (node -> per-row noise), with the ``fixed`` nodes held at given values.

    ``fixed`` maps a node to a scalar or a per-row tensor (for nested
    counterfactuals, a node's values from another world); the SCM's own
    interventions are held too. ``weights`` are the rows' Bayesian weights.
    """
    fixed = {**scm.interventions, **(fixed or {})}
    rows, device = _rows(noise, fixed)
    values = {}
    soft = scm.soft_interventions
    with torch.no_grad(), param_scope(store=scm.params):
        scm.model.prepare_with(weights or {})
        for node in scm.nodes:
            if node in fixed:
                values[node] = _held(fixed[node], rows, device)
                continue
            fn = mechanism_dist(scm, node, values, inputs)
            if node in soft and soft[node].kind == "stochastic":  # drawn afresh, not from the unit's noise
                values[node] = draw_like(fn, (rows,) + tuple(fn.event_shape)).to(device)
            else:
                values[node] = predict(node, fn, noise.get(node))
    return values


def arm(scm, node, value):
    """One arm of a contrast on ``node``: ``(scm, fixed)`` for :func:`propagate`.

    A value (or label) holds the node (``fixed``); a shift or stochastic
    intervention (anything :meth:`SCM.do` takes) intervenes in the SCM;
    ``None`` leaves the node as it is (its natural value).
    """
    from causalppl.graph.intervention import _Constant, parse_intervention

    if value is None:
        return scm, {}
    found = parse_intervention(scm, node, value)
    if found is None:
        return scm, {node: scm.encode(node, value)}
    if isinstance(found, _Constant):
        return scm, {node: torch.as_tensor(found.value)}
    return scm.do(**{node: value}), {}


def _prepare_node(scm, node, weights):
    """Draw one node's Bayesian weights from ``weights`` (a mechanism may be shared between SCMs)."""
    mechanism = scm.mechanism(node)
    if mechanism.prepare is not None and weights:
        with substitute(data=weights):
            mechanism.prepare()


def propagate_mixed(sources, choice, noise, weights, inputs=None):
    """Like :func:`propagate`, but node ``v`` takes its mechanism from ``sources[choice[v]]``.

    ``sources`` are SCMs over the same nodes (an old and a new fit, say);
    each mechanism is evaluated in its own SCM's param scope, with that
    SCM's rows of Bayesian weights (``weights[k]``).
    """
    order = _mixed_order(sources)
    values = {}
    with torch.no_grad():
        for node in order:
            k = choice.get(node, 0)
            source = sources[k]
            with param_scope(store=source.params):
                _prepare_node(source, node, weights[k])
                fn = mechanism_dist(source, node, values, inputs)
            values[node] = predict(node, fn, noise.get(node))
    return values


def _mixed_order(sources):
    graph = nx.DiGraph()
    for scm in sources:
        graph.add_nodes_from(scm.nodes)
        graph.add_edges_from(scm.graph.edges)
    if not nx.is_directed_acyclic_graph(graph):
        raise ValueError("the SCMs' graphs together have a cycle; their mechanisms cannot be mixed")
    first = {node: i for i, node in enumerate(sources[0].nodes)}
    return tuple(nx.lexicographical_topological_sort(graph, key=lambda v: first.get(v, len(first))))
