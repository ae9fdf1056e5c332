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
from dataclasses import dataclass, field

import networkx as nx

from causalppl.causal.separators import (
    ALL_SETS_LIMIT,
    SearchTooLarge,
    all_separators,
    cut_out_edges,
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
    "Identification",
    "backdoor_sets",
    "check_backdoor",
    "check_frontdoor",
    "check_instrument",
    "d_separated",
    "frontdoor_sets",
    "identify",
    "instruments",
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
    return [z for z in sorted_nodes(set(G) - {x, y} - hidden)
            if _instrument(G, z, x, y, frozenset(), hidden)]


# ---------------------------------------------------------------------------
# the summary


@dataclass
class Identification:
    """What the graph alone says about the effect of `treatment` on `outcome`.

    ``backdoor`` and ``frontdoor`` hold the minimal valid sets, ``instruments``
    the unconditional instruments, ``notes`` any search that was skipped.
    The effect is identifiable (here: by an adjustment formula) when a
    backdoor or frontdoor set exists; `estimand` writes the formula for the
    first (smallest) one, preferring backdoor.
    """

    treatment: str
    outcome: str
    backdoor: list[frozenset]
    frontdoor: list[frozenset]
    instruments: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def identifiable(self) -> bool:
        """True if some backdoor or frontdoor set is valid."""
        return bool(self.backdoor or self.frontdoor)

    def estimand(self) -> str:
        """Return the adjustment formula for P(y | do(x)) as text.

        Examples
        --------
        >>> import networkx as nx
        >>> G = nx.DiGraph([("z", "x"), ("z", "y"), ("x", "y")])
        >>> identify(G, "x", "y").estimand()
        'P(y | do(x)) = sum_{z} P(y | x, z) P(z)'
        """
        x, y = self.treatment, self.outcome
        lhs = f"P({y} | do({x}))"
        if self.backdoor:
            if not self.backdoor[0]:
                return f"{lhs} = P({y} | {x})"
            zs = ", ".join(str(n) for n in sorted_nodes(self.backdoor[0]))
            return f"{lhs} = sum_{{{zs}}} P({y} | {x}, {zs}) P({zs})"
        if self.frontdoor:
            if not self.frontdoor[0]:
                return f"{lhs} = P({y})"
            ms = ", ".join(str(n) for n in sorted_nodes(self.frontdoor[0]))
            return (f"{lhs} = sum_{{{ms}}} P({ms} | {x}) "
                    f"sum_{{{x}'}} P({y} | {x}', {ms}) P({x}')")
        return "not identifiable by backdoor/frontdoor adjustment"

    def strategy(self) -> str:
        """Return one line saying how the effect is identified, if it is."""
        if self.backdoor == [frozenset()]:
            return "no adjustment needed: the empty set {} blocks every backdoor path"
        if self.backdoor:
            return f"backdoor adjustment for {fmt_set(self.backdoor[0])}"
        if self.frontdoor == [frozenset()]:
            return (f"none needed: there is no directed path from {self.treatment!r} "
                    f"to {self.outcome!r}")
        if self.frontdoor:
            return f"frontdoor adjustment through {fmt_set(self.frontdoor[0])}"
        if self.instruments:
            return ("none by adjustment; the instruments identify the effect "
                    "only under extra assumptions (e.g. a linear model)")
        return "none by adjustment"

    def to_dict(self) -> dict:
        """The findings as JSON-ready data (sets as sorted lists)."""
        from causalppl.tables import plain

        return plain({"treatment": self.treatment, "outcome": self.outcome, "identifiable": self.identifiable,
                      "backdoor": [sorted_nodes(s) for s in self.backdoor],
                      "frontdoor": [sorted_nodes(s) for s in self.frontdoor],
                      "instruments": list(self.instruments), "strategy": self.strategy(),
                      "estimand": self.estimand(), "notes": list(self.notes)})

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

        verdict = "identifiable" if self.identifiable else "not identifiable"
        return "\n".join([
            f"effect of {self.treatment!r} on {self.outcome!r}: {verdict}",
            f"  backdoor sets:  {sets(self.backdoor)}",
            f"  frontdoor sets: {sets(self.frontdoor)}",
            f"  instruments:    {', '.join(map(repr, self.instruments)) or 'none'}",
            f"  strategy:       {self.strategy()}",
            f"  estimand:       {self.estimand()}",
            *(f"  note:           {note}" for note in self.notes),
        ])


def identify(graph, treatment, outcome, latent=()) -> Identification:
    """Find the backdoor sets, frontdoor sets and instruments for X -> Y.

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
    Identification
        The minimal backdoor and frontdoor sets and the instruments;
        ``str()`` of it is a readable report.

    Raises
    ------
    networkx.NodeNotFound
        If a name is not a node of the graph.
    networkx.NetworkXUnfeasible
        If the graph has a cycle.
    ValueError
        If treatment equals outcome.

    Notes
    -----
    On large graphs the listings are cut short rather than raising: at most
    50 minimal backdoor sets (a smallest one always among them) and the
    minimal frontdoor sets found within 2000 tries (the smallest ones).
    ``notes`` says when that happened.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph([("u", "smoking"), ("u", "cancer"),
    ...                 ("smoking", "tar"), ("tar", "cancer")])
    >>> G.nodes["u"]["latent"] = True
    >>> result = identify(G, "smoking", "cancer")
    >>> result.identifiable, result.backdoor, result.frontdoor
    (True, [], [frozenset({'tar'})])
    """
    G = _dag(graph)
    x = _one_node(G, treatment, "treatment")
    y = _one_node(G, outcome, "outcome")
    _require_disjoint(("treatment", {x}), ("outcome", {y}))
    hidden = _latent(G, latent)
    notes = []
    backdoor, complete = _list_backdoor(G, {x}, {y}, hidden, _REPORT_SETS)
    if not complete:
        notes.append(f"there are more than {_REPORT_SETS} minimal backdoor sets; "
                     f"{_REPORT_SETS} are listed, a smallest among them")
    frontdoor, complete = _list_frontdoor(G, x, y, hidden, True, _REPORT_STATES)
    if not complete:
        notes.append(f"the frontdoor search stopped after {_REPORT_STATES} sets; "
                     "larger minimal frontdoor sets may exist")
    return Identification(
        treatment=x,
        outcome=y,
        backdoor=sorted(backdoor, key=set_key),
        frontdoor=frontdoor,
        instruments=instruments(G, x, y, latent=latent),
        notes=notes,
    )


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
        cut = cut_out_edges(G, pool)
        failing = {m for m in pool if not nx.is_d_separator(cut, {m}, {y}, {x})}
        if not failing:
            break
        pool -= failing
    return sorted_nodes(pool)


def _list_frontdoor(G, x, y, hidden, minimal, max_tries):
    """Frontdoor sets for x -> y: (sets, complete); see `frontdoor_sets`."""
    if minimal and _directed_path(G, x, y, ()) is None:
        return [frozenset()], True  # no directed path: {} is the one minimal set
    Gx = cut_out_edges(G, {x})
    # Condition (ii) holds for a set iff it holds for each member.
    pool = [n for n in sorted_nodes(set(G) - {x, y} - hidden)
            if nx.is_d_separator(Gx, {x}, {n}, set())]
    pool = _frontdoor_pool(G, x, y, pool)
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
