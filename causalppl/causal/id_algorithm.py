"""The ID and IDC algorithms of Shpitser and Pearl (2006), line by line.

``ID(y, x, P, G)`` (Shpitser and Pearl, "Identification of joint
interventional distributions in recursive semi-Markovian causal models",
AAAI 2006, Fig. 3) returns P_x(y) as a formula over the observational
distribution P of the ADMG G, or fails with a *hedge*, which proves that no
formula exists. ``IDC(y, x, z, P, G)`` ("Identification of conditional
interventional distributions", UAI 2006, Fig. 2) reduces P_x(y | z) to ID.
Both are complete, and polynomial in the size of G.

Each numbered line of the paper is one function ``_line1`` ... ``_line7``;
the distribution P travels as a :class:`Dist` (its variables and formula).

>>> from causalppl.causal.admg import ADMG
>>> napkin = ADMG("wzxy", [("w", "z"), ("z", "x"), ("x", "y")], [("w", "x"), ("w", "y")])
>>> print(id_effect(napkin, {"y"}, {"x"}))
Σ_w P(w)P(x,y|w,z) / Σ_w P(w)P(x|w,z)
>>> bow = ADMG("xy", [("x", "y")], [("x", "y")])
>>> id_effect(bow, {"y"}, {"x"})
Traceback (most recent call last):
...
causalppl.causal.id_algorithm.NotIdentifiable: P(y | do(x)) is not identifiable: hedge F = {'x', 'y'}, F' = {'y'}
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from causalppl.causal.estimand import P, fraction, marginal, product
from causalppl.causal.separators import fmt_set, sorted_nodes


@dataclass(frozen=True)
class Hedge:
    """Two c-forests F' within F that witness non-identifiability (Shpitser and Pearl 2006, Def. 5).

    F holds treatment nodes and F' none; both have the same root set (the
    nodes without children inside them). Unpacks as a pair: ``F, F_prime = hedge``.
    """

    forest: frozenset
    subforest: frozenset

    def __iter__(self):
        return iter((self.forest, self.subforest))

    def __str__(self):
        return f"hedge F = {fmt_set(self.forest)}, F' = {fmt_set(self.subforest)}"


class NotIdentifiable(ValueError):
    """ID failed (line 5): the effect has no formula; ``hedge`` is the witness."""

    def __init__(self, query, hedge):
        super().__init__(f"{query} is not identifiable: {hedge}")
        self.hedge = hedge


@dataclass(frozen=True)
class Dist:
    """The distribution ID passes down: over `variables`, written as `expr`.

    `observational` is true while it is a marginal of the observed joint, so
    its conditionals are plain observational probabilities.
    """

    variables: frozenset
    expr: object
    observational: bool


def _query(y, x, z=()):
    given = f", {', '.join(map(str, sorted_nodes(z)))}" if z else ""
    do = f" | do({', '.join(map(str, sorted_nodes(x)))})" if x else ""
    if not x and z:
        do = " |"
        given = given[1:]
    return f"P({', '.join(map(str, sorted_nodes(y)))}{do}{given})"


def id_effect(G, y, x):
    """P_x(y) as an estimand, by ID on the ADMG `G`; raises NotIdentifiable with a hedge."""
    y, x = frozenset(y), frozenset(x)
    P0 = Dist(G.node_set, P(G.node_set), observational=True)
    try:
        return _id(y, x, P0, G)
    except _Fail as fail:
        raise NotIdentifiable(_query(y, x), Hedge(fail.forest, fail.subforest)) from None


def idc_effect(G, y, x, z, dag=None):
    """P_x(y | z) as an estimand, by IDC; raises NotIdentifiable with a hedge.

    `dag` (the DAG with latent nodes that `G` projects) answers the
    d-separation tests of line 1 when given; else they run on `G`.
    """
    y, x, z = frozenset(y), frozenset(x), frozenset(z)
    P0 = Dist(G.node_set, P(G.node_set), observational=True)
    try:
        return _idc(y, x, z, P0, G, dag)
    except _Fail as fail:
        raise NotIdentifiable(_query(y, x, z), Hedge(fail.forest, fail.subforest)) from None


class _Fail(Exception):
    def __init__(self, forest, subforest):
        self.forest, self.subforest = forest, subforest


# ---------------------------------------------------------------------------
# ID, Fig. 3


def _id(y, x, P_, G):
    """function ID(y, x, P, G): each branch is one numbered line of Fig. 3."""
    V = G.node_set
    if not x:
        return _line1(y, P_)
    ancestors = G.ancestors(y)
    if ancestors != V:
        return _line2(y, x, P_, G, ancestors)
    w = _line3_nodes(y, x, G)
    if w:
        return _id(y, x | w, P_, G)
    districts = G.subgraph(V - x).districts()
    if len(districts) > 1:
        return _line4(y, x, P_, G, districts)
    (S,) = districts
    whole = G.districts()
    if whole == [V]:
        _line5(G, S)
    if S in whole:
        return _line6(y, P_, G, S)
    (S_prime,) = [D for D in whole if S < D]
    return _line7(y, x, P_, G, S_prime)


def _line1(y, P_):
    """Line 1: if x = ∅, return Σ_{v \\ y} P(v)."""
    return marginal(P_.expr, P_.variables - y)


def _line2(y, x, P_, G, ancestors):
    """Line 2: if V ≠ An(Y)_G, return ID(y, x ∩ An(Y)_G, Σ_{V \\ An(Y)_G} P, G_{An(Y)})."""
    P_anc = Dist(ancestors, marginal(P_.expr, P_.variables - ancestors), P_.observational)
    return _id(y, x & ancestors, P_anc, G.subgraph(ancestors))


def _line3_nodes(y, x, G):
    """Line 3: W = (V \\ X) \\ An(Y)_{G_{bar X}}; if W ≠ ∅, return ID(y, x ∪ w, P, G)."""
    return G.node_set - x - G.without_edges_into(x).ancestors(y)


def _line4(y, x, P_, G, districts):
    """Line 4: if C(G \\ X) = {S_1, ..., S_k}, return Σ_{v \\ (y ∪ x)} Π_i ID(s_i, v \\ s_i, P, G)."""
    V = G.node_set
    factors = [_id(S, V - S, P_, G) for S in districts]
    return marginal(product(*factors), V - (y | x))


def _line5(G, S):
    """Line 5: if C(G) = {G}, throw FAIL(G, G ∩ S): the hedge."""
    raise _Fail(G.node_set, S)


def _line6(y, P_, G, S):
    """Line 6: if S ∈ C(G), return Σ_{s \\ y} Π_{V_i ∈ S} P(v_i | v_π^(i-1))."""
    return marginal(product(*(_conditional(P_, G, v) for v in G.nodes if v in S)), S - y)


def _line7(y, x, P_, G, S_prime):
    """Line 7: if S ⊂ S' ∈ C(G), return
    ID(y, x ∩ S', Π_{V_i ∈ S'} P(V_i | V_π^(i-1) ∩ S', v_π^(i-1) \\ S'), G_{S'}).

    The values v_π^(i-1) \\ S' are those of treatment nodes (V \\ S' lies
    within X), so they stay free variables of the new distribution's formula.
    """
    expr = product(*(_conditional(P_, G, v) for v in G.nodes if v in S_prime))
    return _id(y, x & S_prime, Dist(S_prime, expr, observational=False), G.subgraph(S_prime))


def _conditional(P_, G, v):
    """P(v_i | v_π^(i-1)) computed from P, with π the order of G's nodes.

    For the observational P, Tian and Pearl (2002, Lemma 1) shorten the
    conditioning set: P(v_i | v_π^(i-1)) = P(v_i | T ∪ Pa(T) \\ {v_i}), with T
    the c-component of v_i in G restricted to v_π^(i) (its first i nodes).
    Otherwise the conditional is the ratio of two marginals of P.
    """
    if P_.observational:
        # parents of T precede it, so they lie in v_π^(i) already
        T = G.district_of(v, upto=v)
        return P({v}, T.union(*(G.pa[t] for t in T)) - {v})
    before = frozenset(G.nodes[:G.rank[v]])
    numerator = marginal(P_.expr, P_.variables - before - {v})
    denominator = marginal(P_.expr, P_.variables - before)
    return fraction(numerator, denominator)


# ---------------------------------------------------------------------------
# IDC, Fig. 2 of the UAI 2006 paper


def _idc(y, x, z, P_, G, dag):
    """function IDC(y, x, z, P, G)."""
    for node in sorted_nodes(z):
        if _idc_line1_holds(y, x, z, node, G, dag):
            return _idc(y, x | {node}, z - {node}, P_, G, dag)
    return _idc_line2(y, x, z, P_, G)


def _idc_line1_holds(y, x, z, node, G, dag):
    """Line 1: if ∃ Z ∈ Z with (Y ⊥ Z | X, Z \\ {Z}) in G_{bar X, underline Z},
    return IDC(y, x ∪ {z}, z \\ {z}, P, G) (rule 2 of the do-calculus)."""
    H = nx.DiGraph(dag) if dag is not None else _as_dag(G)
    H.remove_edges_from([(a, b) for b in x for a in list(H.pred[b])])
    H.remove_edges_from(list(H.out_edges(node)))
    return nx.is_d_separator(H, set(y), {node}, set(x) | (z - {node}))


def _idc_line2(y, x, z, P_, G):
    """Line 2: let P' = ID(y ∪ z, x, P, G); return P' / Σ_y P'."""
    joint = _id(y | z, x, P_, G)
    if not z:
        return joint
    return fraction(joint, marginal(joint, y))


def _as_dag(G):
    """A DAG with a latent node per bidirected edge: d-separation in it is m-separation in G."""
    H = nx.DiGraph()
    H.add_nodes_from(G.nodes)
    H.add_edges_from(G.directed_edges())
    for a, b in G.bidirected_edges():
        u = ("<->", a, b)
        H.add_edges_from([(u, a), (u, b)])
    return H
