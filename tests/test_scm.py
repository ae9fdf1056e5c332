"""SCM construction, structure, errors, surgery, lowering and log densities."""

import math

import networkx as nx
import pytest
import torch

import causalppl as cp
from causalppl.graph import MechanismError
from causalppl.graph.expr import ExpressionError

N = 20_000


def confounded():
    """Z ~ N(0,1), X ~ N(Z,1), Y ~ N(2X + 3Z, 1), built with add()."""
    return (cp.SCM()
            .add("z", "Normal(0.0, 1.0)")
            .add("x", "Normal(z, 1.0)")
            .add("y", "Normal(2*x + 3*z, 1.0)"))


def assert_mean(samples, expected, std, n, sigmas=4.0):
    tolerance = sigmas * std / math.sqrt(n)
    mean = float(samples.mean())
    assert abs(mean - expected) < tolerance, f"mean {mean:.4f}, expected {expected} +- {tolerance:.4f}"


# -- construction -------------------------------------------------------------------


def test_add_builds_the_dag_in_topological_order():
    scm = confounded()
    assert scm.nodes == ("z", "x", "y")
    assert set(scm.graph.edges) == {("z", "x"), ("z", "y"), ("x", "y")}
    assert set(scm.parents("y")) == {"z", "x"}
    assert scm.parents("z") == ()
    assert scm.inputs == ()
    assert len(scm) == 3 and "x" in scm and "w" not in scm
    assert list(scm) == ["z", "x", "y"]


def test_nodes_are_topologically_sorted_even_when_added_out_of_order():
    scm = cp.SCM().add("y", "Normal(x, 1.0)").add("x", "Normal(0.0, 1.0)")
    assert scm.nodes == ("x", "y")
    assert scm.inputs == ()


def test_callable_mechanisms_parents_are_parameter_names():
    scm = (cp.SCM()
           .add("weight", lambda guess: cp.dist.Normal(guess, 1.0))
           .add("measurement", lambda weight: cp.dist.Normal(weight, 0.75)))
    assert scm.inputs == ("guess",)
    assert scm.parents("measurement") == ("weight",)
    values = scm.sample(50, guess=torch.tensor(8.5))
    assert values["weight"].shape == (50,) and values["measurement"].shape == (50,)


def test_from_networkx_graph_with_string_and_callable_mechanisms():
    G = nx.DiGraph()
    G.add_node("z", mechanism="Normal(0.0, 1.0)")
    G.add_node("x", mechanism=lambda z: cp.dist.Normal(z, 1.0))
    G.add_node("y", mechanism="Normal(2*x + 3*z, 1.0)", latent=True)
    G.add_edges_from([("z", "x"), ("z", "y"), ("x", "y")])
    scm = cp.SCM(G)
    assert scm.nodes == ("z", "x", "y")
    assert set(scm.graph.edges) == set(G.edges)
    assert scm.latent == {"y"}
    assert scm.mechanism("y").text == "Normal(2*x + 3*z, 1.0)"


def test_inputs_are_names_that_are_not_nodes():
    scm = cp.graphs.load("scale")
    assert scm.inputs == ("guess",)
    assert scm.parents("weight") == ()  # inputs are not parent nodes
    with pytest.raises(TypeError, match="missing input.*'guess'"):
        scm.model()
    with pytest.raises(TypeError, match="unknown keyword.*'gues'"):
        scm.model(guess=8.5, gues=1.0)
    # do() on the only node that reads the input drops it
    assert scm.do(weight=9.0).inputs == ()


def test_do_model_accepts_the_inputs_do_cut():
    # Called like the unintervened model (as cp.do(scm.model, ...) is), the
    # input that only the intervened node read is accepted and ignored.
    scm = cp.graphs.load("scale")
    values = scm.do(weight=9.0).model(guess=8.5)
    assert float(values["weight"]) == 9.0
    samples = scm.do(weight=9.0).sample(5, guess=8.5)
    assert samples["measurement"].shape == (5,)
    lp = scm.do(weight=9.0).log_prob({"measurement": 9.5}, guess=8.5)
    assert torch.allclose(lp, cp.dist.Normal(9.0, 0.75).log_prob(torch.tensor(9.5)))
    with pytest.raises(TypeError, match="unknown keyword.*'gues'"):
        scm.do(weight=9.0).model(gues=1.0)


def test_subsampled_rows_of_per_row_observed_values():
    scm = confounded().condition(x=torch.arange(10.0))
    with cp.trace() as tr:
        values = scm.model(n=10, subsample_size=3)
    rows = tr.trace.nodes["_rows"]["value"]
    assert values["x"].shape == (3,) and values["y"].shape == (3,)
    assert torch.equal(values["x"], torch.arange(10.0)[rows])


def test_graph_is_a_frozen_networkx_digraph_with_attributes():
    scm = confounded().do(x=1.0).condition(y=2.0)
    graph = scm.graph
    assert isinstance(graph, nx.DiGraph) and nx.is_frozen(graph)
    assert float(graph.nodes["x"]["intervened"]) == 1.0
    assert float(graph.nodes["y"]["observed"]) == 2.0
    assert nx.is_directed_acyclic_graph(graph)


# -- errors -----------------------------------------------------------------------------


def test_cycle_is_refused_naming_the_cycle():
    scm = cp.SCM().add("a", "Normal(c, 1.0)").add("b", "Normal(a, 1.0)")
    with pytest.raises(nx.NetworkXUnfeasible, match=r"cycle .*c -> a -> b -> c|cycle .*a -> b -> c -> a"
                       r"|cycle .*b -> c -> a -> b"):
        scm.add("c", "Normal(b, 1.0)")
    assert "c" not in scm  # the failed add left the SCM as it was
    assert scm.inputs == ("c",)


def test_self_loop_is_a_cycle():
    with pytest.raises(nx.NetworkXUnfeasible, match="x -> x"):
        cp.SCM().add("x", "Normal(x, 1.0)")


def test_cycle_in_networkx_graph_is_refused():
    G = nx.DiGraph()
    G.add_node("a", mechanism="Normal(b, 1.0)")
    G.add_node("b", mechanism="Normal(a, 1.0)")
    G.add_edges_from([("a", "b"), ("b", "a")])
    with pytest.raises(nx.NetworkXUnfeasible, match="cycle .*(a -> b -> a|b -> a -> b)"):
        cp.SCM(G)


def test_edges_must_agree_with_mechanism_parameters():
    G = nx.DiGraph()
    G.add_node("z", mechanism="Normal(0.0, 1.0)")
    G.add_node("x", mechanism="Normal(0.0, 1.0)")
    G.add_edge("z", "x")
    with pytest.raises(ValueError, match=r"node 'x'.*edges from \['z'\] that its mechanism does not use"):
        cp.SCM(G)

    H = nx.DiGraph()
    H.add_node("z", mechanism="Normal(0.0, 1.0)")
    H.add_node("x", mechanism=lambda z: cp.dist.Normal(z, 1.0))
    with pytest.raises(ValueError, match=r"node 'x'.*no edges from \['z'\]"):
        cp.SCM(H)


def test_node_without_mechanism_in_networkx_graph():
    G = nx.DiGraph()
    G.add_node("z")
    with pytest.raises(ValueError, match="node 'z' has no 'mechanism'"):
        cp.SCM(G)
    with pytest.raises(TypeError, match="networkx.DiGraph"):
        cp.SCM(nx.Graph())


def test_duplicate_node_is_refused():
    with pytest.raises(ValueError, match="node 'z' already exists"):
        confounded().add("z", "Normal(0.0, 1.0)")


@pytest.mark.parametrize("name", ["n", "data", "subsample_size"])
def test_reserved_names_are_refused(name):
    with pytest.raises(ValueError, match=f"'{name}' is reserved"):
        cp.SCM().add(name, "Normal(0.0, 1.0)")
    with pytest.raises(ValueError, match=f"'{name}' is reserved"):
        cp.SCM().add("x", f"Normal({name}, 1.0)")  # as an input, too


@pytest.mark.parametrize("name", ["1x", "a b", "_private", "a-b", "", 3])
def test_invalid_names_are_refused(name):
    with pytest.raises(ValueError, match="identifier"):
        cp.SCM().add(name, "Normal(0.0, 1.0)")


def test_bad_mechanisms():
    with pytest.raises(TypeError, match="node 'x'.*mechanism must be"):
        cp.SCM().add("x", 3.0)
    with pytest.raises(ExpressionError, match="attribute access"):
        cp.SCM().add("x", "z.__class__")
    with pytest.raises(TypeError, match=r"node 'x'.*\*args"):
        cp.SCM().add("x", lambda *args: cp.dist.Normal(0.0, 1.0))


def test_mechanism_that_does_not_return_a_distribution_names_the_node():
    scm = cp.SCM().add("z", "Normal(0.0, 1.0)").add("x", lambda z: z + 1)
    with pytest.raises(MechanismError, match="node 'x'.*must return a torch Distribution"):
        scm.sample(3)
    scm = cp.SCM().add("x", "exp(1.0)")  # a valid expression, but not a distribution
    with pytest.raises(MechanismError, match="node 'x'"):
        scm.sample()


def test_mechanism_that_raises_names_the_node():
    scm = cp.SCM().add("z", "Normal(0.0, 1.0)").add("x", lambda z: cp.dist.Normal(z, -1.0))
    with pytest.raises(MechanismError, match="node 'x'"):
        scm.sample(3)


def test_unknown_names_in_do_condition_and_parents():
    scm = confounded()
    for call in (lambda: scm.do(w=1.0), lambda: scm.condition(w=1.0), lambda: scm.parents("w"),
                 lambda: scm.mechanism("w")):
        with pytest.raises(KeyError, match=r"'w' is not a node.*nodes: z, x, y"):
            call()


def test_a_node_cannot_be_both_observed_and_intervened():
    scm = confounded()
    with pytest.raises(ValueError, match="node 'x' is observed"):
        scm.condition(x=1.0).do(x=1.0)
    with pytest.raises(ValueError, match="node 'x' is intervened"):
        scm.do(x=1.0).condition(x=1.0)


# -- surgery ------------------------------------------------------------------------------


def test_surgery_returns_new_scms_and_leaves_the_original_untouched():
    scm = confounded()
    edges = set(scm.graph.edges)
    intervened = scm.do(x=1.0)
    conditioned = scm.condition(y=2.0)
    assert intervened is not scm and conditioned is not scm
    assert set(scm.graph.edges) == edges
    assert scm.interventions == {} and scm.observed == {}
    assert set(intervened.graph.edges) == {("z", "y"), ("x", "y")}  # z -> x cut
    assert intervened.parents("x") == ()
    assert set(conditioned.graph.edges) == edges
    assert conditioned.observed.keys() == {"y"}
    # the returned dicts are copies
    intervened.interventions["z"] = torch.tensor(0.0)
    assert "z" not in intervened.interventions


def test_do_and_condition_compose_in_any_order():
    scm = confounded()
    a = scm.do(x=1.0).condition(y=2.0)
    b = scm.condition(y=2.0).do(x=1.0)
    assert a.interventions.keys() == b.interventions.keys() == {"x"}
    assert a.observed.keys() == b.observed.keys() == {"y"}
    assert set(a.graph.edges) == set(b.graph.edges)
    values = {"z": torch.tensor(0.3), "y": torch.tensor(2.0)}
    assert torch.allclose(a.log_prob(values), b.log_prob(values))
    # repeated surgery accumulates
    c = scm.do(x=1.0).do(z=0.5)
    assert c.interventions.keys() == {"x", "z"}
    assert set(c.graph.edges) == {("z", "y"), ("x", "y")}


def test_batch_values_in_do():
    cp.set_rng_seed(0)
    scm = confounded()
    xs = torch.arange(4.0)
    values = scm.do(x=xs).sample(4)
    assert torch.equal(values["x"], xs)
    assert values["z"].shape == values["y"].shape == (4,)
    # batched rows: E[y | do(x)] = 2x, row by row
    n = 5_000
    xs = torch.tensor([-1.0, 0.0, 2.0]).repeat(n)
    y = scm.do(x=xs).sample(3 * n)["y"].reshape(n, 3)
    for column, x in enumerate([-1.0, 0.0, 2.0]):
        assert_mean(y[:, column], 2 * x, math.sqrt(10.0), n)


# -- sampling and causal semantics -----------------------------------------------------


def test_interventional_mean_is_the_causal_effect():
    cp.set_rng_seed(1)
    y = confounded().do(x=1.0).sample(N)["y"]
    assert y.shape == (N,)
    # Y | do(X=1) = 2 + 3Z + noise: mean 2, variance 9 + 1
    assert_mean(y, 2.0, math.sqrt(10.0), N)
    assert abs(float(y.std()) - math.sqrt(10.0)) < 0.1


def test_conditioning_differs_from_intervening():
    cp.set_rng_seed(2)
    n = 4_000
    y = confounded().condition(x=1.0).sample(n)["y"]
    # E[Y | X=1] = 2 + 3 E[Z | X=1] = 3.5; Var = 9 Var(Z|X) + 1 = 5.5 (resampled draws: loose tolerance)
    assert_mean(y, 3.5, math.sqrt(5.5), n, sigmas=8.0)


def test_graph_do_and_handler_do_agree_in_distribution():
    cp.set_rng_seed(3)
    scm = confounded()
    for v in (-1.0, 2.0):
        with torch.no_grad():
            by_graph = scm.do(x=v).model(n=N)
            by_handler = cp.do(scm.model, {"x": torch.tensor(v)})(n=N)
        assert torch.all(by_graph["x"] == v) and torch.all(by_handler["x"] == v)
        exact = {"z": (0.0, 1.0), "y": (2 * v, math.sqrt(10.0))}
        for node, (mean, std) in exact.items():
            for values in (by_graph, by_handler):
                assert_mean(values[node], mean, std, N)
                assert abs(float(values[node].std()) - std) < 5 * std / math.sqrt(2 * N)
            # and against each other: difference of two independent means
            gap = float(by_graph[node].mean() - by_handler[node].mean())
            assert abs(gap) < 4 * std * math.sqrt(2 / N)


def test_do_cuts_the_upstream_influence():
    cp.set_rng_seed(4)
    values = confounded().do(x=1.0).sample(N)
    # z no longer drives x, so z is still N(0, 1) and independent of x
    assert_mean(values["z"], 0.0, 1.0, N)
    correlation = torch.corrcoef(torch.stack([values["z"], values["y"]]))[0, 1]
    assert abs(float(correlation) - 3 / math.sqrt(10.0)) < 0.03


# -- log densities ------------------------------------------------------------------------


def normal(loc, scale, value):
    return torch.distributions.Normal(loc, scale).log_prob(torch.tensor(value))


def test_log_prob_matches_the_analytic_normal_densities():
    scm = confounded()
    z, x, y = 0.3, -0.2, 1.0
    expected = normal(0.0, 1.0, z) + normal(z, 1.0, x) + normal(2 * x + 3 * z, 1.0, y)
    got = scm.log_prob({"z": z, "x": x, "y": y})
    assert torch.allclose(got, expected)
    # conditioning does not change the joint density of a full assignment
    assert torch.allclose(scm.condition(y=y).log_prob({"z": z, "x": x, "y": y}), expected)


def test_log_prob_after_do_drops_the_intervened_factor():
    scm = confounded().do(x=1.0)
    z, y = 0.3, 1.0
    expected = normal(0.0, 1.0, z) + normal(2 * 1.0 + 3 * z, 1.0, y)
    assert torch.allclose(scm.log_prob({"z": z, "y": y}), expected)


def test_log_prob_batched_and_errors():
    scm = confounded()
    values = {"z": torch.tensor([0.1, 0.2]), "x": torch.tensor([0.0, 1.0]), "y": torch.tensor([1.0, 2.0])}
    got = scm.log_prob(values)
    assert got.shape == (2,)
    for row in range(2):
        single = scm.log_prob({k: v[row] for k, v in values.items()})
        assert torch.allclose(got[row], single)
    with pytest.raises(ValueError, match="missing: y"):
        scm.log_prob({"z": 0.0, "x": 0.0})
    with pytest.raises(KeyError, match="'w'"):
        scm.log_prob({"z": 0.0, "x": 0.0, "y": 0.0, "w": 1.0})


def test_log_prob_with_inputs():
    scm = cp.graphs.load("scale")
    expected = normal(8.5, 1.0, 9.0) + normal(9.0, 0.75, 9.5)
    assert torch.allclose(scm.log_prob({"weight": 9.0, "measurement": 9.5}, guess=8.5), expected)


# -- the lowered model --------------------------------------------------------------------


def test_model_calls_sample_once_per_node_in_order():
    with cp.trace() as tr:
        returned = confounded().model()
    assert list(tr.trace.nodes) == ["z", "x", "y"]
    assert all(site["type"] == "sample" for site in tr.trace.nodes.values())
    assert set(returned) == {"z", "x", "y"} and returned["y"].shape == ()
    assert confounded().to_function() is not None


def test_model_with_n_runs_in_a_plate():
    with cp.trace() as tr:
        values = confounded().model(n=7)
    for node in ("z", "x", "y"):
        site = tr.trace.nodes[node]
        assert site["value"].shape == (7,) and values[node].shape == (7,)
        assert [frame.size for frame in site["cond_indep_stack"]] == [7]
    with cp.trace() as tr:
        confounded().model(n=100, subsample_size=10)
    site = tr.trace.nodes["y"]
    assert site["value"].shape == (10,)
    assert site["scale"] == pytest.approx(10.0)


def test_intervened_site_is_recorded_but_not_scored():
    with cp.trace() as tr:
        confounded().do(x=1.0).model(n=5)
    site = tr.trace.nodes["x"]
    assert site["intervened"] and site["value"].shape == (5,)
    total = tr.trace.log_prob_sum()
    expected = sum(tr.trace.nodes[n]["fn"].log_prob(tr.trace.nodes[n]["value"]).sum() for n in ("z", "y"))
    assert torch.allclose(total, expected)


def test_condition_marks_the_site_observed():
    with cp.trace() as tr:
        confounded().condition(y=2.0).model()
    assert tr.trace.nodes["y"]["is_observed"]
    assert float(tr.trace.nodes["y"]["value"]) == 2.0


def test_data_dict_conditions_rows():
    data = {"x": torch.tensor([1.0, 2.0, 3.0])}
    with cp.trace() as tr:
        values = confounded().model(data=data)
    assert tr.trace.nodes["x"]["is_observed"]
    assert torch.equal(values["x"], data["x"])
    assert values["z"].shape == values["y"].shape == (3,)
    with pytest.raises(ValueError, match="'w' is not a node"):
        confounded().model(data={"w": torch.zeros(3)})
    with pytest.raises(ValueError, match="different numbers of rows"):
        confounded().model(data={"x": torch.zeros(3), "y": torch.zeros(4)})
    with pytest.raises(ValueError, match="intervened"):
        confounded().do(x=1.0).model(data=data)


def test_dataframe_conditions_rows():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 2.0]})
    with cp.trace() as tr:
        values = confounded().model(data=frame)
    assert tr.trace.nodes["x"]["is_observed"] and tr.trace.nodes["y"]["is_observed"]
    assert not tr.trace.nodes["z"]["is_observed"]
    assert torch.allclose(values["y"].double(), torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    assert values["z"].shape == (3,)


def test_repr_names_surgery():
    text = repr(cp.graphs.load("scale").do(weight=9.0))
    assert "weight" in text and "do=['weight']" in text


def test_to_moves_observed_and_intervened_values_and_leaves_the_original():
    scm = cp.SCM().add("z", "Normal(0, 1)").add("x", "Normal(z, 1)").add("y", "Normal(x, 1)")
    surgered = scm.do(x=1.0).condition(y=2.0)
    moved = surgered.to(torch.float64)
    assert moved.observed["y"].dtype == torch.float64 and moved.interventions["x"].dtype == torch.float64
    assert surgered.observed["y"].dtype == torch.float32
    assert moved.nodes == surgered.nodes and moved.parents("x") == ()


# -- state labels ---------------------------------------------------------------------


def labelled():
    """smoke -> either -> dysp, all binary with labels ('no', 'yes')."""
    return (cp.SCM()
            .add("smoke", "Bernoulli(0.5)", labels=("no", "yes"))
            .add("either", "Bernoulli(0.1 + 0.6*smoke)", labels=("no", "yes"))
            .add("dysp", "Bernoulli(0.1 + 0.7*either)", labels=("no", "yes")))


def test_labels_translate_to_codes_in_do_and_condition():
    scm = labelled()
    assert scm.labels("either") == ("no", "yes")
    assert scm.do(either="yes").interventions == {"either": torch.tensor(1.0)}
    assert scm.condition(dysp="no").observed == {"dysp": torch.tensor(0.0)}
    # codes still work, and batches of labels become batches of codes
    assert scm.do(either=1.0).interventions["either"] == 1.0
    assert torch.equal(scm.encode("dysp", ["yes", "no", "yes"]), torch.tensor([1.0, 0.0, 1.0]))
    # the labels survive surgery and copies, and sit on the graph
    assert scm.do(either="yes").condition(dysp="yes").copy().labels("dysp") == ("no", "yes")
    assert scm.graph.nodes["smoke"]["labels"] == ("no", "yes")
    # the sampled values stay codes
    assert set(scm.do(either="yes").sample(50)["dysp"].unique().tolist()) <= {0.0, 1.0}


def test_unknown_label_names_the_node_and_its_labels():
    scm = labelled()
    with pytest.raises(ValueError, match=r"node 'either': unknown label 'maybe'; its labels are 'no', 'yes'"):
        scm.do(either="maybe")
    with pytest.raises(ValueError, match=r"node 'dysp': unknown label 'perhaps'"):
        scm.condition(dysp="perhaps")
    with pytest.raises(ValueError, match=r"node 'either': 3 is neither one of its labels \('no', 'yes'\)"):
        scm.do(either=3)


def test_a_label_for_a_node_without_labels_is_an_error():
    with pytest.raises(ValueError, match=r"node 'x' has no labels, so 'yes' cannot be translated"):
        confounded().do(x="yes")
    with pytest.raises(ValueError, match=r"node 'z' has no labels"):
        confounded().condition(z="high")


def test_labels_are_checked_when_added():
    with pytest.raises(TypeError, match=r"node 't': labels must be a sequence"):
        cp.SCM().add("t", "Bernoulli(0.5)", labels="yes")
    with pytest.raises(ValueError, match=r"node 't': labels must be at least two distinct"):
        cp.SCM().add("t", "Bernoulli(0.5)", labels=("yes",))
    with pytest.raises(ValueError, match=r"node 't': labels must be at least two distinct"):
        cp.SCM().add("t", "Bernoulli(0.5)", labels=("a", "a"))


def test_labels_from_a_networkx_attribute_and_from_the_mechanism():
    graph = nx.DiGraph()
    graph.add_node("t", mechanism="Bernoulli(0.5)", labels=["off", "on"])
    assert cp.SCM(graph).labels("t") == ("off", "on")
    # a learnable mechanism carrying its own labels (what learned categorical nodes do)
    table = cp.causal.CategoricalTable("c", [], num_categories=3)
    table.labels = ("new", "returning", "loyal")
    scm = cp.SCM().add("c", table)
    assert scm.labels("c") == ("new", "returning", "loyal")
    assert scm.do(c="loyal").interventions["c"] == 2.0
    # labels given to add() take precedence over the mechanism's
    assert cp.SCM().add("c", table, labels=("a", "b", "c")).labels("c") == ("a", "b", "c")
    assert confounded().labels("x") is None
    with pytest.raises(KeyError, match="'w'"):
        confounded().labels("w")


# -- bad input: names, values, data (issue 9) -------------------------------------------------


@pytest.mark.parametrize("name, meaning", [
    ("e", "the constant"), ("pi", "the constant"), ("exp", "a function"), ("log", "a function"),
    ("where", "a function"), ("tensor", "a function"), ("Normal", "a distribution"), ("Delta", "a distribution"),
])
def test_names_of_expression_constants_and_functions_are_refused(name, meaning):
    with pytest.raises(ValueError, match=f"node name '{name}' is refused: in expressions '{name}' is {meaning}"):
        cp.SCM().add(name, "Normal(0, 1)")
    with pytest.raises(ValueError, match=f"node name '{name}' is refused"):
        cp.SCM().add(name, lambda: dist_normal())


def dist_normal():
    return cp.dist.Normal(0.0, 1.0)


def test_callable_parents_named_like_constants_are_refused():
    with pytest.raises(ValueError, match="parent of node 'y': name 'pi' is refused"):
        cp.SCM().add("y", lambda pi: cp.dist.Normal(pi, 1.0))
    with pytest.raises(ValueError, match="parent of node 'y': name 'exp' is refused"):
        cp.SCM().add("y", lambda exp: cp.dist.Normal(exp, 1.0))


def test_a_graph_with_a_constant_named_node_is_refused_too():
    graph = nx.DiGraph()
    graph.add_node("pi", mechanism="Normal(0, 1)")
    with pytest.raises(ValueError, match="node name 'pi' is refused"):
        cp.SCM(graph)


def test_an_expression_reads_e_and_pi_as_constants_so_no_edge_is_lost():
    scm = cp.SCM().add("x", "Normal(0, 1)").add("y", "Normal(x + e + pi, 1)")
    assert list(scm.graph.edges) == [("x", "y")] and scm.inputs == ()


@pytest.mark.parametrize("name, normal", [("ｘ", "x"), ("ﬁsh", "fish"), ("x\u2082", "x2")])
def test_names_that_unicode_normalises_into_another_name_are_refused(name, normal):
    if not name.isidentifier():
        pytest.skip("not an identifier")
    with pytest.raises(ValueError, match=f"normalises it to '{normal}'"):
        cp.SCM().add(name, "Normal(0, 1)")


def test_a_fullwidth_name_in_an_expression_is_refused_naming_the_node():
    scm = cp.SCM().add("x", "Normal(0, 1)")
    with pytest.raises(ExpressionError, match=r"node 'y': expression 'Normal\(ｘ, 1\)' \(column 8\): "
                                              r"character 'ｘ' \(U\+FF58\) is not allowed.*read it as 'x'"):
        scm.add("y", "Normal(ｘ, 1)")
    assert "y" not in scm


@pytest.mark.parametrize("text, fragment", [
    ("Normal(0,", "syntax error"),
    ("x.__class__", "attribute access"),
    ("open('f')", "'open' is not an allowed function"),
    ("Normal", "is a function"),
])
def test_an_expression_error_in_add_names_the_node(text, fragment):
    with pytest.raises(ExpressionError, match="node 'wet': expression") as info:
        cp.SCM().add("wet", text)
    assert fragment in str(info.value)


@pytest.mark.parametrize("surgery", ["do", "condition"])
@pytest.mark.parametrize("value, fragment", [
    (math.nan, "nan is not a number (NaN)"),
    (math.inf, "inf is infinite"),
    (-math.inf, "-inf is infinite"),
    ([0.0, math.nan], "(at index 1)"),
    (torch.tensor([math.inf]), "inf (at index 0) is infinite"),
    (None, "None (None) is not a number"),
    ({"a": 1.0}, "(dict) is not a number"),
    ("high", "has no labels, so 'high' cannot be translated"),
    ([[1.0], [2.0, 3.0]], "ragged list"),
    (2 + 1j, "complex"),
])
def test_do_and_condition_refuse_bad_values_naming_the_node(surgery, value, fragment):
    scm = confounded()
    with pytest.raises(ValueError, match="node 'x'") as info:
        getattr(scm, surgery)(x=value)
    assert fragment in str(info.value), str(info.value)
    assert "'y'" not in str(info.value)  # the node, not a child's mechanism


def test_surgery_with_a_list_of_the_wrong_shape_names_the_node():
    scm = confounded()
    for surgery in (scm.do, scm.condition):
        with pytest.raises(ValueError, match=r"node 'x': its (do|observed) value of shape \(3,\) does not fit"):
            surgery(x=[1.0, 2.0, 3.0]).model(n=4)


@pytest.mark.parametrize("mechanism, value, support", [
    ("Bernoulli(0.3)", 2, "Bernoulli mechanism (0 or 1)"),
    ("Bernoulli(0.3)", 0.5, "Bernoulli mechanism (0 or 1)"),
    ("Categorical(probs=[0.2, 0.3, 0.5])", 3, "Categorical mechanism (integers 0..2)"),
    ("Categorical(probs=[0.2, 0.3, 0.5])", 1.5, "Categorical mechanism (integers 0..2)"),
    ("Poisson(3.0)", -1, "Poisson mechanism (integers >= 0)"),
    ("Exponential(1.0)", -0.5, "Exponential mechanism (numbers >= 0)"),
    ("Delta(1.0)", 2.0, "Delta mechanism (only its value 1)"),
])
def test_out_of_support_evidence_names_the_node_and_the_support(mechanism, value, support):
    scm = cp.SCM().add("rain", mechanism).add("wet", "Normal(rain, 1.0)")
    # A support known before the run (a fixed distribution) refuses at condition(); a Delta's at the run.
    with pytest.raises(ValueError, match="node 'rain': (condition|observed) value") as info:
        scm.condition(rain=value).sample(5)
    assert support.replace("(only its value 1)", "") in str(info.value)
    with pytest.raises(ValueError, match="node 'rain': observed value"):
        scm.log_prob({"rain": value, "wet": 0.0})
    with pytest.raises(ValueError, match="node 'rain': observed value"):
        scm.condition(wet=1.0).fit(data={"rain": torch.tensor([0.0, value])}, steps=2, progress=False)


def test_evidence_a_deterministic_node_never_takes_names_the_node():
    scm = cp.SCM().add("x", "Normal(0, 1)").add("d", "Delta(2 * x)")
    with pytest.raises(ValueError, match="node 'd': observed value 2.0 is outside the support of its Delta"):
        scm.condition(d=2.0).sample(5)


def test_in_support_evidence_still_works():
    cp.set_rng_seed(0)
    scm = cp.SCM().add("rain", "Bernoulli(0.3)").add("wet", "Bernoulli(where(rain, 0.9, 0.1))")
    draws = scm.condition(wet=1).sample(2000)
    assert_mean(draws["rain"], 0.27 / 0.34, 0.4, 2000)


@pytest.mark.parametrize("column, fragment", [
    (torch.ones(3, 2), "expected a 1-d column"),
    (torch.tensor(1.0), "expected a 1-d column"),
    (["a", "b", "c"], "holds labels ('a', 'b', 'c') but node 'x' has no labels"),
    (None, "data column 'x'"),
    (torch.tensor([1.0, math.nan, 2.0]), "1 missing value (NaN), first at row 1"),
    ([1.0, math.inf, 2.0], "infinite value"),
    (torch.tensor([1 + 1j, 2 + 0j, 3 + 0j]), "complex"),
    ([1, None, 2], "missing value"),
])
def test_bad_data_columns_name_the_column(column, fragment):
    scm = confounded()
    for run in (lambda: scm.model(data={"x": column}),
                lambda: scm.fit(data={"x": column}, steps=2, progress=False)):
        with pytest.raises((ValueError, TypeError), match="data column 'x'") as info:
            run()
        assert fragment in str(info.value), str(info.value)


def test_an_extra_data_column_is_a_value_error_naming_it():
    scm = confounded()
    data = {"x": torch.zeros(3), "wind": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"data column 'wind' is not a node \(nodes: z, x, y\)"):
        scm.model(data=data)
    with pytest.raises(ValueError, match="data column 'wind' is not a node"):
        scm.fit(data=data, steps=2, progress=False)
    with pytest.raises(ValueError, match="data columns 'wind', 'rain' are not nodes"):
        scm.model(data={"wind": torch.zeros(3), "rain": torch.zeros(3)})
