"""Tests for causalppl.graph.persist: an SCM saved to one file and loaded back."""

import os
import pickle

import pytest
import torch

import causalppl as cp
from causalppl.causal import learn, learnable
from causalppl.graph import persist

EDGES = [("z", "x"), ("z", "y"), ("x", "y")]


def saved_and_loaded(scm, tmp_path, name="model.cpm"):
    path = tmp_path / name
    scm.save(path)
    return cp.load(path)


def params_of(scm):
    return {name: value.detach() for name, value in scm.params.items()}


def assert_same_params(a, b):
    assert sorted(a.params.keys()) == sorted(b.params.keys())  # cp.module may re-register in another order
    for name in a.params.keys():
        assert torch.equal(a.params[name], b.params[name]), name
        assert repr(a.params.get_constraint(name)) == repr(b.params.get_constraint(name)), name


def same_seed_ate(scm, seed=11, **kwargs):
    cp.set_rng_seed(seed)
    effect = cp.causal.ate(scm, "x", "y", n=2000, **kwargs)
    return effect.ate, effect.stderr, effect.sd


@pytest.fixture
def confounded_data(one_thread_seeded):
    return cp.graphs.load("confounded").sample(400)


# -- round trips ---------------------------------------------------------------------------


def test_expression_scm_with_latents_inputs_and_surgery(tmp_path, one_thread_seeded):
    scm = (cp.SCM()
           .add("u", "Normal(mu, 1.0)", latent=True)
           .add("x", "Normal(u + 1, 0.5)")
           .add("w", "Bernoulli(probs=sigmoid(x))")
           .add("y", "Normal(2*x - u + 3*w, 1.0)"))
    query = scm.do(x=1.5).condition(y=2.0)
    again = saved_and_loaded(query, tmp_path)

    assert again.nodes == query.nodes and again.inputs == query.inputs == ("mu",)
    assert again.latent == {"u"}
    assert again.interventions == {"x": torch.tensor(1.5)}
    assert again.observed == {"y": torch.tensor(2.0)}
    assert sorted(again.graph.edges) == sorted(query.graph.edges)  # x's incoming edge stays cut
    for node in scm.nodes:
        assert again.mechanism(node).text == scm.mechanism(node).text
    values = {"u": torch.tensor(0.3), "x": torch.tensor(1.5), "w": torch.tensor(1.0), "y": torch.tensor(2.0)}
    assert torch.equal(again.log_prob(values, mu=0.0), query.log_prob(values, mu=0.0))
    # An intervened SCM samples alike after loading (same seed, same draws).
    intervened = scm.do(x=1.5)
    loaded = saved_and_loaded(intervened, tmp_path, "do.cpm")
    cp.set_rng_seed(1)
    first = intervened.sample(50, mu=0.5)
    cp.set_rng_seed(1)
    second = loaded.sample(50, mu=0.5)
    for node in scm.nodes:
        assert torch.equal(first[node], second[node]), node
    assert loaded.do(w=0.0).interventions.keys() == {"x", "w"}  # and it does surgery of its own


def test_a_learned_scm_keeps_its_params_and_answers(tmp_path, confounded_data):
    scm = cp.SCM.from_graph(EDGES, confounded_data)
    scm.fit(confounded_data, steps=300, progress=False)
    again = saved_and_loaded(scm, tmp_path)

    assert [again.mechanism(n).fn.text for n in again.nodes] == [scm.mechanism(n).fn.text for n in scm.nodes]
    assert_same_params(scm, again)
    assert same_seed_ate(again) == same_seed_ate(scm)
    assert same_seed_ate(again, seed=12) != same_seed_ate(scm, seed=11)  # the check can fail


def test_a_bayesian_fit_keeps_its_posterior_draws(tmp_path, confounded_data):
    scm = cp.SCM.from_graph(EDGES, confounded_data, bayesian=True)
    scm.fit(confounded_data, steps=300, progress=False, posterior_draws_kept=200)
    again = saved_and_loaded(scm, tmp_path)

    posterior = scm._state.posterior
    assert posterior and again._state.posterior.keys() == posterior.keys()
    for site, draws in posterior.items():
        assert draws.shape[0] == 200
        assert torch.equal(again._state.posterior[site], draws), site
    assert again.mechanism("y").fn.bayesian
    before, after = same_seed_ate(scm), same_seed_ate(again)
    assert after == before and after[2] is not None  # sd over the posterior draws


def test_a_categorical_table_scm_with_labels(tmp_path, one_thread_seeded):
    a = torch.randint(3, (500,))
    b = (a + (torch.rand(500) < 0.3).long()) % 3
    data = {"a": a, "b": b}
    scm = cp.SCM.from_graph([("a", "b")], data)
    scm.mechanism("a").fn.labels = ["low", "mid", "high"]
    scm.fit(data, steps=300, progress=False)
    again = saved_and_loaded(scm, tmp_path)

    table = again.mechanism("b").fn
    assert isinstance(table, learn.CategoricalTable)
    assert (table.num_categories, table.parent_cardinalities) == (3, (3,))
    assert list(again.mechanism("a").fn.labels) == ["low", "mid", "high"]
    assert getattr(table, "labels", None) is None
    assert_same_params(scm, again)
    probs = again.params["b.probs"]
    assert probs.shape == (3, 3) and probs[0, 0] > 0.5  # it is the fitted table, not the uniform init
    cp.set_rng_seed(3)
    before = cp.causal.interventional(scm, do={"a": 2}, n=1000).mean("b")
    cp.set_rng_seed(3)
    assert cp.causal.interventional(again, do={"a": 2}, n=1000).mean("b") == before


def test_an_mlp_mechanism_gives_the_same_answer_after_loading(tmp_path, confounded_data):
    scm = cp.SCM.from_graph(EDGES, confounded_data, mechanisms={"y": "mlp"})
    scm.fit(confounded_data, steps=20, progress=False)
    again = saved_and_loaded(scm, tmp_path)
    assert_same_params(scm, again)
    assert same_seed_ate(again) == same_seed_ate(scm)


@pytest.mark.parametrize("distribution", [
    cp.dist.Normal(1.0, 2.0), cp.dist.LogNormal(0.5, 0.25), cp.dist.Laplace(0.0, 3.0),
    cp.dist.StudentT(4.0, 1.0, 2.0), cp.dist.Uniform(-1.0, 2.0), cp.dist.Exponential(3.0),
    cp.dist.Gamma(2.0, 0.5), cp.dist.Beta(2.0, 5.0), cp.dist.Poisson(4.0),
    cp.dist.Bernoulli(probs=torch.tensor(0.2)), cp.dist.Bernoulli(logits=torch.tensor(-1.0)),
    cp.dist.Categorical(probs=torch.tensor([0.2, 0.8])), cp.dist.Categorical(logits=torch.tensor([0.0, 1.0, 2.0])),
    cp.dist.Delta(torch.tensor([1.0, 2.0]), event_dim=1),
], ids=lambda d: type(d).__name__)
def test_fixed_distribution_roots(tmp_path, distribution):
    scm = cp.SCM().add("r", distribution)
    rebuilt = saved_and_loaded(scm, tmp_path).mechanism("r")()
    assert type(rebuilt) is type(distribution)
    value = distribution.sample()
    # (Categorical normalises its logits when built: rebuilding re-normalises, to float rounding.)
    assert torch.allclose(rebuilt.log_prob(value), distribution.log_prob(value), rtol=0, atol=1e-6)
    assert rebuilt.batch_shape == distribution.batch_shape and rebuilt.event_shape == distribution.event_shape
    if isinstance(distribution, (cp.dist.Bernoulli, cp.dist.Categorical)):
        built_from = "logits" if distribution._param is vars(distribution).get("logits") else "probs"
        assert torch.allclose(getattr(rebuilt, built_from), getattr(distribution, built_from), rtol=0, atol=1e-6)
        assert built_from in vars(rebuilt)


def test_the_loaded_scm_is_independent_of_the_original(tmp_path, confounded_data):
    scm = cp.SCM.from_graph(EDGES, confounded_data)
    scm.fit(confounded_data, steps=50, progress=False)
    again = saved_and_loaded(scm, tmp_path)
    original = params_of(scm)

    again.fit(confounded_data, steps=50, progress=False)
    assert all(torch.equal(value, scm.params[name]) for name, value in original.items())
    assert not torch.equal(again.params["y.weight"], scm.params["y.weight"])
    refitted = params_of(again)
    scm.fit(confounded_data, steps=20, progress=False)
    assert all(torch.equal(value, again.params[name]) for name, value in refitted.items())
    assert len(cp.get_param_store()) == 0  # neither touched the global store


def test_the_file_is_plain_data_that_loads_with_weights_only(tmp_path, confounded_data):
    scm = cp.SCM.from_graph(EDGES, confounded_data, bayesian=True)
    scm.fit(confounded_data, steps=20, progress=False, posterior_draws_kept=10)
    path = tmp_path / "model.cpm"
    scm.save(path)
    data = torch.load(path, weights_only=True)
    assert (data["format"], data["version"]) == ("causalppl.scm", 1)
    assert [node["name"] for node in data["nodes"]] == ["z", "x", "y"]
    assert data["nodes"][2]["mechanism"]["type"] == "learnable"
    assert data["nodes"][2]["mechanism"]["spec"]["kind"] == "LinearGaussian"

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or type(value) in (bool, int, float, str, torch.Tensor)

    assert plain(data)


def test_a_fit_record_keeps_only_plain_data_and_says_what_it_left_out(tmp_path, confounded_data):
    scm = cp.SCM.from_graph(EDGES, confounded_data)
    scm._state.fit = {"data": confounded_data,
                      "options": {"steps": 300, "guide": "normal", "optim": cp.optim.Adam({"lr": 0.1}),
                                  "callback": print}}
    path = tmp_path / "model.cpm"
    scm.save(path)
    again = cp.load(path)
    assert again._state.fit["options"] == {"steps": 300, "guide": "normal"}
    assert all(torch.equal(again._state.fit["data"][k], v) for k, v in confounded_data.items())
    notes = torch.load(path, weights_only=True)["notes"]
    assert any("'optim'" in note and "PyroOptim" in note for note in notes), notes
    assert any("'callback'" in note for note in notes), notes


def test_map_location(tmp_path, confounded_data):
    scm = cp.SCM.from_graph(EDGES, confounded_data)
    scm.fit(confounded_data, steps=10, progress=False)
    scm.save(tmp_path / "m.cpm")
    again = cp.load(tmp_path / "m.cpm", map_location="cpu")
    assert all(value.device.type == "cpu" for value in again.params.values())


# -- learnable mechanisms are saved as their spec() ---------------------------------------------


def test_learnable_mechanisms_are_saved_as_their_spec(tmp_path, confounded_data, monkeypatch):
    scm = cp.SCM.from_graph(EDGES, confounded_data)
    scm.fit(confounded_data, steps=10, progress=False)
    path = tmp_path / "model.cpm"
    scm.save(path)
    saved = torch.load(path, weights_only=True)["nodes"]
    for entry in saved:
        assert entry["mechanism"] == {"type": "learnable", "spec": scm.mechanism(entry["name"]).fn.spec()}
    assert "standardization" in saved[2]["mechanism"]["spec"]  # the fit's units travel with the model

    rebuilt = []
    original = learnable.mechanism_from_spec

    def recording(spec):
        rebuilt.append(spec["kind"])
        return original(spec)

    monkeypatch.setattr(learnable, "mechanism_from_spec", recording)
    again = cp.load(path)
    assert rebuilt == ["LinearGaussian"] * 3
    for node in scm.nodes:
        assert again.mechanism(node).fn.spec() == scm.mechanism(node).fn.spec()


# -- atomic writes and bad paths -----------------------------------------------------------------


def test_a_failing_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.cpm"
    cp.SCM().add("x", "Normal(0, 1)").save(path)
    before = path.read_bytes()

    def crash(obj, file, *args, **kwargs):
        file.write(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        cp.SCM().add("x", "Normal(5, 1)").save(path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.cpm"]  # no temporary file left behind
    assert cp.load(path).mechanism("x").text == "Normal(0, 1)"


def test_bad_save_paths_are_refused_before_anything_is_written(tmp_path):
    scm = cp.SCM().add("x", "Normal(0, 1)")
    with pytest.raises(FileNotFoundError, match="no-such-folder.*does not exist"):
        scm.save(tmp_path / "no-such-folder" / "model.cpm")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        scm.save(tmp_path)
    assert os.listdir(tmp_path) == []


def test_a_python_callable_mechanism_is_refused_naming_the_node(tmp_path):
    scm = cp.SCM().add("x", "Normal(0, 1)").add("y", lambda x: cp.dist.Normal(x, 1.0))
    with pytest.raises(ValueError, match="node 'y'.*Python callable.*expression string.*learnable"):
        scm.save(tmp_path / "model.cpm")
    assert os.listdir(tmp_path) == []


def test_an_unsupported_distribution_is_refused_naming_the_node(tmp_path):
    scm = cp.SCM().add("v", cp.dist.MultivariateNormal(torch.zeros(2), torch.eye(2)))
    with pytest.raises(ValueError, match="node 'v'.*MultivariateNormal"):
        scm.save(tmp_path / "model.cpm")


# -- refusing files that are not ours --------------------------------------------------------------


class RunsCode:
    """Unpickling this would create a file: loading must refuse it, never run it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.cpm"
    good = persist.to_data(cp.SCM().add("x", "Normal(0, 1)"))
    torch.save({**good, "fit": RunsCode(marker)}, path)
    with pytest.raises(ValueError, match="evil.cpm.*not a causalppl SCM file"):
        cp.load(path)
    assert not marker.exists()
    with open(tmp_path / "plain.pkl", "wb") as file:
        pickle.dump(RunsCode(marker), file, protocol=2)
    with pytest.raises(ValueError, match="plain.pkl"):
        cp.load(tmp_path / "plain.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04 truncated zip"])
def test_garbage_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "garbage.cpm"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="garbage.cpm: not a causalppl SCM file"):
        cp.load(path)


def test_other_torch_files_are_refused(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not a causalppl SCM file$"):
        cp.load(tmp_path / "other.pt")
    cp.param("a", torch.tensor(1.0))
    cp.get_param_store().save(tmp_path / "params.pt")
    with pytest.raises(ValueError, match="params.pt: not a causalppl SCM file.*param store"):
        cp.load(tmp_path / "params.pt")
    # and the other way round: a param store will not read an SCM file
    cp.SCM().add("x", "Normal(0, 1)").save(tmp_path / "model.cpm")
    with pytest.raises(ValueError, match="model.cpm: this is a saved SCM.*cp.load"):
        cp.ParamStore().load(tmp_path / "model.cpm")


def edited(node_mechanism=None, **top):
    data = persist.to_data(cp.SCM().add("x", "Normal(0, 1)"))
    if node_mechanism is not None:
        data["nodes"][0]["mechanism"] = node_mechanism
    data.update(top)
    return data


@pytest.mark.parametrize("data, message", [
    (edited(version=99), "version 99 is not supported"),
    (edited(version="1"), "version '1' is not supported"),
    (edited({"type": "distribution", "family": "system", "args": {}}),
     "node 'x'.*unknown distribution family 'system'"),
    (edited({"type": "distribution", "family": "Normal", "args": {"loc": torch.tensor(0.0)}}),
     "node 'x'.*Normal needs the arguments"),
    (edited({"type": "learnable", "spec": {"kind": "Popen", "node": "x", "parents": []}}),
     "unknown learnable mechanism kind 'Popen'"),
    (edited({"type": "expression", "text": "__import__('os').system('true')"}), "not allowed"),
    (edited({"type": "pickle"}), "node 'x'.*unknown mechanism type 'pickle'"),
    (edited(nodes="x"), "'nodes' should be a list"),
    (edited(observed={"nope": torch.tensor(1.0)}), "'nope' is not a node"),
], ids=["version", "version-str", "family", "arguments", "kind", "expression", "type", "nodes", "observed"])
def test_files_with_bad_contents_are_refused_naming_the_file(tmp_path, data, message):
    path = tmp_path / "edited.cpm"
    torch.save(data, path)
    with pytest.raises(ValueError, match=f"edited.cpm: .*{message}"):
        cp.load(path)


def test_a_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.cpm"):
        cp.load(tmp_path / "missing.cpm")
