"""Search machinery behind :mod:`causalppl.causal.identify`.

Minimal d-separating sets are listed as minimal vertex separators of an
undirected graph derived from the DAG; open paths are found by a
breadth-first search over (node, direction) states, so a failing check can
name the path it found.
"""

from __future__ import annotations

import itertools
from collections import deque

import networkx as nx

# minimal=False lists every valid subset of the candidates: 2**15 at most.
ALL_SETS_LIMIT = 15

def separator_graph(G, X, Y, allowed):
    """An undirected graph whose minimal vertex separators between two
    terminals s and t are the minimal sets within `allowed` that d-separate
    X and Y in G: (H, s, t).

    A minimal separator lies among the ancestors of X and Y, where
    d-separation is separation in the moral graph (Lauritzen). Nodes outside
    `allowed` can never block, so they are eliminated (their neighbours are
    joined), and X and Y are merged into the terminals.
    """
    ancestral = set(X) | set(Y)
    for n in X | Y:
        ancestral |= nx.ancestors(G, n)
    moral = nx.moral_graph(G.subgraph(ancestral))
    s, t = _Terminal("treatment"), _Terminal("outcome")
    terminal = {n: s for n in X} | {n: t for n in Y}
    passable = ancestral - set(allowed) - X - Y

    H = nx.Graph()
    H.add_nodes_from([s, t])
    H.add_nodes_from(n for n in ancestral if n in allowed and n not in terminal)
    for u, v in moral.edges:
        if u in passable or v in passable:
            continue
        a, b = terminal.get(u, u), terminal.get(v, v)
        if a is not b:
            H.add_edge(a, b)
    for blob in nx.connected_components(moral.subgraph(passable)):
        rim = {terminal.get(n, n) for b in blob for n in moral[b] if n not in passable}
        H.add_edges_from(itertools.combinations(rim, 2))
    return H, s, t


def minimal_vertex_separators(H, s, t):
    """Yield every minimal s-t vertex separator of H (s, t not adjacent).

    Kloks and Kratsch (1998): start from the separator closest to s; from
    each separator S and each v in S not adjacent to t, the separator closest
    to (component of s in H - S) + v is another one, and this reaches all.
    """

    def component(start, blocked):
        seen, todo = {start}, [start]
        while todo:
            for w in H[todo.pop()]:
                if w not in seen and w not in blocked:
                    seen.add(w)
                    todo.append(w)
        return seen

    def rim(nodes):
        return frozenset(w for u in nodes for w in H[u] if w not in nodes)

    def closest_to(side):
        return rim(component(t, side | rim(side)))

    first = closest_to({s})
    found, todo = {first}, [first]
    yield first
    while todo:
        S = todo.pop()
        source_side = component(s, S)
        for v in S:
            if t in H[v]:
                continue
            nxt = closest_to(source_side | {v})
            if nxt not in found:
                found.add(nxt)
                todo.append(nxt)
                yield nxt


def all_separators(G, X, Y, allowed):
    """All sets Z within `allowed` that d-separate X and Y in G.

    Splits on one candidate at a time (in or out) and prunes a branch as
    soon as networkx finds no separator between its bounds, so every leaf
    reached is an answer.
    """
    if len(allowed) > ALL_SETS_LIMIT:
        raise SearchTooLarge(
            f"minimal=False would list subsets of {len(allowed)} candidate nodes "
            f"(more than {ALL_SETS_LIMIT}); use minimal=True")
    found = []

    def split(inside, undecided):
        upper = inside | set(undecided)
        if nx.find_minimal_d_separator(G, X, Y, included=inside, restricted=upper) is None:
            return
        if not undecided:
            found.append(frozenset(inside))
            return
        split(inside | {undecided[0]}, undecided[1:])
        split(inside, undecided[1:])

    split(set(), sorted_nodes(allowed))
    return found


class SearchTooLarge(ValueError):
    """A listing would have to try too many subsets."""


class _Terminal:
    """A stand-in node for a merged set of nodes (never equal to a user node)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<{self.name}>"


# ---------------------------------------------------------------------------
# paths and reasons


def open_path(G, X, Y, Z, cut=()):
    """A path from a node of X to a node of Y that is open given Z, or None.

    With `cut`, the edges out of those nodes count as removed.

    Breadth-first search over (node, direction of arrival) finds a short
    open walk (Bayes-ball rules, colliders open when in Z or an ancestor of
    Z); cutting out the loops of that walk leaves an open path, because a
    node the walk revisits is either a collider both times or, where it
    turns into one, an ancestor of Z.
    """
    def parents(v):
        return [p for p in G.pred[v] if p not in cut]

    def children(v):
        return [] if v in cut else list(G.succ[v])

    opening, todo = set(Z), list(Z)  # Z and its ancestors
    while todo:
        for p in parents(todo.pop()):
            if p not in opening:
                opening.add(p)
                todo.append(p)
    start = [(x, "start") for x in sorted_nodes(X)]
    came_from = dict.fromkeys(start)
    todo = deque(start)
    end = None
    while todo and end is None:
        state = todo.popleft()
        v, arrived = state
        moves = []
        if arrived != "down" and (arrived == "start" or v not in Z):
            # reached from a child (or the start): on to parents and children
            moves = [(p, "up") for p in parents(v)] + [(c, "down") for c in children(v)]
        elif arrived == "down":
            # reached from a parent: a chain to children, a collider to parents
            if v not in Z:
                moves += [(c, "down") for c in children(v)]
            if v in opening:
                moves += [(p, "up") for p in parents(v)]
        for move in moves:
            if move not in came_from:
                came_from[move] = state
                if move[0] in Y:
                    end = move
                    break
                todo.append(move)
    if end is None:
        return None
    walk = [end]
    while came_from[walk[-1]] is not None:
        walk.append(came_from[walk[-1]])
    walk = [v for v, _ in reversed(walk)]
    walk = walk[max(i for i, v in enumerate(walk) if v in X):]
    path = []
    for v in walk:  # cut loops: back to the first visit of v
        if v in path:
            del path[path.index(v) + 1:]
        else:
            path.append(v)
    return path


def d_connected(G, X, Z=(), cut=()):
    """The nodes outside X and Z that some path open given Z joins to X.

    One breadth-first search (the Bayes-ball rules of `open_path`), so a
    whole family of d-separation tests costs one pass: v is d-separated
    from X given Z iff v is not in the answer. With `cut`, the edges out of
    those nodes count as removed.
    """
    def parents(v):
        return [p for p in G.pred[v] if p not in cut]

    def children(v):
        return [] if v in cut else list(G.succ[v])

    Z = set(Z)
    opening, todo = set(Z), list(Z)  # Z and its ancestors open colliders
    while todo:
        for p in parents(todo.pop()):
            if p not in opening:
                opening.add(p)
                todo.append(p)
    start = [(x, "up") for x in X]  # a start may leave by any edge, like a node entered from below
    seen = set(start)
    todo = deque(start)
    while todo:
        v, arrived = todo.popleft()
        moves = []
        if arrived == "up" and v not in Z:
            moves = [(p, "up") for p in parents(v)] + [(c, "down") for c in children(v)]
        elif arrived == "down":
            if v not in Z:
                moves = [(c, "down") for c in children(v)]
            if v in opening:
                moves += [(p, "up") for p in parents(v)]
        for move in moves:
            if move not in seen:
                seen.add(move)
                todo.append(move)
    return {v for v, _ in seen} - set(X) - Z


def open_path_reason(G, X, Y, Z, kind):
    """'<kind> a <- b -> c is open given {...}', naming colliders opened by Z."""
    path = open_path(G, X, Y, Z)
    if path is None:
        return (f"a {kind} from {fmt_nodes(X)} to {fmt_nodes(Y)} "
                f"is open given {fmt_set(Z)}")
    notes = []
    for a, n, b in zip(path, path[1:-1], path[2:], strict=False):
        if not _is_collider(G, a, n, b):
            continue
        if n in Z:
            notes.append(f"conditioning on collider {n!r} opens it")
        else:
            below = nx.descendants(G, n)
            d = next(z for z in sorted_nodes(Z) if z in below)
            notes.append(f"conditioning on {d!r}, a descendant of collider {n!r}, opens it")
    reason = f"{kind} {fmt_path(G, path)} is open given {fmt_set(Z)}"
    return reason + "".join(f" ({note})" for note in notes)


def _is_collider(G, a, n, b):
    return G.has_edge(a, n) and G.has_edge(b, n)


def fmt_path(G, path):
    parts = [str(path[0])]
    for a, b in zip(path, path[1:], strict=False):
        parts.append(f"-> {b}" if G.has_edge(a, b) else f"<- {b}")
    return " ".join(parts)


# ---------------------------------------------------------------------------
# input checking and small helpers



def cut_out_edges(G, nodes):
    """A copy of G without the edges out of `nodes`."""
    H = nx.DiGraph(G)
    H.remove_edges_from(list(H.out_edges(nodes)))
    return H


def descendants_of(G, nodes):
    out = set()
    for n in nodes:
        out |= nx.descendants(G, n)
    return out


def _key(node):
    # numbers in numeric order, everything else by name
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return (0, node, "")
    return (1, str(node), repr(node))


def sorted_nodes(nodes):
    return sorted(nodes, key=_key)


def set_key(nodes):
    return (len(nodes), [_key(n) for n in sorted_nodes(nodes)])


def fmt_set(nodes):
    return "{" + ", ".join(repr(n) for n in sorted_nodes(nodes)) + "}"


def fmt_nodes(nodes):
    nodes = sorted_nodes(nodes)
    return repr(nodes[0]) if len(nodes) == 1 else fmt_set(nodes)
