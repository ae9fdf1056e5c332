"""Tests of causalppl.causal.learn: learnable mechanisms and from_graph.

Fits use a small SVI loop on ``scm.model(data=...)``; point-estimate
mechanisms need a guide that samples nothing. Tolerances come from the
standard errors of the maximum-likelihood estimates at the sample size used.
"""

import math

import networkx as nx
import pytest
import torch

import causalppl as cp
from causalppl.causal.learn import (
    CategoricalTable,
    LinearGaussian,
    Logistic,
    MLPGaussian,
    from_graph,
)

pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def no_guide():
    pass


def fit(model, steps, lr=0.05, guide=no_guide, loss=None):
    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": lr}), loss or cp.infer.Trace_ELBO())
    return [svi.step() for _ in range(steps)]


def param(name, scm=None):
    """A param's value: from ``scm``'s own store, or the global one (mechanisms called directly)."""
    store = scm.params if scm is not None else cp.get_param_store()
    return store[name].detach()


def coefficients(scm, node):
    """Fitted bias, weights (and scale) of a point-estimate node, in the data's units."""
    return scm.mechanism(node).fn.coefficients(scm.params)


def weights(scm, node):
    """Parent name -> fitted weight of a point-estimate linear/logistic node, in the data's units."""
    return coefficients(scm, node)["weights"]


def linear_data(n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=generator)
    x = 1.5 * z + torch.randn(n, generator=generator)
    y = 2 * x - z + 0.5 + 0.5 * torch.randn(n, generator=generator)
    return {"z": z, "x": x, "y": y}


EDGES = [("z", "x"), ("x", "y"), ("z", "y")]


# -- fitting -----------------------------------------------------------------------


def test_linear_scm_recovers_coefficients():
    cp.set_rng_seed(0)
    data = linear_data(10_000)
    scm = from_graph(EDGES, data)
    losses = fit(lambda: scm.model(data=data), steps=400, lr=0.05)
    assert losses[-1] < losses[0]
    # The ML standard errors here are <= 0.01, so 0.05 leaves room for optimisation error.
    assert weights(scm, "x")["z"] == pytest.approx(1.5, abs=0.05)
    assert weights(scm, "y")["x"] == pytest.approx(2.0, abs=0.05)
    assert weights(scm, "y")["z"] == pytest.approx(-1.0, abs=0.05)
    assert coefficients(scm, "y")["bias"] == pytest.approx(0.5, abs=0.05)
    assert coefficients(scm, "x")["scale"] == pytest.approx(1.0, abs=0.05)
    assert coefficients(scm, "y")["scale"] == pytest.approx(0.5, abs=0.05)
    assert coefficients(scm, "z")["bias"] == pytest.approx(0.0, abs=0.05)


def test_minibatches_give_the_same_estimates():
    cp.set_rng_seed(1)
    data = linear_data(10_000)
    scm = from_graph(EDGES, data)
    model = lambda: scm.model(data=data, subsample_size=500)
    tr = cp.trace(model).get_trace()
    assert tr.nodes["y"]["value"].shape == (500,)
    assert tr.nodes["y"]["scale"] == pytest.approx(20.0)
    fit(model, steps=400, lr=0.05)
    fit(model, steps=300, lr=0.005)  # a smaller step size to settle the minibatch noise
    assert weights(scm, "y")["x"] == pytest.approx(2.0, abs=0.05)
    assert weights(scm, "y")["z"] == pytest.approx(-1.0, abs=0.05)
    assert weights(scm, "x")["z"] == pytest.approx(1.5, abs=0.05)
    assert coefficients(scm, "y")["bias"] == pytest.approx(0.5, abs=0.05)


def test_logistic_recovers_coefficient():
    cp.set_rng_seed(2)
    n, bias, weight = 5000, 0.5, 1.2
    x = torch.randn(n)
    t = torch.bernoulli(torch.sigmoid(bias + weight * x))
    scm = from_graph([("x", "t")], {"x": x, "t": t})
    assert isinstance(scm.mechanism("t").fn, Logistic)
    fit(lambda: scm.model(data={"x": x, "t": t}), steps=500, lr=0.05)
    # Standard errors from the Fisher information at the true coefficients.
    p = torch.sigmoid(bias + weight * x)
    design = torch.stack([torch.ones(n), x], dim=1)
    fisher = design.T @ (design * (p * (1 - p))[:, None])
    se_bias, se_weight = torch.linalg.inv(fisher).diagonal().sqrt().tolist()
    assert weights(scm, "t")["x"] == pytest.approx(weight, abs=4 * se_weight)
    assert coefficients(scm, "t")["bias"] == pytest.approx(bias, abs=4 * se_bias)


def test_categorical_table_recovers_frequencies():
    cp.set_rng_seed(3)
    n = 6000
    prior = torch.tensor([0.2, 0.5, 0.3])
    table = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    a = torch.multinomial(prior, n, replacement=True)
    c = torch.multinomial(table[a], 1).squeeze(-1)
    data = {"a": a, "c": c}
    scm = from_graph([("a", "c")], data)
    mech = scm.mechanism("c").fn
    assert isinstance(mech, CategoricalTable) and mech.parent_cardinalities == (3,)
    assert mech.num_categories == 3
    fit(lambda: scm.model(data=data), steps=500, lr=0.05)
    fitted = param("c.probs", scm)
    assert fitted.shape == (3, 3)
    for row in range(3):
        rows = c[a == row]
        empirical = torch.bincount(rows, minlength=3).float() / len(rows)
        # The ML estimate is the empirical frequency; the truth is within 4 SE of it.
        assert torch.allclose(fitted[row], empirical, atol=0.01)
        se = (table[row] * (1 - table[row]) / len(rows)).sqrt()
        assert ((fitted[row] - table[row]).abs() < 4 * se + 0.01).all()
    empirical_a = torch.bincount(a, minlength=3).float() / n
    assert torch.allclose(param("a.probs", scm), empirical_a, atol=0.01)


def test_mlp_fits_a_nonlinear_mechanism_better_than_linear():
    cp.set_rng_seed(4)
    n = 2000
    x = 6 * torch.rand(n) - 3
    y = torch.sin(x) + 0.1 * torch.randn(n)
    data = {"x": x, "y": y}
    linear = from_graph([("x", "y")], data, mechanisms={"y": "linear"})
    linear_losses = fit(lambda: linear.model(data=data), steps=300, lr=0.05)
    linear_scale = coefficients(linear, "y")["scale"]
    cp.clear_param_store()
    mlp = from_graph([("x", "y")], data, mechanisms={"y": "mlp"})
    assert isinstance(mlp.mechanism("y").fn, MLPGaussian)
    mlp_losses = fit(lambda: mlp.model(data=data), steps=1000, lr=0.02)
    assert any(name.startswith("y.net.") for name in mlp.params.keys())
    assert mlp_losses[-1] < linear_losses[-1] - 0.5 * n  # far better per row
    assert linear_scale > 0.4
    with torch.no_grad(), cp.handlers.param_scope(store=mlp.params):
        assert float(mlp.mechanism("y")(x=torch.zeros(1)).scale) < 0.2
        grid = torch.linspace(-2.5, 2.5, 11)
        mean = mlp.mechanism("y")(x=grid).mean
    assert (mean - torch.sin(grid)).abs().max() < 0.15


# -- Bayesian mode -----------------------------------------------------------------


def bayes_data(n=1000):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(n, generator=generator)
    y = 2 * x + 0.5 + torch.randn(n, generator=generator)
    return {"x": x, "y": y}


def ols(data):
    design = torch.stack([data["x"], torch.ones_like(data["x"])], dim=1)
    coef = torch.linalg.lstsq(design, data["y"][:, None]).solution.squeeze(-1)
    sigma = (data["y"] - design @ coef).std()
    return coef, sigma * torch.linalg.inv(design.T @ design).diagonal().sqrt()


def test_bayesian_weights_are_drawn_once_per_run_outside_the_rows_plate():
    data = bayes_data(50)
    scm = from_graph([("x", "y")], data, bayesian=True)
    tr = cp.trace(lambda: scm.model(data=data)).get_trace()
    assert tr.nodes["y.weight"]["cond_indep_stack"] == ()
    assert tr.nodes["y.weight"]["value"].shape == (1,)
    assert tr.nodes["y.bias"]["value"].shape == ()
    assert [f.name for f in tr.nodes["y"]["cond_indep_stack"]] == ["_rows"]
    assert not tr.nodes["y.weight"]["is_observed"]
    assert "y.scale" in tr.nodes and tr.nodes["y.scale"]["type"] == "param"
    # Vectorised particles: weights (particles, 1, P) broadcast against rows (particles, n).
    with cp.plate("particles", 4, dim=-2):
        tr = cp.trace(lambda: scm.model(data=data)).get_trace()
    assert tr.nodes["y.weight"]["value"].shape == (4, 1, 1)
    assert tr.nodes["y"]["fn"].batch_shape == (4, 50)
    with pytest.raises(RuntimeError, match="node 'q'.*prepare"):
        LinearGaussian("q", ["x"], bayesian=True)(x=torch.zeros(2))


def raw_units(scm):
    """The SCM with every mechanism's standardisation off, so params are in the data's units."""
    for node in scm.nodes:
        scm.mechanism(node).fn.standardization = {}
    return scm


def test_bayesian_linear_with_a_mean_field_guide():
    cp.set_rng_seed(6)
    data = bayes_data()
    scm = raw_units(from_graph([("x", "y")], data, bayesian=True))
    assert scm.mechanism("y").fn.text == "LinearGaussian(x, bayesian=True)"
    assert scm.mechanism("y").text is None  # not an expression: DOT writes it as a callable

    def guide():
        for site, shape in (("y.weight", (1,)), ("y.bias", ()), ("x.bias", ())):
            loc = cp.param(f"q.{site}.loc", torch.zeros(shape))
            scale = cp.param(f"q.{site}.scale", torch.full(shape, 0.1), cp.constraints.positive)
            cp.sample(site, cp.dist.Independent(cp.dist.Normal(loc, scale), len(shape)))

    fit(lambda: scm.model(data=data), steps=600, lr=0.05, guide=guide)
    (w_hat, b_hat), (w_se, b_se) = ols(data)
    assert param("q.y.weight.loc").item() == pytest.approx(w_hat.item(), abs=0.05)
    assert param("q.y.bias.loc").item() == pytest.approx(b_hat.item(), abs=0.05)
    # The posterior sd is the OLS standard error (flat-ish N(0, 1) prior, n = 1000).
    assert 0.5 * w_se < param("q.y.weight.scale").item() < 2 * w_se


def test_bayesian_linear_with_autonormal():
    autoguide = pytest.importorskip("causalppl.infer.autoguide", reason="AutoNormal not written yet")
    if not hasattr(autoguide, "AutoNormal"):
        pytest.skip("causalppl.infer.autoguide has no AutoNormal yet")
    cp.set_rng_seed(7)
    data = bayes_data()
    scm = raw_units(from_graph([("x", "y")], data, bayesian=True))
    model = lambda: scm.model(data=data)
    guide = autoguide.AutoNormal(model)
    fit(model, steps=600, lr=0.05, guide=guide)
    median = guide.median()
    (w_hat, b_hat), (w_se, _) = ols(data)
    assert set(median) == {"x.bias", "y.weight", "y.bias"}
    assert median["y.weight"].item() == pytest.approx(w_hat.item(), abs=0.05)
    assert median["y.bias"].item() == pytest.approx(b_hat.item(), abs=0.05)
    low, high = guide.quantiles([0.16, 0.84])["y.weight"]
    assert 0.5 * w_se < (high - low).item() / 2 < 2 * w_se


def test_bayesian_logistic_and_categorical_broadcast_over_particles():
    generator = torch.Generator().manual_seed(8)
    a = torch.randint(0, 3, (30,), generator=generator)
    t = torch.randint(0, 2, (30,), generator=generator)
    c = torch.randint(0, 4, (30,), generator=generator)
    data = {"a": a, "t": t, "c": c}
    scm = from_graph([("a", "c"), ("t", "c"), ("a", "t")], data, bayesian=True)
    assert isinstance(scm.mechanism("t").fn, Logistic)
    assert scm.mechanism("c").fn.parent_cardinalities == (3, 2)
    with cp.plate("particles", 5, dim=-2):
        tr = cp.trace(lambda: scm.model(data=data)).get_trace()
    assert tr.nodes["c.probs"]["value"].shape == (5, 1, 3, 2, 4)
    assert tr.nodes["c"]["fn"].batch_shape == (5, 30)
    assert tr.nodes["t.weight"]["value"].shape == (5, 1, 2)  # a's 3 levels enter as 2 indicators
    assert torch.isfinite(tr.log_prob_sum())
    # Each row's probabilities are the table entry its parents select.
    probs = tr.nodes["c.probs"]["value"][2, 0]
    assert torch.allclose(tr.nodes["c"]["fn"].probs[2], probs[a, t])


# -- mechanisms used directly ------------------------------------------------------


def test_mechanisms_broadcast_batched_parents():
    lin = LinearGaussian("y", ["x", "z"])
    assert lin.parents == ("x", "z") and lin.text == "LinearGaussian(x, z)"
    cp.get_param_store()["y.weight"] = torch.tensor([2.0, -1.0])
    out = lin(x=torch.ones(3, 5), z=torch.ones(5))
    assert out.batch_shape == (3, 5)
    assert torch.allclose(out.mean, torch.ones(3, 5))
    table = CategoricalTable("c", ["a", "b"], num_categories=3, parent_cardinalities={"a": 2, "b": 4})
    assert table.text == "CategoricalTable(a, b, K=3)"
    assert table(a=torch.tensor(1.0), b=torch.tensor([0.0, 3.0])).probs.shape == (2, 3)
    assert param("c.probs").shape == (2, 4, 3)
    mlp = MLPGaussian("m", ["x", "z"], hidden=3)
    assert mlp(x=torch.zeros(2, 7), z=torch.zeros(7)).batch_shape == (2, 7)
    assert Logistic("t", []).text == "Logistic()"
    assert Logistic("t", [])().batch_shape == ()


def test_params_follow_the_device_of_the_parents():
    lin = LinearGaussian("y", ["x"])
    value = lin(x=torch.zeros(3, dtype=torch.float32))
    assert value.mean.device == torch.device("cpu")
    assert param("y.weight").device == torch.device("cpu")


# -- from_graph ----------------------------------------------------------------------


def mixed_frame(n=200):
    pd = pytest.importorskip("pandas")
    generator = torch.Generator().manual_seed(9)
    x = torch.randn(n, generator=generator)
    return pd.DataFrame({
        "t": (torch.rand(n, generator=generator) < 0.5).numpy(),  # bool
        "a": torch.randint(0, 4, (n,), generator=generator).numpy(),  # int, 4 values
        "c": torch.randint(0, 3, (n,), generator=generator).numpy(),  # int, parents a, t
        "x": x.numpy(),  # float
        "d": torch.randint(0, 3, (n,), generator=generator).numpy(),  # int, continuous parent x
        "k": torch.randint(0, 100, (n,), generator=generator).numpy(),  # int, many values
        "f": (torch.rand(n, generator=generator) < 0.3).float().numpy(),  # float 0/1
    })


MIXED_EDGES = [("a", "c"), ("t", "c"), ("x", "d"), ("u", "x"), ("a", "k"), ("x", "f")]


def test_from_graph_auto_picks_builders_by_column():
    frame = mixed_frame()
    scm = from_graph(nx.DiGraph(MIXED_EDGES), frame)
    kinds = {node: type(scm.mechanism(node).fn).__name__ for node in scm.nodes}
    assert kinds == {
        "t": "Logistic", "a": "CategoricalTable", "c": "CategoricalTable", "x": "LinearGaussian",
        "d": "MultinomialLogistic", "k": "LinearGaussian", "f": "Logistic", "u": "LinearGaussian",
    }
    assert scm.mechanism("c").fn.parent_cardinalities == (4, 2)
    assert scm.mechanism("c").fn.num_categories == 3
    assert scm.latent == {"u"}
    assert set(scm.graph.edges) == set(MIXED_EDGES)
    assert scm.mechanism("c").fn.text == "CategoricalTable(a, t, K=3)"
    # The lowered model runs on the frame (ints and bools become floats).
    tr = cp.trace(lambda: scm.model(data=frame)).get_trace()
    assert torch.isfinite(tr.log_prob_sum())
    assert "c.probs" in tr.nodes and tr.nodes["u"]["is_observed"] is False


def test_from_graph_overrides_and_other_inputs():
    frame = mixed_frame()
    given = LinearGaussian("d", ["x"], prior_scale=2.0)
    scm = from_graph(MIXED_EDGES, frame, mechanisms={"x": "mlp", "d": given, "c": "linear"})
    assert isinstance(scm.mechanism("x").fn, MLPGaussian)
    assert scm.mechanism("d").fn is given
    assert isinstance(scm.mechanism("c").fn, LinearGaussian)
    # A single kind applies to every node; without data nothing is latent.
    everything = from_graph(EDGES, mechanisms="linear")
    assert {type(everything.mechanism(n).fn) for n in everything.nodes} == {LinearGaussian}
    assert everything.latent == frozenset()
    # SCM.from_graph delegates; an SCM's own graph is accepted too.
    via_class = cp.SCM.from_graph(EDGES, linear_data(10))
    assert via_class.nodes == ("z", "x", "y")
    assert from_graph(via_class).nodes == ("z", "x", "y")
    assert via_class.mechanism("y").parents == ("x", "z")


def test_from_graph_errors_name_the_node_and_the_expectation():
    frame = mixed_frame()
    with pytest.raises(ValueError, match="data column 'w' is not a node"):
        from_graph(EDGES, {"w": torch.zeros(3)})
    expected = r"node 'd': a categorical node needs discrete parents, but parent 'x' is a continuous column"
    with pytest.raises(ValueError, match=expected):
        from_graph(MIXED_EDGES, frame, mechanisms={"d": "categorical"})
    with pytest.raises(ValueError, match="node 'a': .* parent 'u' has no data column"):
        from_graph([("u", "a")], {"a": torch.tensor([0, 1, 2])}, mechanisms={"a": "categorical"})
    with pytest.raises(ValueError, match="node 'x': a categorical node needs non-negative integer values"):
        from_graph([("x", "y")], {"x": torch.randn(5)}, mechanisms={"x": "categorical"})
    with pytest.raises(ValueError, match="no data was given"):
        from_graph([("x", "y")], mechanisms={"y": "categorical"})
    expected = (
        "node 'y': unknown mechanism kind 'spline'; known kinds: auto, categorical, linear, logistic, mlp"
    )
    with pytest.raises(ValueError, match=expected):
        from_graph(EDGES, mechanisms={"y": "spline"})
    with pytest.raises(ValueError, match="unknown mechanism kind 'cubic'"):
        from_graph(EDGES, mechanisms="cubic")
    with pytest.raises(KeyError, match="mechanisms names 'q', which is not a node"):
        from_graph(EDGES, mechanisms={"q": "linear"})
    with pytest.raises(ValueError, match="node 'x': a logistic mechanism needs a binary"):
        from_graph(EDGES, linear_data(20), mechanisms={"x": "logistic"})
    with pytest.raises(ValueError, match="cycle"):
        from_graph([("a", "b"), ("b", "a")])
    expected = r"node 'y': the given mechanism uses parents \['x'\], but the graph gives it \['x', 'z'\]"
    with pytest.raises(ValueError, match=expected):
        from_graph(EDGES, mechanisms={"y": LinearGaussian("y", ["x"])})
    with pytest.raises(ValueError, match="MLPGaussian for node 'z': needs at least one parent"):
        from_graph(EDGES, mechanisms={"z": "mlp"})
    with pytest.raises(TypeError, match="networkx.DiGraph"):
        from_graph("z -> x")
    with pytest.raises(TypeError, match="data column 's': expected numbers, strings or booleans, got .* dict"):
        from_graph([("s", "y")], {"s": [{"a": 1}, {"b": 2}]})


def test_mechanism_errors():
    with pytest.raises(ValueError, match="node 'c': 1 parents .* but 2 parent cardinalities"):
        CategoricalTable("c", ["a"], num_categories=3, parent_cardinalities=[2, 2])
    with pytest.raises(ValueError, match="duplicates"):
        LinearGaussian("y", ["x", "x"])
    with pytest.raises(ValueError, match="own parent"):
        Logistic("y", ["y"])
    with pytest.raises(TypeError, match=r"node 'y': LinearGaussian expects values for its parents \['x'\]"):
        LinearGaussian("y", ["x"])(z=torch.zeros(1))
    table = CategoricalTable("c", ["a"], num_categories=2, parent_cardinalities=[3])
    with pytest.raises(ValueError, match=r"node 'c': parent 'a' must take values in 0..2"):
        table(a=torch.tensor([0.0, 3.0]))


# -- devices -------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda():
    cp.set_rng_seed(10)
    data = {name: value.to("cuda") for name, value in linear_data(4000).items()}
    with torch.device("cuda"):
        scm = from_graph(EDGES, data, mechanisms={"y": "linear"})
        mlp = MLPGaussian("m", ["x"], hidden=4)
    fit(lambda: scm.model(data=data), steps=300, lr=0.05)
    assert param("y.weight", scm).device.type == "cuda"
    assert weights(scm, "y")["x"] == pytest.approx(2.0, abs=0.1)
    assert mlp(x=data["x"]).mean.device.type == "cuda"
    # The lead's fit() with device="cuda" (params created inside its device context).
    cp.clear_param_store()
    cpu_data = linear_data(2000)
    scm = from_graph(EDGES, cpu_data)
    result = scm.fit(cpu_data, guide=no_guide, steps=200, lr=0.05, device="cuda", progress=False)
    assert math.isfinite(result.losses[-1])
    assert param("y.weight", scm).device.type == "cuda"


# -- columns with labels, and auto's choices -----------------------------------------


def test_labels_and_codes_agree_between_from_graph_and_fit():
    pd = pytest.importorskip("pandas")
    generator = torch.Generator().manual_seed(11)
    n, kinds, sizes = 3000, ["a", "b", "c"], ["S", "M", "L"]
    table = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.1, 0.8]])  # P(size | kind), in list order
    kind = torch.multinomial(torch.tensor([0.3, 0.3, 0.4]), n, replacement=True, generator=generator)
    size = torch.multinomial(table[kind], 1, generator=generator).squeeze(-1)
    kind_names, size_names = [kinds[k] for k in kind], [sizes[s] for s in size]
    built = pd.DataFrame({"kind": pd.Categorical(kind_names, categories=["c", "a", "b"]), "size": size_names})
    scm = from_graph([("kind", "size")], built)
    assert scm.mechanism("kind").fn.labels == ("c", "a", "b")
    assert scm.mechanism("size").fn.labels == ("L", "M", "S")  # strings: sorted
    assert scm.mechanism("size").fn.parent_levels == {"kind": ("c", "a", "b")}
    # Fit on a frame whose categories come in another order, with the strings as categories.
    other = pd.DataFrame({"kind": pd.Categorical(kind_names, categories=["b", "c", "a"]),
                          "size": pd.Categorical(size_names, categories=sizes)})
    scm.fit(other, guide=no_guide, steps=300, lr=0.05, progress=False)
    probs = param("size.probs", scm)
    kind_labels, size_labels = scm.mechanism("kind").fn.labels, scm.mechanism("size").fn.labels
    for k, name in enumerate(kinds):
        rows = size[kind == k]
        for s, label in enumerate(sizes):
            fitted = float(probs[kind_labels.index(name), size_labels.index(label)])
            assert fitted == pytest.approx(float((rows == s).float().mean()), abs=0.01), (name, label)  # the MLE
            se = math.sqrt(table[k, s] * (1 - table[k, s]) / len(rows))
            assert abs(fitted - table[k, s]) < 4 * se + 0.01, (name, label)
    with pytest.raises(ValueError, match=r"data column 'size': values \['XL'\] are not among the node's labels"):
        scm.fit({"kind": ["a"], "size": ["XL"]}, guide=no_guide, steps=1, progress=False)


def test_a_categorical_parent_of_a_linear_node_enters_one_hot():
    pd = pytest.importorskip("pandas")
    generator = torch.Generator().manual_seed(12)
    n = 3000
    g = torch.randint(0, 3, (n,), generator=generator)
    y = 2.0 * (g == 1) - 1.0 * (g == 2) + 0.5 + 0.3 * torch.randn(n, generator=generator)
    frame = pd.DataFrame({"g": [("a", "b", "c")[k] for k in g], "y": y.numpy()})
    scm = from_graph([("g", "y")], frame)
    assert scm.mechanism("y").fn.feature_names == ("g=b", "g=c")
    scm.fit(frame, guide=no_guide, steps=500, lr=0.05, progress=False)
    fitted = coefficients(scm, "y")
    # The ML estimates are group-mean differences, with SE 0.3 * sqrt(2 / 1000) ~ 0.013.
    means = [float(y[g == k].mean()) for k in range(3)]
    assert fitted["weights"]["g=b"] == pytest.approx(means[1] - means[0], abs=0.02)
    assert fitted["weights"]["g=c"] == pytest.approx(means[2] - means[0], abs=0.02)
    assert fitted["weights"]["g=b"] == pytest.approx(2.0, abs=0.06)
    assert fitted["weights"]["g=c"] == pytest.approx(-1.0, abs=0.06)
    assert fitted["bias"] == pytest.approx(0.5, abs=0.06)


def test_auto_picks_an_mlp_only_when_it_fits_clearly_better():
    generator = torch.Generator().manual_seed(13)
    n = 2000
    x = 3 * torch.rand(n, generator=generator) - 1.5
    curved = {"x": x, "y": torch.sin(2 * x) + 0.1 * torch.randn(n, generator=generator)}
    straight = {"x": x, "y": 2 * x + torch.randn(n, generator=generator)}
    scm = from_graph([("x", "y")], curved)
    assert isinstance(scm.mechanism("y").fn, MLPGaussian)
    reason = scm._state.choices["y"]
    assert reason.startswith("MLPGaussian: continuous column; held-out log-lik linear") and "gain" in reason
    scm = from_graph([("x", "y")], straight)
    assert isinstance(scm.mechanism("y").fn, LinearGaussian)
    assert scm._state.choices["y"].startswith("LinearGaussian: continuous column; held-out log-lik linear")
    assert "(no clear gain" in scm._state.choices["y"]
    assert scm._state.choices["x"] == "LinearGaussian: continuous column, no parents"
    few = from_graph([("x", "y")], {"x": x[:20], "y": curved["y"][:20]})._state.choices["y"]
    assert few == "LinearGaussian: continuous column; 20 rows are too few for a held-out check"
    # Deterministic, and it leaves the global random state alone.
    state = torch.get_rng_state()
    assert from_graph([("x", "y")], curved)._state.choices == from_graph([("x", "y")], curved)._state.choices
    assert torch.equal(state, torch.get_rng_state())
    # bayesian=True never picks an MLP; overrides still win.
    assert isinstance(from_graph([("x", "y")], curved, bayesian=True).mechanism("y").fn, LinearGaussian)
    forced = from_graph([("x", "y")], straight, mechanisms={"y": "mlp"})
    assert isinstance(forced.mechanism("y").fn, MLPGaussian)
    assert forced._state.choices["y"] == "MLPGaussian: mechanisms='mlp' given"


def test_auto_kinds_for_categorical_nodes_and_their_reasons():
    pd = pytest.importorskip("pandas")
    generator = torch.Generator().manual_seed(14)
    n = 300
    frame = pd.DataFrame({
        "x": torch.randn(n, generator=generator).numpy(),
        "g": pd.Categorical([("lo", "mid", "hi")[k] for k in torch.randint(0, 3, (n,), generator=generator)]),
        "c": torch.randint(0, 3, (n,), generator=generator).numpy(),
        "t": (torch.rand(n, generator=generator) < 0.5).numpy(),
    })
    scm = from_graph([("x", "g"), ("g", "c"), ("c", "t"), ("x", "t")], frame)
    kinds = {node: type(scm.mechanism(node).fn).__name__ for node in scm.nodes}
    assert kinds == {"x": "LinearGaussian", "g": "MultinomialLogistic", "c": "CategoricalTable", "t": "Logistic"}
    assert scm.mechanism("g").fn.labels == ("hi", "lo", "mid")  # pandas sorts inferred categories
    assert scm.mechanism("t").fn.labels == (False, True)
    assert scm.mechanism("t").fn.parent_levels == {"c": (0, 1, 2)}
    assert scm._state.choices["g"] == "MultinomialLogistic: categorical column (3 levels), continuous parent(s) x"
    assert scm._state.choices["c"] == "CategoricalTable: categorical column (3 levels), discrete parents"
    assert scm._state.choices["t"] == "Logistic: binary column"


def test_marketing_uplift_from_graph_and_fit_keep_the_segment_labels():
    import causalppl.datasets as datasets

    frame = datasets.marketing_uplift(2000)
    scm = from_graph(datasets.marketing_uplift_graph(), frame)
    assert scm.mechanism("segment").fn.labels == ("new", "returning", "loyal")
    assert scm.mechanism("converted").fn.parent_levels == {"segment": ("new", "returning", "loyal")}
    assert set(scm._state.choices) == set(scm.nodes)
    result = scm.fit(frame, progress=False)
    assert result.method == "mle" and math.isfinite(result.losses[-1])  # fully observed: exact
    assert scm.mechanism("segment").fn.labels == ("new", "returning", "loyal")
    # The segment shares are their empirical frequencies (true 0.5, 0.3, 0.2; SE <= 0.012).
    shares = param("segment.probs", scm)
    counts = frame["segment"].value_counts(normalize=True)
    for k, label in enumerate(("new", "returning", "loyal")):
        assert float(shares[k]) == pytest.approx(counts[label], abs=0.01)
