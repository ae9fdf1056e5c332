"""DOT I/O: round trips of every ready-made graph, surgery, hostile and malformed files."""

import math
from pathlib import Path

import networkx as nx
import pytest
import torch

import causalppl as cp
from causalppl.graph import ExpressionError
from causalppl.graph.dot import format_value, parse_value, quote, read_dot, to_dot, unquote

N = 20_000
INPUTS = {"scale": {"guess": 8.5}}


def structure(scm):
    return (scm.nodes, set(scm.graph.edges), {n: scm.mechanism(n).text for n in scm.nodes},
            scm.latent, scm.inputs)


@pytest.mark.parametrize("name", cp.graphs.names())
def test_round_trip_of_each_graph_keeps_structure(name):
    scm = cp.graphs.load(name)
    text = to_dot(scm)
    back = read_dot(text)
    assert structure(back) == structure(scm)
    assert to_dot(back) == text  # a fixed point


@pytest.mark.parametrize("name", cp.graphs.names())
def test_round_trip_of_each_graph_keeps_the_distribution(name):
    scm = cp.graphs.load(name)
    back = read_dot(to_dot(scm))
    inputs = INPUTS.get(name, {})
    cp.set_rng_seed(0)
    original = scm.sample(N, **inputs)
    cp.set_rng_seed(1)
    copy = back.sample(N, **inputs)
    for node in scm.nodes:
        a, b = original[node], copy[node]
        std = max(float(a.std()), 1e-3)
        tolerance = 5 * std * math.sqrt(2 / N)  # two independent sample means
        assert abs(float(a.mean() - b.mean())) < tolerance, node


def test_surgery_round_trips():
    scm = cp.SCM().add("u", "Normal(0.0, 1.0)", latent=True).add("x", "Normal(u, 1.0)") \
        .add("y", "Normal(x + u, 1.0)").add("z", "Normal(y, 1.0)")
    surgered = scm.do(x=1.5).condition(z=torch.tensor([0.25, -3.0, 1e-7]))
    back = read_dot(to_dot(surgered))
    assert back.interventions.keys() == {"x"} and float(back.interventions["x"]) == 1.5
    assert torch.equal(back.observed["z"], surgered.observed["z"])  # full precision
    assert set(back.graph.edges) == set(surgered.graph.edges) == {("u", "y"), ("x", "y"), ("y", "z")}
    assert back.latent == {"u"}
    # undo-able: the intervened node keeps its mechanism
    assert back.mechanism("x").text == "Normal(u, 1.0)"


def test_scale_surgery_in_the_dot_text():
    scm = cp.graphs.load("scale").do(weight=9.0).condition(measurement=9.5)
    text = to_dot(scm)
    assert "intervened=9.0" in text and "observed=9.5" in text
    assert "input=true" not in text and "guess ->" not in text  # do(weight) drops the input
    assert "weight -> measurement" in text
    back = read_dot(text)
    assert back.inputs == () and back.interventions.keys() == {"weight"}


def test_a_hand_written_file_may_keep_the_edges_into_an_intervened_node():
    text = """digraph { z [mechanism="Normal(0, 1)"]; x [mechanism="Normal(z, 1)", intervened=2];
                        z -> x; }"""
    scm = read_dot(text)
    assert scm.parents("x") == () and float(scm.interventions["x"]) == 2.0


def test_values_quote_and_unquote():
    for text in ["x", "Normal(x, 1)", 'a "b" \\ c', "line\nbreak", "node", "Graph", "-1.5", "1e-05"]:
        assert unquote(quote(text)) == text
    assert quote("node") == '"node"' and quote("x1") == "x1" and quote("-1.5") == "-1.5"
    assert format_value(torch.tensor([[1, 2], [3, 4]])) == "[[1, 2], [3, 4]]"
    assert format_value(torch.tensor([True, False])) == "[1, 0]"
    assert torch.equal(parse_value("[[1, 2], [3, 4]]", "x", "observed", "t"),
                       torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert math.isinf(float(parse_value(format_value(torch.tensor(math.inf)), "x", "observed", "t")))


def test_multiline_mechanism_and_keyword_node_names_round_trip():
    scm = cp.SCM().add("node", "Normal(0.0,\n       1.0)").add("graph", "Normal(node, 1.0)")
    back = read_dot(to_dot(scm))
    assert back.nodes == ("node", "graph")
    assert back.mechanism("node").text == "Normal(0.0,\n       1.0)"
    assert set(back.graph.edges) == {("node", "graph")}


def test_read_from_path_str_and_path(tmp_path):
    path = tmp_path / "confounded.dot"
    path.write_text(to_dot(cp.graphs.load("confounded")))
    assert read_dot(path).nodes == ("z", "x", "y")
    assert read_dot(str(path)).nodes == ("z", "x", "y")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_dot(str(tmp_path / "missing.dot"))
    with pytest.raises(TypeError, match="path or DOT text"):
        read_dot(3)


def test_to_dot_styles_and_rankdir():
    scm = cp.graphs.load("smoking").condition(cancer=1.0).do(smoking=1.0)
    text = to_dot(scm, rankdir="TB")
    assert "rankdir=TB" in text
    lines = {line.split(" ")[0]: line for line in text.splitlines() if "->" not in line}
    assert "latent=true" in lines["u"] and "dotted" in lines["u"]
    assert "filled" in lines["cancer"] and "fillcolor" in lines["cancer"]
    assert "shape=box" in lines["smoking"] and 'label="smoking = 1.0"' in lines["smoking"]
    guess = next(line for line in to_dot(cp.graphs.load("scale")).splitlines() if line.startswith("guess ["))
    assert "input=true" in guess and "dashed" in guess
    with pytest.raises(ValueError, match="rankdir"):
        to_dot(scm, rankdir="sideways")


def test_nodes_inside_subgraphs_are_read():
    scm = read_dot("""digraph { subgraph cluster_a { z [mechanism="Normal(0, 1)"]; }
                                x [mechanism="Normal(z, 1)"]; z -> x; }""")
    assert scm.nodes == ("z", "x")


# -- hostile and malformed files ------------------------------------------------------------


def test_hostile_mechanism_is_refused_and_nothing_runs(tmp_path):
    target = tmp_path / "pwned"
    text = f"""digraph {{ x [mechanism="__import__('os').system('touch {target}')"]; }}"""
    with pytest.raises(ExpressionError, match="node 'x'"):
        read_dot(text)
    assert not target.exists()
    for mechanism in ["x.__class__", "Normal(0, 1).sample()", "(lambda: 1)()", "open('/etc/passwd')",
                      "Normal(__builtins__, 1)", "[c for c in ()]"]:
        escaped = mechanism.replace('"', '\\"')
        with pytest.raises(ExpressionError, match="node 'y'"):
            read_dot(f'digraph {{ y [mechanism="{escaped}"]; }}')


def test_hostile_values_are_refused(tmp_path):
    target = tmp_path / "pwned"
    for value in [f"__import__('os').system('touch {target}')", "x", "Normal(0, 1)", "1), exp(2"]:
        escaped = value.replace('"', '\\"')
        text = f'digraph {{ x [mechanism="Normal(0, 1)", observed="{escaped}"]; }}'
        with pytest.raises(ValueError, match="node 'x': observed="):
            read_dot(text)
    assert not target.exists()


@pytest.mark.parametrize("name", ['"a; rm"', '"_hidden"', '"1x"', '"a b"'])
def test_node_names_must_be_identifiers(name):
    with pytest.raises(ValueError, match="is not allowed: SCM node names must be Python identifiers"):
        read_dot(f'digraph {{ {name} [mechanism="Normal(0, 1)"]; }}')


def test_malformed_dot_names_the_line():
    with pytest.raises(ValueError, match=r"DOT text: line 2, column \d+: not valid DOT"):
        read_dot('digraph {\n  a -> ;\n}')
    with pytest.raises(ValueError, match="not valid DOT"):
        read_dot("digraph { a [mechanism=")


def test_malformed_file_names_the_file(tmp_path):
    path = tmp_path / "broken.dot"
    path.write_text("digraph {\n  x [mechanism=\"Normal(0, 1)\"];\n  x -> -> y\n}\n")
    with pytest.raises(ValueError, match=r"broken\.dot'?: line 3"):
        read_dot(path)


def test_read_specific_errors():
    with pytest.raises(ValueError, match="node 'x' has no mechanism attribute"):
        read_dot('digraph { z [mechanism="Normal(0, 1)"]; x; }')
    with pytest.raises(ValueError, match=r"node 'x' has no mechanism attribute"):
        read_dot('digraph { z [mechanism="Normal(0, 1)"]; z -> x; }')  # an edge declares its nodes
    with pytest.raises(ValueError, match="node 'g' is marked input=true but has a mechanism"):
        read_dot('digraph { g [input=true, mechanism="Normal(0, 1)"]; }')
    with pytest.raises(ValueError, match="does not use the input 'g'"):
        read_dot('digraph { g [input=true]; x [mechanism="Normal(0, 1)"]; g -> x; }')
    with pytest.raises(ValueError, match=r"node 'x'.*edges from \['z'\] that its mechanism does not use"):
        read_dot('digraph { z [mechanism="Normal(0, 1)"]; x [mechanism="Normal(0, 1)"]; z -> x; }')
    with pytest.raises(ValueError, match=r"node 'x'.*no edges from \['z'\]"):
        read_dot('digraph { z [mechanism="Normal(0, 1)"]; x [mechanism="Normal(z, 1)"]; }')
    with pytest.raises(ValueError, match="directed graph"):
        read_dot('graph { z [mechanism="Normal(0, 1)"]; }')
    with pytest.raises(ValueError, match="exactly one graph"):
        read_dot('digraph { a [mechanism="Normal(0, 1)"] } digraph { b [mechanism="Normal(0, 1)"] }')
    with pytest.raises(ValueError, match="latent='maybe' must be true or false"):
        read_dot('digraph { a [mechanism="Normal(0, 1)", latent=maybe]; }')
    with pytest.raises(nx.NetworkXUnfeasible, match="cycle"):
        read_dot('digraph { a [mechanism="Normal(b, 1)"]; b [mechanism="Normal(a, 1)"]; a -> b; b -> a; }')


def test_input_nodes_are_optional_and_skipped():
    scm = read_dot('digraph { g [input=true]; x [mechanism="Normal(g, 1)"]; g -> x; }')
    assert scm.nodes == ("x",) and scm.inputs == ("g",)
    assert read_dot('digraph { x [mechanism="Normal(g, 1)"]; }').inputs == ("g",)


# -- callable mechanisms ----------------------------------------------------------------------


def test_callable_mechanisms_write_structure_but_cannot_be_read_back():
    scm = cp.SCM().add("z", "Normal(0.0, 1.0)").add("x", lambda z: cp.dist.Normal(z, 1.0))
    text = to_dot(scm)
    x_line = next(line for line in text.splitlines() if line.startswith("x "))
    assert "callable=true" in x_line and "mechanism=" not in x_line
    assert "z -> x" in text
    assert text.startswith("//") and "node 'x' has a Python callable mechanism" in text
    with pytest.raises(ValueError, match="node 'x' had a Python callable mechanism"):
        read_dot(text)


def test_scm_methods_delegate(tmp_path):
    scm = cp.graphs.load("confounded")
    assert scm.to_dot() == to_dot(scm)
    out = scm.draw(tmp_path / "c.dot")
    assert Path(out).read_text() == to_dot(scm)
    assert cp.read_dot is read_dot
