"""Exact queries on discrete SCMs: variable elimination as a tensor contraction.

When every node that is not intervened on draws from a Bernoulli or a
Categorical (so its parents are discrete too), and there are no inputs and no
Bayesian weights, a query has an exact answer, found by sum-product variable
elimination (Koller & Friedman 2009, *Probabilistic Graphical Models*,
Algorithm 9.1; greedy elimination orders, Algorithm 9.4):

1. one factor per node: its conditional probability table ``P(node | parents)``
   as a tensor over ``(parents..., node)``, read from a ``CategoricalTable``'s
   param or from one batched call of any other mechanism on every parent
   configuration (:func:`node_factor`);
2. ``do(X=x)``: ``X`` gets no factor and its children read ``X = x`` (the
   truncated factorisation; :func:`intervened_domain`), so ``X`` itself may
   even be continuous;
3. evidence ``E=e``: every factor is sliced at ``E = e`` (:func:`node_factor`);
4. nodes that are neither the query nor evidence nor their ancestors are
   dropped: their factors sum to one (:func:`relevant_nodes`);
5. every other variable is summed out, one ``torch.einsum`` per step, in a
   greedy min-fill order (:func:`causalppl.contract.contract`, shared with the
   enumeration of discrete latents in :class:`causalppl.infer.TraceEnum_ELBO`);
6. the result is normalised by ``P(evidence)`` (:func:`marginal`).

:func:`interventional` answers with an :class:`ExactResult`, which
:func:`causalppl.causal.interventional` returns for ``method="exact"`` and, by
default, wherever exact inference applies. The factors are rebuilt for every
query (a few milliseconds for an alarm-sized network), so a refit is always
seen. Factors live on the device of the SCM's params, in float64.

>>> import causalppl as cp
>>> result = cp.causal.interventional(cp.graphs.load("sprinkler"), do={"sprinkler": 1}, method="exact")
>>> round(result.distribution("wet")[1], 6), result.distribution("wet").stderr[1]
(0.945, 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import torch

from causalppl.causal.learnable import CategoricalTable
from causalppl.causal.queries import Distribution, EffectResult, QueryResult, Summary, _outcome_code
from causalppl.contract import Factor, contract, elimination_order, min_fill  # noqa: F401  (re-exported)
from causalppl.handlers import param_scope

EXACT_COVERS = "exact (no Monte Carlo error; the model's parameters are taken as known)"


class ExactInferenceError(ValueError):
    """``method="exact"`` was asked of an SCM that exact inference does not cover; names the node."""


class _NotExact(Exception):
    """Internal: why exact inference does not apply (``node``, ``reason``)."""

    def __init__(self, node, reason):
        super().__init__(f"node '{node}': {reason}" if node else reason)
        self.node, self.reason = node, reason


@dataclass(frozen=True)
class Domain:
    """What a node's children read: ``values`` (all of its codes, or the one value
    it is fixed at by do or evidence), and ``states``, its number of states
    (``None`` for an intervened node whose mechanism is not read)."""

    values: torch.Tensor
    free: bool
    states: int | None


@dataclass
class DiscreteModel:
    """A query SCM compiled for elimination: its factors, domains and mutilated graph."""

    factors: dict  # node -> Factor (intervened nodes have none)
    domains: dict  # node -> Domain
    graph: nx.DiGraph  # do() has cut the edges into intervened nodes
    evidence: tuple  # the observed nodes
    _order: list | None = None

    def order(self):
        """A min-fill elimination order of all free variables, computed once and reused by every marginal."""
        if self._order is None:
            self._order = check_tractable(self)
        return self._order


MAX_ENTRIES = 2**26  # 512 MiB of float64: past this, sampling is the better tool


def check_tractable(model):
    """The model's elimination order; :class:`_NotExact` when one of its steps would exceed ``MAX_ENTRIES``."""
    order, largest = min_fill(list(model.factors.values()), keep=())
    if largest > MAX_ENTRIES:
        raise _NotExact(None, f"variable elimination would build a factor of {largest:,} entries "
                              f"(more than {MAX_ENTRIES:,}): the network is too densely connected")
    return order


# -- 1-3: factors from mechanisms, with do and evidence ---------------------------------------


def check_applicable(scm):
    """Raise :class:`_NotExact` when something rules out exact inference before any mechanism runs.

    Inputs (the answer would depend on their values) and Bayesian weights
    (the answer integrates over them) do.
    """
    if scm.inputs:
        raise _NotExact(None, f"the SCM takes inputs ({', '.join(scm.inputs)})")
    for node in scm.nodes:
        if node not in scm.interventions and scm.mechanism(node).global_sites:
            raise _NotExact(node, "its mechanism is Bayesian (its weights are uncertain)")


def device_of(scm):
    """Where the factors live: the device of the SCM's params, else of its do/evidence values."""
    for _, leaf in scm.params.named_parameters():
        return leaf.device
    for value in (*scm.interventions.values(), *scm.observed.values()):
        return value.device
    return torch.empty(0).device  # the default device


def _scalar(node, value, what):
    if value.numel() != 1:
        raise _NotExact(node, f"its {what} value has shape {tuple(value.shape)}, not one value")
    return value.reshape(())


def _code(node, value, states):
    """The code an evidence value stands for; ``ValueError`` naming the node when it is not one."""
    number = float(value)
    if not (number.is_integer() and 0 <= number < states):
        raise ValueError(f"node '{node}': evidence {node}={number:g} is not one of its states 0..{states - 1}")
    return int(number)


def parent_grid(parents, domains):
    """Every joint configuration of the parents' values, row-major: ``{parent: column}`` and the row count."""
    sizes = [len(domains[p].values) for p in parents]
    rows = math.prod(sizes)
    if not parents:
        return {}, rows
    index = torch.cartesian_prod(*(torch.arange(s, device=domains[p].values.device)
                                   for p, s in zip(parents, sizes))).reshape(rows, len(parents))
    return {p: domains[p].values[index[:, i]] for i, p in enumerate(parents)}, rows



def node_probs(scm, node, grid, rows):
    """``P(node = k | configuration)`` as a ``[rows, K]`` tensor, from one call of the mechanism on the grid,
    and the dtype of the values the node draws (as sampling would give them to its children).

    Raises :class:`_NotExact` when the mechanism fails on the batch or does
    not draw one Bernoulli or Categorical value per configuration.
    """
    mechanism = scm.mechanism(node)
    try:
        with torch.no_grad(), param_scope(store=scm.params):
            fn = mechanism(**grid)
    except Exception as err:
        raise _NotExact(node, f"its mechanism failed on a batch of parent configurations ({err})") from err
    if isinstance(fn, torch.distributions.Bernoulli):
        probs, value_dtype = torch.stack([1 - fn.probs, fn.probs], -1), fn.probs.dtype
    elif isinstance(fn, torch.distributions.Categorical):
        probs, value_dtype = fn.probs, torch.long
    else:
        raise _NotExact(node, f"it draws from {type(fn).__name__}, not a Bernoulli or Categorical")
    if probs.shape[:-1] not in ((), (1,), (rows,)):
        raise _NotExact(node, f"its mechanism returned a batch of shape {tuple(probs.shape[:-1])} "
                              f"for {rows} parent configurations")
    return probs.detach().expand(rows, probs.shape[-1]), value_dtype


def check_labels(scm, node, states):
    """A node's labels must name each state its mechanism draws (the check :func:`queries.levels_of` makes)."""
    labels = scm.labels(node)
    if labels is not None and states != len(labels):
        raise ValueError(f"node '{node}' has {len(labels)} labels {labels!r}, but its mechanism "
                         f"draws {states} states (codes 0..{states - 1})")


def table_probs(scm, node, domains):
    """A :class:`CategoricalTable`'s CPT read from its param ``node.probs``, indexed at fixed parents'
    values: a tensor over ``(free parents..., node)``; ``None`` where this shortcut does not apply
    (a Bayesian or not yet created table, a parent whose states or value it does not fit)."""
    fn = scm.mechanism(node).fn
    name = f"{node}.probs"
    if not isinstance(fn, CategoricalTable) or fn.bayesian or name not in scm.params:
        return None
    index = []
    for parent, card in zip(fn.parents, fn.parent_cardinalities):
        domain = domains[parent]
        if domain.free:
            if domain.states != card:
                return None
            index.append(slice(None))
            continue
        code = float(domain.values[0])
        if not (code.is_integer() and 0 <= code < card):
            return None
        index.append(int(code))
    with torch.no_grad():
        table = scm.params[name].detach()
    return table[tuple(index)] if table.shape == fn._shape() else None


def grid_probs(scm, node, domains):
    """Any mechanism's CPT over ``(free parents..., node)``, from one call on every parent configuration."""
    parents = scm.mechanism(node).parents
    grid, rows = parent_grid(parents, domains)
    probs, value_dtype = node_probs(scm, node, grid, rows)
    free_sizes = [len(domains[p].values) for p in parents if domains[p].free]
    return probs.reshape(free_sizes + [probs.shape[-1]]), value_dtype


def node_factor(scm, node, domains, dtype, device):
    """Steps 1 and 3: the factor of a node that is not intervened on, and its :class:`Domain`.

    The factor is ``P(node | parents)`` over the node's free parents and the
    node itself; parents fixed by do or evidence enter at their value, and an
    observed node's own dimension is sliced at its code.
    """
    parents = scm.mechanism(node).parents
    for parent in parents:
        if parent not in domains:
            raise _NotExact(parent, f"it is a parent of '{node}' but not a discrete node")
    table, value_dtype = table_probs(scm, node, domains), torch.long
    if table is None:
        table, value_dtype = grid_probs(scm, node, domains)
    states = table.shape[-1]
    check_labels(scm, node, states)
    table = table.to(device=device, dtype=dtype)
    free = tuple(p for p in parents if domains[p].free)
    if node in scm.observed:
        value = _scalar(node, scm.observed[node], "observed")
        factor = Factor(table[..., _code(node, value, states)], free)
        return factor, Domain(value.to(table.device).reshape(1), False, states)
    codes = torch.arange(states, device=table.device).to(value_dtype)
    return Factor(table, free + (node,)), Domain(codes, True, states)


def intervened_domain(scm, node, device):
    """Step 2: an intervened node has no factor; its children read the value it is set to."""
    value = _scalar(node, scm.interventions[node], "intervened")
    labels = scm.labels(node)
    return Domain(value.to(device).reshape(1), False, len(labels) if labels is not None else None)


def compile_model(scm):
    """The :class:`DiscreteModel` of a query SCM (do and condition applied); :class:`_NotExact` if none."""
    check_applicable(scm)
    device = device_of(scm)
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    factors, domains = {}, {}
    for node in scm.nodes:
        if node in scm.interventions:
            domains[node] = intervened_domain(scm, node, device)
            continue
        factors[node], domains[node] = node_factor(scm, node, domains, dtype, device)
    model = DiscreteModel(factors, domains, scm.graph, tuple(scm.observed))
    model.order()  # fails here, before any query, when elimination is intractable
    return model


# -- 4-6: pruning, elimination order, contraction, normalisation --------------------------------


def relevant_nodes(graph, targets):
    """Step 4: the targets and their ancestors; every other factor sums to one (a barren node).

    >>> relevant_nodes(nx.DiGraph([("a", "b"), ("b", "c"), ("a", "d")]), {"b"}) == {"a", "b"}
    True
    """
    found = set(targets)
    for target in targets:
        found |= nx.ancestors(graph, target)
    return found


def marginal(model, node):
    """Step 6: ``P(node | do, evidence)`` for every code of ``node`` (a 1-d tensor).

    A node fixed by do or evidence puts all its mass on its value.
    """
    domain = model.domains[node]
    if not domain.free and domain.states is None:
        raise ValueError(f"node '{node}' is intervened on (at {float(domain.values[0]):g}) and has no labels, "
                         "so its states are unknown; its mean is the value it is set to")
    if not domain.free:
        probs = torch.zeros(domain.states, dtype=torch.float64, device=domain.values.device)
        probs[int(float(domain.values[0]))] = 1.0
        return probs
    relevant = relevant_nodes(model.graph, {node, *model.evidence})
    factors = [model.factors[n] for n in model.graph if n in relevant and n in model.factors]
    table = contract(factors, keep=(node,), order=model.order())
    return table / table.sum()


def evidence_probability(model):
    """``P(evidence)`` in the intervened world: the normaliser of every marginal."""
    if not model.evidence:
        return 1.0
    relevant = relevant_nodes(model.graph, set(model.evidence))
    factors = [model.factors[n] for n in model.graph if n in relevant and n in model.factors]
    return float(contract(factors, keep=(), order=model.order()))


# -- results -----------------------------------------------------------------------------------


class ExactSummary(Summary):
    """A :class:`Summary` with no Monte Carlo error: ``stderr`` is 0 and ``n`` is 0 (nothing was drawn)."""

    def __str__(self):
        return f"{self.mean:.4g} exact (sd {self.std:.4g})"


class ExactDistribution(Distribution):
    """A :class:`Distribution` with exact probabilities: every ``stderr`` is 0 and ``n`` is 0."""

    def __str__(self):
        given = f" | {self.query}" if self.query else ""
        width = max(len(str(label)) for label in self.probs)
        lines = [f"P({self.node}{given})  exact"]
        lines += [f"  {str(label):<{width}}  {p:.4f}" for label, p in self.probs.items()]
        return "\n".join(lines)


class ExactResult(QueryResult):
    """Exact answers to a query on a discrete SCM, computed on demand by variable elimination.

    :meth:`distribution`, :meth:`summary` and :meth:`mean` are exact (no
    Monte Carlo error). ``samples`` (and ``result[node]``) are drawn on first
    use by the sampling path (``n`` joint rows), for callers that want rows.
    """

    def __init__(self, model, do, evidence, levels, nodes, draw):
        self.model, self.do, self.evidence, self.levels = model, do, evidence, levels
        self.nodes, self.ess = nodes, None
        self._draw, self._samples, self._marginals = draw, None, {}

    @property
    def samples(self):
        """``n`` joint draws of every node under the query (sampled on first use, then kept)."""
        if self._samples is None:
            self._samples = self._draw().samples
        return self._samples

    def _require(self, node):
        if node not in self.nodes:
            raise KeyError(f"'{node}' is not a node (nodes: {', '.join(self.nodes)})")

    def marginal(self, node):
        """``P(node = code | do, evidence)`` for each code of a discrete node, as a float64 tensor."""
        self._require(node)
        if node not in self._marginals:
            self._marginals[node] = marginal(self.model, node)
        return self._marginals[node]

    def summary(self, node=None):
        """An exact :class:`Summary` of ``node`` (the mean and sd of its codes), or a dict for all nodes."""
        if node is None:
            return {name: self.summary(name) for name in self.nodes}
        self._require(node)
        domain = self.model.domains[node]
        if not domain.free:
            return ExactSummary(float(domain.values[0]), 0.0, 0.0, 0)
        probs = self.marginal(node)
        codes = torch.arange(len(probs), dtype=probs.dtype, device=probs.device)
        mean = float((probs * codes).sum())
        variance = float((probs * codes**2).sum()) - mean**2
        return ExactSummary(mean, math.sqrt(max(variance, 0.0)), 0.0, 0)

    def probability(self, node, code):
        """``P(node = code | do, evidence)``."""
        return float(self.marginal(node)[code])

    def distribution(self, node):
        """``P(node = level | do, evidence)`` by label: an :class:`ExactDistribution`.

        >>> import causalppl as cp
        >>> scm = cp.SCM().add("t", "Bernoulli(0.5)", labels=("no", "yes"))
        >>> scm = scm.add("y", "Bernoulli(0.2 + 0.6 * t)", labels=("well", "ill"))
        >>> print(cp.causal.interventional(scm, do={"t": "yes"}).distribution("y"))
        P(y | do(t=yes))  exact
          well  0.2000
          ill   0.8000
        """
        self._require(node)
        if node not in self.levels:
            raise ValueError(f"node '{node}' is not discrete (it has no labels, and its mechanism is not a "
                             f"Bernoulli or Categorical); use summary('{node}') for its mean")
        probs = self.marginal(node).tolist()
        by_label = {label: probs[code] for code, label in self.levels[node].items()}
        return ExactDistribution(node, by_label, dict.fromkeys(by_label, 0.0), 0, self.query())

    def __getitem__(self, node):
        return self.samples[node]

    def __repr__(self):
        return f"ExactResult({self.query() or 'observational'}, nodes={list(self.nodes)})"

    def __str__(self):
        lines = [self.query() or "observational"]
        for name in self.nodes:
            if name in self.levels:
                shown = self.distribution(name)
                text = ", ".join(f"{label} {p:.4g}" for label, p in shown.probs.items()) + " (exact)"
            else:
                text = str(self.summary(name))
            lines.append(f"  {name}: {text}")
        return "\n".join(lines)


def model_levels(scm, model):
    """Discrete node -> ``{code: label}``, as :func:`queries.levels_of` gives them for a sampled query."""
    found = {}
    for node in scm.nodes:
        labels = scm.labels(node)
        if labels is not None:
            found[node] = dict(enumerate(labels))
        elif node not in scm.interventions:
            found[node] = {k: k for k in range(model.domains[node].states)}
    return found


# -- the queries -------------------------------------------------------------------------------


def interventional(scm, do, evidence, n=10000, required=False):
    """The exact answer to ``interventional(scm, do, evidence)``, or ``None`` when exact inference does not apply.

    With ``required`` (``method="exact"``) it raises :class:`ExactInferenceError`
    naming the node instead of returning ``None``. ``n`` is how many rows
    ``samples`` draws if someone asks for them.

    >>> import causalppl as cp
    >>> interventional(cp.graphs.load("confounded"), {"x": 1.0}, {}) is None
    True
    >>> interventional(cp.graphs.load("confounded"), {"x": 1.0}, {}, required=True)
    Traceback (most recent call last):
    ...
    causalppl.causal.exact.ExactInferenceError: exact inference does not apply: node 'z': it draws from Normal, \
not a Bernoulli or Categorical
    """
    from causalppl.causal import queries

    query = scm.do(**do) if do else scm
    query = query.condition(**evidence) if evidence else query
    try:
        model = compile_model(query)
    except _NotExact as why:
        if required:
            raise ExactInferenceError(f"exact inference does not apply: {why}") from None
        return None
    if model.evidence and not evidence_probability(model) > 0:
        raise ValueError(f"the evidence {_given(query)} has probability zero under the model")

    def draw():
        return queries.interventional(scm, do=do, evidence=evidence, n=n, method="sample")

    return ExactResult(model, do, evidence, model_levels(query, model), query.nodes, draw)


def _given(scm):
    return ", ".join(f"{node}={float(value):g}" for node, value in scm.observed.items())


def _expectation(result, outcome, code):
    """``E[outcome]``, or ``P(outcome = code)`` when a level is asked for."""
    return result.mean(outcome) if code is None else result.probability(outcome, code)


def contrast(treatment, outcome, treated, control, high, low, outcome_level):
    """The exact :class:`EffectResult` of two exact arms (stderr 0)."""
    code = _outcome_code(outcome, high.levels.get(outcome), outcome_level)
    treated_mean, control_mean = _expectation(high, outcome, code), _expectation(low, outcome, code)
    return EffectResult(treatment, outcome, treated, control, ate=treated_mean - control_mean, stderr=0.0,
                        treated_mean=treated_mean, control_mean=control_mean,
                        treated_result=high, control_result=low, covers=EXACT_COVERS,
                        outcome_level=outcome_level)


def ate(scm, treatment, outcome, treated, control, evidence, n=10000, outcome_level=None, required=False):
    """The exact ATE (difference of exact means), or ``None`` when exact inference does not apply."""
    high = interventional(scm, {treatment: treated} if treated is not None else {}, evidence, n, required)
    if high is None:
        return None
    low = interventional(scm, {treatment: control} if control is not None else {}, evidence, n, required)
    return contrast(treatment, outcome, treated, control, high, low, outcome_level)


def association(scm, treatment, outcome, treated, control, n=10000, outcome_level=None, required=False):
    """The exact ``E[Y | T=treated] - E[Y | T=control]``, or ``None`` when exact inference does not apply."""
    high = interventional(scm, {}, {treatment: treated}, n, required)
    if high is None:
        return None
    low = interventional(scm, {}, {treatment: control}, n, required)
    return contrast(treatment, outcome, treated, control, high, low, outcome_level)
