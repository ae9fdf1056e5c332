"""Counterfactuals by abduction, action and prediction over shared noise.

Each node is read as ``value = f(parents, noise)``; :mod:`causalppl.noise`
has the noise model of each family (standardised noise for location-scale
mechanisms, Gumbel-max for Bernoulli/Categorical, a uniform through the
inverse CDF for integer-valued and other continuous mechanisms).

Abduction draws the factual world (every node) from its posterior given the
evidence -- likelihood weighting by default, or SVI (``method="svi"``) -- and
recovers each node's noise. Prediction replays the same noise in the world
where ``do`` holds: the factual and counterfactual worlds share everything
not downstream of the intervention (a twin network).

Two engines compute it. Where every node's noise is recovered exactly from
its value (location-scale, transformed and continuous mechanisms, and the
exact Gumbel posterior of Bernoulli/Categorical nodes), the fast path
abducts node by node on tensors. Elsewhere (a Poisson or other
integer-valued node anywhere) the lowered model runs under
:class:`causalppl.handlers.twin_world`, which draws each node's noise from
its posterior site by site while inference (likelihood weighting, or a
guide fitted by SVI) handles the factual world. Both give the same answer;
``engine="abduction"`` or ``"worlds"`` picks one.

The action may be any intervention :meth:`SCM.do` takes: a value, a shift
(``lambda x: x + 1``: applied to the node's natural value in the
counterfactual world, which shares its noise), a stochastic intervention
(drawn afresh), and, with ``replace=``, new mechanisms (the node keeps its noise).

>>> import torch, causalppl as cp
>>> scm = cp.graphs.load("confounded")
>>> world = scm.counterfactual(evidence={"z": 1.0, "x": 2.0, "y": 9.0}, do={"x": 0.0}, n=10)
>>> world.samples["y"][:3]
tensor([5., 5., 5.])
>>> scm.counterfactual(evidence={"z": 1.0, "x": 2.0, "y": 9.0}, do={"x": "x + 1"}, n=10).samples["y"][:3]
tensor([11., 11., 11.])
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import torch

from causalppl import noise as _noise
from causalppl.causal.queries import _check_evidence, _fmt, _resample, nodes_only
from causalppl.graph.lower import LoweredModel
from causalppl.handlers import do as _do
from causalppl.handlers import param_scope, substitute, trace, twin_world
from causalppl.interventions import draw_like
from causalppl.noise import CounterfactualError, is_invertible  # noqa: F401  (CounterfactualError: re-exported)
from causalppl.trace import log_prob_of

ENGINES = ("auto", "abduction", "worlds")


def abduct(node, fn, value):
    """The noise that, under mechanism distribution ``fn``, produced ``value`` (see :func:`causalppl.noise.abduct`)."""
    return _noise.abduct(fn, value, node)


def predict(node, fn, noise):
    """The value mechanism distribution ``fn`` gives with ``noise`` (inverse of :func:`abduct`)."""
    return _noise.predict(fn, noise, node)


@dataclass
class CounterfactualResult:
    """Counterfactual draws (``samples``) beside the factual ones they came from."""

    samples: dict
    factual: dict
    evidence: dict
    do: dict

    def mean(self, node):
        return float(self.samples[node].float().mean())

    def __getitem__(self, node):
        return self.samples[node]

    def __str__(self):
        given = ", ".join(f"{k}={_fmt(v)}" for k, v in self.evidence.items())
        action = ", ".join(f"{k}={_fmt(v)}" for k, v in self.do.items())
        lines = [f"counterfactual do({action}) given {given}:"]
        for node in self.samples:
            lines.append(f"  {node}: factual {float(self.factual[node].float().mean()):.4g} "
                         f"-> counterfactual {self.mean(node):.4g}")
        return "\n".join(lines)


def _mechanism_dist(scm, node, values, inputs):
    mechanism = scm.mechanism(node)
    env = {**inputs, **values}
    return mechanism(**{parent: env[parent] for parent in mechanism.parents})


def counterfactual(scm, evidence, do, n=1000, method="importance", steps=1000, replace=None, engine="auto",
                   **inputs):
    """Draws of every node in the world where ``do`` holds, given factual ``evidence``.

    Parameters
    ----------
    evidence : dict node -> observed value in the factual world (a label for a labelled node)
    do : dict node -> the intervention: a value (or label), a shift (a callable of the node's
        natural value, or an expression such as ``"x + 1"``), or a distribution (stochastic)
    n : number of counterfactual draws
    method : "importance" (likelihood weighting) or "svi" (fit a guide over the
        latent ancestors of the evidence, holding the SCM's params fixed) for
        the factual posterior. Neither changes the SCM.
    replace : dict node -> new mechanism in the counterfactual world (see :meth:`SCM.replace`)
    engine : "auto" (the exact fast path where every node's noise is recovered from its value,
        the world handlers elsewhere), "abduction" or "worlds"
    """
    evidence, do, replace = dict(evidence), dict(do), dict(replace or {})
    for name in list(evidence) + list(do) + list(replace):
        if name not in scm:
            raise KeyError(f"'{name}' is not a node (nodes: {', '.join(scm.nodes)})")
    if scm.interventions or scm.observed or scm.soft_interventions:
        raise ValueError("counterfactual() needs the original SCM, without do/condition surgery")
    if method not in ("importance", "svi"):
        raise ValueError(f"method must be 'importance' or 'svi', got {method!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
    # The counterfactual world's SCM: labels -> codes, values checked early, as scm.do checks them.
    world_scm = scm.replace(**replace) if replace else scm
    world_scm = world_scm.do(**do) if do else world_scm
    factual_scm = scm.condition(**evidence) if evidence else scm
    if engine == "auto":
        engine = "abduction" if _invertible(scm, inputs) else "worlds"
    if engine == "worlds":
        return _by_worlds(scm, factual_scm, world_scm, evidence, do, n, method, steps, inputs)
    weights = {}
    if method == "importance":
        with torch.no_grad():
            if evidence:
                factual, _ = _resample(factual_scm, n, max(20 * n, 20000), inputs)
            else:
                factual, weights = scm.model.simulate(n, **inputs)
        weights.update({site: value for site, value in factual.items() if site not in scm})
        factual = nodes_only(scm, factual)
    else:
        factual = _svi_factual(scm, factual_scm, n, steps, inputs)
    with torch.no_grad(), param_scope(store=scm.params):
        # Bayesian mechanisms: each row keeps the weights its factual world was drawn with.
        scm.model.prepare_with(weights)
        laws = {node: _mechanism_dist(scm, node, factual, inputs) for node in scm.nodes}
        noise = {node: abduct(node, laws[node], factual[node]) for node in scm.nodes}
        world = {}
        for node in world_scm.nodes:
            world[node] = _predict_node(world_scm, node, world, noise, laws, factual, inputs)
    world = {node: world[node] for node in scm.nodes}
    return CounterfactualResult(world, factual, evidence, do)


def _predict_node(world_scm, node, world, noise, laws, factual, inputs):
    """One node's value in the counterfactual world from its factual noise."""
    if node in world_scm.interventions:
        code = torch.as_tensor(world_scm.interventions[node], dtype=factual[node].dtype)
        return code.to(factual[node].device).expand_as(factual[node])
    fn = _mechanism_dist(world_scm, node, world, inputs)
    soft = world_scm.soft_interventions.get(node)
    if soft is not None and soft.kind == "stochastic":  # drawn afresh: the randomisation is not the unit's noise
        return draw_like(fn, factual[node].shape).to(factual[node].device)
    target = fn.base if isinstance(fn, _noise._shifted_type()) else fn
    shared = _noise.transfer(laws[node], noise[node], target, node) if node in world_scm.replaced else noise[node]
    value = predict(node, fn, shared)
    return torch.broadcast_to(value, torch.broadcast_shapes(value.shape, factual[node].shape))


def _svi_factual(scm, factual_scm, n, steps, inputs):
    if scm.model.global_sites:
        raise ValueError(
            f"counterfactual(method='svi') cannot use the Bayesian mechanisms of node(s) "
            f"{', '.join(map(repr, scm.model.global_sites))}; use method='importance'"
        )
    # SVI needs gradients: fit outside no_grad (FitResult.sample is no_grad itself).
    # learn_params=False: the guide learns the factual posterior under the SCM as it is.
    return factual_scm.fit(steps=steps, progress=False, learn_params=False, **inputs).sample(n)


def _invertible(scm, inputs):
    """Whether every node's noise is recovered exactly from its value (the fast path applies)."""
    from causalppl.causal.queries import _simulate

    try:
        _, _, laws = _simulate(scm, 2, inputs)
    except Exception:  # per-row inputs, say: the fast path reports what is wrong
        return True
    return all(is_invertible(fn) for fn in laws.values())


def _world_order(scm, world_scm):
    """A topological order of the factual and the counterfactual graphs together (a shift may read a node
    that comes after it in the factual order)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(scm.nodes)
    graph.add_edges_from(scm.graph.edges)
    graph.add_edges_from(world_scm.graph.edges)
    if not nx.is_directed_acyclic_graph(graph):
        raise ValueError("the interventions' graph and the SCM's together have a cycle; the two worlds "
                         "cannot be run side by side")
    first = {node: i for i, node in enumerate(scm.nodes)}
    return tuple(nx.lexicographical_topological_sort(graph, key=first.__getitem__))


def _actions(world_scm, do, replace_nodes):
    """The counterfactual world's interventions as values for the ``do`` handler."""
    actions = {}
    for node in list(do) + [node for node in replace_nodes if node not in do]:
        if node in world_scm.interventions:
            actions[node] = world_scm.interventions[node]
        else:
            actions[node] = world_scm.soft_interventions[node]
    return actions


def _by_worlds(scm, factual_scm, world_scm, evidence, do, n, method, steps, inputs):
    """The counterfactual by the world handlers: the lowered model under ``twin_world`` and ``do``."""
    model = LoweredModel(factual_scm)
    model.order = _world_order(scm, world_scm)
    actions = _actions(world_scm, do, world_scm.replaced)
    if method == "svi":
        factual = _svi_factual(scm, factual_scm, n, steps, inputs)
        latent = {node: value for node, value in factual.items() if node not in evidence}
        with torch.no_grad(), twin_world() as tw, _do(data=actions), substitute(data=latent):
            values, _ = model.simulate(n, **inputs)
        return _result(scm, tw, values, None, evidence, do, n)
    proposals = max(20 * n, 20000) if evidence else n
    with torch.no_grad(), trace() as tr, twin_world() as tw, _do(data=actions):
        values, weights = model.simulate(proposals, **inputs)
    if not evidence:
        return _result(scm, tw, values, None, evidence, do, proposals)
    log_weights = torch.zeros(proposals)
    for site in tr.trace.nodes.values():
        if site["type"] == "sample" and site["is_observed"] and not site["intervened"]:
            log_prob = log_prob_of(site)
            log_weights = log_weights.to(log_prob.device) + _per_row(log_prob, proposals)
    _check_evidence(factual_scm, log_weights)
    index = torch.multinomial(torch.softmax(log_weights, 0), n, replacement=True)
    return _result(scm, tw, values, index, evidence, do, proposals)


def _per_row(log_prob, rows):
    if log_prob.dim() == 0 or log_prob.shape[-1] != rows:
        return log_prob.sum().expand(rows)
    return log_prob.reshape(-1, rows).sum(0)


def _result(scm, tw, values, index, evidence, do, count):
    def rows(value):
        value = torch.as_tensor(value)
        if value.dim() == 0 or value.shape[0] != count:  # an observed value, given once for every row
            value = value.expand((count,) + value.shape)
        return value if index is None else value.index_select(0, index.to(value.device))

    factual = {node: rows(tw.factual(values[node])) for node in scm.nodes}
    world = {node: rows(tw.world(values[node], 1) if tw.size else values[node]) for node in scm.nodes}
    factual = {node: torch.broadcast_to(value, world[node].shape) if value.shape != world[node].shape else value
               for node, value in factual.items()}
    return CounterfactualResult(world, factual, evidence, do)
