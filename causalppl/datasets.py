"""Seeded synthetic data sets with known causal truth, for tests, benchmarks and the README.

Every generator takes ``n`` and ``seed`` and draws from its own
``torch.Generator``, so it never touches (or depends on) the global RNG: the
same seed gives the same table on every call. Tables are pandas DataFrames
when pandas is importable, otherwise dicts of column name -> torch tensor
(floats are float64 in both; booleans stay bool; categories become int64 codes).

- :func:`job_training`: a LaLonde-like confounded table with a mediator; true ATE
  :data:`JOB_TRAINING_ATE`.
- :func:`marketing_uplift`: a confounded binary treatment and outcome;
  :func:`marketing_uplift_ate` is the exact true ATE.
- :func:`random_discrete_network`: an alarm-sized random DAG with categorical CPTs.
- :func:`random_linear_scm_data`: a random linear-Gaussian DAG on raw, varied scales.

>>> from causalppl import datasets
>>> datasets.job_training(n=4, seed=0).shape
(4, 6)
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import networkx as nx
import torch

try:
    import pandas as pd
except ImportError:  # pandas is optional: tables fall back to dicts of tensors
    pd = None

__all__ = [
    "JOB_TRAINING_ATE", "MARKETING_SEGMENTS", "DiscreteNetwork", "job_training", "job_training_graph",
    "marketing_uplift", "marketing_uplift_ate", "marketing_uplift_graph", "random_discrete_network",
    "random_linear_scm_data",
]

_FLOAT = torch.float64


def _generator(seed):
    return torch.Generator().manual_seed(int(seed))


def _count(name, value):
    """``value`` as a positive int; a TypeError or ValueError naming ``name`` otherwise."""
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
    if count < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return count


def _table(columns, categories=None):
    """Dict of name -> tensor -> a DataFrame (or the dict itself without pandas).

    ``categories`` maps a column of int64 codes to its labels; in a DataFrame it
    becomes a ``pandas.Categorical`` of those labels.
    """
    if pd is None:
        return dict(columns)
    categories = categories or {}
    frame = {}
    for name, values in columns.items():
        if name in categories:
            frame[name] = pd.Categorical.from_codes(values.numpy(), categories=list(categories[name]))
        else:
            frame[name] = values.numpy()
    return pd.DataFrame(frame)


# ---------------------------------------------------------------------------
# Job training (LaLonde-like)
# ---------------------------------------------------------------------------

# Linear mechanisms, so the total effect of training is analytic:
# d earnings / d training = direct + (hours per training) * (earnings per hour).
_TRAINING_TO_EARNINGS = 1.5
_TRAINING_TO_HOURS = 2.0
_HOURS_TO_EARNINGS = 0.4

JOB_TRAINING_ATE = 2.3
"""True average effect of ``training`` on ``earnings`` in :func:`job_training`: 1.5 direct + 0.4 * 2.0 via hours."""


def job_training_graph():
    """The causal DAG of :func:`job_training`.

    >>> sorted(job_training_graph().predecessors("training"))
    ['age', 'education', 'married']
    """
    graph = nx.DiGraph()
    graph.add_nodes_from(["age", "education", "married", "training", "hours", "earnings"])
    graph.add_edges_from([
        ("age", "training"), ("education", "training"), ("married", "training"),
        ("age", "hours"), ("training", "hours"),
        ("age", "earnings"), ("education", "earnings"), ("married", "earnings"),
        ("training", "earnings"), ("hours", "earnings"),
    ])
    return graph


def job_training(n=2000, seed=0):
    """A job-training table like LaLonde's, with a confounded treatment and a mediator.

    The structural causal model (raw units, on purpose: fits that do not
    standardise see age ~35 and earnings ~25)::

        age       = clamp(35 + 10 e1, 18, 70)
        education = clamp(round(12 + 2.5 e2), 6, 20)              # years
        married   ~ Bernoulli(0.45)
        training  ~ Bernoulli(sigmoid(-0.8 - 0.08 (age - 35) - 0.35 (education - 12) - 0.9 married))
        hours     = 30 + 2.0 training - 0.1 (age - 35) + 6 e3      # weekly hours worked
        earnings  = -5 + 0.3 age + 0.5 education + 2.0 married
                    + 1.5 training + 0.4 hours + 4 e4              # thousands per year

    with independent standard normal ``e``. The young, the less educated and
    the unmarried enrol more, so a naive comparison understates the effect.
    ``hours`` is a mediator and is not clamped, so every mechanism downstream
    of ``training`` is linear and the total effect is exactly
    ``1.5 + 0.4 * 2.0 =`` :data:`JOB_TRAINING_ATE` (adjust for age, education
    and married; never for hours).

    Parameters
    ----------
    n : int
        Number of rows.
    seed : int
        Seed of the local generator.

    Returns
    -------
    pandas.DataFrame or dict of torch.Tensor
        Columns ``age``, ``education``, ``hours``, ``earnings`` (float64) and
        ``married``, ``training`` (bool).

    Examples
    --------
    >>> df = job_training(n=1000, seed=0)
    >>> list(df.columns)
    ['age', 'education', 'married', 'training', 'hours', 'earnings']
    >>> df["training"].dtype, df["earnings"].dtype
    (dtype('bool'), dtype('float64'))
    >>> bool(20 < df["earnings"].mean() < 30)
    True
    """
    n = _count("n", n)
    g = _generator(seed)

    def normal():
        return torch.randn(n, generator=g, dtype=_FLOAT)

    def uniform():
        return torch.rand(n, generator=g, dtype=_FLOAT)

    age = (35 + 10 * normal()).clamp(18, 70)
    education = (12 + 2.5 * normal()).round().clamp(6, 20)
    married = uniform() < 0.45
    m = married.to(_FLOAT)  # bool tensors times Python floats would be float32
    logit = -0.8 - 0.08 * (age - 35) - 0.35 * (education - 12) - 0.9 * m
    training = uniform() < torch.sigmoid(logit)
    t = training.to(_FLOAT)
    hours = 30 + _TRAINING_TO_HOURS * t - 0.1 * (age - 35) + 6 * normal()
    earnings = (-5 + 0.3 * age + 0.5 * education + 2.0 * m
                + _TRAINING_TO_EARNINGS * t + _HOURS_TO_EARNINGS * hours + 4 * normal())
    return _table({"age": age, "education": education, "married": married, "training": training,
                   "hours": hours, "earnings": earnings})


# ---------------------------------------------------------------------------
# Marketing uplift
# ---------------------------------------------------------------------------

MARKETING_SEGMENTS = ("new", "returning", "loyal")
"""The labels of :func:`marketing_uplift`'s ``segment`` column, in code order."""

_SEGMENT_PROBS = (0.5, 0.3, 0.2)
_MAX_VISITS = 12                     # visits | segment ~ Binomial(12, p_segment): a finite support
_VISIT_PROBS = (0.15, 0.35, 0.6)
_TREAT_SEGMENT = (0.0, 0.5, 1.0)     # campaigns target returning and loyal customers ...
_TREAT_VISITS = 0.15                 # ... and frequent visitors
_TREAT_BIAS = -1.5
_CONVERT_BIAS = -3.0
_CONVERT_SEGMENT = (0.0, 0.6, 1.2)
_CONVERT_VISITS = 0.18
_UPLIFT = (0.9, 0.5, 0.2)            # the treatment's log-odds effect, per segment


def marketing_uplift_graph():
    """The causal DAG of :func:`marketing_uplift`.

    >>> sorted(marketing_uplift_graph().predecessors("converted"))
    ['segment', 'treated', 'visits']
    """
    graph = nx.DiGraph()
    graph.add_nodes_from(["segment", "visits", "treated", "converted"])
    graph.add_edges_from([
        ("segment", "visits"), ("segment", "treated"), ("visits", "treated"),
        ("segment", "converted"), ("visits", "converted"), ("treated", "converted"),
    ])
    return graph


def _convert_logit(segment, visits, treated):
    """Log-odds of conversion; works on Python numbers and on tensors of codes alike."""
    if isinstance(segment, torch.Tensor):
        base = torch.tensor(_CONVERT_SEGMENT, dtype=_FLOAT)[segment]
        uplift = torch.tensor(_UPLIFT, dtype=_FLOAT)[segment]
    else:
        base, uplift = _CONVERT_SEGMENT[segment], _UPLIFT[segment]
    return _CONVERT_BIAS + base + _CONVERT_VISITS * visits + uplift * treated


def _marketing_columns(n, seed, treated=None):
    """The columns of :func:`marketing_uplift` as tensors; ``treated=True/False`` draws under do(treated).

    The treatment's uniforms are drawn even under do, so the observational and
    both interventional tables share every other draw (common random numbers).
    """
    g = _generator(seed)
    cumulative = torch.tensor(_SEGMENT_PROBS, dtype=_FLOAT).cumsum(0)
    segment = (torch.rand(n, 1, generator=g, dtype=_FLOAT) >= cumulative[:-1]).sum(-1)
    p_visit = torch.tensor(_VISIT_PROBS, dtype=_FLOAT)[segment]
    visits = (torch.rand(n, _MAX_VISITS, generator=g, dtype=_FLOAT) < p_visit[:, None]).sum(-1).to(_FLOAT)
    treat_logit = _TREAT_BIAS + torch.tensor(_TREAT_SEGMENT, dtype=_FLOAT)[segment] + _TREAT_VISITS * visits
    u_treat = torch.rand(n, generator=g, dtype=_FLOAT)
    if treated is None:
        treated = u_treat < torch.sigmoid(treat_logit)
    else:
        treated = torch.full((n,), bool(treated))
    converted = torch.rand(n, generator=g, dtype=_FLOAT) < torch.sigmoid(_convert_logit(segment, visits, treated))
    return {"segment": segment, "visits": visits, "treated": treated, "converted": converted}


def marketing_uplift(n=5000, seed=0):
    """A marketing campaign: who got it is confounded with who would buy anyway.

    The structural causal model::

        segment   ~ Categorical(new 0.5, returning 0.3, loyal 0.2)
        visits    ~ Binomial(12, p[segment]),  p = (0.15, 0.35, 0.6)
        treated   ~ Bernoulli(sigmoid(-1.5 + (0, 0.5, 1.0)[segment] + 0.15 visits))
        converted ~ Bernoulli(sigmoid(-3 + (0, 0.6, 1.2)[segment] + 0.18 visits
                                      + (0.9, 0.5, 0.2)[segment] treated))

    Loyal, frequent visitors are treated most and convert most but gain least
    from the campaign, so the naive uplift is biased. The true ATE on
    P(converted) is :func:`marketing_uplift_ate`.

    Parameters
    ----------
    n : int
        Number of rows.
    seed : int
        Seed of the local generator.

    Returns
    -------
    pandas.DataFrame or dict of torch.Tensor
        ``segment`` (a ``pandas.Categorical`` of :data:`MARKETING_SEGMENTS`;
        int64 codes without pandas), ``visits`` (float64, whole numbers 0..12),
        ``treated`` and ``converted`` (bool).

    Examples
    --------
    >>> df = marketing_uplift(n=1000, seed=0)
    >>> list(df["segment"].cat.categories)
    ['new', 'returning', 'loyal']
    >>> df["treated"].dtype, bool(df["visits"].max() <= 12)
    (dtype('bool'), True)
    """
    n = _count("n", n)
    return _table(_marketing_columns(n, seed), categories={"segment": MARKETING_SEGMENTS})


def marketing_uplift_ate():
    """The exact true ATE of ``treated`` on P(``converted``) in :func:`marketing_uplift`.

    Exact, not Monte Carlo: segment and visits are discrete with finite
    support, so the backdoor sum
    ``sum_s sum_v P(s) P(v | s) [sigmoid(logit(s, v, 1)) - sigmoid(logit(s, v, 0))]``
    has 3 * 13 terms.

    >>> round(marketing_uplift_ate(), 4)
    0.0739
    """
    ate = 0.0
    for s, (p_segment, p_visit) in enumerate(zip(_SEGMENT_PROBS, _VISIT_PROBS)):
        for v in range(_MAX_VISITS + 1):
            p_v = math.comb(_MAX_VISITS, v) * p_visit**v * (1 - p_visit) ** (_MAX_VISITS - v)
            uplift = _sigmoid(_convert_logit(s, v, 1)) - _sigmoid(_convert_logit(s, v, 0))
            ate += p_segment * p_v * uplift
    return ate


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------------------
# Random discrete Bayesian network
# ---------------------------------------------------------------------------


@dataclass
class DiscreteNetwork:
    """A discrete Bayesian network: a DAG with one conditional probability table per node.

    Attributes
    ----------
    graph : networkx.DiGraph
        The DAG.
    cardinality : dict
        Node -> number of states; states are the codes ``0 .. card - 1``.
    cpts : dict
        Node -> tensor of shape ``[*parent_cards, card]``, parents in the order
        ``list(graph.predecessors(node))``; the last axis sums to one.
    labels : dict or None
        Node -> state names, or None when states are plain codes.
    """

    graph: nx.DiGraph
    cardinality: dict
    cpts: dict = field(repr=False)
    labels: dict | None = None

    def __repr__(self):
        cards = self.cardinality.values()
        return (f"DiscreteNetwork({self.graph.number_of_nodes()} nodes, {self.graph.number_of_edges()} edges, "
                f"{min(cards, default=0)}-{max(cards, default=0)} states)")

    def to_scm(self):
        """This network as an SCM: a :class:`~causalppl.causal.learnable.CategoricalTable` per node,
        its params set to the CPTs (node labels, when given, become the SCM's labels).

        >>> net = random_discrete_network(num_nodes=3, seed=0)
        >>> scm = net.to_scm()
        >>> scm.nodes, torch.allclose(scm.params["n02.probs"], net.cpts["n02"])
        (('n00', 'n01', 'n02'), True)
        """
        from torch.distributions import constraints

        from causalppl.causal.learnable import CategoricalTable  # the data layer must not import causal/ eagerly
        from causalppl.graph.scm import SCM

        scm = SCM()
        position = {node: i for i, node in enumerate(self.graph)}
        for node in nx.lexicographical_topological_sort(self.graph, key=position.__getitem__):
            parents = list(self.graph.predecessors(node))
            table = CategoricalTable(node, parents, self.cardinality[node], [self.cardinality[p] for p in parents])
            scm.add(node, table, labels=(self.labels or {}).get(node))
            scm.params.get_param(f"{node}.probs", self.cpts[node], constraints.simplex)
        return scm

    def sample(self, n, seed=0):
        """``n`` rows drawn by ancestral sampling: one gather of CPT rows per node.

        Returns a DataFrame of int64 codes, columns in ``graph.nodes`` order (a
        dict of int64 tensors without pandas).

        >>> net = random_discrete_network(num_nodes=5, seed=0)
        >>> rows = net.sample(100, seed=1)
        >>> rows.shape, str(rows["n00"].dtype)
        ((100, 5), 'int64')
        """
        n = _count("n", n)
        g = _generator(seed)
        codes = {}
        for node in nx.topological_sort(self.graph):
            card = self.cardinality[node]
            cumulative = self.cpts[node].reshape(-1, card).cumsum(-1)
            # Row-major flat index of the parents' joint state (the last parent varies fastest).
            row = torch.zeros(n, dtype=torch.long)
            for parent in self.graph.predecessors(node):
                row = row * self.cardinality[parent] + codes[parent]
            u = torch.rand(n, 1, generator=g, dtype=cumulative.dtype)
            # Inverse CDF; the clamp catches u above a cumulative sum that rounds to just under one.
            codes[node] = (cumulative.index_select(0, row) < u).sum(-1).clamp_(max=card - 1)
        return _table({node: codes[node] for node in self.graph.nodes})


def random_discrete_network(num_nodes=37, max_parents=3, max_states=4, seed=0):
    """A random DAG with categorical CPTs, alarm-sized by default (37 nodes, 2-4 states).

    Node ``i`` (named ``n00``, ``n01``, ... in a topological order) draws a
    number of parents uniformly from ``0 .. min(i, max_parents)`` among the
    earlier nodes and a cardinality uniformly from ``2 .. max_states``. Each
    CPT row is drawn from a flat Dirichlet(1, ..., 1) (normalised
    exponentials), uniform on the simplex, so some rows are peaked and some
    are flat.

    Raises
    ------
    ValueError
        If ``num_nodes < 1``, ``max_parents < 0`` or ``max_states < 2``.

    Examples
    --------
    >>> net = random_discrete_network(seed=0)
    >>> net.graph.number_of_nodes(), nx.is_directed_acyclic_graph(net.graph)
    (37, True)
    >>> cpt = net.cpts["n05"]
    >>> cpt.shape == tuple(net.cardinality[p] for p in net.graph.predecessors("n05")) + (net.cardinality["n05"],)
    True
    """
    num_nodes = _count("num_nodes", num_nodes)
    if max_parents < 0:
        raise ValueError(f"max_parents must be >= 0, got {max_parents!r}")
    if max_states < 2:
        raise ValueError(f"max_states must be >= 2 (a node needs two states), got {max_states!r}")
    g = _generator(seed)
    width = max(2, len(str(num_nodes - 1)))
    names = [f"n{i:0{width}d}" for i in range(num_nodes)]
    cards = (2 + torch.randint(max_states - 1, (num_nodes,), generator=g)).tolist()

    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    for i, node in enumerate(names):
        k = int(torch.randint(min(i, max_parents) + 1, (1,), generator=g))
        parents = sorted(torch.randperm(i, generator=g)[:k].tolist())
        graph.add_edges_from((names[j], node) for j in parents)

    cardinality = dict(zip(names, cards))
    cpts = {}
    for node in names:
        shape = [cardinality[p] for p in graph.predecessors(node)] + [cardinality[node]]
        gamma = torch.empty(shape).exponential_(generator=g)  # Gamma(1) draws: Dirichlet(1) once normalised
        cpts[node] = gamma / gamma.sum(-1, keepdim=True)
    return DiscreteNetwork(graph=graph, cardinality=cardinality, cpts=cpts)


# ---------------------------------------------------------------------------
# Random linear-Gaussian SCM
# ---------------------------------------------------------------------------


def random_linear_scm_data(num_nodes=20, n=100_000, edge_prob=0.3, seed=0):
    """A random linear-Gaussian DAG, data drawn from it, and its true parameters.

    Nodes ``x00``, ``x01``, ... are in a topological order; each pair ``i < j``
    is an edge ``x_i -> x_j`` with probability ``edge_prob``. Each node is

        x_j = bias_j + sum_p weight_jp x_p + scale_j e_j,   e_j ~ Normal(0, 1)

    with parameters chosen so the columns sit on varied raw scales, like real
    data: node ``j`` gets a target mean ``10**U(1, 2.5)`` (about 10 to 300)
    and a spread ``s_j = 10**U(0, 1.5)`` (about 1 to 30); a parent's weight is
    ``±U(0.5, 1.5) * s_j / sd(parent)`` (its exact standard deviation, from
    the covariance implied so far), ``scale_j = s_j * U(0.5, 1)``, and the
    bias puts the node's mean on its target.

    Returns
    -------
    graph : networkx.DiGraph
    data : pandas.DataFrame or dict of torch.Tensor
        ``n`` rows, float64 columns in node order.
    truth : dict
        Node -> ``{"bias": float, "weights": {parent: float}, "scale": float}``,
        parents in ``graph.predecessors`` order.

    Examples
    --------
    >>> graph, data, truth = random_linear_scm_data(num_nodes=4, n=100, seed=0)
    >>> data.shape, sorted(truth["x03"])
    ((100, 4), ['bias', 'scale', 'weights'])
    """
    num_nodes = _count("num_nodes", num_nodes)
    n = _count("n", n)
    if not 0 <= edge_prob <= 1:
        raise ValueError(f"edge_prob must be a probability in [0, 1], got {edge_prob!r}")
    g = _generator(seed)

    def uniform(low, high, size=()):
        return low + (high - low) * torch.rand(size, generator=g, dtype=_FLOAT)

    width = max(2, len(str(num_nodes - 1)))
    names = [f"x{i:0{width}d}" for i in range(num_nodes)]
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    edges = torch.rand(num_nodes, num_nodes, generator=g, dtype=_FLOAT) < edge_prob
    graph.add_edges_from((names[i], names[j]) for j in range(num_nodes) for i in range(j) if edges[i, j])

    means = 10 ** uniform(1.0, 2.5, (num_nodes,))
    spreads = 10 ** uniform(0.0, 1.5, (num_nodes,))
    weights = torch.zeros(num_nodes, num_nodes, dtype=_FLOAT)  # weights[j, i]: effect of x_i on x_j
    biases = torch.zeros(num_nodes, dtype=_FLOAT)
    scales = torch.zeros(num_nodes, dtype=_FLOAT)
    cov = torch.zeros(num_nodes, num_nodes, dtype=_FLOAT)  # the exact covariance of x_0 .. x_j so far
    for j in range(num_nodes):
        parents = [names.index(p) for p in graph.predecessors(names[j])]
        for i in parents:
            sign = 1.0 if torch.rand((), generator=g) < 0.5 else -1.0
            weights[j, i] = sign * uniform(0.5, 1.5) * spreads[j] / cov[i, i].sqrt()
        scales[j] = spreads[j] * uniform(0.5, 1.0)
        biases[j] = means[j] - weights[j, :j] @ means[:j]
        cov[j, :j] = weights[j, :j] @ cov[:j, :j]
        cov[:j, j] = cov[j, :j]
        cov[j, j] = weights[j, :j] @ cov[:j, j] + scales[j] ** 2

    # One row per node (column-major data), so each node's parents are one contiguous block.
    noise = torch.randn(num_nodes, n, generator=g, dtype=_FLOAT)
    x = torch.empty(num_nodes, n, dtype=_FLOAT)
    for j in range(num_nodes):
        x[j] = biases[j] + weights[j, :j] @ x[:j] + scales[j] * noise[j]

    truth = {}
    for j, node in enumerate(names):
        truth[node] = {
            "bias": float(biases[j]),
            "weights": {p: float(weights[j, names.index(p)]) for p in graph.predecessors(node)},
            "scale": float(scales[j]),
        }
    return graph, _table({node: x[j] for j, node in enumerate(names)}), truth
