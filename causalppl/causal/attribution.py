"""Attribution in the style of DoWhy-gcm: which edges, noises and mechanisms matter for a node.

* :func:`arrow_strength` -- how much a node's distribution changes when one
  incoming edge is cut (Janzing et al. 2013, "Quantifying causal influences").
* :func:`intrinsic_causal_influence` -- the Shapley share of each ancestor's
  own noise in the node's variance (Janzing, Blöbaum, Mastakouri et al. 2024,
  "Quantifying intrinsic causal contributions via structure preserving
  interventions").
* :func:`attribute_anomalies` -- the Shapley share of each ancestor's noise
  in how anomalous some rows are (Budhathoki et al. 2022, "Causal structure-
  based root cause analysis of outliers").
* :func:`distribution_change` -- the Shapley share of each node's change of
  mechanism in the change of a node's distribution between two SCMs
  (Budhathoki et al. 2021, "Why did the distribution change?").

All of them are Monte Carlo over batched worlds (:mod:`causalppl.causal.worlds`):
every row of every world is computed in one call per node.

>>> import causalppl as cp
>>> cp.set_rng_seed(0)
>>> scm = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(a, 1)")
>>> {k: round(v, 1) for k, v in arrow_strength(scm, "b").items()}
{'a': 1.0}
>>> {k: round(v, 1) for k, v in intrinsic_causal_influence(scm, "b").items()}
{'a': 1.0, 'b': 1.0}
"""

from __future__ import annotations

import math

import networkx as nx
import torch

from causalppl.causal.worlds import (
    mechanism_dist,
    propagate,
    propagate_mixed,
    require_nodes,
    require_plain,
    sample_noise,
    take_rows,
)
from causalppl.graph.lower import table_to_tensors
from causalppl.handlers import param_scope

MAX_PLAYERS = 12  # exact Shapley values enumerate 2**players subsets
MEASURES = ("variance", "kl")


# ---------------------------------------------------------------------------
# Shapley values


def subset_masks(players):
    """Every subset of ``players`` as a row of a bool matrix ``(2**d, d)``; row ``s`` has bit ``j`` of ``s``.

    >>> subset_masks(2).int().tolist()
    [[0, 0], [1, 0], [0, 1], [1, 1]]
    """
    index = torch.arange(2 ** players).unsqueeze(-1)
    return (index >> torch.arange(players)) & 1 == 1


def shapley_values(values):
    """Exact Shapley values from a set function given on every subset (as :func:`subset_masks` orders them).

    ``values`` has shape ``(2**d, ...)``; the result ``(d, ...)``: player
    ``j`` gets ``sum_S |S|! (d-|S|-1)! / d! * (v(S + j) - v(S))`` over the
    subsets ``S`` without ``j``. The values sum to ``v(all) - v(empty)``.

    >>> shapley_values(torch.tensor([0.0, 1.0, 1.0, 4.0])).tolist()
    [2.0, 2.0]
    """
    size = values.shape[0]
    players = size.bit_length() - 1
    masks = subset_masks(players)
    counts = masks.sum(-1)
    out = []
    for j in range(players):
        without = torch.nonzero(~masks[:, j]).squeeze(-1)
        with_j = without | (1 << j)
        s = counts[without]
        weight = torch.tensor([math.factorial(k) * math.factorial(players - k - 1) / math.factorial(players)
                               for k in s.tolist()], dtype=values.dtype, device=values.device)
        gain = values[with_j.to(values.device)] - values[without.to(values.device)]
        out.append((weight.reshape((-1,) + (1,) * (values.dim() - 1)) * gain).sum(0))
    return torch.stack(out)


def _check_players(players, what):
    if len(players) > MAX_PLAYERS:
        raise ValueError(f"{what}: exact Shapley values over {len(players)} nodes ({', '.join(players)}) "
                         f"would evaluate 2**{len(players)} subsets; at most {MAX_PLAYERS} are supported")


def _noise_players(scm, node, draw):
    """``node`` and its ancestors that have noise of their own, in topological order."""
    upstream = nx.ancestors(scm.graph, node) | {node}
    return [v for v in scm.nodes if v in upstream and draw.noise.get(v) is not None]


def _mix(keep, base, other):
    """Per node: ``base`` where ``keep[node]``, else ``other`` (noise of two draws, rows aligned)."""
    return {node: base[node] if keep.get(node, False) else other[node] for node in base}


def _rows_of(value):
    return value.double().reshape(value.shape[0], -1).mean(-1)


# ---------------------------------------------------------------------------
# arrow strength


def arrow_strength(scm, node, measure="variance", n=1000, inner=200, **inputs):
    """The strength of each edge into ``node``: how much ``node`` changes when the edge is cut.

    Cutting ``p -> node`` feeds the mechanism of ``node`` an independent draw
    of ``p`` from its marginal in place of its actual value, the other
    parents kept (Janzing et al. 2013). ``measure="variance"`` gives
    ``E_parents[Var_cut(node | parents) - Var(node | parents)]`` in the
    node's squared units; ``measure="kl"`` the expected KL divergence
    ``E_parents[KL(P(node | parents) || P_cut(node | parents))]`` in nats,
    with the cut mixture's density by Monte Carlo over ``inner`` draws.
    ``n`` parent configurations are drawn from the SCM, ``inner`` draws of
    the node (and of the cut parent, from a pool of ``10 n`` draws of its
    marginal) per configuration.

    Returns a dict parent -> strength (empty for a root node).

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.SCM().add("a", "Normal(0, 1)").add("c", "Normal(0, 1)").add("b", "Normal(a + 2*c, 1)")
    >>> {k: round(v) for k, v in arrow_strength(scm, "b").items()}
    {'a': 1, 'c': 4}
    """
    require_nodes(scm, node)
    require_plain(scm, "arrow_strength")
    if measure not in MEASURES:
        raise ValueError(f"arrow_strength: measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    parents = scm.parents(node)
    if not parents:
        return {}
    with torch.no_grad():
        outer, weights = scm.model.simulate(n, **inputs)
        pool, _ = scm.model.simulate(10 * n, **inputs)  # draws from each parent's marginal
        strengths = {}
        for parent in parents:
            pick = torch.randint(10 * n, (n * inner,), device=pool[parent].device)
            cut = pool[parent].index_select(0, pick)
            if measure == "variance":
                strengths[parent] = _variance_gap(scm, node, parent, outer, weights, cut, n, inner, inputs)
            else:
                strengths[parent] = _kl_gap(scm, node, parent, outer, weights, cut, n, inner, inputs)
    return strengths


def _node_dist(scm, node, parent_values, weights, inputs):
    with param_scope(store=scm.params):
        scm.model.prepare_with(weights)
        return mechanism_dist(scm, node, parent_values, inputs)


def _repeat(values, weights, times):
    """Each row ``times`` times in a row (row ``i`` becomes rows ``i*times .. i*times + times - 1``)."""
    first = next(iter(values.values()))
    index = torch.arange(first.shape[0], device=first.device).repeat_interleave(times)
    return take_rows(values, index), take_rows(weights, index)


def _variance_gap(scm, node, parent, outer, weights, cut, n, inner, inputs):
    values, rows_weights = _repeat(outer, weights, inner)
    kept = _node_dist(scm, node, values, rows_weights, inputs).sample()
    values[parent] = cut
    changed = _node_dist(scm, node, values, rows_weights, inputs).sample()
    kept, changed = (_rows_of(v).reshape(n, inner) for v in (kept, changed))
    return float((changed.var(-1) - kept.var(-1)).mean())


def _kl_gap(scm, node, parent, outer, weights, cut, n, inner, inputs):
    """``E[log p(y | pa) - log mean_l p(y | pa, parent = cut_l)]`` with ``y ~ p(. | pa)``: rows ``(i, j, l)``."""
    values, rows_weights = _repeat(outer, weights, inner)
    draws = _node_dist(scm, node, values, rows_weights, inputs).sample()
    own = _node_dist(scm, node, values, rows_weights, inputs).log_prob(draws)
    # Row (i, j, l): configuration i, its draw y_ij, and the cut parent's draw l of configuration i.
    triple, triple_weights = _repeat(values, rows_weights, inner)
    cut_rows = cut.reshape(n, 1, inner).expand(n, inner, inner).reshape(-1)
    triple[parent] = cut_rows
    y = draws.repeat_interleave(inner, dim=0)
    mixed = _node_dist(scm, node, triple, triple_weights, inputs).log_prob(y)
    mixed = _rows_of(mixed).reshape(n, inner, inner)
    mixture = torch.logsumexp(mixed, -1) - math.log(inner)
    return float((_rows_of(own).reshape(n, inner) - mixture).mean())


# ---------------------------------------------------------------------------
# intrinsic causal influence


def intrinsic_causal_influence(scm, node, n=20000, **inputs):
    """Each upstream node's intrinsic contribution to the variance of ``node``: its own noise's Shapley share.

    Writing every node as ``f(parents, noise)``, the value of a set ``S`` of
    noises is the part of ``Var(node)`` they explain, ``Var(E[node | N_S])``,
    estimated by pick-freeze: the covariance of ``node`` with a copy that
    keeps the noises in ``S`` and redraws the others. The Shapley values
    over ``node`` and its ancestors sum to ``Var(node)``; in a linear SCM
    each is the squared total path coefficient times the noise variance.

    Returns a dict node -> contribution (``node`` itself included).

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(2*a, 1)").add("c", "Normal(b, 1)")
    >>> {k: round(v) for k, v in intrinsic_causal_influence(scm, "c").items()}
    {'a': 4, 'b': 1, 'c': 1}
    """
    require_nodes(scm, node)
    require_plain(scm, "intrinsic_causal_influence")
    base, fresh = sample_noise(scm, n, **inputs), sample_noise(scm, n, **inputs)
    players = _noise_players(scm, node, base)
    _check_players(players, "intrinsic_causal_influence")
    y = _rows_of(base.values[node])
    centred = y - y.mean()
    values = []
    for mask in subset_masks(len(players)).tolist():
        if not any(mask):
            values.append(torch.zeros((), dtype=y.dtype, device=y.device))
            continue
        keep = dict(zip(players, mask))
        copy = _rows_of(propagate(scm, _mix(keep, base.noise, fresh.noise), base.weights, inputs=inputs)[node])
        values.append((centred * (copy - copy.mean())).sum() / (n - 1))
    contributions = shapley_values(torch.stack(values))
    return dict(zip(players, contributions.tolist()))


# ---------------------------------------------------------------------------
# anomaly attribution


def attribute_anomalies(scm, node, rows, n=1000, **inputs):
    """Each upstream node's Shapley share in how anomalous ``node`` is in each of ``rows``.

    ``rows`` (a dict of columns or a DataFrame) give every upstream node's
    value in the anomalous rows. Each row's noises are recovered by
    abduction. The anomaly score of a value ``y`` is its information-theoretic
    score ``-log P(|Y - median| >= |y - median|)``. The value of a set ``S``
    of nodes is how much more likely so extreme a value becomes when the
    noises in ``S`` keep the row's values and the others are drawn afresh
    (``n`` draws): ``log P_S - log P_empty``. The contributions of a row sum
    to its anomaly score; large positive ones name the root causes.

    Returns a dict node -> tensor of shape ``(rows,)``.

    >>> import torch, causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(a, 1)")
    >>> shares = attribute_anomalies(scm, "b", {"a": torch.tensor([4.0]), "b": torch.tensor([4.2])})
    >>> bool(shares["a"][0] > 5 * shares["b"][0].abs())   # a's noise made b anomalous
    True
    """
    require_nodes(scm, node)
    require_plain(scm, "attribute_anomalies")
    reference = sample_noise(scm, n, **inputs)
    players = _noise_players(scm, node, reference)
    _check_players(players, "attribute_anomalies")
    device = reference.values[node].device
    observed = {v: value.to(device) for v, value in _row_values(scm, node, rows).items()}
    count = next(iter(observed.values())).shape[0]
    row_noise = _abduct_rows(scm, observed, count, inputs)
    centre = reference.values[node].double().median()
    score = (_rows_of(observed[node]) - centre).abs()  # (R,)
    tail_base = _tail_probability((_rows_of(reference.values[node]) - centre).abs().unsqueeze(0), score)
    # Rows (r, j): anomalous row r with reference draw j, flattened.
    pick_row = torch.arange(count, device=device).repeat_interleave(n)
    pick_ref = torch.arange(n, device=device).repeat(count)
    kept = take_rows({v: row_noise[v] for v in players}, pick_row)
    drawn = take_rows({v: value for v, value in reference.noise.items() if value is not None}, pick_ref)
    weights = take_rows(reference.weights, pick_ref)
    values = []
    for mask in subset_masks(len(players)).tolist():
        keep = dict(zip(players, mask))
        noise = {v: kept[v] if keep.get(v, False) else drawn[v] for v in drawn}
        y = _rows_of(propagate(scm, noise, weights, inputs=inputs)[node]).reshape(count, n)
        values.append(torch.log(_tail_probability((y - centre).abs(), score)) - torch.log(tail_base))
    contributions = shapley_values(torch.stack(values))  # (players, R)
    return {v: contributions[i].float() for i, v in enumerate(players)}


def _tail_probability(distances, score):
    """``(1 + #{distance >= score}) / (1 + draws)`` per row: the smoothed tail probability."""
    hits = (distances >= score.unsqueeze(-1)).double().sum(-1)
    return (1 + hits) / (1 + distances.shape[-1])


def _row_values(scm, node, rows):
    labels = {v: scm.labels(v) for v in scm.nodes if scm.labels(v) is not None}
    values = table_to_tensors(rows, labels=labels, scalars=True)
    values = {v: value.reshape(1) if value.dim() == 0 else value for v, value in values.items()}  # one row
    needed = [v for v in scm.nodes if v in nx.ancestors(scm.graph, node) | {node} and v not in scm.interventions]
    missing = [v for v in needed if v not in values]
    if missing:
        raise KeyError(f"attribute_anomalies: rows need a value for every upstream node of '{node}'; "
                       f"missing: {', '.join(missing)}")
    return {v: values[v] for v in needed}


def _abduct_rows(scm, observed, count, inputs):
    """The noise of every upstream node in the given rows (Bayesian weights: a fresh draw per row)."""
    from causalppl.causal.counterfactual import abduct

    _, weights = scm.model.simulate(count, **inputs)
    with torch.no_grad(), param_scope(store=scm.params):
        scm.model.prepare_with(weights)
        return {v: abduct(v, mechanism_dist(scm, v, observed, inputs), observed[v]) for v in observed}


# ---------------------------------------------------------------------------
# distribution change


def _mean_change(old, new):
    return float(new.mean() - old.mean())


def _variance_change(old, new):
    return float(new.var() - old.var())


CHANGES = {"mean": _mean_change, "variance": _variance_change}


def distribution_change(scm_old, scm_new, node, measure="mean", n=20000, **inputs):
    """Each upstream node's Shapley share in how ``node``'s distribution changed from ``scm_old`` to ``scm_new``.

    The two SCMs have the same nodes (say, one graph fitted on last month's
    data and on this month's). The value of a set ``S`` of nodes is the
    change of ``node``'s distribution when the nodes in ``S`` take their new
    mechanisms and the others keep their old ones; ``measure`` is
    ``"mean"`` (difference of means), ``"variance"`` (difference of
    variances) or a function ``(old_samples, new_samples) -> float``. Every
    mix of mechanisms is driven by the same noise, so a node whose mechanism
    did not change gets exactly zero. The shares sum to the total change.

    Returns a dict node -> contribution.

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> old = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(a, 1)")
    >>> new = cp.SCM().add("a", "Normal(1, 1)").add("b", "Normal(a, 1)")
    >>> {k: round(v, 6) for k, v in distribution_change(old, new, "b").items()}
    {'a': 1.0, 'b': 0.0}
    """
    for scm in (scm_old, scm_new):
        require_nodes(scm, node)
        require_plain(scm, "distribution_change")
    if set(scm_old.nodes) != set(scm_new.nodes):
        raise ValueError(f"distribution_change: the SCMs have different nodes "
                         f"({sorted(scm_old.nodes)} and {sorted(scm_new.nodes)})")
    change = CHANGES.get(measure, measure)
    if not callable(change):
        raise ValueError(f"distribution_change: measure must be one of {', '.join(CHANGES)} or a function, "
                         f"got {measure!r}")
    base = sample_noise(scm_old, n, **inputs)
    _, new_weights = scm_new.model.simulate(n, **inputs)
    upstream = nx.ancestors(scm_old.graph, node) | nx.ancestors(scm_new.graph, node) | {node}
    players = [v for v in scm_old.nodes if v in upstream]
    _check_players(players, "distribution_change")
    sources, weights = (scm_old, scm_new), (base.weights, new_weights)
    old = _rows_of(base.values[node])
    values = []
    for mask in subset_masks(len(players)).tolist():
        choice = {v: int(m) for v, m in zip(players, mask)}
        mixed = _rows_of(propagate_mixed(sources, choice, base.noise, weights, inputs)[node])
        values.append(0.0 if not any(mask) else change(old, mixed))
    contributions = shapley_values(torch.tensor(values, dtype=torch.double))
    return dict(zip(players, contributions.tolist()))
