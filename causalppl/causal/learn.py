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

from causalppl.causal.learnable import (  # noqa: F401  (re-exported)
    CategoricalTable,
    LinearGaussian,
    Logistic,
    MLPGaussian,
    MultinomialLogistic,
    mechanism_from_spec,
)
from causalppl.graph.lower import table_columns
from causalppl.graph.mechanism import as_mechanism
from causalppl.graph.scm import SCM

KINDS = ("categorical", "linear", "logistic", "mlp", "multinomial")
MAX_CATEGORIES = 20  # an integer column with values in 0..19 is treated as categorical


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
        Used to choose mechanisms (and categorical cardinalities), not fitted
        here: call ``scm.fit(data)`` next. Nodes with no column are latent.
    mechanisms : "auto", a kind, or dict node -> kind or mechanism
        Kinds are ``"linear"``, ``"logistic"``, ``"categorical"``, ``"mlp"``.
        ``"auto"`` picks per node from its column: binary {0, 1} values ->
        Logistic; integer values in 0..19 with only discrete parents ->
        CategoricalTable; anything else (and latent nodes) -> LinearGaussian.
        A dict overrides some nodes; the rest are "auto".
    bayesian : bool
        Linear, logistic and categorical coefficients become latent sites
        (MLP weights stay point estimates).

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
    """
    graph = _as_graph(G)
    columns = _describe_columns(data) if data is not None else {}
    nodes = list(graph.nodes)
    for name in columns:
        if name not in graph:
            raise ValueError(
                f"data column '{name}' is not a node of the graph (nodes: {', '.join(map(str, nodes))})"
            )
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        path = " -> ".join([str(edge[0]) for edge in cycle] + [str(cycle[0][0])])
        raise ValueError(f"the graph has the cycle {path}; a causal model needs a DAG")
    overrides = _overrides(mechanisms, nodes)
    position = {node: i for i, node in enumerate(nodes)}
    scm = SCM()
    for node in nx.lexicographical_topological_sort(graph, key=position.__getitem__):
        parents = tuple(graph.predecessors(node))
        latent = data is not None and node not in columns
        choice = overrides.get(node, "auto")
        if isinstance(choice, str):
            mechanism = _build(node, parents, choice, columns, data is not None, bayesian)
        else:
            mechanism = _check_given(node, parents, choice, nodes)
        scm.add(node, mechanism, latent=latent)
    return scm


def _as_graph(G):
    if isinstance(G, SCM):
        return nx.DiGraph(G.graph)
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


class _Column:
    """What ``auto`` needs to know about one data column."""

    def __init__(self, name, values):
        self.name = name
        self.dtype = values.dtype
        finite = values[torch.isfinite(values.double())] if values.is_floating_point() else values
        distinct = torch.unique(finite) if finite.numel() else finite
        self.binary = values.dtype == torch.bool or (
            len(finite) == len(values) and bool(((distinct == 0) | (distinct == 1)).all())
        )
        whole = distinct.double() == torch.round(distinct.double())
        integral = len(finite) == len(values) and bool(whole.all())
        self.integer_dtype = not values.is_floating_point()
        low = int(distinct.min()) if integral and distinct.numel() else 0
        high = int(distinct.max()) if integral and distinct.numel() else 0
        # Non-negative integer codes: usable as a categorical (0..cardinality-1).
        self.codes = integral and low >= 0
        self.cardinality = max(high + 1, 2) if self.codes else None
        self.discrete = self.binary or (self.integer_dtype and self.codes and high < MAX_CATEGORIES)
        self.labels = None  # state labels, when the column had them (strings, categories)
        real = finite.double()
        self.centre = float(real.mean()) if real.numel() else 0.0
        self.spread = float(real.std()) if real.numel() > 1 else 1.0
        if not self.spread > 0:
            self.spread = 1.0

    @property
    def levels(self):
        """The labels of a discrete column's states (its codes when it has no labels)."""
        if self.labels is not None:
            return tuple(self.labels)
        return tuple(range(self.cardinality)) if self.cardinality else ()

    def describe(self):
        if self.binary:
            return "a binary column"
        if self.discrete:
            return f"an integer column with values in 0..{self.cardinality - 1}"
        return f"a continuous column (dtype {str(self.dtype).replace('torch.', '')})"


def _describe_columns(data):
    columns = {}
    for name, value in table_columns(data).items():
        try:
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"data column '{name}': expected numbers, got {type(value).__name__} ({err})"
            ) from err
        if tensor.is_complex() or tensor.dim() != 1:
            raise ValueError(
                f"data column '{name}': expected a 1-d column of real numbers, got shape "
                f"{tuple(tensor.shape)} and dtype {tensor.dtype}"
            )
        columns[name] = _Column(name, tensor.detach().cpu())
    return columns


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
    levels = {p: columns[p].levels for p in parents
              if p in columns and columns[p].discrete and not columns[p].binary}
    stats = {name: (columns[name].centre, columns[name].spread) for name in (node, *parents)
             if name in columns and not columns[name].discrete}
    return {"parent_levels": levels, "standardization": stats}


def _build(node, parents, kind, columns, have_data, bayesian):
    column = columns.get(node)
    if kind == "auto":
        kind = _auto_kind(parents, column, columns)
    features = _features_of(node, parents, columns)
    if kind == "linear":
        return LinearGaussian(node, parents, bayesian=bayesian, **features)
    if kind == "logistic":
        if column is not None and not column.binary:
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
    # categorical: cardinalities come from the data
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
    return CategoricalTable(node, parents, column.cardinality, cards, bayesian=bayesian, labels=column.labels)


def _auto_kind(parents, column, columns):
    if column is None:
        return "linear"
    if column.binary:
        return "logistic"
    if column.discrete and all(p in columns and columns[p].discrete for p in parents):
        return "categorical"
    return "linear"


def _check_given(node, parents, mechanism, nodes):
    wrapped = as_mechanism(mechanism, node=node)
    used = {p for p in wrapped.parents if p in nodes}
    if used != set(parents):
        raise ValueError(
            f"node '{node}': the given mechanism uses parents {sorted(used)}, but the graph gives it "
            f"{sorted(parents)}"
        )
    return mechanism
