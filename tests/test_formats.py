"""Graph formats: read_graph picks the format; DOT/GML/dagitty/BIF/XMLBIF read and write."""

import importlib.util
import math
from pathlib import Path

import networkx as nx
import pytest
import torch

import causalppl as cp
from causalppl.graph.formats import detect_format, read_graph
from causalppl.graph.formats.bif import read_bif, to_bif
from causalppl.graph.formats.dagitty import read_dagitty, to_dagitty
from causalppl.graph.formats.gml import read_gml, to_gml
from causalppl.graph.formats.xmlbif import read_xmlbif
from causalppl.graph.mechanism import MissingMechanism

SPRINKLER_BIF = """
// rain -> sprinkler -> wet <- rain
network garden { property "made by hand"; }
variable rain { type discrete [ 2 ] { no, yes }; }
variable sprinkler { type discrete [ 2 ] { off, on }; }
variable wet { type discrete [ 2 ] { dry, wet }; }
probability ( rain ) { table 0.8, 0.2; }
probability ( sprinkler | rain ) { (no) 0.6, 0.4; (yes) 0.99, 0.01; }
probability ( wet | sprinkler, rain ) {
  (off, no) 1.0, 0.0;
  (off, yes) 0.2, 0.8;
  (on, no) 0.1, 0.9;
  (on, yes) 0.01, 0.99;
}
"""
# P(wet = wet | do(sprinkler = on)) = 0.8 * 0.9 + 0.2 * 0.99, by hand.
DO_ON = 0.8 * 0.9 + 0.2 * 0.99
# P(wet = wet | sprinkler = on): rain is rarer when the sprinkler is on (0.8*0.4 against 0.2*0.01).
SEEN_ON = (0.8 * 0.4 * 0.9 + 0.2 * 0.01 * 0.99) / (0.8 * 0.4 + 0.2 * 0.01)


def tolerance(p, n):
    return 5 * math.sqrt(p * (1 - p) / n) + 1e-3


# -- detection -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("digraph { a -> b }", "dot"), ("\ufeff// c\nstrict digraph g { }", "dot"),
    ("graph [ directed 1 ]", "gml"), ("dag { a -> b }", "dagitty"), ("network x { }", "bif"),
    ("variable a { }", "bif"), ('<?xml version="1.0"?><BIF/>', "xmlbif"),
])
def test_detect_format(text, expected):
    assert detect_format(text) == expected


def test_read_graph_by_suffix_and_content(tmp_path):
    for name, text in [("g.dot", "digraph { a -> b }"), ("g.gml", to_gml(cp.graphs.load("confounded"))),
                       ("g.dagitty", "dag { a -> b }"), ("g.bif", SPRINKLER_BIF), ("g.txt", "dag { a -> b }")]:
        path = tmp_path / name
        path.write_text(text)
        assert len(read_graph(path).nodes) >= 2, name
        assert len(read_graph(str(path)).nodes) >= 2, name
    with pytest.raises(ValueError, match="cannot tell the format"):
        read_graph("hello [ world")


# -- DOT without mechanisms ---------------------------------------------------------------------


def test_plain_dot_is_a_causal_dag_for_identify_draw_and_from_graph():
    dag = cp.read_dot("digraph { z -> x; z -> y; x -> y; }")
    assert not dag.specified and dag.parents("y") == ("z", "x")
    found = cp.causal.identify(dag, "x", "y")
    assert found.backdoor == [frozenset({"z"})]
    assert "digraph" in dag.to_dot() and cp.read_dot(dag.to_dot()).parents("y") == ("z", "x")
    with pytest.raises(MissingMechanism, match="nodes 'z', 'x', 'y' have no mechanism"):
        dag.sample(3)
    with pytest.raises(MissingMechanism, match="from_graph"):
        cp.causal.ate(dag, "x", "y")
    cp.set_rng_seed(0)
    z = torch.randn(500)
    x = z + 0.5 * torch.randn(500)
    data = {"z": z, "x": x, "y": 2 * x + z + 0.1 * torch.randn(500)}
    learned = cp.SCM.from_graph(dag, data)
    learned.fit(data)
    assert cp.causal.ate(learned, "x", "y", n=2000).ate == pytest.approx(2.0, abs=0.05)


def test_dot_defaults_latent_and_bom():
    dag = cp.read_dot('\ufeffdigraph { node [latent=true]; u; node [latent=false]; u -> x; u -> y; x -> y; }')
    assert dag.latent == {"u"}
    assert cp.causal.identify(dag, "x", "y").backdoor == []
    scm = cp.read_dot('digraph { node [mechanism="Normal(0, 1)"]; a; b [mechanism="Normal(a, 1)"]; a -> b; }')
    assert scm.mechanism("a").text == "Normal(0, 1)"


def test_dot_errors_name_the_culprit(tmp_path):
    with pytest.raises(ValueError, match="empty string"):
        cp.read_dot("")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        cp.read_dot(tmp_path)
    with pytest.raises(nx.NetworkXUnfeasible, match="cycle a -> b -> a"):
        cp.read_dot("digraph { a -> b -> a }")
    bad = tmp_path / "latin1.dot"
    bad.write_bytes("digraph { caf\xe9 -> b }".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.dot.*not UTF-8"):
        cp.read_dot(bad)


def test_dot_rankdir_is_kept():
    scm = cp.read_dot("digraph { rankdir=TB; a -> b }")
    assert "rankdir=TB" in scm.to_dot() and "rankdir=BT" in scm.to_dot(rankdir="BT")


def test_learned_scm_round_trips_through_dot_and_gml():
    cp.set_rng_seed(1)
    data = cp.graphs.load("confounded").sample(400)
    scm = cp.SCM.from_graph(cp.graphs.load("confounded"), data)
    scm.fit(data)
    for text, reader in ((scm.to_dot(), cp.read_dot), (scm.to_gml(), read_gml)):
        back = reader(text)
        assert back.nodes == scm.nodes
        for key in scm.params.keys():
            assert torch.allclose(back.params[key], scm.params[key]), key
        cp.set_rng_seed(2)
        a = cp.causal.ate(back, "x", "y", n=1000).ate
        cp.set_rng_seed(2)
        assert a == pytest.approx(cp.causal.ate(scm, "x", "y", n=1000).ate, abs=1e-5)


# -- GML and networkx ----------------------------------------------------------------------------


def test_write_gml_of_scm_graph_and_back(tmp_path):
    scm = cp.graphs.load("smoking").do(smoking=1.0)
    path = tmp_path / "smoking.gml"
    nx.write_gml(scm.graph, path)
    again = nx.read_gml(path)
    assert set(again.edges) == set(scm.graph.edges)
    assert again.nodes["u"]["latent"] == 1
    plain = cp.graphs.load("smoking")
    assert cp.SCM(plain.graph).nodes == plain.nodes  # the graph keeps the mechanism objects too
    text = to_gml(cp.graphs.load("smoking"))
    back = read_gml(text)
    assert back.latent == {"u"} and back.mechanism("cancer").text == cp.graphs.load("smoking").mechanism("cancer").text


def test_plain_gml_and_undirected_gml():
    text = 'graph [ directed 1 node [ id 0 label "a" latent 1 ] node [ id 1 label "b" ] edge [ source 0 target 1 ] ]'
    dag = read_gml(text)
    assert dag.latent == {"a"} and not dag.specified
    with pytest.raises(ValueError, match="directed"):
        read_gml('graph [ node [ id 0 label "a" ] ]')


# -- dagitty --------------------------------------------------------------------------------------


def test_dagitty_latent_confounders_and_roles():
    dag = read_dagitty('dag {\n bb="0,0,1,1"\n D [outcome,pos="1,1"]\n E [exposure]\n Z\n'
                       ' D <-> Z\n E -> D\n E <-> Z\n}')
    assert dag.roles == {"D": "outcome", "E": "exposure"}
    assert dag.latent == {"U_D_Z", "U_E_Z"}
    assert set(dag.parents("Z")) == {"U_D_Z", "U_E_Z"}
    found = cp.causal.identify(dag, "E", "D")
    assert frozenset() in found.backdoor  # M-bias: adjust for nothing (not for Z)
    back = read_dagitty(to_dagitty(dag))
    assert set(back.graph.edges) == set(dag.graph.edges) and back.latent == dag.latent and back.roles == dag.roles
    assert read_dagitty("dag { a -> b <- c; {a c} -> d }").parents("d") == ("a", "c")


@pytest.mark.parametrize("text, message", [
    ("dag { a -- b }", "not a causal DAG's edge"), ("dag { a -> b -> a }", "cycle"),
    ("dag { a -> }", "expected a node name"), ("dag { 1x -> b }", "not allowed"),
])
def test_dagitty_errors(text, message):
    with pytest.raises((ValueError, nx.NetworkXUnfeasible), match=message):
        read_dagitty(text)


def test_dagitty_errors_give_line_and_column_across_comments_and_strings():
    text = 'dag {\n  /* two\n lines */ a -> b\n  "x\ny" -> c\n    c -- d\n}'
    with pytest.raises(ValueError, match=r"line 6, column 7: the edge '--' is not a causal DAG's edge"):
        read_dagitty(text)
    with pytest.raises(ValueError, match=r"line 2, column 3: not valid dagitty: unexpected character '\"'"):
        read_dagitty('dag {\n  "open')


# -- BIF and XMLBIF -------------------------------------------------------------------------------


def test_bif_keeps_states_and_tables_and_answers_do_queries():
    scm = read_bif(SPRINKLER_BIF)
    assert scm.labels("sprinkler") == ("off", "on") and scm.mechanism("wet").fn.parent_levels["rain"] == ("no", "yes")
    assert torch.allclose(scm.params["wet.probs"][1, 0].detach(), torch.tensor([0.1, 0.9]))
    n = 40000
    cp.set_rng_seed(3)
    done = cp.causal.interventional(scm, do={"sprinkler": "on"}, n=n).distribution("wet")
    assert abs(done["wet"] - DO_ON) < 1e-6  # a discrete SCM: answered exactly
    seen = cp.causal.interventional(scm, evidence={"sprinkler": "on"}, n=n).distribution("wet")
    assert abs(seen["wet"] - SEEN_ON) < 1e-6
    sampled = cp.causal.interventional(scm, evidence={"sprinkler": "on"}, n=n, method="sample").distribution("wet")
    assert abs(sampled["wet"] - SEEN_ON) < tolerance(SEEN_ON, sampled.n // 4)
    back = read_bif(to_bif(scm))
    for key in scm.params.keys():
        assert torch.allclose(back.params[key], scm.params[key], atol=1e-6)


def test_bif_table_order_for_a_node_with_parents():
    text = ("variable a { type discrete [2] { a0, a1 }; } variable b { type discrete [3] { b0, b1, b2 }; }"
            "probability (a) { table 0.5, 0.5; } probability (b | a) { table 0.1, 0.2, 0.3, 0.3, 0.6, 0.5; }")
    # 'table' lists the child's states slowest: b0 | a0, b0 | a1, b1 | a0, ...
    assert torch.allclose(read_bif(text).params["b.probs"].detach(), torch.tensor([[0.1, 0.3, 0.6], [0.2, 0.3, 0.5]]))


@pytest.mark.parametrize("text, message", [
    ("variable a { type discrete [2] { x, y }; }", "has no probability table"),
    ("variable a { type discrete [3] { x, y }; } probability (a) { table 0.5, 0.5; }", "declares"),
    ("variable a { type discrete [2] { x, y }; } probability (a) { table 0.5, 0.6; }", "sums to"),
    ("variable a { type discrete [2] { x, y }; } probability (a | b) { (x) 0.5, 0.5; }", "'b'"),
    ("variable a { type discrete [2] { x, y }; } variable b { type discrete [2] { x, y }; }"
     "probability (a) { table 0.5, 0.5; } probability (b | a) { (x) 0.5, 0.5; }", r"no row for \(a=y\)"),
    ("variable a { type continuous; }", "not valid BIF|not supported"),
])
def test_bif_errors_name_the_variable(text, message):
    with pytest.raises(ValueError, match=message):
        read_bif(text)


def test_bif_errors_give_the_line_counted_across_comments():
    text = ("network n {\n}\n/* a comment\n over two lines */\n"
            "variable a { type discrete [2] { x, y }; }\n// note\n"
            "probability (a) {\n  table 0.5, oops;\n}\n")
    with pytest.raises(ValueError, match=r"line 8: probability of 'a': expected numbers"):
        read_bif(text)
    with pytest.raises(ValueError, match=r"line 4: not valid BIF: unexpected '\"'"):
        read_bif('variable a { type discrete [2] { "x\n y", z }; }\n\n  "unterminated')


XMLBIF = """<?xml version="1.0"?>
<BIF VERSION="0.3"><NETWORK><NAME>garden</NAME>
<VARIABLE TYPE="nature"><NAME>rain</NAME><OUTCOME>no</OUTCOME><OUTCOME>yes</OUTCOME></VARIABLE>
<VARIABLE TYPE="nature"><NAME>sprinkler</NAME><OUTCOME>off</OUTCOME><OUTCOME>on</OUTCOME></VARIABLE>
<VARIABLE TYPE="nature"><NAME>wet</NAME><OUTCOME>dry</OUTCOME><OUTCOME>wet</OUTCOME></VARIABLE>
<DEFINITION><FOR>rain</FOR><TABLE>0.8 0.2</TABLE></DEFINITION>
<DEFINITION><FOR>sprinkler</FOR><GIVEN>rain</GIVEN><TABLE>0.6 0.4 0.99 0.01</TABLE></DEFINITION>
<DEFINITION><FOR>wet</FOR><GIVEN>sprinkler</GIVEN><GIVEN>rain</GIVEN>
<TABLE>1.0 0.0 0.2 0.8 0.1 0.9 0.01 0.99</TABLE></DEFINITION>
</NETWORK></BIF>"""


def test_xmlbif_matches_bif():
    a, b = read_xmlbif(XMLBIF), read_bif(SPRINKLER_BIF)
    assert a.nodes == b.nodes and a.labels("wet") == b.labels("wet")
    for key in b.params.keys():
        assert torch.allclose(a.params[key], b.params[key])


def test_xmlbif_refuses_entities():
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            "<BIF><NETWORK><NAME>&b;</NAME></NETWORK></BIF>")
    with pytest.raises(ValueError, match="DOCTYPE"):
        read_xmlbif(bomb)
    external = '<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd"><BIF/>'
    with pytest.raises(ValueError, match="DOCTYPE"):
        read_xmlbif(external)


# -- pgmpy's shipped networks (the `interop` test extra) ------------------------------------------------

PGMPY = importlib.util.find_spec("pgmpy")
SHIPPED = Path(PGMPY.submodule_search_locations[0]) / "utils" / "example_models" if PGMPY else None


@pytest.mark.skipif(PGMPY is None, reason="pgmpy is not installed (pip install causalppl[interop])")
@pytest.mark.parametrize("name", ["asia", "cancer", "sachs", "alarm", "child"])
def test_pgmpy_networks_answer_do_queries_as_pgmpy_does(name):
    from pgmpy.inference import CausalInference
    from pgmpy.readwrite import BIFReader

    path = SHIPPED / f"{name}.bif.gz"
    scm = read_graph(path)
    reference = BIFReader(string=__import__("gzip").decompress(path.read_bytes()).decode()).get_model()
    assert set(scm.nodes) == set(reference.nodes()) and set(scm.graph.edges) == set(reference.edges())
    for cpd in reference.get_cpds():
        assert scm.labels(cpd.variable) == tuple(cpd.state_names[cpd.variable])
    # The root with most descendants, and its last descendant in topological order.
    treatment = max((n for n in scm.nodes if not scm.parents(n)), key=lambda n: len(nx.descendants(scm.graph, n)))
    outcome = [n for n in scm.nodes if n in nx.descendants(scm.graph, treatment)][-1]
    state = scm.labels(treatment)[0]
    exact = CausalInference(reference).query([outcome], do={treatment: state}, show_progress=False)
    n = 20000
    cp.set_rng_seed(4)
    got = cp.causal.interventional(scm, do={treatment: state}, n=n).distribution(outcome)
    for label, p in zip(exact.state_names[outcome], exact.values.tolist()):
        assert abs(got[label] - p) < tolerance(p, n), (outcome, label)


def _mutilated(model, treatment, state):
    """pgmpy's network with ``do(treatment=state)`` done by hand: incoming edges cut, a point-mass table."""
    from pgmpy.factors.discrete import TabularCPD

    cut = model.copy()
    for parent in list(cut.get_parents(treatment)):
        cut.remove_edge(parent, treatment)
    states = model.get_cpds(treatment).state_names[treatment]
    cut.remove_cpds(cut.get_cpds(treatment))
    cut.add_cpds(TabularCPD(treatment, len(states), [[float(s == state)] for s in states],
                            state_names={treatment: states}))
    return cut


@pytest.mark.skipif(PGMPY is None, reason="pgmpy is not installed (pip install causalppl[interop])")
@pytest.mark.parametrize("name", ["survey", "sachs", "child", "insurance", "alarm", "water", "hailfinder",
                                  "win95pts"])
def test_exact_queries_with_do_and_evidence_match_pgmpy_elimination_on_the_cut_network(name):
    """``method="exact"`` against pgmpy's variable elimination on the network cut by hand, to 1e-6."""
    import random

    from pgmpy.inference import VariableElimination
    from pgmpy.readwrite import BIFReader

    path = SHIPPED / f"{name}.bif.gz"
    scm = read_graph(path)
    reference = BIFReader(string=__import__("gzip").decompress(path.read_bytes()).decode()).get_model()
    rng = random.Random(name)
    nodes, checked = sorted(scm.nodes), 0
    while checked < 3:
        target, treatment, seen = rng.sample(nodes, 3)
        state, value = rng.choice(scm.labels(treatment)), rng.choice(scm.labels(seen))
        cut = _mutilated(reference, treatment, state)
        if VariableElimination(cut).query([seen], show_progress=False).get_value(**{seen: value}) < 1e-9:
            continue  # evidence impossible after the cut: both refuse it
        expected = VariableElimination(cut).query([target], evidence={seen: value}, show_progress=False)
        got = cp.causal.interventional(scm, do={treatment: state}, evidence={seen: value},
                                       method="exact").distribution(target)
        for label, p in zip(expected.state_names[target], expected.values.tolist()):
            assert got.probs[label] == pytest.approx(p, abs=1e-6), (target, treatment, seen, label)
        checked += 1
