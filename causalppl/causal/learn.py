"""SCMs built from a bare graph (plus data) with learnable mechanisms.

The mechanisms themselves live in :mod:`causalppl.causal.learnable`; this
module picks one per node from the data (``mechanisms="auto"``) and sets
their standardisation and labels from the columns.

>>> import torch, causalppl as cp
>>> from causalppl.causal.learn import from_graph
>>> data = {"x": torch.randn(100), "y": torch.randn(100)}
>>> scm = from_graph([("x", "y")], data)
>>> scm.mechanism("y").fn.text
'LinearGaussian(x)'
"""

from __future__ import annotations

import networkx as nx
import torch

from causalppl.causal.heldout import MIN_ROWS, mlp_versus_linear
from causalppl.causal.learnable import (  # noqa: F401  (re-exported)
    CategoricalTable,
    LinearGaussian,
    Logistic,
    MLPGaussian,
    MultinomialLogistic,
    mechanism_from_spec,
)
from causalppl.graph.columns import read_columns
from causalppl.graph.mechanism import as_mechanism
from causalppl.graph.scm import SCM

KINDS = ("categorical", "linear", "logistic", "mlp", "multinomial")


# ---------------------------------------------------------------------------
# from_graph
# ---------------------------------------------------------------------------


def from_graph(G, data=None, mechanisms="auto", bayesian=False):
    """An SCM over the DAG ``G`` with a learnable mechanism at every node.

    Parameters
    ----------
    G : networkx.DiGraph, SCM, or list of (parent, child) edges
        The causal graph; only its structure is used.
    data : dict of array-likes or pandas DataFrame, optional
        Used to choose mechanisms (cardinalities, labels, standardisation),
        not fitted here: call ``scm.fit(data)`` next. Columns are read by
        :func:`causalppl.graph.columns.read_columns` (bool, int, float,
        category, strings, nullable dtypes). Nodes with no column are latent.
    mechanisms : "auto", a kind, or dict node -> kind or mechanism
        Kinds are ``"linear"``, ``"logistic"``, ``"categorical"``, ``"mlp"``,
        ``"multinomial"``. ``"auto"`` picks per node from its column: binary
        -> Logistic; categorical (labels, or ints in 0..19) -> CategoricalTable
        when every parent is discrete, else MultinomialLogistic; continuous ->
        LinearGaussian, or MLPGaussian when a held-out check
        (:func:`causalppl.causal.heldout.mlp_versus_linear`) finds that an MLP
        fits clearly better; latent nodes -> LinearGaussian. Categorical
        parents enter linear, logistic and MLP mechanisms one-hot. A dict
        overrides some nodes; the rest are "auto". Why each node got its
        mechanism is kept in ``scm._state.choices`` (node -> text).
    bayesian : bool
        Linear, logistic and categorical coefficients become latent sites
        (MLP weights stay point estimates; ``auto`` never picks an MLP).

    Returns
    -------
    SCM

    Raises
    ------
    TypeError for a ``G`` or ``data`` of the wrong type; ValueError naming the
    node or column for a data column that is not a node, a cycle, an unknown
    kind, or a categorical node whose values or parents are not discrete;
    KeyError for a ``mechanisms`` key that is not a node.

    Examples
    --------
    >>> import torch
    >>> data = {"t": torch.tensor([0, 1, 1, 0]), "y": torch.randn(4)}
    >>> scm = from_graph([("t", "y")], data)
    >>> [scm.mechanism(n).fn.text for n in scm.nodes]
    ['Logistic()', 'LinearGaussian(t)']
    >>> scm._state.choices["y"]
    'LinearGaussian: continuous column, no continuous parent'
    >>> scm._state.choices["t"]
    'Logistic: binary column'
    """
    graph = _as_graph(G)
    columns = _describe_columns(data) if data is not None else {}
    nodes = list(graph.nodes)
    for name in columns:
        if name not in graph:
            raise ValueError(
                f"data column '{name}' is not a node of the graph (nodes: {', '.join(map(str, nodes))})"
            )
    if not isinstance(G, SCM) and not nx.is_directed_acyclic_graph(graph):  # an SCM's graph is a DAG
        cycle = nx.find_cycle(graph)
        path = " -> ".join([str(edge[0]) for edge in cycle] + [str(cycle[0][0])])
        raise ValueError(f"the graph has the cycle {path}; a causal model needs a DAG")
    overrides = _overrides(mechanisms, nodes)
    position = {node: i for i, node in enumerate(nodes)}
    built, hidden = {}, set()  # one SCM at the end: adding node by node re-checks the graph each time
    choices = {}
    order = G.nodes if isinstance(G, SCM) else nx.lexicographical_topological_sort(graph, key=position.__getitem__)
    for node in order:
        parents = tuple(graph.predecessors(node))
        latent = data is not None and node not in columns
        choice = overrides.get(node, "auto")
        if isinstance(choice, str):
            kind, reason = (_auto_kind(node, parents, columns, bayesian) if choice == "auto"
                            else (choice, f"mechanisms={choice!r} given"))
            mechanism = _build(node, parents, kind, columns, data is not None, bayesian)
        else:
            mechanism, reason = _check_given(node, parents, choice, nodes), "mechanism given"
        choices[node] = f"{_name_of(mechanism)}: {reason}"
        built[node] = mechanism
        if latent:
            hidden.add(node)
    scm = SCM._from_parts(built, hidden)  # the mechanisms' parents are the graph's: nothing to re-check
    scm._state.choices = choices
    return scm


def _as_graph(G):
    if isinstance(G, SCM):
        return G.graph  # frozen; only read here
    if isinstance(G, nx.DiGraph):
        return G
    if isinstance(G, nx.Graph):
        raise TypeError(
            "from_graph needs a directed graph (networkx.DiGraph), got an undirected networkx.Graph"
        )
    if isinstance(G, (list, tuple)):
        for edge in G:
            if not (isinstance(edge, (list, tuple)) and len(edge) == 2):
                raise TypeError(
                    f"from_graph: expected a list of (parent, child) edges, got the item {edge!r}"
                )
        return nx.DiGraph(list(G))
    raise TypeError(f"from_graph needs a networkx.DiGraph, an SCM or a list of edges, got {type(G).__name__}")


def _describe_columns(data):
    """Column name -> :class:`~causalppl.graph.columns.Column` (kind, labels, centre/spread)."""
    return read_columns(data)


def _overrides(mechanisms, nodes):
    if isinstance(mechanisms, str):
        _check_kind(None, mechanisms)
        return {node: mechanisms for node in nodes}
    if not hasattr(mechanisms, "items"):
        raise TypeError(
            f"mechanisms must be 'auto', one of {list(KINDS)}, or a dict node -> kind or mechanism, "
            f"got {type(mechanisms).__name__}"
        )
    for node, choice in mechanisms.items():
        if node not in nodes:
            raise KeyError(
                f"mechanisms names '{node}', which is not a node of the graph "
                f"(nodes: {', '.join(map(str, nodes))})"
            )
        if isinstance(choice, str):
            _check_kind(node, choice)
    return dict(mechanisms)


def _check_kind(node, kind):
    if kind != "auto" and kind not in KINDS:
        where = f"node '{node}': " if node is not None else ""
        known = ", ".join(("auto",) + KINDS)
        raise ValueError(f"{where}unknown mechanism kind {kind!r}; known kinds: {known}")


def _features_of(node, parents, columns):
    """Options that tell a mechanism how its parents enter: one-hot levels and standardisation."""
    levels = {p: columns[p].levels for p in parents if p in columns and columns[p].kind == "categorical"}
    stats = {name: (columns[name].centre, columns[name].spread) for name in (node, *parents)
             if name in columns and columns[name].kind == "continuous"}
    return {"parent_levels": levels, "standardization": stats}


def _build(node, parents, kind, columns, have_data, bayesian):
    column = columns.get(node)
    features = _features_of(node, parents, columns)
    if kind == "linear":
        return LinearGaussian(node, parents, bayesian=bayesian, **features)
    if kind == "logistic":
        if column is not None and column.kind != "binary":
            raise ValueError(
                f"node '{node}': a logistic mechanism needs a binary {{0, 1}} column, got {column.describe()}"
            )
        labels = column.labels if column is not None else None
        return Logistic(node, parents, bayesian=bayesian, labels=labels, **features)
    if kind == "mlp":
        return MLPGaussian(node, parents, **features)
    if kind == "multinomial":
        if column is None or not column.codes:
            raise ValueError(
                f"node '{node}': a multinomial mechanism needs a column of category codes, got "
                f"{column.describe() if column is not None else 'no column'}"
            )
        return MultinomialLogistic(node, parents, column.cardinality, labels=column.labels, **features)
    return _categorical_table(node, parents, columns, have_data, bayesian)


def _categorical_table(node, parents, columns, have_data, bayesian):
    """A CategoricalTable whose cardinalities (and labels) come from the columns."""
    column = columns.get(node)
    if column is None:
        why = "it has no data column" if have_data else "no data was given"
        raise ValueError(
            f"node '{node}': a categorical mechanism learns its cardinality from the data, but {why}; "
            "pass data= or give a CategoricalTable(...) yourself"
        )
    if not column.codes:
        raise ValueError(
            f"node '{node}': a categorical node needs non-negative integer values, got {column.describe()}"
        )
    cards = []
    for parent in parents:
        parent_column = columns.get(parent)
        if parent_column is None:
            raise ValueError(
                f"node '{node}': a categorical node needs discrete parents, but parent '{parent}' has no "
                "data column (it is latent, hence continuous)"
            )
        if not parent_column.codes:
            raise ValueError(
                f"node '{node}': a categorical node needs discrete parents, but parent '{parent}' is "
                f"{parent_column.describe()}"
            )
        cards.append(parent_column.cardinality)
    # The parents' labels name the table's rows (in summaries and drawings).
    levels = {p: columns[p].labels for p in parents if columns[p].labels is not None and len(columns[p].labels) > 1}
    return CategoricalTable(node, parents, column.cardinality, cards, bayesian=bayesian, labels=column.labels,
                            parent_levels=levels)


def _auto_kind(node, parents, columns, bayesian):
    """The kind ``auto`` picks for ``node``, and why (a phrase for ``scm._state.choices``)."""
    column = columns.get(node)
    if column is None:
        return "linear", "latent node (no data column)" if columns else "no data"
    if column.kind == "binary":
        return "logistic", "binary column"
    continuous = [p for p in parents if p not in columns or columns[p].kind == "continuous"]
    if column.kind == "categorical":
        if not continuous:
            return "categorical", f"categorical column ({column.cardinality} levels), discrete parents"
        return "multinomial", (f"categorical column ({column.cardinality} levels), "
                               f"continuous parent(s) {', '.join(continuous)}")
    if not continuous:
        return "linear", f"continuous column, {'no continuous parent' if parents else 'no parents'}"
    if bayesian:
        return "linear", "continuous column (bayesian=True never picks an MLP)"
    latent = [p for p in parents if p not in columns]
    if latent:
        return "linear", f"continuous column; latent parent(s) {', '.join(latent)} leave no held-out check"
    if len(column.values) < MIN_ROWS:
        return "linear", f"continuous column; {len(column.values)} rows are too few for a held-out check"
    comparison = mlp_versus_linear(_design(parents, columns), column.values)
    return ("mlp" if comparison.clear else "linear"), f"continuous column; {comparison}"


def _design(parents, columns):
    """The parents' feature matrix (rows, features): categorical parents one-hot, others as they are."""
    features = []
    for parent in parents:
        column = columns[parent]
        values = column.values.detach().cpu().float()
        if column.kind == "categorical":
            features += [(values == k).float() for k in range(1, column.cardinality)]
        else:
            features.append(values)
    return torch.stack(features, dim=-1)


def _name_of(mechanism):
    fn = getattr(mechanism, "fn", mechanism)
    return getattr(fn, "name", None) or type(fn).__name__


def _check_given(node, parents, mechanism, nodes):
    wrapped = as_mechanism(mechanism, node=node)
    used = {p for p in wrapped.parents if p in nodes}
    if used != set(parents):
        raise ValueError(
            f"node '{node}': the given mechanism uses parents {sorted(used)}, but the graph gives it "
            f"{sorted(parents)}"
        )
    return mechanism
