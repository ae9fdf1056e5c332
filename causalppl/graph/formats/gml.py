"""GML in and out: a causal DAG, or an SCM whose mechanisms travel as text.

Nodes are named by their ``label``; the node attributes read are those of
:func:`causalppl.graph.dot.read_dot` (``mechanism``, ``latent``, ``labels``,
``observed``, ``intervened``, ``learnable``, ``params``, and the soft interventions
``shift``, ``stochastic``, ``replaced``). A file without
mechanisms is a causal DAG. GML is parsed by networkx's GML reader, which
never evaluates its values.

>>> import causalppl as cp
>>> text = to_gml(cp.graphs.load("confounded"))
>>> 'mechanism "Normal(z, 1.0)"' in text
True
>>> read_gml(text).nodes
('z', 'x', 'y')
>>> read_gml('graph [ directed 1 node [ id 0 label "a" ] node [ id 1 label "b" ] '
...          'edge [ source 0 target 1 ] ]').parents("b")
('a',)
"""

from __future__ import annotations

import json

import networkx as nx

from causalppl.graph.dot import _node_attrs, _source_text, scm_from_dot_graph, unquote
from causalppl.graph.dotparse import DotGraph

# What a node's GML attributes say about the model (the rest is styling).
KEYS = ("mechanism", "learnable", "params", "labels", "latent", "observed", "intervened", "input", "callable",
        "shift", "stochastic", "replaced", "callable_intervention")


def _as_text(value):
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def read_gml(path_or_text):
    """An SCM (or a causal DAG, when no node has a mechanism) from GML text or a file.

    Raises ``ValueError`` naming the file for text that is not GML, an
    undirected graph, or what :func:`~causalppl.graph.dot.read_dot` refuses.
    """
    text, where = _source_text(path_or_text, "read_gml", "GML")
    if "{" in text and "[" not in text:
        raise ValueError(f"{where}: not valid GML (GML looks like 'graph [ node [ id 0 label \"a\" ] ... ]')")
    try:
        graph = nx.parse_gml(text, label="label")
    except nx.NetworkXError as err:
        if "label" not in str(err):
            raise ValueError(f"{where}: not valid GML: {err}") from None
        graph = nx.parse_gml(text, label="id")
    except (ValueError, IndexError) as err:  # networkx's tokenizer
        raise ValueError(f"{where}: not valid GML: {err}") from None
    if not graph.is_directed():
        raise ValueError(f"{where}: a causal graph is directed; write 'directed 1' in the GML graph")
    parsed = DotGraph(name=str(graph.graph.get("name") or "") or None, directed=True)
    parsed.attrs = {key: str(value) for key, value in graph.graph.items() if key == "rankdir"}
    for node, attrs in graph.nodes(data=True):
        parsed.nodes[str(node)] = {key: _as_text(value) for key, value in attrs.items() if key in KEYS}
    parsed.edges = [(str(a), str(b), {}) for a, b in graph.edges()]
    return scm_from_dot_graph(parsed, where)


def to_gml(scm):
    """GML text of ``scm``: mechanisms as text, labels as lists, learnable specs and params as JSON.

    ``read_gml`` reads it back into an equal SCM (fitted params included).
    """
    graph = nx.DiGraph()
    graph.graph.update({key: value for key, value in scm._meta.items() if key in ("name", "rankdir")})
    for node in scm.nodes:
        attrs, _ = _node_attrs(scm, node, None, set())
        plain = {key: unquote(value) for key, value in attrs.items() if key in KEYS}
        if "latent" in plain:
            plain["latent"] = 1
        graph.add_node(node, **plain)
    graph.add_edges_from(scm.graph.edges)
    return "\n".join(nx.generate_gml(graph)) + "\n"
