"""Tests of causalppl.causal.exact: variable elimination against brute-force enumeration.

The enumerator below is independent of the code under test: it scores every
joint assignment of the free nodes with the lowered model's own log density
(``SCM.log_prob``, batched over assignments), keeps the rows that agree with
the evidence, and sums. Exact answers must agree with it to 1e-6.
"""

import itertools
import math

import pytest
import torch

import causalppl as cp
from causalppl.causal import CategoricalTable, association, ate, exact, interventional
from causalppl.causal.exact import ExactDistribution, ExactInferenceError, ExactResult

TOLERANCE = 1e-6


def enumerate_marginals(scm, states, do=None, evidence=None):
    """Node -> ``P(node = code | do, evidence)`` (a list over codes) by enumerating the joint."""
    query = scm.do(**do) if do else scm
    free = [node for node in query.nodes if node not in query.interventions]
    rows = torch.tensor(list(itertools.product(*(range(states[node]) for node in free))), dtype=torch.float64)
    values = {node: rows[:, i].to(torch.get_default_dtype()) for i, node in enumerate(free)}
    joint = query.log_prob(values).detach().double().exp()
    for node, value in (evidence or {}).items():
        joint = joint * (values[node] == float(query.encode(node, value))).double()
    joint = joint / joint.sum()
    return {node: [float(joint[values[node] == k].sum()) for k in range(states[node])] for node in free}


def assert_matches_enumeration(scm, states, do=None, evidence=None):
    result = interventional(scm, do=do, evidence=evidence, method="exact")
    truth = enumerate_marginals(scm, states, do, evidence)
    for node, probs in truth.items():
        got = result.marginal(node).tolist()
        assert got == pytest.approx(probs, abs=TOLERANCE), (node, do, evidence)
        assert result.mean(node) == pytest.approx(sum(k * p for k, p in enumerate(probs)), abs=TOLERANCE)
    return result


def binary(scm):
    return dict.fromkeys(scm.nodes, 2)


# -- the shipped discrete graphs --------------------------------------------------------------

QUERIES = [
    ({}, {}),
    ({"sprinkler": 1}, {}),
    ({}, {"sprinkler": 1}),
    ({}, {"wet": 1}),
    ({"sprinkler": 0}, {"wet": 1}),
    ({"rain": 1}, {"sprinkler": 1, "wet": 1}),
    ({"cloudy": 1}, {"wet": 0}),
]


@pytest.mark.parametrize(("do", "evidence"), QUERIES)
def test_sprinkler_matches_enumeration(do, evidence):
    scm = cp.graphs.load("sprinkler")
    assert_matches_enumeration(scm, binary(scm), do, evidence)


def test_sprinkler_known_answers():
    scm = cp.graphs.load("sprinkler")
    assert interventional(scm, do={"sprinkler": 1}).mean("wet") == pytest.approx(0.945, abs=TOLERANCE)
    assert interventional(scm, evidence={"sprinkler": 1}).mean("wet") == pytest.approx(0.927, abs=TOLERANCE)


@pytest.mark.parametrize(("do", "evidence"), [
    ({}, {}), ({"treatment": 1}, {}), ({}, {"treatment": 1}), ({"treatment": 0}, {"large": 1}),
    ({}, {"recovery": 1}), ({"large": 0}, {"recovery": 0}),
])
def test_kidney_stones_matches_enumeration(do, evidence):
    scm = cp.graphs.load("kidney_stones")
    assert_matches_enumeration(scm, binary(scm), do, evidence)


def test_kidney_stones_effect_and_association_are_exact():
    scm = cp.graphs.load("kidney_stones")
    effect = ate(scm, "treatment", "recovery")
    truth = 343 / 700 * (192 / 263 - 55 / 80) + 357 / 700 * (81 / 87 - 234 / 270)
    assert effect.ate == pytest.approx(truth, abs=TOLERANCE) and effect.stderr == 0.0
    assert effect.covers.startswith("exact") and effect.interval() == (effect.ate, effect.ate)
    assert isinstance(effect.treated_result, ExactResult)
    naive = association(scm, "treatment", "recovery")
    assert naive.ate == pytest.approx(273 / 350 - 289 / 350, abs=TOLERANCE)  # Simpson's paradox
    within_large = ate(scm, "treatment", "recovery", evidence={"large": 1})
    assert within_large.ate == pytest.approx(192 / 263 - 55 / 80, abs=TOLERANCE)


def test_smoking_frontdoor_effect_is_exact():
    # u is latent, but exact inference sums it out like any other node: 0.3 * (0.95 - 0.05).
    assert ate(cp.graphs.load("smoking"), "smoking", "cancer").ate == pytest.approx(0.27, abs=TOLERANCE)


def random_network(num_nodes, max_states, seed):
    net = cp.datasets.random_discrete_network(num_nodes, max_parents=3, max_states=max_states, seed=seed)
    return net, net.to_scm()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_8_node_network_matches_enumeration(seed):
    net, scm = random_network(8, 4, seed)
    nodes = list(scm.nodes)
    first, middle, last = nodes[0], nodes[3], nodes[-1]
    assert_matches_enumeration(scm, net.cardinality)
    assert_matches_enumeration(scm, net.cardinality, do={middle: 1})
    assert_matches_enumeration(scm, net.cardinality, evidence={last: 1})
    assert_matches_enumeration(scm, net.cardinality, do={middle: 0}, evidence={last: 1, first: 0})


def test_table_shortcut_and_batched_mechanism_calls_agree(monkeypatch):
    net, scm = random_network(8, 4, 3)
    last = scm.nodes[-1]
    fast = interventional(scm, do={scm.nodes[2]: 1}, evidence={last: 0}, method="exact")
    monkeypatch.setattr(exact, "table_probs", lambda *args: None)  # every table read by calling it on a grid
    slow = interventional(scm, do={scm.nodes[2]: 1}, evidence={last: 0}, method="exact")
    for node in scm.nodes:
        if node != scm.nodes[2]:
            assert torch.allclose(fast.marginal(node), slow.marginal(node), atol=1e-12)
    with pytest.raises(ValueError, match=f"node '{scm.nodes[2]}' is intervened on \\(at 1\\) and has no labels"):
        fast.marginal(scm.nodes[2])
    assert fast.mean(scm.nodes[2]) == 1.0


def test_37_node_network_matches_enumeration_of_the_ancestors():
    net, scm = random_network(37, 4, 0)
    # The deepest node whose ancestors can still be enumerated; barren nodes drop out of the truth.
    import networkx as nx

    def ancestry(node):
        return nx.ancestors(net.graph, node) | {node}

    target = max((n for n in scm.nodes if math.prod(net.cardinality[a] for a in ancestry(n)) <= 20_000),
                 key=lambda n: len(ancestry(n)))
    assert len(ancestry(target)) >= 5
    sub = cp.SCM()
    for node in scm.nodes:
        if node in ancestry(target):
            sub.add(node, scm.mechanism(node).fn)
    sub.params.set_state(scm.params.get_state())
    truth = enumerate_marginals(sub, net.cardinality)[target]
    assert interventional(scm, method="exact").marginal(target).tolist() == pytest.approx(truth, abs=TOLERANCE)


# -- labels, results and their text ---------------------------------------------------------------


def labelled():
    return (cp.SCM()
            .add("smoke", "Bernoulli(0.5)", labels=("no", "yes"))
            .add("either", "Bernoulli(0.1 + 0.6*smoke)", labels=("no", "yes"))
            .add("dysp", "Bernoulli(0.1 + 0.7*either)", labels=("no", "yes")))


def test_labels_in_queries_and_distributions():
    result = interventional(labelled(), do={"either": "yes"}, evidence={"smoke": "no"})
    assert isinstance(result, ExactResult)  # "auto" answers exactly
    dysp = result.distribution("dysp")
    assert isinstance(dysp, ExactDistribution) and isinstance(dysp, cp.causal.Distribution)
    assert dysp.probs == pytest.approx({"no": 0.2, "yes": 0.8}, abs=TOLERANCE)
    assert dysp.stderr == {"no": 0.0, "yes": 0.0}
    assert str(dysp).splitlines() == ["P(dysp | do(either=yes) given smoke=no)  exact",
                                      "  no   0.2000", "  yes  0.8000"]
    assert result.distribution("either").probs == {"no": 0.0, "yes": 1.0}
    assert result.distribution("smoke").probs == {"no": 1.0, "yes": 0.0}
    # P(smoke=yes | dysp=yes) by Bayes' rule: 0.59 / (0.59 + 0.17)
    given = interventional(labelled(), evidence={"dysp": "yes"}).distribution("smoke")
    assert given["yes"] == pytest.approx(0.59 / 0.76, abs=TOLERANCE)


def test_result_text_summary_and_lazy_samples(one_thread_seeded):
    result = interventional(labelled(), do={"either": 1.0}, n=500)
    lines = str(result).splitlines()
    assert lines[0] == "do(either=yes)"
    assert lines[3] == "  dysp: no 0.2, yes 0.8 (exact)"
    summary = result.summary("dysp")
    assert (summary.mean, summary.stderr) == (pytest.approx(0.8), 0.0)
    assert summary.std == pytest.approx(math.sqrt(0.8 * 0.2))
    assert set(result.summary()) == {"smoke", "either", "dysp"}
    assert "ExactResult(do(either=yes)" in repr(result)
    # Rows are drawn only when asked for, by the sampling path.
    assert result._samples is None
    assert result["dysp"].shape == (500,) and torch.all(result["either"] == 1.0)
    with pytest.raises(KeyError, match="'w' is not a node"):
        result.distribution("w")


def test_categorical_outcome_with_a_callable_mechanism():
    def customer(t):
        low, high = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])
        return cp.dist.Categorical(probs=low + t.unsqueeze(-1) * (high - low))

    scm = cp.SCM().add("t", "Bernoulli(0.5)", labels=("no", "yes")).add("c", customer, labels=("a", "b", "c"))
    effect = ate(scm, "t", "c", treated="yes", control="no", outcome_level="c")
    assert effect.ate == pytest.approx(0.3, abs=TOLERANCE) and effect.stderr == 0.0
    with pytest.raises(ValueError, match="node 'c' is categorical with levels 'a', 'b', 'c'"):
        ate(scm, "t", "c", treated="yes", control="no")
    assert interventional(scm, evidence={"c": "c"}).distribution("t")["yes"] == pytest.approx(0.5 / 0.7)


def test_refitted_params_are_seen():
    scm = (cp.SCM()
           .add("a", CategoricalTable("a", [], num_categories=2))
           .add("c", CategoricalTable("c", ["a"], num_categories=2, parent_cardinalities=[2])))
    scm.params["a.probs"] = torch.tensor([0.2, 0.8])
    scm.params["c.probs"] = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
    assert interventional(scm, evidence={"c": 1}).mean("a") == pytest.approx(0.48 / 0.50, abs=TOLERANCE)
    scm.params["c.probs"] = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    assert interventional(scm, evidence={"c": 1}).mean("a") == pytest.approx(0.8, abs=TOLERANCE)


def test_an_unfitted_table_is_answered_at_its_initial_params():
    scm = cp.SCM().add("a", CategoricalTable("a", [], num_categories=4))
    assert interventional(scm).marginal("a").tolist() == pytest.approx([0.25] * 4)


# -- where exact inference does not apply ----------------------------------------------------------


def test_continuous_nodes_fall_back_to_sampling_or_name_the_node():
    confounded = cp.graphs.load("confounded")
    result = interventional(confounded, do={"x": 1.0}, n=100)
    assert not isinstance(result, ExactResult) and result["y"].shape == (100,)
    with pytest.raises(ExactInferenceError, match="node 'z': it draws from Normal, not a Bernoulli or Categorical"):
        interventional(confounded, do={"x": 1.0}, method="exact")
    with pytest.raises(ExactInferenceError, match="node 'z'"):
        ate(confounded, "x", "y", method="exact")


def test_bayesian_mechanisms_and_inputs_are_not_exact():
    scm = cp.SCM().add("a", CategoricalTable("a", [], num_categories=2, bayesian=True))
    with pytest.raises(ExactInferenceError, match="node 'a': its mechanism is Bayesian"):
        interventional(scm, method="exact")
    assert not isinstance(interventional(scm, n=10), ExactResult)
    with_input = cp.SCM().add("t", "Bernoulli(p)")
    with pytest.raises(ExactInferenceError, match=r"the SCM takes inputs \(p\)"):
        interventional(with_input, method="exact")
    assert interventional(with_input, n=10, p=0.3)["t"].shape == (10,)


def test_a_discrete_child_of_a_continuous_parent_is_not_exact():
    scm = cp.SCM().add("x", "Normal(0, 1)").add("t", "Bernoulli(sigmoid(x))")
    with pytest.raises(ExactInferenceError, match="node 'x'"):
        interventional(scm, method="exact")
    # Intervening on the continuous node makes the rest discrete: exact again.
    result = interventional(scm, do={"x": 0.0}, method="exact")
    assert result.mean("t") == pytest.approx(0.5) and result.mean("x") == 0.0


def test_an_intractable_network_falls_back_to_sampling(monkeypatch):
    monkeypatch.setattr(exact, "MAX_ENTRIES", 4)
    scm = cp.graphs.load("sprinkler")
    with pytest.raises(ExactInferenceError, match="would build a factor of 8 entries"):
        interventional(scm, method="exact")
    assert not isinstance(interventional(scm, n=10), ExactResult)


def test_bad_method_and_impossible_evidence_are_errors():
    scm = cp.graphs.load("sprinkler")
    with pytest.raises(ValueError, match="method must be one of 'auto', 'exact', 'sample', got 'fast'"):
        interventional(scm, method="fast")
    with pytest.raises(ValueError, match="probability zero"):
        interventional(scm, evidence={"sprinkler": 0, "rain": 0, "wet": 1})
    # condition() itself refuses it now: a Bernoulli's support is known before any run.
    with pytest.raises(ValueError, match=r"node 'wet': condition value 0.5 is outside the support of its Bernoulli"):
        interventional(scm, evidence={"wet": 0.5})


def test_method_sample_still_samples(one_thread_seeded):
    result = interventional(cp.graphs.load("sprinkler"), do={"sprinkler": 1}, n=2000, method="sample")
    assert not isinstance(result, ExactResult)
    wet = result.distribution("wet")
    assert abs(wet[1] - 0.945) < 4 * math.sqrt(0.945 * 0.055 / 2000) and wet.stderr[1] > 0


# -- devices ------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_factors_follow_the_params_to_cuda():
    net, scm = random_network(12, 4, 0)
    state = scm.params.get_state()
    on_cpu = interventional(scm, do={scm.nodes[1]: 1}, method="exact")
    state["params"] = {name: value.cuda() for name, value in state["params"].items()}
    scm.params.set_state(state)
    on_gpu = interventional(scm, do={scm.nodes[1]: 1}, method="exact")
    last = scm.nodes[-1]
    assert on_gpu.marginal(last).device.type == "cuda"
    assert torch.allclose(on_gpu.marginal(last).cpu(), on_cpu.marginal(last), atol=1e-9)
    # A table on the GPU feeding an expression and a constant root: every factor moves to the GPU.
    mixed = (cp.SCM().add("a", CategoricalTable("a", [], num_categories=2)).add("r", "Bernoulli(0.5)")
             .add("y", "Bernoulli(0.1 + 0.6*a + 0.2*r)"))
    mixed.params["a.probs"] = torch.tensor([0.25, 0.75], device="cuda")
    result = interventional(mixed, evidence={"y": 1}, method="exact")
    assert result.marginal("a").device.type == "cuda"
    p_y = 0.25 * (0.1 + 0.3) / 2 + 0.75 * (0.7 + 0.9) / 2
    assert result.mean("a") == pytest.approx(0.75 * 0.8 / p_y, abs=TOLERANCE)


def test_benchmark_quick_run_prints_its_table(capsys):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "exact.py"
    spec = importlib.util.spec_from_file_location("bench_exact", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        rows = module.main(["--quick"])
    finally:
        torch.set_num_threads(threads)
    assert [row["query"] for row in rows] == ["do-query", "evidence", "ate", "all marginals"]
    assert "P(n36 | do(n05=1))  exact" in capsys.readouterr().out  # no timing assertions: the box may be loaded
