"""Identification of causal effects from a causal DAG.

d-separation, backdoor and frontdoor adjustment sets and instrumental
variables, as plain functions over a ``networkx.DiGraph`` or any object with a
``.graph`` DiGraph (an SCM). A node whose attribute ``latent`` is true is
unobserved, and every function also takes ``latent=``, extra unobserved node
names. Adjustment sets never contain unobserved nodes.

Every function checks its input: an unknown name raises ``nx.NodeNotFound``,
a cyclic graph raises ``nx.NetworkXUnfeasible`` naming the cycle, and
overlapping roles (treatment equal to outcome, an adjustment set containing
the treatment) raise ``ValueError``. A set that is well-formed but invalid (it
contains a latent node or a descendant of the treatment, or leaves a path
open) is not an error: the ``check_*`` functions return a false `Check` whose
``reason`` names the offending node or open path.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx

from causalppl.causal import discrete as _discrete
from causalppl.causal import estimand as _est
from causalppl.causal.admg import latent_projection
from causalppl.causal.estimand import Expr
from causalppl.causal.id_algorithm import Hedge, NotIdentifiable, id_effect, idc_effect
from causalppl.causal.separators import (
    ALL_SETS_LIMIT,
    SearchTooLarge,
    all_separators,
    cut_out_edges,
    d_connected,
    descendants_of,
    fmt_nodes,
    fmt_path,
    fmt_set,
    minimal_vertex_separators,
    open_path,
    open_path_reason,
    separator_graph,
    set_key,
    sorted_nodes,
)

__all__ = [
    "Check",
    "Estimand",
    "Hedge",
    "Identification",
    "NoEstimand",
    "NotIdentifiable",
    "backdoor_sets",
    "check_backdoor",
    "check_frontdoor",
    "check_instrument",
    "d_separated",
    "frontdoor_sets",
    "identify",
    "instruments",
    "minimal_adjustment",
    "optimal_adjustment",
]

# backdoor_sets gives up beyond this many minimal sets; identify lists fewer.
_MAX_SETS = 5000
_REPORT_SETS = 50
# frontdoor_sets gives up after trying this many sets; identify after fewer.
_FRONTDOOR_STATES = 20000
_REPORT_STATES = 2000


@dataclass(frozen=True)
class Check:
    """The verdict of a graphical criterion: truthy iff ``ok``.

    ``reason`` says why the criterion holds, or which node or open path
    makes it fail.
    """

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return f"{'holds' if self.ok else 'fails'}: {self.reason}"


# ---------------------------------------------------------------------------
# d-separation


def d_separated(graph, xs, ys, zs=()) -> bool:
    """Return True if `xs` and `ys` are d-separated given `zs` in `graph`.

    Parameters
    ----------
    graph : networkx.DiGraph or object with a ``.graph`` DiGraph
        A causal DAG, or an SCM.
    xs, ys, zs : node or iterable of nodes
        Disjoint sets of nodes; a single name stands for a one-node set.

    Returns
    -------
    bool
        True if every path between a node of `xs` and a node of `ys` is
        blocked by `zs`. True when `xs` or `ys` is empty.

    Raises
    ------
    networkx.NodeNotFound
        If a name is not a node of the graph.
    networkx.NetworkXUnfeasible
        If the graph has a cycle.
    ValueError
        If the sets overlap.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("x", "m"), ("m", "y")])
    >>> d_separated(G, "x", "y")
    False
    >>> d_separated(G, "x", "y", {"m"})
    True
    """
    G = _dag(graph)
    X = _nodes(G, xs, "node")
    Y = _nodes(G, ys, "node")
    Z = _nodes(G, zs, "conditioning node")
    _require_disjoint(("xs", X), ("ys", Y), ("zs", Z))
    if not X or not Y:
        return True
    return nx.is_d_separator(G, X, Y, Z)


# ---------------------------------------------------------------------------
# backdoor adjustment


def check_backdoor(graph, treatment, outcome, adjustment, latent=()) -> Check:
    """Check Pearl's backdoor criterion for an adjustment set.

    `adjustment` is valid when it contains no latent node and no descendant
    of the treatment, and blocks every path from the treatment to the
    outcome that starts with an edge into the treatment.

    Parameters
    ----------
    graph : networkx.DiGraph or object with a ``.graph`` DiGraph
        A causal DAG, or an SCM.
    treatment, outcome : node or iterable of nodes
        The cause(s) and effect(s).
    adjustment : node or iterable of nodes
        The candidate adjustment set.
    latent : iterable of nodes, optional
        Unobserved nodes, in addition to those with ``latent=True``.

    Returns
    -------
    Check
        Truthy iff the set is valid. A latent node in `adjustment` makes the
        check fail (it is not an error): the reason names the node.

    Raises
    ------
    networkx.NodeNotFound
        If a name is not a node of the graph.
    networkx.NetworkXUnfeasible
        If the graph has a cycle.
    ValueError
        If treatment, outcome and adjustment overlap.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("z", "x"), ("z", "y"), ("x", "y")])
    >>> bool(check_backdoor(G, "x", "y", {"z"}))
    True
    >>> check_backdoor(G, "x", "y", set()).reason
    "backdoor path x <- z -> y is open given {}; {'z'} would block every backdoor path"
    """
    G = _dag(graph)
    X = _nodes(G, treatment, "treatment")
    Y = _nodes(G, outcome, "outcome")
    Z = _nodes(G, adjustment, "adjustment node")
    _require_disjoint(("treatment", X), ("outcome", Y), ("adjustment set", Z))
    hidden = _latent(G, latent)

    latent_in = sorted_nodes(Z & hidden)
    if latent_in:
        return Check(False, f"{fmt_set(Z)} contains {latent_in[0]!r}, which is "
                            "latent (unobserved) and cannot be adjusted for")
    for x in sorted_nodes(X):
        below = nx.descendants(G, x)
        for z in sorted_nodes(Z):
            if z in below:
                return Check(False, f"{fmt_set(Z)} contains {z!r}, "
                                    f"a descendant of treatment {x!r}")
    Gx = cut_out_edges(G, X)
    if nx.is_d_separator(Gx, X, Y, Z):
        return Check(True, f"{fmt_set(Z)} contains no descendant of treatment "
                           f"{fmt_nodes(X)} and blocks every backdoor path from "
                           f"{fmt_nodes(X)} to {fmt_nodes(Y)}")
    reason = open_path_reason(Gx, X, Y, Z, "backdoor path")
    allowed = set(G) - X - Y - hidden - descendants_of(G, X)
    better = nx.find_minimal_d_separator(Gx, X, Y, restricted=allowed)
    if better is None:
        reason += ("; no set of observed non-descendants of the treatment "
                   "blocks every backdoor path")
    elif not better:
        reason += "; the empty set {} would block every backdoor path"
    else:
        reason += f"; {fmt_set(better)} would block every backdoor path"
    return Check(False, reason)


def backdoor_sets(graph, treatment, outcome, latent=(), minimal=True) -> list[frozenset]:
    """List the valid backdoor adjustment sets.

    Candidates are the observed non-descendants of the treatment.

    Parameters
    ----------
    graph : networkx.DiGraph or object with a ``.graph`` DiGraph
        A causal DAG, or an SCM.
    treatment, outcome : node or iterable of nodes
        The cause(s) and effect(s).
    latent : iterable of nodes, optional
        Unobserved nodes, in addition to those with ``latent=True``.
    minimal : bool, optional (default True)
        If True, list the minimal valid sets (valid sets none of whose
        proper subsets is valid); these are found by listing the minimal
        separators of the moralised ancestral graph, so the cost grows with
        the number of answers, not of subsets. If False, list every valid
        set.

    Returns
    -------
    list of frozenset
        Sorted by size, then by node names; empty when no set is valid.

    Raises
    ------
    networkx.NodeNotFound
        If a name is not a node of the graph.
    networkx.NetworkXUnfeasible
        If the graph has a cycle.
    ValueError
        If treatment and outcome overlap, or the listing is too large (more
        than 5000 minimal sets; with ``minimal=False``, more than 15
        candidate nodes).

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("a", "x"), ("a", "b"), ("b", "y"), ("x", "y")])
    >>> backdoor_sets(G, "x", "y")
    [frozenset({'a'}), frozenset({'b'})]
    >>> len(backdoor_sets(G, "x", "y", minimal=False))  # {a}, {b}, {a, b}
    3
    """
    G = _dag(graph)
    X = _nodes(G, treatment, "treatment")
    Y = _nodes(G, outcome, "outcome")
    _require_disjoint(("treatment", X), ("outcome", Y))
    hidden = _latent(G, latent)
    if not minimal:
        Gx = cut_out_edges(G, X)
        allowed = set(G) - X - Y - hidden - descendants_of(G, X)
        return sorted(all_separators(Gx, X, Y, allowed), key=set_key)
    found, complete = _list_backdoor(G, X, Y, hidden, _MAX_SETS)
    if not complete:
        raise SearchTooLarge(
            f"there are more than {_MAX_SETS} minimal backdoor sets for "
            f"{fmt_nodes(X)} -> {fmt_nodes(Y)}; identify() lists a few of "
            "them, and check_backdoor tests a given set")
    return sorted(found, key=set_key)


# ---------------------------------------------------------------------------
# frontdoor adjustment


def check_frontdoor(graph, treatment, outcome, mediators, latent=()) -> Check:
    """Check Pearl's frontdoor criterion for a set of mediators.

    `mediators` (M) is valid for the effect of X on Y when (i) M intercepts
    every directed path from X to Y, (ii) no backdoor path from X to M is
    open, and (iii) X blocks every backdoor path from M to Y. M must be
    observed. The empty set is valid exactly when X has no directed path to
    Y, and then P(y | do(x)) = P(y).

    Parameters
    ----------
    graph : networkx.DiGraph or object with a ``.graph`` DiGraph
        A causal DAG, or an SCM.
    treatment, outcome : node
        The cause and the effect.
    mediators : node or iterable of nodes
        The candidate frontdoor set.
    latent : iterable of nodes, optional
        Unobserved nodes, in addition to those with ``latent=True``.

    Returns
    -------
    Check
        Truthy iff the set is valid; the reason names the failing condition
        and its path or node.

    Raises
    ------
    networkx.NodeNotFound
        If a name is not a node of the graph.
    networkx.NetworkXUnfeasible
        If the graph has a cycle.
    ValueError
        If treatment, outcome and mediators overlap.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("u", "smoking"), ("u", "cancer"),
    ...                 ("smoking", "tar"), ("tar", "cancer")])
    >>> bool(check_frontdoor(G, "smoking", "cancer", {"tar"}, latent={"u"}))
    True
    >>> check = check_frontdoor(G, "smoking", "cancer", set(), latent={"u"})
    >>> check.reason.split(" from ")[0]
    'directed path smoking -> tar -> cancer'
    """
    G = _dag(graph)
    x = _one_node(G, treatment, "treatment")
    y = _one_node(G, outcome, "outcome")
    M = _nodes(G, mediators, "mediator")
    _require_disjoint(("treatment", {x}), ("outcome", {y}), ("mediator set", M))
    return _frontdoor(G, x, y, M, _latent(G, latent))


def frontdoor_sets(graph, treatment, outcome, latent=(), minimal=True) -> list[frozenset]:
    """List the valid frontdoor sets.

    Parameters
    ----------
    graph : networkx.DiGraph or object with a ``.graph`` DiGraph
        A causal DAG, or an SCM.
    treatment, outcome : node
        The cause and the effect.
    latent : iterable of nodes, optional
        Unobserved nodes, in addition to those with ``latent=True``.
    minimal : bool, optional (default True)
        If True, list the minimal valid sets; otherwise every valid set.

    Returns
    -------
    list of frozenset
        Sorted by size, then by node names; empty when no set is valid.

    Raises
    ------
    networkx.NodeNotFound
        If a name is not a node of the graph.
    networkx.NetworkXUnfeasible
        If the graph has a cycle.
    ValueError
        If treatment equals outcome, or the search is too large (minimal
        sets: more than 20000 sets tried; all sets: more than 15 candidates).

    Notes
    -----
    Candidates are narrowed before any subset is tried: condition (ii)
    holds for a set iff it holds for each member, and the sets meeting (ii)
    and (iii) are closed under union, so every valid set lies within the
    largest one, found by repeatedly dropping failing nodes. Minimal sets
    also lie among the ancestors of the outcome; they are found by growing
    sets one node at a time along a path each leaves open, smallest first.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("u", "smoking"), ("u", "cancer"),
    ...                 ("smoking", "tar"), ("tar", "cancer")])
    >>> frontdoor_sets(G, "smoking", "cancer", latent={"u"})
    [frozenset({'tar'})]
    """
    G = _dag(graph)
    x = _one_node(G, treatment, "treatment")
    y = _one_node(G, outcome, "outcome")
    _require_disjoint(("treatment", {x}), ("outcome", {y}))
    hidden = _latent(G, latent)
    found, complete = _list_frontdoor(G, x, y, hidden, minimal, _FRONTDOOR_STATES)
    if not complete:
        raise SearchTooLarge(
            f"frontdoor_sets gave up after trying {_FRONTDOOR_STATES} sets for "
            f"{x!r} -> {y!r}; test a given set with check_frontdoor instead")
    return found


# ---------------------------------------------------------------------------
# instrumental variables


def check_instrument(graph, instrument, treatment, outcome, conditioning=(), latent=()) -> Check:
    """Check that `instrument` is a (conditional) instrument for X -> Y.

    Z is an instrument given W when Z is observed, W holds no latent node and
    no descendant of the treatment or outcome, and (relevance) Z is not
    d-separated from X given W, and (exclusion) Z is d-separated from Y given
    W once the edges out of X are removed.

    Parameters
    ----------
    graph : networkx.DiGraph or object with a ``.graph`` DiGraph
        A causal DAG, or an SCM.
    instrument, treatment, outcome : node
        Three distinct nodes.
    conditioning : node or iterable of nodes, optional
        The conditioning set W (default empty).
    latent : iterable of nodes, optional
        Unobserved nodes, in addition to those with ``latent=True``.

    Returns
    -------
    Check
        Truthy iff `instrument` is valid given `conditioning`.

    Raises
    ------
    networkx.NodeNotFound
        If a name is not a node of the graph.
    networkx.NetworkXUnfeasible
        If the graph has a cycle.
    ValueError
        If instrument, treatment, outcome and conditioning overlap.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("z", "x"), ("x", "y"), ("u", "x"), ("u", "y")])
    >>> bool(check_instrument(G, "z", "x", "y", latent={"u"}))
    True
    >>> bool(check_instrument(G, "u", "x", "y"))
    False
    """
    G = _dag(graph)
    z = _one_node(G, instrument, "instrument")
    x = _one_node(G, treatment, "treatment")
    y = _one_node(G, outcome, "outcome")
    W = _nodes(G, conditioning, "conditioning node")
    _require_disjoint(("instrument", {z}), ("treatment", {x}), ("outcome", {y}),
                      ("conditioning set", W))
    return _instrument(G, z, x, y, W, _latent(G, latent))


def instruments(graph, treatment, outcome, latent=()) -> list:
    """List the observed nodes that are unconditional instruments for X -> Y.

    Parameters
    ----------
    graph : networkx.DiGraph or object with a ``.graph`` DiGraph
        A causal DAG, or an SCM.
    treatment, outcome : node
        The cause and the effect.
    latent : iterable of nodes, optional
        Unobserved nodes, in addition to those with ``latent=True``.

    Returns
    -------
    list
        Sorted node names passing `check_instrument` with an empty
        conditioning set.

    Raises
    ------
    networkx.NodeNotFound
        If a name is not a node of the graph.
    networkx.NetworkXUnfeasible
        If the graph has a cycle.
    ValueError
        If treatment equals outcome.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("z", "x"), ("x", "y"), ("u", "x"), ("u", "y")])
    >>> instruments(G, "x", "y", latent={"u"})
    ['z']
    """
    G = _dag(graph)
    x = _one_node(G, treatment, "treatment")
    y = _one_node(G, outcome, "outcome")
    _require_disjoint(("treatment", {x}), ("outcome", {y}))
    hidden = _latent(G, latent)
    # Relevance and exclusion with W = {} are reachability questions: one
    # search from x in G and one from y in G without the edges out of x.
    relevant = d_connected(G, {x})
    leaky = d_connected(G, {y}, cut={x})
    return sorted_nodes(relevant - leaky - hidden - {x, y})


# ---------------------------------------------------------------------------
# polynomial adjustment sets


def minimal_adjustment(graph, treatment, outcome, latent=()):
    """A minimal backdoor adjustment set, or None when there is none.

    Polynomial: networkx's `find_minimal_d_separator` on the graph without
    the edges out of the treatment, restricted to observed non-descendants
    (van der Zander, Liśkiewicz and Textor 2019). No set is enumerated.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("a", "x"), ("a", "b"), ("b", "y"), ("x", "y"), ("x", "m"), ("m", "y")])
    >>> sorted(minimal_adjustment(G, "x", "y"))
    ['a']
    """
    G = _dag(graph)
    X = _nodes(G, treatment, "treatment")
    Y = _nodes(G, outcome, "outcome")
    _require_disjoint(("treatment", X), ("outcome", Y))
    return _minimal_adjustment(G, X, Y, _latent(G, latent))


def _minimal_adjustment(G, X, Y, hidden):
    allowed = set(G) - X - Y - hidden - descendants_of(G, X)
    found = nx.find_minimal_d_separator(cut_out_edges(G, X), X, Y, restricted=allowed)
    return None if found is None else frozenset(found)


def optimal_adjustment(graph, treatment, outcome, latent=()):
    """The optimal adjustment set O(X, Y), or None when it is not usable.

    Henckel, Perković and Maathuis (2022, JRSS-B), Def. 3.12: O = pa(cn) \\ forb,
    where cn are the causal nodes (those on a proper causal path from X to
    Y, X excluded) and forb their descendants and X. Among valid adjustment
    sets it gives the smallest asymptotic variance of the adjusted
    estimator. Computed on the DAG in linear time; None when it holds a
    latent node or is not a valid backdoor set (then use
    `minimal_adjustment`).

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("a", "x"), ("a", "b"), ("b", "y"), ("x", "y"), ("c", "y")])
    >>> sorted(optimal_adjustment(G, "x", "y"))
    ['b', 'c']
    """
    G = _dag(graph)
    X = _nodes(G, treatment, "treatment")
    Y = _nodes(G, outcome, "outcome")
    _require_disjoint(("treatment", X), ("outcome", Y))
    return _optimal_adjustment(G, X, Y, _latent(G, latent))


def _optimal_adjustment(G, X, Y, hidden):
    below = _reach(G.succ, X, blocked=X)        # descendants in G without edges into X
    above = _reach(G.pred, Y, blocked=X) | Y    # ancestors in G without edges out of X
    causal = (below & above) - X
    forbidden = descendants_of(G, causal) | causal | X
    optimal = frozenset(p for c in causal for p in G.pred[c]) - forbidden
    if optimal & hidden or not nx.is_d_separator(cut_out_edges(G, X), X, Y, optimal):
        return None
    return optimal


def _reach(step, start, blocked):
    """Nodes reached from `start` along `step` (succ or pred) without entering `blocked`."""
    seen, todo = set(), list(start)
    while todo:
        for w in step[todo.pop()]:
            if w not in seen and w not in blocked:
                seen.add(w)
                todo.append(w)
    return seen


# ---------------------------------------------------------------------------
# the summary


class NoEstimand:
    """Stands in for the estimand of an effect that is not identifiable: falsy."""

    def __bool__(self):
        return False

    def __str__(self):
        return "not identifiable"

    def __repr__(self):
        return "NoEstimand()"

    def __call__(self):
        return "not identifiable by backdoor/frontdoor adjustment"


@dataclass(frozen=True)
class Estimand:
    """An identified effect: the `formula` (an :mod:`~causalppl.causal.estimand` tree) and its query.

    ``str`` is the formula as the literature writes it; ``equation()`` puts
    the query in front. Calling it returns the equation in the earlier text
    form (``Identification.estimand()`` used to be a method).
    """

    formula: Expr
    query: str
    text: str = ""

    def __str__(self):
        return str(self.formula)

    def equation(self):
        return f"{self.query} = {self.formula}"

    def __call__(self):
        return self.text or self.equation()

    @property
    def free(self):
        return self.formula.free


class Identification:
    """What the graph alone says about the effect of `treatment` on `outcome`.

    Attributes
    ----------
    identifiable : bool
        Whether P(outcome | do(treatment) [, given]) has a formula (ID/IDC).
    estimand : Estimand or NoEstimand
        The simplest formula found (``str`` reads like the literature).
    method : str or None
        ``"no effect"``, ``"backdoor"``, ``"frontdoor"``, ``"ID"`` or ``"IDC"``.
    hedge : Hedge or None
        The witness (F, F') when not identifiable.
    adjustment, optimal : frozenset or None
        A minimal and the optimal backdoor adjustment set, found in
        polynomial time.
    frontdoor_set : frozenset or None
        One frontdoor set (single treatment and outcome).
    instruments : list
        The unconditional instruments (single treatment and outcome).
    backdoor, frontdoor : list of frozenset
        Listings of the minimal sets, computed on first access (cut short
        on large graphs; ``notes`` says so).
    """

    def __init__(self, G, X, Y, Z, hidden, treatment, outcome, given):
        self._G, self._X, self._Y, self._Z, self._hidden = G, X, Y, Z, hidden
        self.treatment, self.outcome, self.given = treatment, outcome, given
        self.outcomes = tuple(outcome) if isinstance(outcome, (list, tuple)) else tuple(sorted_nodes(Y))
        self.latent = hidden
        self.notes = []
        self._listings = {}
        single = len(X) == 1 and len(Y) == 1
        x, y = next(iter(X)), next(iter(Y))
        self.adjustment = _minimal_adjustment(G, X, Y, hidden)
        self.optimal = _optimal_adjustment(G, X, Y, hidden) if self.adjustment is not None else None
        self.frontdoor_set = _frontdoor_set(G, x, y, hidden) if single else None
        self.instruments = instruments(G, x, y, latent=hidden) if single else []
        self.hedge = None
        self.method, formula, text = self._choose()
        self.identifiable = formula is not None
        self.estimand = (Estimand(formula, self.query(), text) if formula is not None else NoEstimand())

    def query(self):
        """P(y | do(x)) or P(y | do(x), z), as text."""
        ys = ", ".join(map(str, sorted_nodes(self._Y)))
        xs = ", ".join(map(str, sorted_nodes(self._X)))
        zs = "".join(f", {z}" for z in sorted_nodes(self._Z))
        return f"P({ys} | do({xs}){zs})"

    def _choose(self):
        """The simplest strategy that applies: (method, formula, legacy text)."""
        G, X, Y, Z = self._G, self._X, self._Y, self._Z
        if not Z and not any(nx.has_path(G, x, y) for x in X for y in Y):
            return "no effect", _est.P(Y), f"{self.query()} = P({', '.join(map(str, sorted_nodes(Y)))})"
        if not Z and self.adjustment is not None:
            A = self.adjustment
            formula = _est.marginal(_est.product(_est.P(A), _est.P(Y, X | A)), A) if A else _est.P(Y, X)
            return "backdoor", formula, _backdoor_text(self.treatment, self.outcome, X, Y, A)
        if not Z and self.frontdoor_set:
            (x,), M = X, self.frontdoor_set
            inner = _est.marginal(_est.product(_est.P({x}), _est.P(Y, {x} | M)), {x})
            formula = _est.marginal(_est.product(_est.P(M, {x}), inner), M)
            return "frontdoor", formula, _frontdoor_text(x, next(iter(Y)), M)
        admg = latent_projection(G, self._hidden)
        try:
            if Z:
                return "IDC", idc_effect(admg, Y, X, Z, dag=G), ""
            return "ID", id_effect(admg, Y, X), ""
        except NotIdentifiable as failure:
            self.hedge = failure.hedge
            return None, None, ""

    # -- listings, on request --------------------------------------------------

    @property
    def backdoor(self):
        """The minimal backdoor sets (at most 50, a smallest among them); computed on first access."""
        if "backdoor" not in self._listings:
            found, complete = _list_backdoor(self._G, self._X, self._Y, self._hidden, _REPORT_SETS)
            if not complete:
                self.notes.append(f"there are more than {_REPORT_SETS} minimal backdoor sets; "
                                  f"{_REPORT_SETS} are listed, a smallest among them")
            self._listings["backdoor"] = sorted(found, key=set_key)
        return self._listings["backdoor"]

    @property
    def frontdoor(self):
        """The minimal frontdoor sets found within 2000 tries; computed on first access."""
        if "frontdoor" not in self._listings:
            if len(self._X) != 1 or len(self._Y) != 1:
                self._listings["frontdoor"] = []
            else:
                (x,), (y,) = self._X, self._Y
                found, complete = _list_frontdoor(self._G, x, y, self._hidden, True, _REPORT_STATES)
                if not complete:
                    self.notes.append(f"the frontdoor search stopped after {_REPORT_STATES} sets; "
                                      "larger minimal frontdoor sets may exist")
                self._listings["frontdoor"] = found
        return self._listings["frontdoor"]

    def strategy(self) -> str:
        """Return one line saying how the effect is identified, if it is."""
        if self.method == "no effect":
            return (f"none needed: there is no directed path from {fmt_nodes(self._X)} "
                    f"to {fmt_nodes(self._Y)}")
        if self.method == "backdoor":
            if not self.adjustment:
                return "no adjustment needed: the empty set {} blocks every backdoor path"
            return f"backdoor adjustment for {fmt_set(self.adjustment)}"
        if self.method == "frontdoor":
            return f"frontdoor adjustment through {fmt_set(self.frontdoor_set)}"
        if self.method in ("ID", "IDC"):
            return f"the {self.method} algorithm (Shpitser and Pearl 2006)"
        if self.instruments:
            return ("none: not identifiable non-parametrically; the instruments identify "
                    "the effect only under extra assumptions (e.g. a linear model)")
        return "none: not identifiable"

    # -- numbers -----------------------------------------------------------------

    def evaluate(self, source, do, given=None):
        """P(outcome | do [, given]) computed from `source` with the estimand.

        Parameters
        ----------
        source : SCM or pandas.DataFrame
            An observational discrete SCM (latent nodes summed out exactly,
            by enumeration) or a DataFrame of the observed discrete columns
            (plug-in frequencies).
        do : dict
            A value for every treatment node.
        given : dict, optional
            A value for every conditioning node (conditional effects).

        Returns
        -------
        dict
            Outcome value -> probability; for several outcomes the keys are
            tuples in the order of ``outcomes``.

        Raises
        ------
        NotIdentifiable
            If the effect has no estimand.
        ValueError
            If a treatment or conditioning value is missing or unknown.

        Examples
        --------
        >>> import causalppl as cp
        >>> scm = cp.SCM().add("u", "Bernoulli(0.5)", latent=True)
        >>> _ = scm.add("x", "Bernoulli(0.2 + 0.6*u)").add("m", "Bernoulli(0.1 + 0.8*x)")
        >>> _ = scm.add("y", "Bernoulli(0.1 + 0.4*m + 0.4*u)")
        >>> result = identify(scm, "x", "y")
        >>> result.method, str(result.estimand)
        ('frontdoor', "Σ_m P(m|x) Σ_x' P(x')P(y|m,x')")
        >>> round(result.evaluate(scm, do={"x": 1})[1], 6)   # 0.1 + 0.4 * 0.9 + 0.4 * 0.5
        0.66
        """
        if not self.identifiable:
            raise NotIdentifiable(self.query(), self.hedge)
        do, given = dict(do), dict(given or {})
        for role, names, values in (("treatment", self._X, do), ("conditioning", self._Z, given)):
            missing = sorted_nodes(set(names) - set(values))
            extra = sorted_nodes(set(values) - set(names))
            if missing or extra:
                raise ValueError(f"{role} values: expected one for each of {fmt_set(names)}, "
                                 f"got {fmt_set(values)}")
        return _discrete.distribution(self.estimand.formula, source, self.outcomes, {**do, **given})

    # -- output ------------------------------------------------------------------

    def to_dict(self):
        """The findings as plain JSON-ready data (node names as strings)."""
        def names(nodes):
            return None if nodes is None else [str(n) for n in sorted_nodes(nodes)]

        return {
            "query": self.query(),
            "treatment": names(self._X),
            "outcome": names(self._Y),
            "given": names(self._Z),
            "identifiable": self.identifiable,
            "method": self.method,
            "strategy": self.strategy(),
            "estimand": str(self.estimand) if self.identifiable else None,
            "hedge": None if self.hedge is None else [names(self.hedge.forest), names(self.hedge.subforest)],
            "adjustment": names(self.adjustment),
            "optimal_adjustment": names(self.optimal),
            "backdoor_sets": [names(s) for s in self.backdoor],
            "frontdoor_sets": [names(s) for s in self.frontdoor],
            "instruments": [str(z) for z in self.instruments],
            "notes": list(self.notes),
        }

    def to_frame(self):
        """A pandas DataFrame with one row per valid set: ``kind`` (backdoor/frontdoor/instrument), ``nodes``."""
        from causalppl.tables import frame

        rows = [{"kind": kind, "nodes": ", ".join(map(str, sorted_nodes(s)))}
                for kind, found in (("backdoor", self.backdoor), ("frontdoor", self.frontdoor)) for s in found]
        rows += [{"kind": "instrument", "nodes": str(z)} for z in self.instruments]
        return frame(rows, columns=["kind", "nodes"])

    def __str__(self) -> str:
        def sets(found):
            return ", ".join(fmt_set(s) for s in found) or "none"

        backdoor, frontdoor = sets(self.backdoor), sets(self.frontdoor)  # listings fill notes
        verdict = "identifiable" if self.identifiable else "not identifiable"
        lines = [
            f"effect of {fmt_nodes(self._X)} on {fmt_nodes(self._Y)}"
            + (f" given {fmt_nodes(self._Z)}" if self._Z else "") + f": {verdict}",
            f"  backdoor sets:  {backdoor}",
            f"  frontdoor sets: {frontdoor}",
            f"  instruments:    {', '.join(map(repr, self.instruments)) or 'none'}",
            f"  strategy:       {self.strategy()}",
        ]
        if self.identifiable:
            lines.append(f"  estimand:       {self.estimand.equation()}")
        else:
            lines.append(f"  hedge:          {self.hedge}")
        lines += [f"  note:           {note}" for note in self.notes]
        return "\n".join(lines)

    def __repr__(self):
        verdict = "identifiable" if self.identifiable else "not identifiable"
        return f"<Identification {self.query()}: {verdict}>"


def _backdoor_text(treatment, outcome, X, Y, A):
    """The adjustment formula in the earlier text form."""
    lhs = f"P({outcome} | do({treatment}))" if len(X) == len(Y) == 1 else \
        f"P({', '.join(map(str, sorted_nodes(Y)))} | do({', '.join(map(str, sorted_nodes(X)))}))"
    ys = ", ".join(map(str, sorted_nodes(Y)))
    xs = ", ".join(map(str, sorted_nodes(X)))
    if not A:
        return f"{lhs} = P({ys} | {xs})"
    zs = ", ".join(str(n) for n in sorted_nodes(A))
    return f"{lhs} = sum_{{{zs}}} P({ys} | {xs}, {zs}) P({zs})"


def _frontdoor_text(x, y, M):
    ms = ", ".join(str(n) for n in sorted_nodes(M))
    return (f"P({y} | do({x})) = sum_{{{ms}}} P({ms} | {x}) "
            f"sum_{{{x}'}} P({y} | {x}', {ms}) P({x}')")


def identify(graph, treatment, outcome, latent=(), given=()) -> Identification:
    """Decide whether P(outcome | do(treatment) [, given]) is identifiable, and how.

    The graph is a DAG whose latent nodes are unobserved; identification
    runs on its latent projection (an ADMG). The simplest strategy that
    applies is used: no effect (no directed path), backdoor adjustment for a
    minimal set, frontdoor adjustment, else the complete ID algorithm (IDC
    with `given`) of Shpitser and Pearl (2006), which also returns a hedge
    when the effect is not identifiable.

    Parameters
    ----------
    graph : networkx.DiGraph or object with a ``.graph`` DiGraph
        A causal DAG, or an SCM.
    treatment, outcome : node or iterable of nodes
        The cause(s) and effect(s); observed nodes.
    latent : iterable of nodes, optional
        Unobserved nodes, in addition to those with ``latent=True``.
    given : node or iterable of nodes, optional
        Observed conditioning nodes, for P(outcome | do(treatment), given).

    Returns
    -------
    Identification
        ``identifiable``, ``estimand``, ``hedge``, ``method``, the
        adjustment sets and instruments; ``evaluate(source, do=...)`` turns
        the estimand into numbers; ``str()`` is a readable report.

    Raises
    ------
    networkx.NodeNotFound
        If a name is not a node of the graph.
    networkx.NetworkXUnfeasible
        If the graph has a cycle.
    ValueError
        If the roles overlap or one of them is latent.

    Notes
    -----
    Polynomial in the graph: the adjustment and frontdoor sets are
    constructed, not enumerated; ``backdoor`` and ``frontdoor`` list the
    minimal sets only when read (at most 50 backdoor sets, 2000 frontdoor
    tries; ``notes`` says when a listing was cut short).

    Examples
    --------
    >>> import networkx as nx
    >>> napkin = nx.DiGraph([("w", "z"), ("z", "x"), ("x", "y"),
    ...                      ("u1", "w"), ("u1", "x"), ("u2", "w"), ("u2", "y")])
    >>> result = identify(napkin, "x", "y", latent={"u1", "u2"})
    >>> result.identifiable, result.method
    (True, 'ID')
    >>> print(result.estimand)
    Σ_w P(w)P(x,y|w,z) / Σ_w P(w)P(x|w,z)
    >>> bow = nx.DiGraph([("u", "x"), ("u", "y"), ("x", "y")])
    >>> result = identify(bow, "x", "y", latent={"u"})
    >>> result.identifiable, [sorted(part) for part in result.hedge]
    (False, [['x', 'y'], ['y']])
    """
    G = _dag(graph)
    X = _nodes(G, treatment, "treatment")
    Y = _nodes(G, outcome, "outcome")
    Z = _nodes(G, given, "conditioning node")
    if not X or not Y:
        raise ValueError("identify needs at least one treatment and one outcome node")
    _require_disjoint(("treatment", X), ("outcome", Y), ("conditioning set", Z))
    hidden = _latent(G, latent)
    for role, nodes in (("treatment", X), ("outcome", Y), ("conditioning node", Z)):
        inside = sorted_nodes(nodes & hidden)
        if inside:
            raise ValueError(f"{role} {inside[0]!r} is latent (unobserved); "
                             "identification is about observed nodes")
    return Identification(G, X, Y, Z, hidden, treatment, outcome, given)


# ---------------------------------------------------------------------------
# criteria on checked input


def _frontdoor(G, x, y, M, hidden) -> Check:
    latent_in = sorted_nodes(M & hidden)
    if latent_in:
        return Check(False, f"{fmt_set(M)} contains {latent_in[0]!r}, which is "
                            "latent (unobserved)")
    rest = G.subgraph(set(G) - M)
    if nx.has_path(rest, x, y):  # (i)
        path = nx.shortest_path(rest, x, y)
        return Check(False, f"directed path {fmt_path(G, path)} from treatment "
                            f"{x!r} to outcome {y!r} does not pass through {fmt_set(M)}")
    if not M:
        return Check(True, f"there is no directed path from {x!r} to {y!r}, "
                           f"so P({y} | do({x})) = P({y})")
    Gx = cut_out_edges(G, {x})
    if not nx.is_d_separator(Gx, {x}, M, set()):  # (ii)
        reason = open_path_reason(Gx, {x}, M, set(), "backdoor path")
        return Check(False, f"{reason} (from treatment {x!r} to the mediators)")
    Gm = cut_out_edges(G, M)
    if not nx.is_d_separator(Gm, M, {y}, {x}):  # (iii)
        reason = open_path_reason(Gm, M, {y}, {x}, "backdoor path")
        return Check(False, f"{reason}: treatment {x!r} does not block it "
                            f"(from the mediators to outcome {y!r})")
    return Check(True, f"{fmt_set(M)} intercepts every directed path from {x!r} "
                       f"to {y!r}, has no open backdoor path from {x!r}, and "
                       f"{x!r} blocks every backdoor path from it to {y!r}")


def _frontdoor_pool(G, x, y, pool):
    """The largest subset of `pool` that meets frontdoor condition (iii).

    `pool` holds nodes meeting condition (ii), so none is an ancestor of x.
    Then in G without the edges out of a set M, a backdoor path from one
    member m to y can only pass another member as a blocked collider, so
    (iii) holds for M iff it holds for each m, and a path that dooms m
    given M dooms it given any subset of M. Hence the valid sets are closed
    under union: drop the members that fail until none does, and what is
    left contains every set that meets (ii) and (iii).
    """
    pool = set(pool)
    while pool:
        failing = pool & d_connected(G, {y}, {x}, cut=pool)
        if not failing:
            break
        pool -= failing
    return sorted_nodes(pool)


def _frontdoor_candidates(G, x, y, hidden):
    """The observed nodes meeting condition (ii): no open backdoor path from x.

    Condition (ii) holds for a set iff it holds for each member, and the
    members are the nodes one search from x (edges out of x removed) misses.
    """
    return set(G) - {x, y} - hidden - d_connected(G, {x}, cut={x})


def _frontdoor_set(G, x, y, hidden):
    """One frontdoor set for x -> y, or None: polynomial, no enumeration.

    The largest set meeting (ii) and (iii), cut down to the ancestors of y,
    is valid iff any set is (see `frontdoor_sets`); then members are dropped
    one at a time while the set stays valid, so no single member can go.
    """
    if _directed_path(G, x, y, ()) is None:
        return frozenset()
    pool = _frontdoor_pool(G, x, y, _frontdoor_candidates(G, x, y, hidden))
    M = set(pool) & nx.ancestors(G, y)
    if _directed_path(G, x, y, M) is not None:
        return None
    for n in sorted_nodes(M):
        smaller = M - {n}
        if (_directed_path(G, x, y, smaller) is None
                and not smaller & d_connected(G, {y}, {x}, cut=smaller)):
            M = smaller
    return frozenset(M)


def _list_frontdoor(G, x, y, hidden, minimal, max_tries):
    """Frontdoor sets for x -> y: (sets, complete); see `frontdoor_sets`."""
    if minimal and _directed_path(G, x, y, ()) is None:
        return [frozenset()], True  # no directed path: {} is the one minimal set
    pool = _frontdoor_pool(G, x, y, _frontdoor_candidates(G, x, y, hidden))
    # Condition (i) only gets easier as a set grows.
    if _directed_path(G, x, y, pool) is not None:
        return [], True
    if minimal:
        # A valid set stays valid when cut down to the ancestors of the
        # outcome, so minimal sets lie among them.
        above = nx.ancestors(G, y)
        found, complete = _minimal_frontdoor_sets(
            G, x, y, [n for n in pool if n in above], max_tries)
        return sorted(found, key=set_key), complete
    if len(pool) > ALL_SETS_LIMIT:
        raise SearchTooLarge(
            f"minimal=False would list subsets of {len(pool)} candidate nodes "
            f"(more than {ALL_SETS_LIMIT}); use minimal=True")
    found = [M for k in range(len(pool) + 1)
             for M in map(frozenset, itertools.combinations(pool, k))
             if _frontdoor_violation(G, x, y, M, frozenset(pool)) is None]
    return found, True


def _minimal_frontdoor_sets(G, x, y, pool, max_tries):
    """All minimal frontdoor sets within `pool` (nodes meeting (ii)).

    Breadth-first over sets, smallest first: a set that leaves a directed
    path, or a backdoor path from a member, open grows by one pool node on
    that path (any valid superset must contain one of them), so every
    minimal set is reached, and a set reached after a smaller valid subset
    was found is skipped. Returns (sets, complete); after `max_tries` sets
    it stops, and the sets found so far are the smallest ones.
    """
    pool = frozenset(pool)
    found = []
    level, seen = [frozenset()], {frozenset()}
    while level:
        grown = []
        for M in level:
            if any(f <= M for f in found):
                continue
            options = _frontdoor_violation(G, x, y, M, pool)
            if options is None:
                found.append(M)
                continue
            for n in sorted_nodes(options):
                bigger = M | {n}
                if bigger not in seen:
                    seen.add(bigger)
                    grown.append(bigger)
            if len(seen) > max_tries:
                return found, False
        level = grown
    return found, True


def _frontdoor_violation(G, x, y, M, pool):
    """None if M meets (i) and (iii); else the pool nodes that could fix one
    open path (a directed x -> y path avoiding M, or a backdoor path from a
    member to y that x does not block)."""
    path = _directed_path(G, x, y, M)
    if path is not None:
        return pool.intersection(path[1:-1])
    for m in sorted_nodes(M):
        path = open_path(G, {m}, {y}, {x}, cut=M)
        if path is not None:
            # colliders on an open path are ancestors of x, never in the pool
            return pool.intersection(path[1:-1]) - M
    return None


def _directed_path(G, x, y, M):
    """A directed path from x to y that avoids M, or None."""
    parent, todo = {x: None}, deque([x])
    while todo:
        u = todo.popleft()
        for w in G.succ[u]:
            if w in parent or w in M:
                continue
            parent[w] = u
            if w == y:
                path = [y]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return path[::-1]
            todo.append(w)
    return None


def _instrument(G, z, x, y, W, hidden) -> Check:
    if z in hidden:
        return Check(False, f"instrument {z!r} is latent (unobserved)")
    latent_in = sorted_nodes(W & hidden)
    if latent_in:
        return Check(False, f"conditioning set {fmt_set(W)} contains "
                            f"{latent_in[0]!r}, which is latent (unobserved)")
    for role, node in (("treatment", x), ("outcome", y)):
        below = nx.descendants(G, node)
        for w in sorted_nodes(W):
            if w in below:
                return Check(False, f"conditioning set {fmt_set(W)} contains "
                                    f"{w!r}, a descendant of {role} {node!r}")
    if nx.is_d_separator(G, {z}, {x}, W):
        return Check(False, f"{z!r} is d-separated from treatment {x!r} given "
                            f"{fmt_set(W)}, so it is not relevant")
    Gx = cut_out_edges(G, {x})
    if not nx.is_d_separator(Gx, {z}, {y}, W):
        reason = open_path_reason(Gx, {z}, {y}, W, "path")
        return Check(False, f"{reason}: it reaches outcome {y!r} other than "
                            f"through treatment {x!r}, violating exclusion")
    relevant = open_path(G, {z}, {x}, W)
    via = f" ({fmt_path(G, relevant)} is open)" if relevant else ""
    return Check(True, f"{z!r} is relevant to treatment {x!r}{via} and excluded: "
                       f"every path from {z!r} to outcome {y!r} is blocked given "
                       f"{fmt_set(W)} once the edges out of {x!r} are removed")


# ---------------------------------------------------------------------------
# separator enumeration


def _list_backdoor(G, X, Y, hidden, cap):
    """Minimal backdoor sets, stopping after `cap`: (sets, complete).

    When the listing stops early, a smallest set is among those returned.
    """
    Gx = cut_out_edges(G, X)
    allowed = set(G) - X - Y - hidden - descendants_of(G, X)
    H, s, t = separator_graph(Gx, X, Y, allowed)
    if H.has_edge(s, t):
        return [], True
    found = list(itertools.islice(minimal_vertex_separators(H, s, t), cap + 1))
    if len(found) <= cap:
        return found, True
    found = found[:cap]
    smallest = frozenset(nx.minimum_node_cut(H, s, t))
    if smallest not in found:
        found[-1] = smallest
    return found, False


def _dag(graph):
    """The DiGraph behind `graph` (a DiGraph or an SCM), checked acyclic."""
    # nx graphs have a .graph attribute too (their attribute dict)
    G = graph if isinstance(graph, nx.Graph) else getattr(graph, "graph", graph)
    if not isinstance(G, nx.DiGraph):
        raise TypeError("expected a networkx.DiGraph or an object with a .graph "
                        f"DiGraph (an SCM), got {type(graph).__name__}")
    if not nx.is_directed_acyclic_graph(G):
        edges = nx.find_cycle(G)
        cycle = " -> ".join(str(e[0]) for e in edges) + f" -> {edges[0][0]}"
        raise nx.NetworkXUnfeasible(
            f"the graph has a cycle {cycle}; a causal graph must be acyclic")
    return G


def _is_node(G, name):
    try:
        return name in G
    except TypeError:  # unhashable
        return False


def _unknown(G, name, role):
    known = sorted_nodes(G)
    shown = ", ".join(map(repr, known[:30])) + (", ..." if len(known) > 30 else "")
    return nx.NodeNotFound(f"{role} {name!r} is not a node of the graph; "
                           f"known nodes: {shown}")


def _nodes(G, names, role):
    """A node name or an iterable of names, as a frozenset of nodes."""
    if _is_node(G, names) or isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        names = [names]
    names = list(names)
    for n in names:
        if not _is_node(G, n):
            raise _unknown(G, n, role)
    return frozenset(names)


def _one_node(G, name, role):
    """A single node name, checked."""
    if _is_node(G, name):
        return name
    if isinstance(name, (str, bytes)) or not isinstance(name, Iterable):
        raise _unknown(G, name, role)
    raise TypeError(f"{role} must be a single node name, got {name!r}")


def _latent(G, latent):
    marked = {n for n, latent_attr in G.nodes(data="latent") if latent_attr}
    return frozenset(marked) | _nodes(G, latent, "latent node")


def _require_disjoint(*roles):
    for (name_a, a), (name_b, b) in itertools.combinations(roles, 2):
        common = set(a) & set(b)
        if not common:
            continue
        if len(a) == len(b) == 1:
            raise ValueError(f"{name_a} and {name_b} are the same node "
                             f"{next(iter(common))!r}; they must differ")
        raise ValueError(f"{name_a} {fmt_set(a)} and {name_b} {fmt_set(b)} "
                         f"share {fmt_set(common)}; they must be disjoint")
