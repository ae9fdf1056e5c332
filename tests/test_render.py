"""render_model / get_model_relations: dependencies from provenance tracking, plates as clusters."""

import shutil

import pydot
import pytest
import torch
from torch import nn

import causalppl as cp
from causalppl.infer.inspect import get_model_relations, render_model
from causalppl.nn import PyroModule, PyroSample
from causalppl.ops.provenance import ProvenanceTensor, get_provenance


@pytest.fixture(autouse=True)
def fresh_store():
    cp.clear_param_store()
    cp.set_rng_seed(0)


def hierarchical(data):
    mu = cp.sample("mu", cp.dist.Normal(0.0, 1.0))
    tau = cp.sample("tau", cp.dist.HalfCauchy(1.0))
    noise = cp.param("noise", torch.tensor(1.0), constraint=cp.constraints.positive)
    with cp.plate("groups", data.shape[-1]):
        theta = cp.sample("theta", cp.dist.Normal(mu, tau))
        cp.deterministic("shifted", theta + 1.0)
        with cp.plate("rows", data.shape[0]):
            cp.sample("y", cp.dist.Normal(theta, noise), obs=data)


DATA = torch.zeros(4, 3)


def test_provenance_follows_torch_operations():
    x = ProvenanceTensor(torch.ones(3), frozenset({"x"}))
    y = ProvenanceTensor(torch.tensor(2.0), frozenset({"y"}))
    assert get_provenance(torch.stack([x.sum(), y]).exp()) == {"x", "y"}
    assert get_provenance(x.max(dim=0).values) == {"x"}
    assert get_provenance(torch.zeros(2)) == frozenset()


def test_relations_are_the_direct_dependencies_only():
    relations = get_model_relations(hierarchical, model_args=(DATA,))
    assert relations["sample_sample"] == {"mu": [], "tau": [], "theta": ["mu", "tau"], "shifted": ["theta"],
                                          "y": ["theta"]}  # y does not depend on mu directly
    assert relations["sample_param"]["y"] == ["noise"]
    assert relations["sample_dist"] == {"mu": "Normal", "tau": "HalfCauchy", "theta": "Normal",
                                        "shifted": "Deterministic", "y": "Normal"}
    assert relations["plate_sample"] == {"groups": ["theta", "shifted", "y"], "rows": ["y"]}
    assert relations["observed"] == ["y"] and relations["deterministic"] == ["shifted"]
    assert relations["plate_parent"] == {"groups": None, "rows": "groups"}
    assert relations["param_constraint"]["noise"].startswith("GreaterThan")


def test_relations_leave_the_rng_and_validation_as_they_were():
    state = torch.get_rng_state()
    get_model_relations(hierarchical, model_args=(DATA,))
    assert torch.equal(torch.get_rng_state(), state)
    assert cp.runtime.is_validation_enabled()


def edges(graph):
    return sorted((e.get_source().strip('"'), e.get_destination().strip('"')) for e in graph.get_edges())


def test_dot_has_nodes_edges_and_nested_plate_clusters():
    graph = render_model(hierarchical, model_args=(DATA,))
    dot = graph.to_pydot()
    assert edges(dot) == [("mu", "theta"), ("tau", "theta"), ("theta", "y")]  # shifted is hidden
    (groups,) = dot.get_subgraphs()
    assert groups.get_name().strip('"') == "cluster_groups" and groups.get_label().strip('"') == "groups"
    assert [n.get_name().strip('"') for n in groups.get_nodes()] == ["theta"]
    (rows,) = groups.get_subgraphs()
    (y,) = rows.get_nodes()
    assert y.get_name().strip('"') == "y" and y.get("fillcolor") == "grey"  # observed
    assert {n.get_name().strip('"') for n in dot.get_nodes()} == {"mu", "tau"}


def test_options_draw_params_deterministic_sites_and_a_legend():
    source = render_model(hierarchical, model_args=(DATA,), render_params=True, render_deterministic=True,
                          render_distributions=True).source
    dot = pydot.graph_from_dot_data(source)[0]
    assert ("noise", "y") in edges(dot) and ("theta", "shifted") in edges(dot)
    assert '"noise" [label="noise" shape=plain' in source
    assert '"shifted" [label="shifted" shape=box' in source
    assert "y ~ Normal\\l" in source and "tau ~ HalfCauchy\\l" in source and "noise ∈ GreaterThan" in source


def test_a_hidden_deterministic_site_joins_its_inputs_to_its_users():
    def model():
        a = cp.sample("a", cp.dist.Normal(0.0, 1.0))
        b = cp.deterministic("b", 2 * a)
        cp.sample("c", cp.dist.Normal(b, 1.0))

    assert edges(render_model(model).to_pydot()) == [("a", "c")]
    assert edges(render_model(model, render_deterministic=True).to_pydot()) == [("a", "b"), ("b", "c")]


def test_bayesian_regression_module_renders_with_its_site_names(tmp_path):
    class BayesianRegression(PyroModule):
        def __init__(self):
            super().__init__()
            self.linear = PyroModule[nn.Linear](3, 1)
            self.linear.weight = PyroSample(cp.dist.Normal(0.0, 1.0).expand([1, 3]).to_event(2))
            self.linear.bias = PyroSample(cp.dist.Normal(0.0, 10.0).expand([1]).to_event(1))

        def forward(self, x, y=None):
            sigma = cp.sample("sigma", cp.dist.Uniform(0.0, 10.0))
            mean = self.linear(x).squeeze(-1)
            with cp.plate("data", x.shape[0]):
                cp.sample("obs", cp.dist.Normal(mean, sigma), obs=y)
            return mean

    graph = cp.render_model(BayesianRegression(), model_args=(torch.randn(5, 3), torch.randn(5)))
    assert edges(graph.to_pydot()) == [("linear.bias", "obs"), ("linear.weight", "obs"), ("sigma", "obs")]
    assert graph.render(tmp_path / "model.dot").read_text() == graph.source


def test_factor_sites_depend_on_what_their_log_factor_uses():
    def model():
        a = cp.sample("a", cp.dist.Normal(0.0, 1.0))
        cp.factor("penalty", -a ** 2)

    assert get_model_relations(model)["sample_sample"]["penalty"] == ["a"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_render_writes_a_png(tmp_path):
    path = tmp_path / "hierarchical.png"
    graph = render_model(hierarchical, model_args=(DATA,), filename=path, render_distributions=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert graph._repr_svg_().lstrip().startswith("<?xml")


# --- get_dependencies (the structures Pyro's tests pin) ----------------------------------------

from causalppl.distributions.testing.fakes import NonreparameterizedNormal  # noqa: E402
from causalppl.infer.inspect import get_dependencies  # noqa: E402

_ = set()


def test_dependencies_pass_through_deterministic_sites_and_detach():
    def model(data):
        a = cp.sample("a", cp.dist.Normal(0, 1))
        b = cp.sample("b", NonreparameterizedNormal(a, 0))
        c = cp.sample("c", cp.dist.Normal(b, 1))
        d = cp.sample("d", cp.dist.Normal(a, c.exp()))
        e = cp.sample("e", cp.dist.Normal(0, 1))
        f = cp.sample("f", cp.dist.Normal(0, 1))
        cp.sample("g", cp.dist.Bernoulli(logits=e + f), obs=torch.tensor(0.0))
        with cp.plate("p", len(data)):
            h = cp.sample("h", cp.dist.Normal(c, d.detach().exp()))  # detach keeps the provenance
            cp.deterministic("i", h + 1)
            j = cp.sample("j", cp.dist.Delta(h + 1), obs=h + 1)
            cp.sample("k", cp.dist.Normal(a, j.exp()), obs=data)

    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            actual = get_dependencies(model, (torch.randn(3),))
        assert actual == {
            "prior_dependencies": {
                "a": {"a": _}, "b": {"b": _, "a": _}, "c": {"c": _, "b": _}, "d": {"d": _, "c": _, "a": _},
                "e": {"e": _}, "f": {"f": _}, "g": {"g": _, "e": _, "f": _}, "h": {"h": _, "c": _, "d": _},
                "k": {"k": _, "a": _, "h": _},
            },
            "posterior_dependencies": {
                "a": {"a": _, "b": _, "c": _, "d": _, "h": _, "k": _}, "b": {"b": _, "c": _},
                "c": {"c": _, "d": _, "h": _}, "d": {"d": _, "h": _}, "e": {"e": _, "g": _, "f": _},
                "f": {"f": _, "g": _}, "h": {"h": _, "k": _},
            },
        }


def test_dependencies_couple_along_plates_summed_downstream():
    def model(data):
        i_plate = cp.plate("i", data.shape[0], dim=-2)
        j_plate = cp.plate("j", data.shape[1], dim=-1)
        with i_plate, j_plate:
            x = cp.sample("x", cp.dist.Normal(0, 1))
        with i_plate:
            cp.sample("y", cp.dist.Normal(x.sum(-1, True), 1), obs=data.sum(-1, True))
        with j_plate:
            cp.sample("z", cp.dist.Normal(x.sum(-2, True), 1), obs=data.sum(-2, True))

    assert get_dependencies(model, (torch.randn(3, 2),)) == {
        "prior_dependencies": {"x": {"x": _}, "y": {"y": _, "x": _}, "z": {"z": _, "x": _}},
        "posterior_dependencies": {"x": {"x": {"i", "j"}, "y": _, "z": _}},
    }


def test_dependencies_of_nested_plate_colliders():
    def model():
        plate_i = cp.plate("i", 2, dim=-1)
        plate_j = cp.plate("j", 3, dim=-2)
        plate_k = cp.plate("k", 3, dim=-2)
        with plate_i:
            with plate_j:
                a = cp.sample("a", cp.dist.Normal(0, 1))
            with plate_k:
                b = cp.sample("b", cp.dist.Normal(0, 1))
            c = cp.sample("c", cp.dist.Normal(a.sum(0) + b.sum([0, 1]), 1))
        cp.sample("d", cp.dist.Normal(c.sum(), 1), obs=torch.zeros(()))

    assert get_dependencies(model) == {
        "prior_dependencies": {"a": {"a": _}, "b": {"b": _}, "c": {"c": _, "a": _, "b": _}, "d": {"d": _, "c": _}},
        "posterior_dependencies": {"a": {"a": {"j"}, "b": _, "c": _}, "b": {"b": {"k"}, "c": _},
                                   "c": {"c": {"i"}, "d": _}},
    }


def test_dependencies_of_factors_and_discrete_observations():
    def model():
        a = cp.sample("a", cp.dist.Normal(0, 1))
        cp.factor("b", torch.tensor(0.0))
        cp.factor("c", a)

    assert get_dependencies(model) == {
        "prior_dependencies": {"a": {"a": _}, "b": {"b": _}, "c": {"c": _, "a": _}},
        "posterior_dependencies": {"a": {"a": _, "c": _}},
    }

    def discrete():
        a = cp.sample("a", cp.dist.Normal(0, 1))
        b = cp.sample("b", cp.dist.Normal(a[..., None], torch.ones(3)).to_event(1))
        c = cp.sample("c", cp.dist.MultivariateNormal(torch.zeros(3) + a[..., None], torch.eye(3)))
        with cp.plate("i", 2):
            d = cp.sample("d", cp.dist.Dirichlet((b + c).exp()))
            cp.sample("e", cp.dist.Categorical(logits=d), obs=torch.tensor([0, 0]))

    assert get_dependencies(discrete)["posterior_dependencies"] == {
        "a": {"a": _, "b": _, "c": _}, "b": {"b": _, "c": _, "d": _}, "c": {"c": _, "d": _}, "d": {"d": _, "e": _}}
