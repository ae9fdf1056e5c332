"""Interventions beyond do(x=v): shifts, stochastic interventions, mechanism replacement.

Every number is a closed form. The running example is the shipped confounded SCM,
z ~ N(0, 1); x = z + e_x; y = 2x + 3z + e_y (all noises N(0, 1)), so
y = 5z + 2e_x + e_y naturally: E[y] = 0, Var(y) = 30.
"""

import math
import shutil

import pytest
import torch

import causalppl as cp
from causalppl.causal import ate, interventional
from causalppl.causal.exact import ExactInferenceError
from causalppl.graph.intervention import Replace, Shift, Stochastic

N = 40_000


@pytest.fixture
def confounded():
    scm = cp.graphs.load("confounded")
    assert scm.mechanism("y").text == "Normal(2*x + 3*z, 1.0)"  # the closed forms below assume it
    return scm


def mean_var(values):
    values = values.double()
    return float(values.mean()), float(values.var())


def close(value, expected, sd, n=N, k=5):
    """Within ``k`` Monte Carlo standard errors of a mean of ``n`` draws of standard deviation ``sd``."""
    return abs(value - expected) < k * sd / math.sqrt(n)


# -- shift and functional interventions ---------------------------------------------------


def test_a_shift_of_x_by_one_raises_the_mean_of_y_by_two(confounded, one_thread_seeded):
    effect = ate(confounded, "x", "y", treated=lambda x: x + 1, control=None, n=4000)
    assert effect.ate == pytest.approx(2.0, abs=1e-5)  # shared noise: every row moves by exactly 2
    assert effect.control is None and "natural x" in str(effect)
    shifted = confounded.do(x=lambda x: x + 1)
    mean, var = mean_var(shifted.sample(N)["y"])
    assert close(mean, 2.0, math.sqrt(30))
    assert var == pytest.approx(30, rel=0.05)  # a shift moves the mean, not the spread
    assert shifted.parents("x") == ("z",)  # the shifted node keeps its parents and its noise
    assert isinstance(shifted.soft_interventions["x"], Shift)


def test_shift_by_expression_and_by_interventional_query(confounded, one_thread_seeded):
    by_text = confounded.do(x="x + 1")
    assert by_text.soft_interventions["x"].text == "x + 1"
    result = interventional(confounded, do={"x": "x + 1"}, n=N)
    assert close(result.mean("y"), 2.0, math.sqrt(30))
    assert close(result.mean("x"), 1.0, math.sqrt(2))
    assert "do(x=x + 1)" in str(result)
    assert ate(confounded, "x", "y", treated="x + 1", control=None, n=2000).ate == pytest.approx(2.0, abs=1e-5)


def test_a_functional_intervention_may_read_other_nodes(confounded, one_thread_seeded):
    # x := x - z = e_x, so y = 2 e_x + 3 z + e_y: E = 0, Var = 4 + 9 + 1.
    scm = confounded.do(x=lambda x, z: x - z)
    assert scm.parents("x") == ("z",)
    draws = scm.sample(N)
    assert torch.allclose(draws["x"].var(), torch.tensor(1.0), rtol=0.05)
    mean, var = mean_var(draws["y"])
    assert close(mean, 0.0, math.sqrt(14)) and var == pytest.approx(14, rel=0.05)
    # A new parent: y := y + x in an SCM where x does not cause y adds the edge x -> y.
    chain = cp.SCM().add("x", "Normal(0, 1)").add("y", "Normal(0, 1)").do(y="y + 2*x")
    assert chain.parents("y") == ("x",) and ("x", "y") in chain.graph.edges
    assert mean_var(chain.sample(N)["y"])[1] == pytest.approx(5, rel=0.05)


def test_functional_interventions_refuse_what_they_cannot_mean(confounded):
    with pytest.raises(TypeError, match="node 'x'.*natural value"):
        confounded.do(x=lambda: 1.0)
    with pytest.raises(TypeError, match="node 'x'.*must name one of them 'x'"):
        confounded.do(x=lambda a, b: a + b)
    with pytest.raises(ValueError, match="node 'z'.*cycle"):
        confounded.do(z=lambda z, y: z + y)  # y is downstream of z
    with pytest.raises(ValueError, match="node 'x'.*'w'.*not a node"):
        confounded.do(x="x + w")
    with pytest.raises(ValueError, match="node 'x' has no labels, so 'abc'"):
        confounded.do(x="abc")  # a bare word is still an (unknown) label
    assert confounded.do(x="2 * pi").interventions["x"] == pytest.approx(2 * math.pi)  # a constant is a value


# -- stochastic interventions ---------------------------------------------------------------


@pytest.mark.parametrize("law", [cp.dist.Bernoulli(0.3), "Bernoulli(0.3)"])
def test_a_stochastic_intervention_draws_afresh_cut_from_the_parents(confounded, law, one_thread_seeded):
    # x ~ Bernoulli(0.3) independent of z: E[y] = 0.6, Var(y) = 4 * 0.21 + 9 + 1.
    scm = confounded.do(x=law)
    assert scm.parents("x") == () and ("z", "x") not in scm.graph.edges
    assert isinstance(scm.soft_interventions["x"], Stochastic)
    draws = scm.sample(N)
    assert close(float(draws["x"].mean()), 0.3, math.sqrt(0.21))
    assert abs(float(torch.corrcoef(torch.stack([draws["x"], draws["z"]]))[0, 1])) < 5 / math.sqrt(N)
    mean, var = mean_var(draws["y"])
    assert close(mean, 0.6, math.sqrt(10.84)) and var == pytest.approx(10.84, rel=0.05)


def test_a_stochastic_policy_may_read_covariates(confounded, one_thread_seeded):
    # x ~ N(z, 2), drawn afresh: y = 5 z + 4 eta + e_y: Var = 25 + 16 + 1.
    scm = confounded.do(x="Normal(z, 2.0)")
    assert scm.parents("x") == ("z",)
    mean, var = mean_var(scm.sample(N)["y"])
    assert close(mean, 0.0, math.sqrt(42)) and var == pytest.approx(42, rel=0.05)
    with pytest.raises(ValueError, match="node 'x'.*cannot read 'x' itself"):
        confounded.do(x="Normal(x, 1.0)")


def test_stochastic_interventions_are_exact_on_discrete_scms(one_thread_seeded):
    drug = cp.SCM().add("t", "Bernoulli(0.5)").add("y", "Bernoulli(0.2 + 0.5*t)")
    result = interventional(drug, do={"t": "Bernoulli(0.8)"}, method="exact")
    assert result.mean("y") == pytest.approx(0.2 + 0.5 * 0.8)
    effect = ate(drug, "t", "y", treated=cp.dist.Bernoulli(0.8), control=cp.dist.Bernoulli(0.2))
    assert effect.ate == pytest.approx(0.5 * 0.6) and effect.stderr == 0.0
    # A shift of a discrete node has no factor: exact inference says so, "auto" samples.
    with pytest.raises(ExactInferenceError, match="'t'"):
        interventional(drug, do={"t": "1 - t"}, method="exact")
    flipped = interventional(drug, do={"t": "1 - t"}, n=N)
    assert close(flipped.mean("y"), 0.45, 0.5)


def test_effect_of_two_stochastic_arms_shares_the_noise(confounded, one_thread_seeded):
    effect = ate(confounded, "x", "y", treated=cp.dist.Normal(1.0, 1.0), control=cp.dist.Normal(0.0, 1.0), n=4000)
    assert effect.ate == pytest.approx(2.0, abs=1e-5)


# -- mechanism replacement --------------------------------------------------------------------


def test_replacing_a_mechanism(confounded, one_thread_seeded):
    # x ~ N(2z, 0.5): y = 7z + eta + e_y: E = 0, Var = 49 + 0.25 * 4 + 1; Cov(x, z) = 2.
    scm = confounded.replace(x="Normal(2*z, 0.5)")
    assert isinstance(scm.soft_interventions["x"], Replace) and scm.replaced["x"].text == "Normal(2*z, 0.5)"
    assert scm.mechanism("x").text == "Normal(2*z, 0.5)" and scm.parents("x") == ("z",)
    draws = scm.sample(N)
    mean, var = mean_var(draws["y"])
    assert close(mean, 0.0, math.sqrt(51)) and var == pytest.approx(51, rel=0.05)
    assert float(torch.cov(torch.stack([draws["x"], draws["z"]]))[0, 1]) == pytest.approx(2.0, rel=0.05)
    # The original is untouched, and do() still applies on top.
    assert confounded.mechanism("x").text == "Normal(z, 1.0)"
    assert scm.do(x=1.0).parents("x") == ()


def test_replacement_may_add_parents_that_exist_and_keep_the_graph_acyclic(confounded, one_thread_seeded):
    chain = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(a, 1)").add("c", "Normal(0, 1)")
    moved = chain.replace(c="Normal(3*b, 1)")
    assert moved.parents("c") == ("b",)
    assert mean_var(moved.sample(N)["c"])[1] == pytest.approx(9 * 2 + 1, rel=0.05)
    with pytest.raises(ValueError, match="node 'a'.*cycle"):
        chain.replace(a="Normal(b, 1)")
    with pytest.raises(ValueError, match="node 'c'.*'w'.*not a node"):
        chain.replace(c="Normal(w, 1)")
    with pytest.raises(ValueError, match="node 'c'.*itself"):
        chain.replace(c="Normal(c, 1)")
    with pytest.raises(KeyError, match="'d'"):
        chain.replace(d="Normal(0, 1)")
    assert len(chain.graph.edges) == 1  # failed surgery leaves the SCM as it was


def test_a_new_intervention_replaces_the_old_one(confounded):
    scm = confounded.do(x="x + 1").do(x=2.0)
    assert scm.interventions == {"x": torch.tensor(2.0)} and scm.soft_interventions == {}
    again = scm.do(x="Bernoulli(0.5)")
    assert again.interventions == {} and again.soft_interventions["x"].kind == "stochastic"
    with pytest.raises(ValueError, match="node 'x' is intervened on"):
        again.condition(x=1.0)


# -- on learned SCMs, batched, on the device ------------------------------------------------


def test_interventions_on_a_learned_scm(one_thread_seeded):
    truth = cp.graphs.load("confounded")
    data = truth.sample(4000)
    learned = cp.SCM.from_graph([("z", "x"), ("z", "y"), ("x", "y")], data)
    learned.fit(data, progress=False)
    slope = learned.mechanism("y").fn.coefficients(learned.params)["weights"]["x"]
    assert slope == pytest.approx(2.0, abs=0.1)
    effect = ate(learned, "x", "y", treated=lambda x: x + 1, control=None, n=2000)
    assert effect.ate == pytest.approx(slope, abs=1e-4)  # exactly the fitted slope, row by row
    stochastic = interventional(learned, do={"x": cp.dist.Normal(1.0, 0.1)}, n=8000)
    assert stochastic.mean("y") == pytest.approx(slope, abs=0.25)
    replaced = learned.replace(x="Normal(0.0, 1.0)")
    assert replaced.parents("x") == () and replaced.sample(10)["y"].shape == (10,)


def test_a_shift_sees_every_row_at_once(confounded):
    calls = []

    def shift(x):
        calls.append(tuple(x.shape))
        return x + 1

    confounded.do(x=shift).sample(500)
    assert calls == [(500,)]  # one batched call for all rows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_interventions_on_cuda(one_thread_seeded):
    with torch.device("cuda"):
        scm = cp.graphs.load("confounded")
        for do in ({"x": lambda x: x + 1}, {"x": "x + 1"}, {"x": cp.dist.Bernoulli(0.3)}):
            draws = scm.do(**do).sample(1000)
            assert draws["y"].device.type == "cuda"
        assert scm.replace(x="Normal(2*z, 0.5)").sample(100)["x"].device.type == "cuda"
        effect = ate(scm, "x", "y", treated=lambda x: x + 1, control=None, n=1000)
        assert effect.ate == pytest.approx(2.0, abs=1e-4)
        world = scm.counterfactual(evidence={"x": 2.0, "y": 9.0}, do={"x": "x + 1"}, n=200)
        assert world["y"].device.type == "cuda" and torch.allclose(world["y"], torch.full_like(world["y"], 11.0))


# -- counterfactuals ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["abduction", "worlds"])
def test_a_counterfactual_shift_applies_to_the_factual_natural_value(confounded, engine, one_thread_seeded):
    # Given x = 2, y = 9: had x been x + 1 (with the same noise), y would have been 9 + 2 in every draw.
    world = confounded.counterfactual(evidence={"x": 2.0, "y": 9.0}, do={"x": lambda x: x + 1}, n=500,
                                      engine=engine)
    assert torch.allclose(world["x"], torch.full((500,), 3.0), atol=1e-5)
    assert torch.allclose(world["y"], torch.full((500,), 11.0), atol=1e-4)
    assert torch.equal(world["z"], world.factual["z"])


@pytest.mark.parametrize("engine", ["abduction", "worlds"])
def test_a_counterfactual_stochastic_intervention_is_drawn_afresh(confounded, engine, one_thread_seeded):
    # y_cf = 2 x' + (y - 2x) = 2 x' + 5 with x' ~ N(1, 1) independent of the evidence: mean 7, sd 2.
    n = 4000
    world = confounded.counterfactual(evidence={"x": 2.0, "y": 9.0}, do={"x": "Normal(1.0, 1.0)"}, n=n,
                                      engine=engine)
    assert world.mean("y") == pytest.approx(7.0, abs=0.15)
    assert float(world["y"].std()) == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize("engine", ["abduction", "worlds"])
def test_a_counterfactual_replacement_keeps_the_nodes_noise(confounded, engine, one_thread_seeded):
    # Full evidence z=1, x=2, y=9: e_x = 1. Had x's mechanism been Normal(-z, 2): x' = -1 + 2 * 1 = 1,
    # y' = 2 * 1 + 3 + (9 - 4 - 3) = 7.
    world = confounded.counterfactual(evidence={"z": 1.0, "x": 2.0, "y": 9.0}, do={},
                                      replace={"x": "Normal(-z, 2.0)"}, n=50, engine=engine)
    assert torch.allclose(world["x"], torch.ones(50), atol=1e-5)
    assert torch.allclose(world["y"], torch.full((50,), 7.0), atol=1e-4)
    # Across families the noise travels as its uniform: Phi(e_x) = Phi(1) is P(Exponential(1) <= x').
    other = confounded.counterfactual(evidence={"z": 1.0, "x": 2.0, "y": 9.0}, do={},
                                      replace={"x": "Exponential(1.0)"}, n=10, engine=engine)
    expected = -math.log(1 - 0.5 * (1 + math.erf(1 / math.sqrt(2))))
    assert torch.allclose(other["x"], torch.full((10,), expected), atol=1e-4)


# -- drawing, DOT, saving, the command line ----------------------------------------------------


SURGERIES = [
    ("shift", lambda scm: scm.do(x="x + 1"), 'shift="x + 1"', "x := x + 1"),
    ("stochastic", lambda scm: scm.do(x="Bernoulli(0.3)"), 'stochastic="Bernoulli(0.3)"', "x ~ Bernoulli(0.3)"),
    ("stochastic", lambda scm: scm.do(x=cp.dist.Bernoulli(0.3)), 'stochastic="Bernoulli(probs=0.3)"',
     "x ~ Bernoulli(probs=0.3)"),
    ("replace", lambda scm: scm.replace(x="Normal(2*z, 0.5)"), 'replaced="Normal(2*z, 0.5)"',
     "x ~ Normal(2*z, 0.5)"),
]


@pytest.mark.parametrize("kind, surgery, attribute, label", SURGERIES)
def test_each_intervention_round_trips_through_dot(confounded, kind, surgery, attribute, label):
    scm = surgery(confounded)
    text = scm.to_dot()
    assert attribute in text and f'label="{label}"' in text
    assert 'mechanism="Normal(z, 1.0)"' in text  # the node's own mechanism stays
    back = cp.read_dot(text)
    found = back.soft_interventions["x"]
    assert found.kind == kind and found.describe() == scm.soft_interventions["x"].describe()
    assert set(back.graph.edges) == set(scm.graph.edges)
    cp.set_rng_seed(7)
    first = scm.sample(200)
    cp.set_rng_seed(7)
    second = back.sample(200)
    for node in scm.nodes:
        assert torch.allclose(first[node], second[node], atol=1e-6), node


def test_each_intervention_is_drawn_in_its_own_style_with_a_legend(confounded):
    scm = confounded.replace(z="Normal(0, 2)").do(x="x + 1", y="Bernoulli(0.5)")
    text = scm.to_dot(legend=True)
    styles = {}
    for line in text.splitlines():
        if line.startswith(("z [", "x [", "y [")):
            styles[line[0]] = (line.split("fillcolor=")[1].split(",")[0], line.split("style=")[1].rstrip("];"))
    assert len({fill for fill, _ in styles.values()}) == 3  # three colours
    assert styles["x"][1] == '"filled,rounded"' and styles["y"][1] == '"filled,dashed"'
    for entry in ("legend_shift", "legend_stochastic", "legend_replaced"):
        assert entry in text
    assert "legend_shift" not in confounded.do(x=1.0).to_dot(legend=True)  # only what the drawing shows
    assert cp.read_dot(text).soft_interventions.keys() == {"x", "y", "z"}


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_drawings_show_the_interventions(confounded, tmp_path):
    svg = confounded.do(x="x + 1").draw(tmp_path / "shift.svg").read_text()
    assert "x := x + 1" in svg and "shift: a function of" in svg


def test_a_callable_intervention_is_marked_and_refused_on_read(confounded):
    text = confounded.do(x=lambda x: x + 1).to_dot()
    assert "callable_intervention=shift" in text and "cannot be read back" in text
    with pytest.raises(ValueError, match="node 'x' had a Python callable shift"):
        cp.read_dot(text)


def test_interventions_are_saved_and_loaded(confounded, tmp_path):
    scm = confounded.replace(z="Normal(0, 2)").do(x="x + 1", y=cp.dist.Bernoulli(0.5))
    scm.save(tmp_path / "m.cpm")
    back = cp.load(tmp_path / "m.cpm")
    assert {k: v.describe() for k, v in back.soft_interventions.items()} == \
        {"z": "Normal(0, 2)", "x": "x + 1", "y": "Bernoulli(probs=0.5)"}
    with pytest.raises(ValueError, match="node 'x'.*callable"):
        confounded.do(x=lambda x: x).save(tmp_path / "no.cpm")


def test_the_command_line_parses_interventions(capsys):
    from tests.test_cli import mean_of, run

    status, out, err = run(capsys, "query", "confounded", "--target", "y", "--do", "x=x+1", "-n", 20000)
    assert status == 0, err
    mean, stderr = mean_of(out)
    assert abs(mean - 2.0) < 5 * stderr and "do(x=x+1)" in out
    status, out, err = run(capsys, "query", "confounded", "--target", "x", "--do", "x=Bernoulli(0.3)", "-n", 20000)
    assert status == 0, err
    mean, stderr = mean_of(out)
    assert abs(mean - 0.3) < 5 * stderr
    status, out, err = run(capsys, "query", "confounded", "--target", "y", "--replace", "x=Normal(0, 0.5)")
    assert status == 0, err
    status, out, err = run(capsys, "ate", "confounded", "--treatment", "x", "--outcome", "y", "--treated", "x+1",
                           "--control", "natural")
    assert status == 0 and "ATE of x on y (do(x=x+1) vs natural x): 2 " in out
    status, out, err = run(capsys, "query", "confounded", "--target", "y", "--do", "x=x+w")
    assert status == 2 and "--do x=x+w" in err and "'w'" in err and len(err.strip().splitlines()) == 1
    status, out, err = run(capsys, "query", "confounded", "--target", "y", "--do", "x=Normal(x, 1)")
    assert status == 2 and "node 'x'" in err
    status, out, err = run(capsys, "query", "confounded", "--target", "y", "--replace", "z=Normal(y, 1)")
    assert status == 2 and "node 'z'" in err and "cycle" in err
    status, out, err = run(capsys, "sample", "confounded", "-n", 5, "--do", "x=__import__('os')")
    assert status == 2 and "is not an allowed function" in err  # parsed, never evaluated


def test_mediation_splits_a_shifts_effect(one_thread_seeded):
    # y = 3m + x + e, m = 2x + e': a shift of x by 1 moves y by 1 directly and by 3 * 2 through m.
    med = cp.SCM().add("x", "Normal(0, 1)").add("m", "Normal(2*x, 1)").add("y", "Normal(3*m + x, 1)")
    effect = cp.causal.mediation(med, "x", "m", "y", treated=lambda x: x + 1, control=None, n=2000)
    assert effect.nde == pytest.approx(1.0, abs=1e-4) and effect.nie == pytest.approx(6.0, abs=1e-4)
    stochastic = cp.causal.mediation(med, "x", "m", "y", treated="Normal(1.0, 1.0)", control="Normal(0.0, 1.0)",
                                     n=20000)
    assert stochastic.nde == pytest.approx(1.0, abs=0.1) and stochastic.nie == pytest.approx(6.0, abs=0.2)
