"""Acyclic directed mixed graphs: the latent projection of a DAG with latent nodes.

The ID algorithm works on the observed nodes only. A latent node is replaced
by what it implies among the observed ones (Verma and Pearl's latent
projection): ``a -> b`` when a directed path from a to b passes through
latent nodes only, and ``a <-> b`` when a latent fork (a path
``a <- ... <- u -> ... -> b`` whose inner nodes are all latent) joins them.
The projection keeps every d-separation among the observed nodes and every
identification question.

>>> import networkx as nx
>>> G = nx.DiGraph([("u", "x"), ("u", "y"), ("x", "m"), ("m", "y")])
>>> g = latent_projection(G, {"u"})
>>> print(g)
ADMG(x -> m, m -> y, x <-> y)
>>> [sorted(d) for d in g.districts()]
[['x', 'y'], ['m']]
"""

from __future__ import annotations

import networkx as nx

from causalppl.causal.separators import _key, sorted_nodes


class ADMG:
    """Directed and bidirected edges over ordered nodes; read-only once built.

    ``nodes`` is a topological order of the directed part. Subgraphs keep
    that order (the ID algorithm's order pi).
    """

    def __init__(self, nodes, directed=(), bidirected=()):
        self.nodes = tuple(nodes)
        self.node_set = frozenset(self.nodes)
        self.rank = {v: i for i, v in enumerate(self.nodes)}
        self.pa = {v: set() for v in self.nodes}
        self.ch = {v: set() for v in self.nodes}
        self.bi = {v: set() for v in self.nodes}
        for a, b in directed:
            self.pa[b].add(a)
            self.ch[a].add(b)
        for a, b in bidirected:
            if a != b:
                self.bi[a].add(b)
                self.bi[b].add(a)

    def directed_edges(self):
        return [(a, b) for b in self.nodes for a in sorted_nodes(self.pa[b])]

    def bidirected_edges(self):
        rank = self.rank
        return [(a, b) for a in self.nodes for b in sorted(self.bi[a], key=rank.get)
                if rank[a] < rank[b]]

    def __str__(self):
        edges = [f"{a} -> {b}" for a, b in self.directed_edges()]
        edges += [f"{a} <-> {b}" for a, b in self.bidirected_edges()]
        return f"ADMG({', '.join(edges) or ', '.join(map(str, self.nodes))})"

    __repr__ = __str__

    def subgraph(self, nodes):
        """The induced subgraph on `nodes` (G_S in the paper)."""
        keep = frozenset(nodes)
        return ADMG(sorted(keep, key=self.rank.__getitem__),
                    [(a, b) for b in keep for a in self.pa[b] if a in keep],
                    [(a, b) for a in keep for b in self.bi[a] if b in keep])

    def without_edges_into(self, nodes):
        """G with the edges into `nodes` removed, directed and bidirected (G_{bar X})."""
        cut = frozenset(nodes)
        return ADMG(self.nodes,
                    [(a, b) for b in self.nodes if b not in cut for a in self.pa[b]],
                    [(a, b) for a in self.nodes if a not in cut
                     for b in self.bi[a] if b not in cut])

    def ancestors(self, nodes):
        """The ancestors of `nodes` along directed edges, `nodes` included (An(Y)_G)."""
        seen = set(nodes)
        todo = list(seen)
        while todo:
            for p in self.pa[todo.pop()]:
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        return frozenset(seen)

    def districts(self):
        """The c-components: connected components of the bidirected edges, C(G).

        Sorted by their first node in the order.
        """
        seen, found = set(), []
        for v in self.nodes:
            if v in seen:
                continue
            part, todo = {v}, [v]
            while todo:
                for w in self.bi[todo.pop()]:
                    if w not in part:
                        part.add(w)
                        todo.append(w)
            seen |= part
            found.append(frozenset(part))
        return found

    def district_of(self, v, upto=None):
        """The c-component of G that holds `v`; with `upto`, of G restricted
        to the nodes up to and including `upto` in the order."""
        last = len(self.nodes) if upto is None else self.rank[upto]
        part, todo = {v}, [v]
        while todo:
            for w in self.bi[todo.pop()]:
                if w not in part and self.rank[w] <= last:
                    part.add(w)
                    todo.append(w)
        return frozenset(part)


def latent_projection(G, latent):
    """The ADMG over the observed nodes of DAG `G` (`latent` are unobserved).

    Linear in the edges for directed edges; a bidirected edge joins every
    pair of observed nodes a latent fork reaches, so a latent with k observed
    children adds k(k-1)/2 of them.
    """
    hidden = frozenset(latent)
    order = [v for v in nx.lexicographical_topological_sort(G, key=_key) if v not in hidden]

    # reach[u]: the observed nodes a latent u reaches through latent nodes only.
    reach = {}
    for u in reversed(list(nx.lexicographical_topological_sort(G.subgraph(hidden), key=_key))):
        found = set()
        for c in G.succ[u]:
            found |= reach[c] if c in hidden else {c}
        reach[u] = found

    directed = []
    for a in order:
        for c in G.succ[a]:
            for b in (reach[c] if c in hidden else (c,)):
                directed.append((a, b))
    bidirected = set()
    for u in hidden:
        if any(p in hidden for p in G.pred[u]):
            continue  # a latent parent reaches all this one reaches
        ends = sorted_nodes(reach[u])
        for i, a in enumerate(ends):
            for b in ends[i + 1:]:
                bidirected.add((a, b))
    return ADMG(order, directed, bidirected)
