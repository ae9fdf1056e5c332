"""The DOT parser agrees with pydot on the shipped graphs, applies defaults, and is fast."""

import os
import time
import warnings

import pydot
import pytest

import causalppl as cp
from causalppl.graph.dot import unquote
from causalppl.graph.dotparse import DotSyntaxError, parse_dot


def pydot_view(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = pydot.graph_from_dot_data(text)[0]
    nodes = {}
    for node in graph.get_nodes():
        if node.get_name() not in ("node", "edge", "graph"):
            nodes.setdefault(unquote(node.get_name()), {}).update(
                {k: unquote(v) for k, v in node.get_attributes().items()})
    edges = [(unquote(e.get_source()), unquote(e.get_destination())) for e in graph.get_edges()]
    return nodes, edges


@pytest.mark.parametrize("name", cp.graphs.names())
def test_agrees_with_pydot_on_the_shipped_graphs(name):
    for text in (cp.graphs.path(name).read_text(), cp.graphs.load(name).do(**{cp.graphs.load(name).nodes[0]: 1.0})
                 .to_dot(legend=True)):
        nodes, edges = pydot_view(text)
        parsed = parse_dot(text)
        mine = {n: a for n, a in parsed.nodes.items() if not n.startswith("legend_")}
        theirs = {n: a for n, a in nodes.items() if not n.startswith("legend_")}
        assert list(mine) == list(theirs)
        for node, attrs in theirs.items():  # pydot leaves out the node [...] defaults that we apply
            assert attrs.items() <= mine[node].items(), node
        assert [(s, t) for s, t, _ in parsed.edges if not s.startswith("legend_")] == \
            [e for e in edges if not e[0].startswith("legend_")]


def test_grammar_corners():
    g = parse_dot('/* c */ strict digraph "g" {\n# a preprocessor line\n'
                  ' a:p:n -> {b c} [w=1]; "x" + "y" [k=<<b>1</b>>]; '
                  'subgraph s { edge [color=red]; b -> c } }')
    assert g.strict and g.name == "g" and list(g.nodes) == ["a", "b", "c", "xy"]
    assert g.nodes["xy"] == {"k": "<<b>1</b>>"}
    assert [(s, t, a) for s, t, a in g.edges] == [("a", "b", {"w": "1"}), ("a", "c", {"w": "1"}),
                                                  ("b", "c", {"color": "red"})]
    for bad, message in [("digraph { a -> }", "line 1, column 16"), ("digraph { a", "expected"),
                         ("digraph { a -- b }", "'--' in a digraph"), ("digraph {} digraph {}", "exactly one"),
                         ("", "empty"), ("digraph { node -> b }", "keyword")]:
        with pytest.raises(DotSyntaxError, match=message):
            parse_dot(bad)


def test_large_files_read_and_build_fast():
    # Issue 9: 100,000 nodes in under 10 s each (about 5 s and 7 s on a loaded 2-core box). The suite
    # checks 20,000 within a fifth of that; CAUSALPPL_SCALE_TESTS=1 runs the full size.
    full = os.environ.get("CAUSALPPL_SCALE_TESTS") == "1"
    n, limit = (100_000, 10.0) if full else (20_000, 2.0)
    text = "digraph { node [latent=false]; " + " ".join(f"a{i} -> a{i + 1};" for i in range(n - 1)) + " }"
    start = time.perf_counter()
    dag = cp.read_dot(text)
    read = time.perf_counter() - start
    start = time.perf_counter()
    nodes = dag.nodes
    learned = cp.SCM.from_graph(dag)
    build = time.perf_counter() - start
    assert len(nodes) == n and len(learned) == n
    assert read < limit and build < limit, (read, build)
