"""Falsification of graphs and refutation of effect estimates, against known truths."""

import math

import networkx as nx
import pytest
import torch

import causalppl as cp
from causalppl.causal.refute import local_markov_statements


def diamond():
    """a -> b -> c -> d and a -> d: implies c _||_ a | b and d _||_ b | a, c."""
    return (cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(a, 1)").add("c", "Normal(b, 1)")
            .add("d", "Normal(c - a, 1)"))


def test_local_markov_statements_of_a_chain_and_a_collider():
    statements = local_markov_statements(nx.DiGraph([("a", "b"), ("b", "c")]))
    assert statements == [("c", "a", ("b",))]
    collider = local_markov_statements(nx.DiGraph([("a", "c"), ("b", "c")]))
    assert collider == [("a", "b", ())]


def test_a_correct_graph_is_not_rejected_on_its_own_data(one_thread_seeded):
    scm = diamond()
    result = cp.causal.falsify(scm, scm.sample(3000), permutations=24)
    assert len(result.tests) == 2 and not result.rejected and not result.falsified
    assert len(result.permuted_violations) == 24  # 4! = 24: every permutation
    assert result.permutation_p_value < 0.2  # most permuted graphs violate some of their independences
    assert "do not reject" in str(result)


def test_a_graph_with_a_missing_edge_is_rejected(one_thread_seeded):
    data = diamond().sample(3000)
    result = cp.causal.falsify([("a", "b"), ("b", "c"), ("c", "d")], data)
    rejected = {(t.x, t.y) for t in result.violations}
    assert result.rejected and ("d", "a") in rejected
    assert all(t.p_value > 1e-3 for t in result.tests if (t.x, t.y) == ("c", "a"))


def test_the_kernel_test_sees_non_linear_dependence(one_thread_seeded):
    scm = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(2*cos(2*a), 0.3)").add("c", "Normal(0, 1)")
    data = scm.sample(600)
    wrong = nx.DiGraph()
    wrong.add_nodes_from("abc")
    wrong.add_edge("c", "b")
    # a and b are uncorrelated (a cos(2a) is odd), so only the kernel test rejects a _||_ b
    assert not cp.causal.falsify(wrong, data, method="regression", permutations=0).rejected
    assert cp.causal.falsify(wrong, data, method="kernel", permutations=0).rejected
    assert not cp.causal.falsify(scm, data, method="kernel", permutations=0).rejected


def test_falsify_checks_its_input():
    with pytest.raises(KeyError, match="no column for 'c'"):
        cp.causal.falsify([("a", "c")], {"a": torch.randn(10)})
    with pytest.raises(ValueError, match="method"):
        cp.causal.falsify([("a", "b")], {"a": torch.randn(10), "b": torch.randn(10)}, method="chi2")


def confounded_data(n=3000):
    return cp.graphs.load("confounded").sample(n)


def test_backdoor_estimate_recovers_the_effect(one_thread_seeded):
    estimate = cp.causal.backdoor_estimate(cp.graphs.load("confounded"), confounded_data(), "x", "y")
    assert estimate.adjustment == ("z",) and abs(estimate.value - 2) < 4 * estimate.stderr


def test_placebo_treatment_has_no_effect(one_thread_seeded):
    result = cp.causal.refute(cp.graphs.load("confounded"), confounded_data(), "x", "y", method="placebo")
    assert result.passed and abs(result.new_effect) < 4 * result.estimate.stderr * math.sqrt(2)
    assert abs(result.estimate.value - 2) < 0.1


def test_random_common_cause_and_data_subset_leave_the_estimate(one_thread_seeded):
    scm, data = cp.graphs.load("confounded"), confounded_data()
    for method in ("random_common_cause", "data_subset"):
        result = cp.causal.refute(scm, data, "x", "y", method=method)
        assert result.passed, str(result)
        assert abs(result.new_effect - result.estimate.value) < result.estimate.stderr
    with pytest.raises(ValueError, match="unknown method"):
        cp.causal.refute(scm, data, "x", "y", method="bootstrap")


def test_unobserved_common_cause_moves_the_estimate_by_the_closed_form(one_thread_seeded):
    # x' = x + s sd(x) U, y' = y + s sd(y) U with U independent of z: adjusting for z, the slope is
    # (Cov(x, y | z) + s^2 sd(x) sd(y)) / (Var(x | z) + s^2 Var(x)) with Var(x) = 2, Var(y) = 30.
    s = 0.5
    expected = (2 + s * s * math.sqrt(2 * 30)) / (1 + s * s * 2)
    result = cp.causal.unobserved_common_cause(cp.graphs.load("confounded"), confounded_data(20000), "x", "y",
                                               strength=s, simulations=10)
    assert abs(result.new_effect - expected) < 0.05
    assert result.passed and result.p_value is None


def test_refuters_catch_an_estimate_that_ignores_a_confounder(one_thread_seeded):
    # With the confounder z missing from the graph, the estimate is biased (3.5, not 2); a placebo
    # still passes, but the data reject the graph's implied independence.
    data = confounded_data()
    naive = cp.causal.backdoor_estimate([("x", "y")], data, "x", "y")
    assert abs(naive.value - 3.5) < 0.15
    graph = nx.DiGraph([("x", "y")])
    graph.add_node("z")
    assert cp.causal.falsify(graph, data, permutations=0).rejected


def test_dowhy_names_are_understood(one_thread_seeded):
    scm, data = cp.graphs.load("confounded"), confounded_data(2000)
    result = cp.causal.refute(scm, data, "x", "y", method="add_unobserved_common_cause",
                              effect_strength_on_treatment=0.0, effect_strength_on_outcome=0.5, num_simulations=3)
    assert len(result.new_estimates) == 3
    assert abs(result.new_effect - result.estimate.value) < 0.1  # no effect on the treatment: no bias


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_falsify_and_refute_on_cuda(one_thread_seeded):
    with torch.device("cuda"):
        data = diamond().sample(2000)
        assert not cp.causal.falsify(diamond(), data, method="kernel", permutations=5).rejected
        result = cp.causal.refute(cp.graphs.load("confounded"), confounded_data(2000), "x", "y", method="subset")
    assert result.passed
