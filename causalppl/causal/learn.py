"""Learnable mechanisms, and SCMs built from a bare graph (plus data) with them.

Each builder is a mechanism object: ``parents`` (a tuple of names), ``text``
(a short description) and ``__call__(**parent_values) -> Distribution``. Its
learnable tensors live in the param store under names prefixed with the node
(``"y.weight"``, ``"y.bias"``, ``"y.scale"``, ``"y.net.0.weight"``, ...), so
traces record them and SVI optimises them. With ``bayesian=True`` weights and
bias are latent sample sites instead, drawn once per model run by
``prepare()`` (the lowered model calls it outside the plate over rows).

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
from torch.distributions import constraints

from causalppl import distributions as dist
from causalppl.graph.lower import table_columns
from causalppl.graph.mechanism import as_mechanism
from causalppl.graph.scm import SCM
from causalppl.params import module
from causalppl.runtime import as_tensor, param, sample

KINDS = ("categorical", "linear", "logistic", "mlp")
MAX_CATEGORIES = 20  # an integer column with values in 0..19 is treated as categorical


class _Learnable:
    """Shared plumbing: node and parent names, the device params are created on."""

    name = ""

    def __init__(self, node, parents):
        if not isinstance(node, str):
            raise TypeError(f"{self.name}: node must be a string name, got {node!r}")
        if isinstance(parents, str):
            parents = (parents,)
        parents = tuple(parents)
        for parent in parents:
            if not isinstance(parent, str):
                raise TypeError(
                    f"{self.name} for node '{node}': parent names must be strings, got {parent!r}"
                )
        if len(set(parents)) != len(parents):
            raise ValueError(f"{self.name} for node '{node}': parents {list(parents)} contain duplicates")
        if node in parents:
            raise ValueError(f"{self.name} for node '{node}': a node cannot be its own parent")
        self.node = node
        self.parents = parents
        # Params are created lazily (the first run); remember the device in use
        # now so that ``with torch.device("cuda"): scm = ...`` puts them there.
        self._device = torch.get_default_device()

    @property
    def text(self):
        return f"{self.name}({', '.join(self.parents)})"

    def __repr__(self):
        return f"{self.name}(node={self.node!r}, parents={self.parents!r})"

    def _device_for(self, values=()):
        for value in values:
            if isinstance(value, torch.Tensor):
                return value.device
        current = torch.get_default_device()
        return current if current.type != "cpu" else self._device

    def _param(self, suffix, init, constraint=constraints.real, values=()):
        """The param ``node.suffix``; ``init(device)`` runs only when it is created."""
        return param(f"{self.node}.{suffix}", lambda: init(self._device_for(values)), constraint)

    def _values(self, parent_values):
        missing = [p for p in self.parents if p not in parent_values]
        unknown = [p for p in parent_values if p not in self.parents]
        if missing or unknown:
            raise TypeError(
                f"node '{self.node}': {self.name} expects values for its parents {list(self.parents)}, "
                f"got {sorted(parent_values)}"
            )
        return [as_tensor(parent_values[p]) for p in self.parents]


class _Linear(_Learnable):
    """``bias + sum_p weight_p * x_p``, with point-estimate or latent (Bayesian) coefficients."""

    def __init__(self, node, parents, bayesian=False, prior_scale=1.0):
        super().__init__(node, parents)
        if not float(prior_scale) > 0:
            raise ValueError(
                f"{self.name} for node '{node}': prior_scale must be positive, got {prior_scale!r}"
            )
        self.bayesian = bool(bayesian)
        self.prior_scale = float(prior_scale)
        self._drawn = None  # (weight, bias) of the current run, in Bayesian mode

    @property
    def global_sites(self):
        """The sample sites ``prepare`` draws (Bayesian mode only)."""
        if not self.bayesian:
            return ()
        return ((f"{self.node}.weight",) if self.parents else ()) + (f"{self.node}.bias",)

    @property
    def text(self):
        text = super().text
        if self.bayesian:
            text = text[:-1] + (", " if self.parents else "") + "bayesian=True)"
        return text

    def prepare(self):
        """Bayesian mode: draw weights and bias once per model run (outside the rows plate)."""
        if not self.bayesian:
            return
        device = self._device_for()
        zero = torch.zeros((), device=device)
        prior = dist.Normal(zero, torch.full((), self.prior_scale, device=device))
        weight = None
        if self.parents:
            weight = sample(f"{self.node}.weight", dist.Independent(prior.expand([len(self.parents)]), 1))
        bias = sample(f"{self.node}.bias", prior)
        self._drawn = (weight, bias)

    def _linear(self, values):
        if self.bayesian:
            if self._drawn is None:
                raise RuntimeError(
                    f"node '{self.node}': the Bayesian weights of {self.text} are drawn by prepare(), "
                    "which the lowered model calls once per run; call prepare() before using it directly"
                )
            weight, bias = self._drawn
        else:
            size = len(self.parents)
            weight = None
            if size:
                weight = self._param("weight", lambda d: torch.zeros(size, device=d), values=values)
            bias = self._param("bias", lambda d: torch.zeros((), device=d), values=values)
        out = bias
        for i, value in enumerate(values):
            # weight is (P,) for point estimates, (..., 1, P) with vectorised
            # particles: weight[..., i] broadcasts against (n,) or (particles, n).
            out = out + weight[..., i] * value
        return out


class LinearGaussian(_Linear):
    """``Normal(bias + sum_p weight_p * x_p, scale)`` with a learnable positive ``scale``.

    >>> import causalppl as cp
    >>> cp.clear_param_store()
    >>> m = LinearGaussian("y", ["x"])
    >>> m(x=torch.tensor([1.0, 2.0])).mean
    tensor([0., 0.], grad_fn=<AddBackward0>)
    >>> sorted(cp.get_param_store().keys())
    ['y.bias', 'y.scale', 'y.weight']
    """

    name = "LinearGaussian"

    def __call__(self, **parent_values):
        values = self._values(parent_values)
        loc = self._linear(values)
        scale = self._param("scale", lambda d: torch.ones((), device=d), constraints.positive, values)
        return dist.Normal(loc, scale)


class Logistic(_Linear):
    """``Bernoulli(logits = bias + sum_p weight_p * x_p)``: a binary node.

    >>> m = Logistic("t", ["x"])
    >>> m(x=torch.tensor([1.0])).probs
    tensor([0.5000], grad_fn=<SigmoidBackward0>)
    """

    name = "Logistic"

    def __call__(self, **parent_values):
        return dist.Bernoulli(logits=self._linear(self._values(parent_values)))


class CategoricalTable(_Learnable):
    """A conditional probability table over discrete parents.

    The param ``node.probs`` has shape ``[*parent_cardinalities, num_categories]``
    (each row on the simplex); a row is selected by the parents' integer values.
    With ``bayesian=True`` the table is a latent ``Dirichlet(concentration)`` site.

    >>> m = CategoricalTable("c", ["a"], num_categories=3, parent_cardinalities=[2])
    >>> m(a=torch.tensor([0.0, 1.0])).probs.shape
    torch.Size([2, 3])
    """

    name = "CategoricalTable"

    def __init__(self, node, parents, num_categories, parent_cardinalities=(), bayesian=False,
                 concentration=1.0):
        super().__init__(node, parents)
        if isinstance(parent_cardinalities, dict):
            missing = [p for p in self.parents if p not in parent_cardinalities]
            if missing:
                raise ValueError(
                    f"CategoricalTable for node '{node}': no cardinality for parent(s) {missing}"
                )
            parent_cardinalities = [parent_cardinalities[p] for p in self.parents]
        cards = tuple(int(c) for c in parent_cardinalities)
        if len(cards) != len(self.parents):
            raise ValueError(
                f"CategoricalTable for node '{node}': {len(self.parents)} parents {list(self.parents)} "
                f"but {len(cards)} parent cardinalities {list(cards)}"
            )
        if int(num_categories) < 2 or any(c < 1 for c in cards):
            raise ValueError(
                f"CategoricalTable for node '{node}': expected num_categories >= 2 and parent "
                f"cardinalities >= 1, got {num_categories} and {list(cards)}"
            )
        self.num_categories = int(num_categories)
        self.parent_cardinalities = cards
        self.bayesian = bool(bayesian)
        self.concentration = float(concentration)
        self._drawn = None

    @property
    def global_sites(self):
        return (f"{self.node}.probs",) if self.bayesian else ()

    @property
    def text(self):
        return f"CategoricalTable({', '.join(self.parents + (f'K={self.num_categories}',))})"

    def _shape(self):
        return self.parent_cardinalities + (self.num_categories,)

    def prepare(self):
        """Bayesian mode: draw the table once per model run."""
        if not self.bayesian:
            return
        alpha = torch.full(self._shape(), self.concentration, device=self._device_for())
        self._drawn = sample(f"{self.node}.probs", _to_event(dist.Dirichlet(alpha), len(self.parents)))

    def __call__(self, **parent_values):
        values = self._values(parent_values)
        if self.bayesian:
            if self._drawn is None:
                raise RuntimeError(
                    f"node '{self.node}': the Bayesian table is drawn by prepare(), which the lowered "
                    "model calls once per run; call prepare() before using it directly"
                )
            table = self._drawn
        else:
            shape = self._shape()
            table = self._param(
                "probs", lambda d: torch.full(shape, 1.0 / shape[-1], device=d), constraints.simplex, values
            )
        if not self.parents:
            return dist.Categorical(probs=table)
        # Flatten the parent dims, then pick each row's entry with take_along_dim,
        # which broadcasts a (particles, 1, ...) table against (particles, n) parents.
        flat = 0
        stride = 1
        triples = zip(self.parents, values, self.parent_cardinalities, strict=True)
        for parent, value, card in reversed(list(triples)):
            index = value.long()
            if index.device.type == "cpu" and index.numel() and (index.min() < 0 or index.max() >= card):
                raise ValueError(
                    f"node '{self.node}': parent '{parent}' must take values in 0..{card - 1} "
                    f"(its cardinality), got values in {int(index.min())}..{int(index.max())}"
                )
            flat = flat + index * stride
            stride *= card
        flat = torch.as_tensor(flat)
        table = table.reshape(table.shape[: table.dim() - len(self._shape())] + (stride, self.num_categories))
        batch_dims = max(flat.dim(), table.dim() - 2)
        table = table.reshape((1,) * (batch_dims - (table.dim() - 2)) + table.shape)
        index = flat.reshape((1,) * (batch_dims - flat.dim()) + flat.shape)[..., None, None]
        probs = torch.take_along_dim(table, index, dim=-2).squeeze(-2)
        return dist.Categorical(probs=probs)


def _to_event(fn, dims):
    return dist.Independent(fn, dims) if dims else fn


class MLPGaussian(_Learnable):
    """``Normal(mlp(parents), scale)`` with a small ``torch.nn`` MLP (one tanh hidden layer).

    The network is registered as ``cp.module(f"{node}.net", net)``.

    >>> import causalppl as cp
    >>> cp.clear_param_store()
    >>> m = MLPGaussian("y", ["x"], hidden=4)
    >>> m(x=torch.zeros(3)).mean.shape
    torch.Size([3])
    >>> sorted(cp.get_param_store().keys())[:2]
    ['y.net.0.bias', 'y.net.0.weight']
    """

    name = "MLPGaussian"

    def __init__(self, node, parents, hidden=16):
        super().__init__(node, parents)
        if not self.parents:
            raise ValueError(
                f"MLPGaussian for node '{node}': needs at least one parent (use LinearGaussian for a root)"
            )
        if int(hidden) < 1:
            raise ValueError(
                f"MLPGaussian for node '{node}': hidden must be a positive integer, got {hidden!r}"
            )
        self.hidden = int(hidden)
        self.net = None  # built on first use, on the device in use then

    def _network(self, device):
        if self.net is None:
            size = len(self.parents)
            with torch.device(device):
                self.net = torch.nn.Sequential(
                    torch.nn.Linear(size, self.hidden), torch.nn.Tanh(), torch.nn.Linear(self.hidden, 1)
                )
        return module(f"{self.node}.net", self.net)

    def __call__(self, **parent_values):
        values = self._values(parent_values)
        net = self._network(self._device_for(values))
        inputs = torch.stack(torch.broadcast_tensors(*values), dim=-1)
        loc = net(inputs.to(torch.get_default_dtype())).squeeze(-1)
        scale = self._param("scale", lambda d: torch.ones((), device=d), constraints.positive, values)
        return dist.Normal(loc, scale)


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


def _build(node, parents, kind, columns, have_data, bayesian):
    column = columns.get(node)
    if kind == "auto":
        kind = _auto_kind(parents, column, columns)
    if kind == "linear":
        return LinearGaussian(node, parents, bayesian=bayesian)
    if kind == "logistic":
        if column is not None and not column.binary:
            raise ValueError(
                f"node '{node}': a logistic mechanism needs a binary {{0, 1}} column, got {column.describe()}"
            )
        return Logistic(node, parents, bayesian=bayesian)
    if kind == "mlp":
        return MLPGaussian(node, parents)
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
    return CategoricalTable(node, parents, column.cardinality, cards, bayesian=bayesian)


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
