"""Issue 9 and 10 leftovers: names that expressions would misread, supports known before a run,
model inputs and draw counts, template-compiled expressions, and the XMLBIF and fitted-BIF writers.

Each bad input is a test of its own, asserting that the message names the culprit.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import causalppl as cp
from causalppl.graph.expr import Expression, _compile_text

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "causalppl.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


# -- names an expression would read as a constant or a function ------------------------------

CLASHES = ["e", "pi", "exp", "Normal", "sigmoid", "where"]


@pytest.mark.parametrize("name", CLASHES)
def test_a_dot_node_with_a_clashing_name_is_refused_as_add_refuses_it(name):
    with pytest.raises(ValueError) as added:
        cp.SCM().add(name, "Normal(0, 1)")
    text = f'digraph {{ "{name}" [mechanism="Normal(0, 1)"]; y [mechanism="Normal(1, 1)"]; }}'
    with pytest.raises(ValueError) as read:
        cp.read_dot(text)
    assert str(read.value) == f"DOT text: {added.value}"
    assert f"'{name}' is refused" in str(read.value)


@pytest.mark.parametrize("text, where", [
    ("digraph { pi -> y }", "DOT text"),
    ('graph [ directed 1 node [ id 0 label "exp" ] node [ id 1 label "y" ] edge [ source 0 target 1 ] ]',
     "GML text"),
    ("dag { e -> y }", "dagitty text"),
])
def test_read_graph_refuses_clashing_names_in_every_format(text, where):
    with pytest.raises(ValueError, match=rf"^{where}: node name '(pi|exp|e)' is refused: in expressions"):
        cp.read_graph(text)


def test_the_cli_refuses_a_clashing_dot_name_on_one_line(tmp_path):
    path = tmp_path / "e.dot"
    path.write_text('digraph { e [mechanism="Normal(0, 1)"]; y [mechanism="Normal(e, 1)"]; e -> y; }')
    for command in (["sample", path], ["identify", path, "--treatment", "e", "--outcome", "y"]):
        done = cli(*command, cwd=tmp_path)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip().count("\n") == 0 and "node name 'e' is refused" in done.stderr


def test_a_fullwidth_dot_name_is_refused():
    with pytest.raises(ValueError, match="Unicode normalises it to 'y'"):
        cp.read_dot('digraph { "\uff59" -> x }')


# -- supports known before the model runs -----------------------------------------------------


def rain():
    return (cp.SCM().add("rain", "Bernoulli(0.3)").add("wet", "Bernoulli(sigmoid(2*rain - 1))")
            .add("k", "Poisson(exp(wet))").add("c", "Categorical(probs=[0.2, 0.3, 0.5])")
            .add("g", "Gamma(2.0, 1.0)").add("y", "Normal(c + g, 1)"))


@pytest.mark.parametrize("what", ["do", "condition"])
@pytest.mark.parametrize("node, value, support", [
    ("rain", 2, "Bernoulli mechanism (0 or 1)"),
    ("wet", 0.5, "Bernoulli mechanism (0 or 1)"),  # a Bernoulli with parents: the family says 0 or 1
    ("k", -1, "Poisson mechanism (integers >= 0)"),
    ("k", 2.5, "Poisson mechanism (integers >= 0)"),
    ("c", 3, "Categorical mechanism (integers 0..2)"),
])
def test_discrete_values_outside_the_support_are_refused(what, node, value, support):
    with pytest.raises(ValueError) as err:
        getattr(rain(), what)(**{node: value})
    assert str(err.value) == (f"node '{node}': {what} value {float(value)!r} is outside the support of its "
                              f"{support}")


def test_a_list_value_names_the_index_outside_the_support():
    with pytest.raises(ValueError, match=r"node 'rain': do value 2.0 \(at index 2\) is outside"):
        rain().do(rain=[0, 1, 2])


def test_continuous_supports_bind_observations_but_not_interventions():
    with pytest.raises(ValueError, match=r"node 'g': condition value -1.0 is outside .* Gamma .*numbers >= 0"):
        rain().condition(g=-1.0)
    assert float(rain().do(g=-1.0).interventions["g"]) == -1.0  # do(dose=0) on a positive dose is a choice
    assert float(rain().do(y=7.5).interventions["y"]) == 7.5


def test_codes_inside_the_support_pass():
    scm = rain().do(rain=1, c=2).condition(k=3)
    assert scm.interventions["c"].item() == 2.0 and scm.observed["k"].item() == 3.0


def test_a_delta_node_is_left_to_the_run():
    scm = cp.SCM().add("z", "Normal(0, 1)").add("d", "Delta(z + 1)")
    assert float(scm.do(d=7.0).interventions["d"]) == 7.0


def test_a_learned_logistic_node_refuses_a_non_binary_do():
    data = {"x": torch.randn(60), "t": (torch.rand(60) < 0.5).float()}
    scm = cp.SCM.from_graph([("x", "t")], data=data)
    with pytest.raises(ValueError, match=r"node 't': do value 2.0 is outside the support of its Logistic"):
        scm.do(t=2)


# -- model inputs and draw counts --------------------------------------------------------------


@pytest.mark.parametrize("value, message", [
    (float("nan"), "input 'guess': value nan is not a number (NaN)"),
    (float("inf"), "input 'guess': value inf is infinite"),
    ("eight", "input 'guess': value 'eight' is a string"),
    (None, "input 'guess': value None (None) is not a number"),
    ({"a": 1}, "input 'guess': value {'a': 1} (dict) is not a number"),
    (1 + 2j, "input 'guess': value (1+2j) is complex"),
])
def test_model_inputs_are_checked_and_named(value, message):
    with pytest.raises(ValueError) as err:
        cp.graphs.load("scale").sample(3, guess=value)
    assert str(err.value).startswith(message)


def test_a_good_input_still_works():
    assert cp.graphs.load("scale").sample(4, guess=8.5)["weight"].shape == (4,)


@pytest.mark.parametrize("n", [0, -1, 2.5, "10", True])
def test_draw_counts_are_whole_numbers(n):
    scm = cp.SCM().add("x", "Normal(0, 1)").add("y", "Normal(x, 1)")
    for call in (lambda: scm.sample(n), lambda: scm.condition(y=1.0).sample(n),
                 lambda: cp.causal.interventional(scm, do={"x": 1.0}, n=n),
                 lambda: cp.causal.ate(scm, "x", "y", n=n)):
        with pytest.raises(ValueError, match=rf"^n must be a whole number >= 1, got {n!r}"):
            call()


def test_numpy_counts_are_whole_numbers():
    assert len(cp.SCM().add("x", "Normal(0, 1)").sample(np.int64(3))["x"]) == 3


# -- template-compiled expressions ------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Normal(0.5*x12 + x7, 1)", "Normal(loc=loc, scale=1e-3*s + 1)", "Bernoulli(probs=sigmoid(0.3*z - 1))",
    "where(rain > 0.5, 0.9, 0.1)", "Normal(x*x + y**2 - x, 1.5e+2)", "Normal(a <= b, 1)",
    "Categorical(probs=tensor([0.2, p, 0.5]))", "Normal(exp(x) + e + pi, 1)", "Normal(0x1f + x, 1)",
])
def test_a_template_compiles_to_what_the_text_means(text):
    expr = Expression(text)
    assert expr._slots is not None  # took the template path
    evaluate, names = _compile_text(text)
    assert expr.names == names
    env = {name: torch.tensor(0.3 + 0.1 * i) for i, name in enumerate(names)}
    got, want = expr(**env), evaluate(env)
    if isinstance(want, torch.Tensor):
        assert torch.equal(got, want)
    else:
        assert type(got) is type(want)
        tensors = {key: value for key, value in vars(want).items() if isinstance(value, torch.Tensor)}
        assert tensors and all(torch.equal(vars(got)[key], value) for key, value in tensors.items())


def test_templates_are_shared_but_names_are_not():
    a, b = Expression("Normal(2*u, 1)"), Expression("Normal(2*v, 1)")
    assert a._evaluate is b._evaluate and (a.names, b.names) == (("u",), ("v",))
    assert float(a(u=torch.tensor(1.0)).mean) == 2.0 and float(b(v=torch.tensor(3.0)).mean) == 6.0


def test_errors_of_a_templated_expression_show_its_own_text():
    expr = Expression("Normal(height, -1)")
    with pytest.raises(cp.graph.ExpressionError, match=r"^expression 'Normal\(height, -1\)'.*scale"):
        expr(height=torch.tensor(1.0))
    with pytest.raises(cp.graph.ExpressionError, match="no value given for 'height'"):
        Expression("Normal(height, 1)")()


@pytest.mark.parametrize("text, message", [
    ("Normal(_x, 1)", "names may not start with '_'"),
    ("Normal(_v0, 1)", "names may not start with '_'"),  # the template's own slot name
    ("Normal(x.real, 1)", "attribute access"),
    ("Normal(x, 1) if x else 2", "if-expressions"),
    ("foo(x)", "'foo' is not an allowed function"),
    ("x(1)", "'x' is not an allowed function"),
])
def test_refusals_come_from_the_text_not_the_template(text, message):
    with pytest.raises(cp.graph.ExpressionError) as err:
        Expression(text)
    assert message in str(err.value) and repr(text) in str(err.value)


# -- writers: XMLBIF, and BIF of fitted and Bayesian tables ------------------------------------


def survey():
    rng = np.random.default_rng(0)
    a = rng.choice(["lo", "mid", "hi"], size=400, p=[0.2, 0.5, 0.3])
    b = np.where(a == "hi", rng.random(400) < 0.8, rng.random(400) < 0.3)
    return pd.DataFrame({"a": pd.Categorical(a, categories=["lo", "mid", "hi"]), "b": b})


def test_xmlbif_round_trip_keeps_states_and_tables():
    scm = cp.graphs.load("sprinkler")
    text = scm.to_xmlbif()
    assert text.startswith('<?xml version="1.0"') and cp.graph.formats.detect_format(text) == "xmlbif"
    back = cp.read_graph(text)
    assert back.nodes == scm.nodes and all(back.parents(n) == scm.parents(n) for n in scm.nodes)
    assert back.to_bif() == cp.read_graph(scm.to_bif()).to_bif()
    for node in scm.nodes:
        assert back.labels(node) == (scm.labels(node) or ("0", "1"))


def test_xmlbif_escapes_state_names():
    scm = cp.SCM().add("t", "Bernoulli(0.25)", labels=("a<b", "c&d"))
    text = scm.to_xmlbif()
    assert "<OUTCOME>a&lt;b</OUTCOME>" in text
    assert cp.read_graph(text).labels("t") == ("a<b", "c&d")


def test_xmlbif_refuses_a_continuous_node():
    with pytest.raises(ValueError, match="to_xmlbif: node 'x' is not discrete"):
        cp.SCM().add("x", "Normal(0, 1)").to_xmlbif()


def test_a_fitted_categorical_scm_writes_its_fitted_tables():
    data = survey()
    scm = cp.SCM.from_graph([("a", "b")], data=data)
    scm.fit(data, progress=False)
    back = cp.read_graph(scm.to_bif())
    counts = data["a"].value_counts(normalize=True)[["lo", "mid", "hi"]].to_numpy()
    assert np.allclose(back.params["a.probs"].detach().numpy(), counts, atol=1e-4)
    assert back.labels("a") == ("lo", "mid", "hi")
    assert torch.allclose(cp.read_graph(scm.to_xmlbif()).params["b.probs"], back.params["b.probs"], atol=1e-6)


def test_a_bayesian_scm_writes_the_posterior_mean_of_its_tables():
    data = survey()
    scm = cp.SCM.from_graph([("a", "b")], data=data, bayesian=True)
    with pytest.raises(ValueError, match="to_bif: node 'a' has Bayesian weights .* no posterior draws; fit"):
        scm.to_bif()
    scm.fit(data, progress=False, seed=0)
    table = cp.read_graph(scm.to_bif()).params["a.probs"].detach()
    draws = scm._state.posterior["a.probs"]
    assert torch.allclose(table, draws.mean(0).float(), atol=1e-5)
    counts = torch.tensor(data["a"].value_counts(normalize=True)[["lo", "mid", "hi"]].to_numpy(), dtype=table.dtype)
    assert torch.allclose(table, counts, atol=0.03)


PGMPY = importlib.util.find_spec("pgmpy")


@pytest.mark.skipif(PGMPY is None, reason="pgmpy is not installed (pip install causalppl[interop])")
@pytest.mark.parametrize("name", ["asia", "alarm"])
def test_pgmpy_reads_our_xmlbif_and_bif_as_its_own_network(name):
    import gzip

    from pgmpy.readwrite import BIFReader, XMLBIFReader

    path = Path(PGMPY.submodule_search_locations[0]) / "utils" / "example_models" / f"{name}.bif.gz"
    scm = cp.read_graph(path)
    reference = BIFReader(string=gzip.decompress(path.read_bytes()).decode()).get_model()
    for model in (XMLBIFReader(string=scm.to_xmlbif()).get_model(), BIFReader(string=scm.to_bif()).get_model()):
        for cpd in reference.get_cpds():
            mine = model.get_cpds(cpd.variable).copy()
            if cpd.get_evidence():
                mine.reorder_parents(cpd.get_evidence()[::-1])
            assert mine.state_names[cpd.variable] == cpd.state_names[cpd.variable]
            assert np.abs(mine.get_values() - cpd.get_values()).max() < 1e-6, cpd.variable


def test_fit_batch_size_zero_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "d.csv").write_text("x,y\n1,2\n2,3\n3,5\n")
    (tmp_path / "g.dot").write_text("digraph { x -> y }")
    done = cli("fit", "g.dot", "d.csv", "-o", "m.cpm", "--batch-size", "0", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.strip() == "causalppl fit: error: --batch-size must be a whole " \
                                                            "number >= 1, got 0"
    assert not (tmp_path / "m.cpm").exists()
