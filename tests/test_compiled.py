"""The compiled graph (causalppl.graph.compiled) and fit's compiled SVI step (causalppl.causal.compiled_svi).

The per-node lowered model is the reference: the compiled log joint and its
gradients must equal it on random SCMs, a fit on the compiled path must show
users the same sites as one on the reference path, and whatever the compiler
does not cover must fall back to the reference path, saying why.
"""

import random
import warnings

import networkx as nx
import pytest
import torch

import causalppl as cp
from causalppl.causal.learnable import CategoricalTable, LinearGaussian, Logistic, MLPGaussian, MultinomialLogistic
from causalppl.graph.compiled import NotCompilable, compile_model
from causalppl.handlers import replay, trace
from causalppl.trace import Trace

pytestmark = pytest.mark.usefixtures("one_thread_seeded")


# ---------------------------------------------------------------------------
# random SCMs of mixed families
# ---------------------------------------------------------------------------


def random_scm(seed, nodes=7):
    """A random DAG whose nodes mix every compiled family; returns (scm, latent nodes).

    Discrete nodes (tables, logistic) are observed; continuous ones may be
    latent. Tables have discrete parents only; linear and MLP nodes take
    discrete parents one-hot.
    """
    rng = random.Random(seed)
    scm = cp.SCM()
    kinds, latent = {}, []
    for j in range(nodes):
        name = f"v{j}"
        earlier = [f"v{i}" for i in range(j)]
        discrete = [p for p in earlier if kinds[p][0] in ("table", "logistic")]
        continuous = [p for p in earlier if kinds[p][0] not in ("table", "logistic")]
        kind = rng.choice(["linear", "linear", "bayes", "logistic", "table", "mlp", "expr"])
        if kind == "table":
            parents = rng.sample(discrete, min(len(discrete), rng.randint(0, 2)))
            cards = [kinds[p][1] for p in parents]
            k = rng.choice([2, 3])
            mechanism = CategoricalTable(name, parents, num_categories=k, parent_cardinalities=cards,
                                         bayesian=rng.random() < 0.5)
            kinds[name] = ("table", k)
        else:
            pool = rng.sample(earlier, min(len(earlier), rng.randint(0, 3)))
            levels = {p: kinds[p][1] for p in pool if kinds[p][0] in ("table", "logistic")}
            stats = {p: (rng.uniform(-1, 1), rng.uniform(0.5, 2)) for p in pool if p not in levels}
            if kind == "logistic":
                mechanism = Logistic(name, pool, parent_levels=levels, standardization=stats,
                                     bayesian=rng.random() < 0.5)
                kinds[name] = ("logistic", 2)
            elif kind == "mlp" and pool:
                stats[name] = (rng.uniform(-1, 1), rng.uniform(0.5, 2))
                mechanism = MLPGaussian(name, pool, hidden=3, parent_levels=levels, standardization=stats)
                kinds[name] = ("mlp", None)
            elif kind == "expr" and continuous:
                parent = rng.choice(continuous)
                mechanism = f"Normal(0.5 * {parent} - 0.2, 1.3)"
                kinds[name] = ("expr", None)
            else:
                stats[name] = (rng.uniform(-1, 1), rng.uniform(0.5, 2))
                mechanism = LinearGaussian(name, pool, parent_levels=levels, standardization=stats,
                                           bayesian=kind == "bayes", prior_scale=rng.choice([1.0, 2.0]))
                kinds[name] = ("linear", None)
            if kinds[name][0] != "logistic" and rng.random() < 0.3:
                latent.append(name)
        scm.add(name, mechanism)
    # Levels of discrete parents are integer codes 0..K-1; a logistic node's codes are 0 and 1.
    return scm, latent


def perturb_params(scm, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, leaf in scm.params.named_parameters():
            leaf.add_(0.3 * torch.randn(leaf.shape, generator=generator))


def draw_world(scm, rows, seed):
    """Data (every node) from the SCM itself, with params made up, and a trace of its global sites."""
    cp.set_rng_seed(seed)
    scm.sample(3)  # creates the params
    perturb_params(scm, seed)
    with trace() as tr:
        values = scm.model(n=rows)
    return {node: value.detach() for node, value in values.items()}, tr.trace


def reference_log_joint(scm, data, values, rows=None, subsample_size=None):
    """The lowered model's log joint: replay ``values`` (latent sites) and ``rows`` (the plate's)."""
    recorded = Trace()
    for name, value in values.items():
        recorded.nodes[name] = {"type": "sample", "name": name, "value": value}
    if rows is not None:
        recorded.nodes["_rows"] = {"type": "plate", "name": "_rows", "value": rows}
    with trace() as tr:
        replay(scm.model, trace=recorded)(data=data, subsample_size=subsample_size)
    return tr.trace.log_prob_sum()


def case(seed, rows=60, subsample=None):
    scm, latent = random_scm(seed)
    world, prior_trace = draw_world(scm, rows, seed)
    data = {node: value for node, value in world.items() if node not in latent}
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(rows, generator=generator)[:subsample] if subsample else None
    values = {node: world[node] if index is None else world[node][index] for node in latent}
    for name, site in prior_trace.nodes.items():
        if site["type"] == "sample" and name not in world:
            values[name] = site["value"].detach()  # a Bayesian mechanism's weights, bias or table
    return scm, data, values, index


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("subsample", [None, 17])
def test_the_compiled_log_joint_equals_the_reference(seed, subsample):
    scm, data, values, rows = case(seed, subsample=subsample)
    compiled = compile_model(scm.model, data, subsample_size=subsample)
    expected = reference_log_joint(scm, data, values, rows, subsample)
    assert torch.allclose(compiled.log_joint(values, rows), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("subsample", [None, 17])
def test_the_compiled_gradients_equal_the_reference(seed, subsample):
    scm, data, values, rows = case(seed, subsample=subsample)
    compiled = compile_model(scm.model, data, subsample_size=subsample)
    leaves = [leaf for _, leaf in scm.params.named_parameters()]
    values = {name: value.clone().requires_grad_(value.is_floating_point()) for name, value in values.items()}
    inputs = leaves + [v for v in values.values() if v.requires_grad]

    def grads(log_joint):
        return torch.autograd.grad(log_joint, inputs, allow_unused=True)

    theirs = grads(reference_log_joint(scm, data, values, rows, subsample))
    ours = grads(compiled.log_joint(values, rows))
    for mine, reference in zip(ours, theirs, strict=True):
        if reference is None:
            assert mine is None or torch.count_nonzero(mine) == 0
            continue
        assert torch.allclose(mine, reference, rtol=1e-5, atol=1e-4)


def test_random_scms_cover_every_family():
    """The random SCMs above really mix the families (else the equality tests prove little)."""
    seen = set()
    latent_seen = False
    for seed in range(8):
        scm, latent = random_scm(seed)
        latent_seen |= bool(latent)
        for node in scm.nodes:
            fn = scm.mechanism(node).fn
            seen.add(type(fn).__name__ + ("(bayesian)" if getattr(fn, "bayesian", False) else ""))
    assert {"LinearGaussian", "LinearGaussian(bayesian)", "Logistic", "CategoricalTable",
            "CategoricalTable(bayesian)", "MLPGaussian", "Expression"} <= seen
    assert latent_seen


def test_without_a_plate_the_values_are_scalars():
    scm = cp.SCM().add("w", "Normal(guess, 1.0)").add("m", "Normal(w, 0.75)").condition(m=9.5)
    compiled = compile_model(scm.model, inputs={"guess": 8.5})
    w = torch.tensor(9.0)
    expected = (torch.distributions.Normal(8.5, 1.0).log_prob(w) + torch.distributions.Normal(w, 0.75).log_prob(
        torch.tensor(9.5)))
    assert torch.allclose(compiled.log_joint({"w": w}), expected)


class CountOps(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the aten ops run inside it."""

    def __init__(self):
        super().__init__()
        self.counts = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def test_linear_nodes_share_one_matmul_and_tables_one_gather():
    """Ten linear-Gaussian and logistic nodes: one addmm; three tables: one gather (``take``)."""
    scm = cp.SCM()
    names = [f"x{j}" for j in range(8)]
    for j, name in enumerate(names):
        scm.add(name, LinearGaussian(name, names[max(0, j - 2):j], bayesian=j % 2 == 0))
    scm.add("t0", Logistic("t0", ["x1", "x7"])).add("t1", Logistic("t1", ["x3"], bayesian=True))
    scm.add("g0", CategoricalTable("g0", [], num_categories=3))
    scm.add("g1", CategoricalTable("g1", ["g0"], num_categories=2, parent_cardinalities=[3]))
    scm.add("g2", CategoricalTable("g2", ["g0", "g1"], num_categories=2, parent_cardinalities=[3, 2], bayesian=True))
    world, prior = draw_world(scm, 40, seed=0)
    values = {name: site["value"] for name, site in prior.nodes.items()
              if site["type"] == "sample" and name not in world}
    compiled = compile_model(scm.model, world)
    with CountOps() as ops:
        ours = compiled.log_joint(values)
    assert ops.counts.get("addmm", 0) + ops.counts.get("mm", 0) == 1
    assert ops.counts.get("take", 0) == 1 and "gather" not in ops.counts
    assert torch.allclose(ours, reference_log_joint(scm, world, values), rtol=1e-5)


def test_what_the_compiler_does_not_cover_is_named():
    scm = cp.SCM().add("x", "Normal(0, 1)").add(
        "y", lambda x: cp.dist.Normal(x * cp.param("k", torch.tensor(1.0)), 1.0))
    with pytest.raises(NotCompilable, match="node 'y': its mechanism .* is not one of the compiled families"):
        compile_model(scm.model, {"x": torch.zeros(3), "y": torch.zeros(3)})
    multi = cp.SCM().add("x", LinearGaussian("x", [])).add("c", MultinomialLogistic("c", ["x"], num_categories=3))
    with pytest.raises(NotCompilable, match="node 'c'"):
        compile_model(multi.model, {"x": torch.zeros(3), "c": torch.zeros(3)})


# ---------------------------------------------------------------------------
# fit on the compiled path
# ---------------------------------------------------------------------------


def linear_world(rows=2000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(rows, generator=generator)
    b = 2.0 * a + 0.5 * torch.randn(rows, generator=generator)
    c = a - 1.5 * b + torch.randn(rows, generator=generator)
    t = (c + 0.3 * torch.randn(rows, generator=generator) > 0).float()
    return nx.DiGraph([("a", "b"), ("a", "c"), ("b", "c"), ("c", "t")]), {"a": a, "b": b, "c": c, "t": t}


def fit_both(graph, data, bayesian=True, optim=None, **options):
    """The same fit on the compiled and on the reference path; ``optim`` makes each its optimiser."""
    results = {}
    for compile in (None, False):
        scm = cp.SCM.from_graph(graph, data=data, bayesian=bayesian)
        if optim is not None:
            options["optim"] = optim()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cp.causal.fit.ConvergenceWarning)
            results[compile] = scm.fit(data, seed=0, progress=False, compile=compile, **options)
    return results[None], results[False]


def test_a_bayesian_linear_fit_runs_compiled_and_agrees_with_the_reference():
    graph, data = linear_world()
    compiled, reference = fit_both(graph, data, steps=1500, lr=0.05)
    assert compiled.engine == "compiled" and compiled.engine_note is None
    assert reference.engine == "reference" and reference.engine_note == "compile=False"
    ours, theirs = compiled.median(), reference.median()
    assert sorted(ours) == sorted(theirs)
    for site in ours:
        assert torch.allclose(ours[site], theirs[site], atol=0.05), site


def sgd():
    # Not Adam: it divides by the gradient's size, and the bias gradients of standardised data are
    # rounding noise at the start, which two ways of summing the same numbers round differently.
    return cp.optim.SGD({"lr": 2e-4, "momentum": 0.5})


def test_a_point_fit_takes_the_same_steps_on_both_paths():
    """No latent sites: the steps are deterministic, and both paths take the same ones."""
    graph, data = linear_world(500)
    compiled, reference = fit_both(graph, data, bayesian=False, method="svi", steps=200, optim=sgd)
    assert compiled.engine == "compiled"
    assert compiled.losses == pytest.approx(reference.losses, rel=1e-4)
    for name, value in reference.params.items():
        assert torch.allclose(compiled.params[name], value, atol=1e-4), name


def test_a_minibatch_point_fit_agrees_with_the_reference():
    """Minibatches: the paths draw different rows (the reference's guide set-up draws some), so they
    agree as two fits do, not step by step."""
    graph, data = linear_world(2000)
    compiled, reference = fit_both(graph, data, bayesian=False, method="svi", steps=400, lr=0.05,
                                   subsample_size=256)
    assert compiled.engine == "compiled"
    for name, value in reference.params.items():
        assert torch.allclose(compiled.params[name], value, atol=0.05), name


def test_site_names_are_the_same_on_both_paths():
    graph, data = linear_world(300)
    latent = {k: v for k, v in data.items() if k != "b"}  # b latent: a per-row latent node
    compiled, reference = fit_both(graph, latent, steps=30)
    assert compiled.engine == "compiled"
    assert sorted(compiled.params) == sorted(reference.params)
    assert sorted(compiled.median()) == sorted(reference.median()) == ["a.bias", "b", "b.bias", "b.weight",
                                                                          "c.bias", "c.weight", "t.bias",
                                                                          "t.weight"]
    assert sorted(compiled.sample(5)) == sorted(reference.sample(5)) == ["a", "b", "c", "t"]
    assert sorted(compiled.to_dict()["params"]) == sorted(reference.to_dict()["params"])
    assert "30 SVI steps (compiled graph); final loss" in str(compiled)
    assert "30 SVI steps; final loss" in str(reference)
    ours, theirs = compiled.summary(), reference.summary()
    assert list(ours["node"]) == list(theirs["node"]) and list(ours["parameter"]) == list(theirs["parameter"])
    sites = trace(compiled.model).get_trace().nodes
    assert [n for n, s in sites.items() if s["type"] == "sample"] == \
        [n for n, s in trace(reference.model).get_trace().nodes.items() if s["type"] == "sample"]
    # While the fit ran its params lived in one flat tensor; afterwards each has its own leaf again.
    assert all(leaf._base is None for _, leaf in compiled.scm.params.named_parameters())
    assert all(leaf._base is None for _, leaf in compiled.guide_params.named_parameters())


def test_a_latent_confounder_is_fitted_compiled():
    generator = torch.Generator().manual_seed(1)
    u = torch.randn(3000, generator=generator)
    x = u + 0.5 * torch.randn(3000, generator=generator)
    y = 2.0 * x + 3.0 * u + 0.5 * torch.randn(3000, generator=generator)
    graph = nx.DiGraph([("u", "x"), ("u", "y"), ("x", "y")])
    compiled, reference = fit_both(graph, {"x": x, "y": y}, steps=800, lr=0.05)
    assert compiled.engine == "compiled"
    final = [sum(result.losses[-100:]) / 100 for result in (compiled, reference)]
    assert final[0] == pytest.approx(final[1], rel=0.02)


def test_unsupported_mechanisms_fall_back_to_the_reference_path():
    scm = cp.SCM().add("x", "Normal(0, 1)").add(
        "y", lambda x: cp.dist.Normal(cp.param("k", torch.tensor(0.0)) * x, 1.0))
    data = {"x": torch.randn(50), "y": torch.randn(50)}
    result = scm.fit(data, steps=5, progress=False)
    assert result.engine == "reference"
    assert "node 'y'" in result.engine_note
    with pytest.warns(RuntimeWarning, match=r"compile=True\): the SVI steps run on the reference path \(node 'y'"):
        scm.fit(data, steps=5, progress=False, compile=True)


def test_compile_true_captures_and_compiles_the_reference_path_with_the_same_numbers():
    def make():
        return cp.SCM().add("x", "Normal(0, 1)").add(
            "y", lambda x: cp.dist.Normal(cp.param("k", torch.tensor(0.0)) * x, 1.0))

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, generator=gen)
    data = {"x": x, "y": 1.5 * x + torch.randn(200, generator=gen)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # where torch.compile cannot run, the capture is replayed uncompiled
        compiled = make().fit(data, steps=40, progress=False, compile=True, seed=3)
    reference = make().fit(data, steps=40, progress=False, compile=False, seed=3)
    assert compiled.engine == "reference+JitTrace_ELBO" and "node 'y'" in compiled.engine_note
    assert compiled.losses == pytest.approx(reference.losses, rel=1e-5)
    assert compiled.params["k"].item() == pytest.approx(reference.params["k"].item(), rel=1e-5)


def test_a_hand_written_guide_runs_the_reference_path():
    graph, data = linear_world(100)
    scm = cp.SCM.from_graph(graph, data=data, bayesian=True)
    guide = cp.infer.autoguide.AutoMultivariateNormal(scm.model)
    result = scm.fit(data, steps=3, progress=False, guide="mvn")
    assert result.engine == "reference" and "AutoMultivariateNormal" in result.engine_note
    assert guide is not None


def test_compile_must_be_a_bool_or_none():
    graph, data = linear_world(50)
    with pytest.raises(ValueError, match="compile must be None, True or False, got 'yes'"):
        cp.SCM.from_graph(graph, data=data).fit(data, steps=2, compile="yes", progress=False)


def test_compile_true_says_when_torch_compile_is_missing(monkeypatch):
    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    graph, data = linear_world(100)
    scm = cp.SCM.from_graph(graph, data=data, bayesian=True)
    with pytest.warns(RuntimeWarning, match="torch.compile could not compile the step .*no working C"):
        result = scm.fit(data, steps=5, progress=False, compile=True)
    assert result.engine == "compiled" and len(result.losses) == 5


def test_compile_true_wraps_the_step_in_torch_compile(monkeypatch):
    wrapped = []

    def fake(fn, **kwargs):
        wrapped.append(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", fake)
    graph, data = linear_world(100)
    result = cp.SCM.from_graph(graph, data=data, bayesian=True).fit(data, steps=3, progress=False, compile=True)
    assert result.engine == "compiled+torch.compile"
    assert wrapped == [{"mode": None, "dynamic": False}]  # CUDA graphs ("reduce-overhead") only on a GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compile_true_on_cuda_replays_cuda_graphs_with_the_eager_numbers():
    """On a GPU, compile=True is torch.compile's "reduce-overhead" mode (CUDA graphs): the same steps."""
    graph, data = linear_world(500)
    data = {name: value.cuda() for name, value in data.items()}
    results = {}
    for compile in (True, None):
        scm = cp.SCM.from_graph(graph, data=data, bayesian=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cp.causal.fit.ConvergenceWarning)
            results[compile] = scm.fit(data, method="svi", seed=0, progress=False, compile=compile,
                                       steps=100, optim=sgd(), device="cuda")
    graphs, eager = results[True], results[None]
    assert graphs.engine == "compiled+torch.compile" and eager.engine == "compiled"
    assert graphs.losses == pytest.approx(eager.losses, rel=1e-4)
    for name, value in eager.params.items():
        assert graphs.params[name].device.type == "cuda"
        assert torch.allclose(graphs.params[name], value, atol=1e-4), name


def test_exact_fits_stay_fixed_while_the_compiled_step_learns_the_rest():
    """method="auto": a and t are fitted exactly and held; b is latent, so b and c are left to SVI."""
    graph, data = linear_world(1500)
    observed = {k: v for k, v in data.items() if k != "b"}
    compiled, reference = fit_both(graph, observed, bayesian=False, steps=400, lr=0.05)
    assert compiled.engine == "compiled" and compiled.method == "mle+svi"
    assert sorted(compiled.estimates) == sorted(reference.estimates) == ["a", "t"]
    for name in ("a.bias", "a.scale", "t.weight", "t.bias"):
        assert torch.equal(compiled.params[name], reference.params[name]), name
    for name in ("c.weight", "c.bias"):
        assert torch.allclose(compiled.params[name], reference.params[name], atol=0.1), name


def test_learn_params_false_leaves_the_scm_as_it_was():
    graph, data = linear_world(400)
    scm = cp.SCM.from_graph(graph, data=data, bayesian=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cp.causal.fit.ConvergenceWarning)
        scm.fit(data, steps=5, progress=False, seed=0)
        before = {name: value.clone() for name, value in scm.params.items()}
        result = scm.fit(data, steps=20, progress=False, seed=1, learn_params=False)
    assert result.engine == "compiled"
    assert all(torch.equal(scm.params[name], value) for name, value in before.items())


def test_a_loss_that_blows_up_on_the_compiled_path_names_the_step_and_the_site():
    from causalppl.infer.elbo import NonFiniteLossError

    graph, data = linear_world(200)
    scm = cp.SCM.from_graph(graph, data=data, bayesian=False)
    with pytest.raises(NonFiniteLossError, match=r"SVI step \d+: the loss is (inf|nan); .* site 'a' is not finite"):
        scm.fit(data, steps=200, progress=False, method="svi", optim=cp.optim.SGD({"lr": 10.0}))
    # The params were handed back their own leaves even though the fit stopped.
    assert all(leaf._base is None for _, leaf in scm.params.named_parameters())


@pytest.mark.parametrize("guide", ["normal", "delta"])
def test_bayesian_tables_fit_compiled_on_the_simplex(guide):
    """A Bayesian table's probabilities live on the simplex: drawn flat, then mapped there."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 3, (1500,), generator=generator)
    b = ((a == 2) | (torch.rand(1500, generator=generator) < 0.2)).long()
    y = 1.5 * b + 0.5 * a + torch.randn(1500, generator=generator)
    data = {"a": a, "b": b, "y": y}
    graph = nx.DiGraph([("a", "b"), ("a", "y"), ("b", "y")])
    compiled, reference = fit_both(graph, data, steps=400, lr=0.05, guide=guide)
    assert compiled.engine == "compiled"
    assert type(compiled.scm.mechanism("a").fn).__name__ == "CategoricalTable"
    ours, theirs = compiled.median(), reference.median()
    assert torch.allclose(ours["a.probs"].sum(-1), torch.tensor(1.0))
    for site in theirs:
        assert torch.allclose(ours[site], theirs[site], atol=0.05), site
