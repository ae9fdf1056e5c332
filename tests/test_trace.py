"""Tests for causalppl.trace: the record of one run."""

import math

import pytest
import torch

import causalppl as cp
from causalppl.handlers import trace
from causalppl.trace import Trace


def model(data):
    loc = cp.param("loc", torch.tensor(0.5))
    z = cp.sample("z", cp.dist.Normal(loc, 1.0))
    with cp.plate("rows", len(data)):
        cp.sample("x", cp.dist.Normal(z, 2.0), obs=data)
    cp.deterministic("z_squared", z**2)
    return z


def test_log_prob_sum_matches_the_analytic_joint():
    cp.set_rng_seed(0)
    data = torch.tensor([0.0, 1.0, -1.5])
    tr = trace(model).get_trace(data)
    z = tr.nodes["z"]["value"].item()

    def logpdf(x, loc, scale):
        return -0.5 * ((x - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)

    expected = logpdf(z, 0.5, 1.0) + sum(logpdf(x, z, 2.0) for x in data.tolist())
    assert tr.log_prob_sum().item() == pytest.approx(expected, abs=1e-5)
    only_x = tr.log_prob_sum(site_filter=lambda name, site: name == "x")
    assert only_x.item() == pytest.approx(expected - logpdf(z, 0.5, 1.0), abs=1e-5)


def test_log_prob_sum_of_an_empty_trace_is_a_zero_tensor():
    total = trace(lambda: None).get_trace().log_prob_sum()
    assert isinstance(total, torch.Tensor) and total.item() == 0.0


def test_compute_log_prob_stores_per_site_densities():
    cp.set_rng_seed(1)
    data = torch.tensor([0.0, 1.0])
    tr = trace(model).get_trace(data)
    tr.compute_log_prob()
    assert tr.nodes["x"]["log_prob"].shape == (2,)
    assert "log_prob" not in tr.nodes["z_squared"]  # deterministic: no density
    assert "log_prob" not in tr.nodes["loc"]


def test_node_lists():
    cp.set_rng_seed(2)
    tr = trace(model).get_trace(torch.tensor([0.0]))
    assert tr.stochastic_nodes == ["z"]
    assert tr.observation_nodes == ["x"]
    assert tr.param_nodes == ["loc"]
    assert list(tr) == ["_INPUT", "loc", "z", "x", "z_squared", "_RETURN"]
    assert len(tr) == 6 and "z" in tr and "nope" not in tr
    assert "z" in repr(tr)


def test_format_shapes_mentions_every_site():
    cp.set_rng_seed(3)
    tr = trace(model).get_trace(torch.zeros(4))
    lines = tr.format_shapes().splitlines()
    assert [line.strip() for line in lines[:2]] == ["Trace Shapes:", "Param Sites:"]
    assert lines[1].split()[0] == "Param"
    for name in ("z", "x", "z_squared"):
        assert any(line.split()[:2] == [name, "dist"] for line in lines), name
    assert any(line.split()[0] == "loc" for line in lines)
    tr.compute_log_prob()
    assert any(line.split()[0] == "log_prob" for line in tr.format_shapes().splitlines())


def test_format_shapes_matches_pyro_layout():
    """The tensor_shapes tutorial's model1 prints as Pyro prints it (plates before their first site)."""
    def model1():
        cp.sample("a", cp.dist.Normal(0, 1))
        cp.sample("b", cp.dist.Normal(torch.zeros(2), 1).to_event(1))
        with cp.plate("c_plate", 2):
            cp.sample("c", cp.dist.Normal(torch.zeros(2), 1))
        with cp.plate("d_plate", 3):
            cp.sample("d", cp.dist.Normal(torch.zeros(3, 4, 5), 1).to_event(2))

    tr = trace(model1).get_trace()
    tr.compute_log_prob()
    expected = """Trace Shapes:
 Param Sites:
Sample Sites:
       a dist   |
        value   |
     log_prob   |
       b dist   | 2
        value   | 2
     log_prob   |
 c_plate dist   |
        value 2 |
     log_prob   |
       c dist 2 |
        value 2 |
     log_prob 2 |
 d_plate dist   |
        value 3 |
     log_prob   |
       d dist 3 | 4 5
        value 3 | 4 5
     log_prob 3 |"""
    assert tr.format_shapes() == expected


def test_log_prob_errors_name_the_site():
    def bad():
        cp.sample("coin", cp.dist.Bernoulli(0.5), obs=torch.tensor(2.0))

    tr = trace(bad).get_trace()
    with pytest.raises(ValueError, match=r"(?s)^Error while computing log_prob_sum at site 'coin':\s*\S.*2"):
        tr.log_prob_sum()
    with pytest.raises(ValueError, match=r"(?s)^Error while computing log_prob at site 'coin':\s*\S.*2"):
        tr.compute_log_prob()


def test_duplicate_site_names_are_rejected():
    tr = cp.trace().trace
    site = {"name": "a", "type": "sample"}
    tr.add_site(site)
    with pytest.raises(ValueError, match="'a'"):
        tr.add_site(dict(site))


def test_a_distribution_argument_error_is_noted_with_the_last_site():
    def model():
        cp.sample("a", cp.dist.Normal(0.0, 1.0))
        cp.sample("b", cp.dist.Normal(0.0, -1.0))  # torch refuses the negative scale

    with pytest.raises(ValueError, match="scale") as info:
        cp.handlers.trace(model).get_trace()
    assert "after the model's last recorded site 'a'" in "\n".join(info.value.__notes__)


def test_trace_sorts_latents_by_reparameterisation_and_copies_independently():
    def model():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))
        cp.sample("k", cp.dist.Bernoulli(0.5))
        cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=torch.tensor(0.5))

    tr = cp.handlers.trace(model).get_trace()
    assert tr.reparameterized_nodes == ["z"]
    assert tr.nonreparam_stochastic_nodes == ["k"]
    assert [name for name, _ in tr.iter_stochastic_nodes()] == ["z", "k"]
    twin = tr.copy()
    twin.remove_node("k")
    assert "k" in tr and "k" not in twin
    twin.nodes["z"]["value"] = torch.tensor(3.0)
    assert tr.nodes["z"]["value"] != 3.0


def test_trace_add_node_refuses_a_second_sample_site_of_the_same_name():
    tr = cp.trace(lambda: cp.sample("z", cp.dist.Normal(0.0, 1.0))).get_trace()
    with pytest.raises(ValueError, match="Multiple sample sites named 'z'"):
        tr.add_node("z", type="sample", value=torch.tensor(0.0))


@pytest.mark.parametrize("seed", range(5))
def test_trace_topological_sort_respects_every_edge_of_a_random_dag(seed):
    import random

    rng = random.Random(seed)
    order = list(range(12))
    rng.shuffle(order)
    edges = [(order[i], order[j]) for i in range(12) for j in range(i + 1, 12) if rng.random() < 0.3]
    rng.shuffle(edges)
    tr = Trace()
    for before, after in edges:
        tr.add_edge(before, after)
    ranks = {name: rank for rank, name in enumerate(tr.topological_sort())}
    assert all(ranks[a] < ranks[b] for a, b in edges)
    assert set(tr.edges) == set(edges)
    backwards = {name: rank for rank, name in enumerate(tr.topological_sort(reverse=True))}
    assert all(backwards[a] > backwards[b] for a, b in edges)


def test_trace_remove_node_drops_its_edges_and_cycles_are_reported():
    tr = Trace()
    for before, after in [("a", "b"), ("b", "c"), ("a", "c")]:
        tr.add_edge(before, after)
    tr.remove_node("b")
    assert tr.edges == [("a", "c")] and tr.predecessors("c") == {"a"}
    assert list(tr._dfs("a", set())) == ["a", "c"]
    tr.add_edge("c", "a")
    with pytest.raises(ValueError, match="cycle"):
        tr.topological_sort()


def test_score_parts_split_reparameterised_and_score_function_sites():
    def model():
        cp.sample("z", cp.dist.Normal(0.0, 1.0))
        cp.sample("k", cp.dist.Bernoulli(0.25))

    tr = trace(model).get_trace()
    tr.compute_score_parts()
    z, k = tr.nodes["z"]["score_parts"], tr.nodes["k"]["score_parts"]
    assert z.score_function == 0 and torch.equal(z.entropy_term, z.log_prob)
    assert k.entropy_term == 0 and torch.equal(k.score_function, k.log_prob)
