"""Enumeration of discrete latents: TraceEnum_ELBO, config_enumerate, markov, infer_discrete.

Exact answers are computed here by brute force (every joint assignment) or
by the closed forms of the mixture and the forward algorithm, in float64.
"""

import importlib.util
import itertools
import math
import warnings
from pathlib import Path

import pytest
import torch

import causalppl as cp
from causalppl.infer import SVI, TraceEnum_ELBO, config_enumerate, infer_discrete
from causalppl.infer.autoguide import AutoDelta

C = cp.constraints
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def float64_seeded():
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    cp.set_rng_seed(0)
    yield
    torch.set_default_dtype(dtype)


DATA = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0, 4.0], dtype=torch.float64)


# -- a Gaussian mixture, assignments enumerated in the model ---------------------------------------------


@config_enumerate
def mixture(data):
    weights = cp.sample("weights", cp.dist.Dirichlet(0.5 * torch.ones(2)))
    scale = cp.sample("scale", cp.dist.LogNormal(0.0, 2.0))
    with cp.plate("components", 2):
        locs = cp.sample("locs", cp.dist.Normal(0.0, 10.0))
    with cp.plate("data", len(data)):
        assignment = cp.sample("assignment", cp.dist.Categorical(weights))
        cp.sample("obs", cp.dist.Normal(locs[assignment], scale), obs=data)


def mixture_log_joint(weights, locs, scale, data):
    """log p(weights, locs, scale, data), the assignments summed out by hand."""
    prior = (cp.dist.Dirichlet(0.5 * torch.ones(2)).log_prob(weights) + cp.dist.LogNormal(0.0, 2.0).log_prob(scale)
             + cp.dist.Normal(0.0, 10.0).log_prob(locs).sum())
    components = weights.log() + cp.dist.Normal(locs, scale).log_prob(data[:, None])  # (N, K)
    return prior + torch.logsumexp(components, -1).sum()


def test_mixture_loss_is_the_exact_marginal_and_its_gradients_autograds():
    guide = AutoDelta(cp.handlers.block(mixture, expose=["weights", "locs", "scale"]),
                      init_loc_fn=cp.infer.autoguide.init_to_sample)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    loss = elbo.differentiable_loss(mixture, guide, DATA)
    store = cp.get_param_store()
    names = ["AutoDelta.weights", "AutoDelta.locs", "AutoDelta.scale"]
    leaves = [store.leaf(name) for name in names]
    exact = -mixture_log_joint(*(store[name] for name in names), DATA)
    assert loss.item() == pytest.approx(exact.item(), abs=1e-5)
    grads = torch.autograd.grad(loss, leaves)
    expected = torch.autograd.grad(exact, leaves)
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-6)


def test_mixture_with_params_and_an_empty_guide_is_minus_log_likelihood():
    @config_enumerate
    def model(data):
        weights = cp.param("weights", torch.tensor([0.3, 0.7]), constraint=C.simplex)
        locs = cp.param("locs", torch.tensor([1.0, 9.0]))
        scale = cp.param("scale", torch.tensor(2.0), constraint=C.positive)
        with cp.plate("data", len(data)):
            a = cp.sample("assignment", cp.dist.Categorical(weights))
            cp.sample("obs", cp.dist.Normal(locs[a], scale), obs=data)

    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda data: None, DATA)
    store = cp.get_param_store()
    exact = -torch.logsumexp(store["weights"].log() + cp.dist.Normal(store["locs"], store["scale"]).log_prob(
        DATA[:, None]), -1).sum()
    assert loss.item() == pytest.approx(exact.item(), abs=1e-5)
    leaves = [store.leaf(n) for n in ("weights", "locs", "scale")]
    for got, want in zip(torch.autograd.grad(loss, leaves), torch.autograd.grad(exact, leaves)):
        assert torch.allclose(got, want, atol=1e-6)
    # loss() and loss_and_grads() agree with the differentiable loss
    assert TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda data: None, DATA) == pytest.approx(loss.item())


def test_enumeration_dims_go_left_of_the_plates_one_per_site():
    @config_enumerate
    def model():
        z = cp.sample("z", cp.dist.Bernoulli(0.3))
        with cp.plate("rows", 4):
            w = cp.sample("w", cp.dist.Categorical(torch.ones(3) / 3))
            cp.sample("x", cp.dist.Normal(z + w, 1.0), obs=torch.zeros(4))

    tr = cp.trace(cp.handlers.enum(model, first_available_dim=-2)).get_trace()
    assert tr.nodes["z"]["infer"]["_enumerate_dim"] == -2
    assert tr.nodes["w"]["infer"]["_enumerate_dim"] == -3
    assert tr.nodes["z"]["value"].shape == (2, 1)
    assert tr.nodes["w"]["value"].shape == (3, 1, 1)
    assert tr.nodes["x"]["fn"].batch_shape == (3, 2, 4)


def test_a_global_and_a_local_enumerated_site_are_summed_jointly():
    @config_enumerate
    def model(data):
        z = cp.sample("z", cp.dist.Bernoulli(0.3))
        with cp.plate("data", len(data)):
            a = cp.sample("a", cp.dist.Bernoulli(0.2 + 0.6 * z))
            cp.sample("obs", cp.dist.Normal(5.0 * a + z, 1.0), obs=data)

    data = DATA[:4]
    total = []
    for z in (0.0, 1.0):
        per_row = torch.logsumexp(torch.stack([
            torch.tensor(0.8 - 0.6 * z if a == 1 else 0.2 + 0.6 * z).log() * 0 + cp.dist.Bernoulli(0.2 + 0.6 * z)
            .log_prob(torch.tensor(a)) + cp.dist.Normal(5.0 * a + z, 1.0).log_prob(data) for a in (0.0, 1.0)]), 0)
        total.append(cp.dist.Bernoulli(0.3).log_prob(torch.tensor(z)) + per_row.sum())
    exact = -torch.logsumexp(torch.stack(total), 0)
    assert TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda data: None, data) == pytest.approx(exact.item(),
                                                                                                     abs=1e-6)


def test_nested_plates_with_enumeration_in_both():
    data = torch.tensor([[0.0, 4.0, 5.0], [1.0, -1.0, 6.0]])

    def model():
        locs = torch.tensor([0.0, 5.0])
        with cp.plate("outer", 2, dim=-2):
            z = cp.sample("z", cp.dist.Bernoulli(0.4), infer={"enumerate": "parallel"})
            with cp.plate("inner", 3, dim=-1):
                w = cp.sample("w", cp.dist.Categorical(torch.tensor([0.2, 0.8])), infer={"enumerate": "parallel"})
                cp.sample("obs", cp.dist.Normal(locs[w] + z, 1.0), obs=data)

    exact = 0.0
    for i in range(2):
        per_z = []
        for z in (0.0, 1.0):
            inner = torch.logsumexp(torch.stack([math.log(p) + cp.dist.Normal(loc + z, 1.0).log_prob(data[i])
                                                 for p, loc in ((0.2, 0.0), (0.8, 5.0))]), 0)
            per_z.append(math.log(0.4 if z else 0.6) + inner.sum())
        exact -= torch.logsumexp(torch.stack(per_z), 0)
    assert TraceEnum_ELBO(max_plate_nesting=2).loss(model, lambda: None) == pytest.approx(exact.item(), abs=1e-6)


def test_onehot_categorical_and_binomial_sites_enumerate():
    data = torch.tensor([2.0, 0.5])

    @config_enumerate
    def model():
        locs = torch.tensor([0.0, 1.0, 2.0])
        with cp.plate("rows", 2):
            h = cp.sample("h", cp.dist.OneHotCategorical(torch.tensor([0.5, 0.3, 0.2])))
            n = cp.sample("n", cp.dist.Binomial(2, 0.4))
            cp.sample("x", cp.dist.Normal((h * locs).sum(-1) + n, 1.0), obs=data)

    exact = 0.0
    for x in data:
        terms = [math.log(p) + cp.dist.Binomial(2, 0.4).log_prob(torch.tensor(float(n)))
                 + cp.dist.Normal(loc + n, 1.0).log_prob(x)
                 for p, loc in ((0.5, 0.0), (0.3, 1.0), (0.2, 2.0)) for n in range(3)]
        exact -= torch.logsumexp(torch.stack(terms), 0)
    assert TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None) == pytest.approx(exact.item(), abs=1e-6)


def test_vindex_picks_rows_for_enumerated_and_plated_indices():
    from causalppl.ops.indexing import Vindex

    trans = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    locs = torch.tensor([[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]])
    data = DATA[:4]

    @config_enumerate
    def model():
        z = cp.sample("z", cp.dist.Categorical(torch.tensor([0.4, 0.6])))
        with cp.plate("rows", len(data)):
            w = cp.sample("w", cp.dist.Categorical(Vindex(trans)[z, :]))
            cp.sample("x", cp.dist.Normal(Vindex(locs)[z, w], 1.0), obs=data)

    exact = -torch.logsumexp(torch.stack([
        math.log(pz) + torch.logsumexp(trans[z].log() + cp.dist.Normal(locs[z], 1.0).log_prob(data[:, None]), -1).sum()
        for z, pz in ((0, 0.4), (1, 0.6))]), 0)
    assert TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None) == pytest.approx(exact.item(), abs=1e-6)
    assert cp.infer.JitTraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None) == pytest.approx(exact.item())


# -- chains -----------------------------------------------------------------------------------------


TRANS = torch.tensor([[0.8, 0.2], [0.3, 0.7]], dtype=torch.float64)
EMIT_LOCS = torch.tensor([0.0, 3.0], dtype=torch.float64)
SERIES = torch.tensor([0.1, 2.9, 3.2, -0.4, 0.3, 2.5, 3.3, 0.0, 1.6, 2.2, -0.7, 3.0], dtype=torch.float64)


def hmm(data, markov=True):
    x = 0
    steps = cp.markov(range(len(data))) if markov else range(len(data))
    for t in steps:
        x = cp.sample(f"x_{t}", cp.dist.Categorical(TRANS[x]), infer={"enumerate": "parallel"})
        cp.sample(f"y_{t}", cp.dist.Normal(EMIT_LOCS[x], 1.0), obs=data[t])


def forward_log_likelihood(data):
    alpha = TRANS[0].log() + cp.dist.Normal(EMIT_LOCS, 1.0).log_prob(data[0])
    for y in data[1:]:
        alpha = torch.logsumexp(alpha[:, None] + TRANS.log(), 0) + cp.dist.Normal(EMIT_LOCS, 1.0).log_prob(y)
    return torch.logsumexp(alpha, 0)


def brute_force_paths(data):
    """(path, log joint) for every hidden path."""
    out = []
    for path in itertools.product(range(2), repeat=len(data)):
        lp, prev = 0.0, 0
        for t, x in enumerate(path):
            lp += math.log(TRANS[prev, x]) + cp.dist.Normal(EMIT_LOCS[x], 1.0).log_prob(data[t]).item()
            prev = x
        out.append((path, lp))
    return out


@pytest.mark.parametrize("markov", [True, False])
def test_hmm_loss_is_the_forward_algorithm(markov):
    elbo = TraceEnum_ELBO(max_plate_nesting=0)
    assert elbo.loss(hmm, lambda data, markov: None, SERIES, markov) == pytest.approx(
        -forward_log_likelihood(SERIES).item(), abs=1e-6)


def test_markov_recycles_two_dims_for_a_long_chain():
    data = torch.randn(200)
    tr = cp.trace(cp.handlers.enum(hmm, first_available_dim=-1)).get_trace(data)
    assert {tr.nodes[f"x_{t}"]["infer"]["_enumerate_dim"] for t in range(200)} == {-1, -2}
    loss = TraceEnum_ELBO(max_plate_nesting=0).loss(hmm, lambda data: None, data)
    assert loss == pytest.approx(-forward_log_likelihood(data).item(), rel=1e-9)


def test_infer_discrete_map_of_a_chain_is_the_viterbi_path():
    data = SERIES[:8]
    best = max(brute_force_paths(data), key=lambda pair: pair[1])[0]
    tr = cp.trace(infer_discrete(hmm, first_available_dim=-1, temperature=0)).get_trace(data)
    assert tuple(int(tr.nodes[f"x_{t}"]["value"]) for t in range(8)) == best


def test_hmm_batched_over_sequences_in_a_plate():
    seqs = torch.stack([SERIES, SERIES.flip(0), SERIES * 0.5])  # (3, T)

    def model(seqs):
        x = 0
        with cp.plate("seqs", seqs.shape[0], dim=-1):
            for t in cp.markov(range(seqs.shape[1])):
                x = cp.sample(f"x_{t}", cp.dist.Categorical(TRANS[x]), infer={"enumerate": "parallel"})
                cp.sample(f"y_{t}", cp.dist.Normal(EMIT_LOCS[x], 1.0), obs=seqs[:, t])

    exact = -sum(forward_log_likelihood(s) for s in seqs)
    assert TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda seqs: None, seqs) == pytest.approx(exact.item(),
                                                                                                     abs=1e-6)


# -- subsampling -------------------------------------------------------------------------------------------


def test_subsampled_plate_scales_each_rows_log_marginal():
    rows = torch.tensor([1, 3, 4])

    @config_enumerate
    def model(data):
        with cp.plate("data", len(data), subsample=rows) as idx:
            a = cp.sample("a", cp.dist.Bernoulli(0.4))
            cp.sample("obs", cp.dist.Normal(5.0 * a, 2.0), obs=data[idx])

    per_row = torch.logsumexp(torch.stack([math.log(0.6) + cp.dist.Normal(0.0, 2.0).log_prob(DATA[rows]),
                                           math.log(0.4) + cp.dist.Normal(5.0, 2.0).log_prob(DATA[rows])]), 0)
    exact = -(len(DATA) / len(rows)) * per_row.sum()
    assert TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda data: None, DATA) == pytest.approx(exact.item(),
                                                                                                     abs=1e-6)


def test_a_global_enumerated_site_raises_the_subsampled_likelihood_to_the_plate_scale():
    rows = torch.tensor([0, 2, 5])

    def model(data):
        z = cp.sample("z", cp.dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
        with cp.plate("data", len(data), subsample=rows) as idx:
            cp.sample("obs", cp.dist.Normal(3.0 * z, 2.0), obs=data[idx])

    scale = len(DATA) / len(rows)
    exact = -torch.logsumexp(torch.stack([
        math.log(0.7) + scale * cp.dist.Normal(0.0, 2.0).log_prob(DATA[rows]).sum(),
        math.log(0.3) + scale * cp.dist.Normal(3.0, 2.0).log_prob(DATA[rows]).sum()]), 0)
    assert TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda data: None, DATA) == pytest.approx(exact.item(),
                                                                                                     abs=1e-6)


def test_a_guides_subsample_is_replayed_into_the_enumerated_model():
    cp.set_rng_seed(3)

    @config_enumerate
    def model(data):
        with cp.plate("data", len(data)) as idx:
            a = cp.sample("a", cp.dist.Bernoulli(0.4))
            cp.sample("obs", cp.dist.Normal(5.0 * a, 2.0), obs=data[idx])

    def guide(data):
        with cp.plate("data", len(data), subsample_size=2):
            pass

    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    loss = elbo.loss(model, guide, DATA)
    rows = elbo.last_traces[1][1].nodes["data"]["value"]
    per_row = torch.logsumexp(torch.stack([math.log(0.6) + cp.dist.Normal(0.0, 2.0).log_prob(DATA[rows]),
                                           math.log(0.4) + cp.dist.Normal(5.0, 2.0).log_prob(DATA[rows])]), 0)
    assert loss == pytest.approx(-(len(DATA) / 2) * per_row.sum().item(), abs=1e-6)


# -- enumeration in the guide ----------------------------------------------------------------------------


def guide_enumerated_expectation(probs, weights, locs, scale, data):
    """sum_i sum_k q_ik [log p(a=k) + log p(x_i | k) - log q_ik]."""
    joint = weights.log() + cp.dist.Normal(locs, scale).log_prob(data[:, None])
    return (probs * (joint - probs.log())).sum()


def test_parallel_guide_enumeration_averages_exactly_over_the_guide():
    weights, locs, scale = torch.tensor([0.4, 0.6]), torch.tensor([1.0, 10.0]), torch.tensor(2.0)

    @config_enumerate
    def model(data):
        with cp.plate("data", len(data)):
            a = cp.sample("assignment", cp.dist.Categorical(weights))
            cp.sample("obs", cp.dist.Normal(locs[a], scale), obs=data)

    @config_enumerate
    def guide(data):
        with cp.plate("data", len(data)):
            probs = cp.param("probs", torch.tensor([[0.3, 0.7]]).expand(len(data), 2).clone(),
                             constraint=C.simplex)
            cp.sample("assignment", cp.dist.Categorical(probs))

    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, DATA)
    probs = cp.get_param_store()["probs"]
    exact = -guide_enumerated_expectation(probs, weights, locs, scale, DATA)
    assert loss.item() == pytest.approx(exact.item(), abs=1e-6)
    leaf = cp.get_param_store().leaf("probs")
    (got,) = torch.autograd.grad(loss, [leaf])
    (want,) = torch.autograd.grad(exact, [leaf])
    assert torch.allclose(got, want, atol=1e-6)


def test_sequential_guide_enumeration_equals_parallel():
    @config_enumerate
    def model():
        z = cp.sample("z", cp.dist.Categorical(torch.tensor([0.2, 0.5, 0.3])))
        with cp.plate("data", len(DATA)):
            a = cp.sample("a", cp.dist.Bernoulli(torch.tensor([0.1, 0.5, 0.9])[z]))
            cp.sample("obs", cp.dist.Normal(4.0 * a + z, 1.5), obs=DATA)

    def make_guide(strategy):
        def guide():
            q = cp.param("q", torch.tensor([0.6, 0.3, 0.1]), constraint=C.simplex)
            cp.sample("z", cp.dist.Categorical(q), infer={"enumerate": strategy})
        return guide

    results = []
    for strategy in ("parallel", "sequential"):
        cp.clear_param_store()
        loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, make_guide(strategy))
        (grad,) = torch.autograd.grad(loss, [cp.get_param_store().leaf("q")])
        results.append((loss.item(), grad))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-9)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-9)


def test_svi_steps_with_a_sequential_site_after_a_reparameterised_one():
    # Both branches replay the guide's draw of loc, so the loss is backpropagated once.
    @config_enumerate
    def model():
        loc = cp.sample("loc", cp.dist.Normal(0.0, 10.0))
        b = cp.sample("b", cp.dist.Bernoulli(0.5))
        with cp.plate("data", len(DATA)):
            cp.sample("obs", cp.dist.Normal(loc + 3.0 * b, 2.0), obs=DATA)

    def guide():
        m = cp.param("m", torch.tensor(0.0))
        q = cp.param("q", torch.tensor(0.5), constraint=C.unit_interval)
        cp.sample("loc", cp.dist.Normal(m, 0.5))
        cp.sample("b", cp.dist.Bernoulli(q), infer={"enumerate": "sequential"})

    svi = SVI(model, guide, cp.optim.Adam({"lr": 0.05}), TraceEnum_ELBO(max_plate_nesting=1))
    losses = [svi.step() for _ in range(300)]
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20
    m, q = cp.param("m").item(), cp.param("q").item()
    assert m + 3.0 * q == pytest.approx(DATA.mean().item(), abs=1.0)


def test_score_function_gradient_of_a_sampled_guide_site_is_unbiased():
    # A guide Bernoulli b (sampled, not enumerated) with a model-enumerated local a: the exact
    # gradient of the ELBO in q, by enumerating b by hand, against the mean of 2,000 particles.
    data = DATA[:4]

    @config_enumerate
    def model():
        b = cp.sample("b", cp.dist.Bernoulli(0.5))
        with cp.plate("data", len(data)):
            a = cp.sample("a", cp.dist.Bernoulli(0.5))
            cp.sample("obs", cp.dist.Normal(5.0 * a + 2.0 * b, 2.0), obs=data)

    def guide():
        q = cp.param("q", torch.tensor(0.4), constraint=C.unit_interval)
        cp.sample("b", cp.dist.Bernoulli(q))

    def exact_elbo(q):
        total = 0.0
        for b, qb in ((0.0, 1 - q), (1.0, q)):
            rows = torch.logsumexp(torch.stack([math.log(0.5) + cp.dist.Normal(5.0 * a + 2.0 * b, 2.0).log_prob(data)
                                                for a in (0.0, 1.0)]), 0).sum()
            total = total + qb * (math.log(0.5) + rows - qb.log())
        return total

    q = torch.tensor(0.4, requires_grad=True)
    (exact,) = torch.autograd.grad(-exact_elbo(q), [q])
    elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=2000, vectorize_particles=True)
    loss = elbo.differentiable_loss(model, guide)
    store = cp.get_param_store()
    (leaf_grad,) = torch.autograd.grad(loss, [store.leaf("q")])
    grad = leaf_grad / (q * (1 - q)).detach()  # d sigmoid(u) / du = q (1 - q)
    # the per-particle sd of this estimate is 31.5 (300 single-particle runs): 4 standard errors
    assert grad.item() == pytest.approx(exact.item(), abs=4 * 32 / math.sqrt(2000))


def test_tensor_shapes_tutorials_enumeration_section():
    # Pyro's tensor_shapes tutorial: enumerated values get dims left of the plates, and a guide
    # that enumerates x_active (in one plate) and y_active (in another) averages exactly.
    @config_enumerate
    def chain():
        p = cp.param("p", torch.softmax(torch.randn(3, 3), -1), constraint=C.simplex)
        x = cp.sample("x", cp.dist.Categorical(p[0]))
        y = cp.sample("y", cp.dist.Categorical(p[x]))
        z = cp.sample("z", cp.dist.Categorical(p[y]))
        return x, y, z

    shapes = [v.shape for v in cp.handlers.enum(chain, first_available_dim=-1)()]
    assert shapes == [(3,), (3, 1), (3, 1, 1)]
    width, height = 8, 10
    pixels = torch.zeros(width, height)
    pixels[3, 2] = pixels[3, 5] = pixels[3, 9] = pixels[7, 1] = 1.0

    def fun(observe):
        p_x = cp.param("p_x", torch.tensor(0.1), constraint=C.unit_interval)
        p_y = cp.param("p_y", torch.tensor(0.1), constraint=C.unit_interval)
        x_axis, y_axis = cp.plate("x_axis", width, dim=-2), cp.plate("y_axis", height, dim=-1)
        with x_axis:
            x_active = cp.sample("x_active", cp.dist.Bernoulli(p_x))
        with y_axis:
            y_active = cp.sample("y_active", cp.dist.Bernoulli(p_y))
        p = 0.1 + 0.5 * x_active * y_active
        with x_axis, y_axis:
            if observe:
                cp.sample("pixels", cp.dist.Bernoulli(p), obs=pixels)
        return x_active.shape, y_active.shape

    elbo = TraceEnum_ELBO(max_plate_nesting=2)
    loss = elbo.loss(lambda: fun(True), config_enumerate(lambda: fun(False)))
    guide_trace = elbo.last_traces[1][1]
    assert guide_trace.nodes["x_active"]["value"].shape == (2, 1, 1)
    assert guide_trace.nodes["y_active"]["value"].shape == (2, 1, 1, 1)
    # the guide is the prior, so the ELBO is E_q log p(pixels | x, y), one (x_a, y_b) pair per pixel
    expected = 0.0
    for xa, qx in ((0.0, 0.9), (1.0, 0.1)):
        for yb, qy in ((0.0, 0.9), (1.0, 0.1)):
            expected += qx * qy * cp.dist.Bernoulli(0.1 + 0.5 * xa * yb).log_prob(pixels).sum().item()
    assert loss == pytest.approx(-expected, abs=1e-6)


# -- infer_discrete -----------------------------------------------------------------------------------


Z_PRIOR = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
A_GIVEN_Z = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
X = torch.tensor([0.3, 4.6, 5.2, 3.1], dtype=torch.float64)


@config_enumerate
def two_level(x):
    z = cp.sample("z", cp.dist.Categorical(Z_PRIOR))
    with cp.plate("rows", len(x)):
        a = cp.sample("a", cp.dist.Bernoulli(A_GIVEN_Z[z]))
        cp.sample("x", cp.dist.Normal(5.0 * a + 0.5 * z, 1.5), obs=x)
    return z


def two_level_posterior(x):
    """Every joint (z, a_1..a_n) with its posterior probability."""
    table = {}
    for z in range(3):
        for a in itertools.product((0.0, 1.0), repeat=len(x)):
            a_t = torch.tensor(a)
            lp = (Z_PRIOR[z].log() + cp.dist.Bernoulli(A_GIVEN_Z[z]).log_prob(a_t).sum()
                  + cp.dist.Normal(5.0 * a_t + 0.5 * z, 1.5).log_prob(x).sum())
            table[(z, a)] = lp.item()
    norm = torch.logsumexp(torch.tensor(list(table.values())), 0).item()
    return {key: math.exp(lp - norm) for key, lp in table.items()}


def test_infer_discrete_map_matches_brute_force():
    posterior = two_level_posterior(X)
    best_z, best_a = max(posterior, key=posterior.get)
    tr = cp.trace(infer_discrete(two_level, first_available_dim=-2, temperature=0)).get_trace(X)
    assert int(tr.nodes["z"]["value"]) == best_z
    assert tuple(tr.nodes["a"]["value"].tolist()) == best_a
    assert tr.nodes["a"]["value"].shape == (len(X),)
    assert int(tr.nodes["_RETURN"]["value"]) == best_z  # the model reran with the MAP values


def test_infer_discrete_samples_match_the_exact_posterior_frequencies():
    draws = 4000

    def batched(x):
        with cp.plate("draws", draws, dim=-2):
            return two_level(x)

    posterior = two_level_posterior(X)
    tr = cp.trace(infer_discrete(batched, first_available_dim=-3, temperature=1)).get_trace(X)
    z = tr.nodes["z"]["value"].reshape(draws)
    a = tr.nodes["a"]["value"].reshape(draws, len(X))
    for k in range(3):
        p = sum(prob for (zz, _), prob in posterior.items() if zz == k)
        assert abs((z == k).double().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / draws) + 1e-9
    for i in range(len(X)):
        p = sum(prob for (_, aa), prob in posterior.items() if aa[i] == 1.0)
        assert abs(a[:, i].mean().item() - p) < 4 * math.sqrt(p * (1 - p) / draws) + 1e-9
    # jointly: P(z = 1, a_0 = 1)
    p = sum(prob for (zz, aa), prob in posterior.items() if zz == 1 and aa[0] == 1.0)
    joint = ((z == 1) & (a[:, 0] == 1)).double().mean().item()
    assert abs(joint - p) < 4 * math.sqrt(p * (1 - p) / draws) + 1e-9


def test_compute_marginals_are_the_exact_posterior_marginals():
    posterior = two_level_posterior(X)
    marginals = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(two_level, lambda x: None, X)
    z_probs = [sum(p for (z, _), p in posterior.items() if z == k) for k in range(3)]
    assert torch.allclose(marginals["z"].probs, torch.tensor(z_probs), atol=1e-9)
    a_probs = [sum(p for (_, a), p in posterior.items() if a[i] == 1.0) for i in range(len(X))]
    assert isinstance(marginals["a"], torch.distributions.Bernoulli)
    assert torch.allclose(marginals["a"].probs, torch.tensor(a_probs), atol=1e-9)


def test_sample_posterior_draws_the_enumerated_sites_given_a_guide_draw():
    cp.set_rng_seed(5)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    draws = [elbo.sample_posterior(two_level, lambda x: None, X) for _ in range(200)]
    posterior = two_level_posterior(X)
    p = sum(prob for (z, _), prob in posterior.items() if z == 1)
    frequency = sum(int(z) == 1 for z in draws) / len(draws)
    assert abs(frequency - p) < 4 * math.sqrt(p * (1 - p) / len(draws)) + 1e-9


def test_infer_discrete_keeps_continuous_values_replayed_from_a_guide():
    @config_enumerate
    def model(x):
        loc = cp.sample("loc", cp.dist.Normal(0.0, 10.0))
        with cp.plate("rows", len(x)):
            a = cp.sample("a", cp.dist.Bernoulli(0.5))
            cp.sample("x", cp.dist.Normal(loc + 5.0 * a, 1.0), obs=x)

    guide_trace = cp.trace(lambda x: cp.sample("loc", cp.dist.Delta(torch.tensor(0.0)))).get_trace(X)
    tr = cp.trace(infer_discrete(cp.handlers.replay(model, trace=guide_trace), temperature=0)).get_trace(X)
    assert tr.nodes["loc"]["value"].item() == 0.0
    assert tr.nodes["a"]["value"].tolist() == [0.0, 1.0, 1.0, 1.0]


# -- errors -----------------------------------------------------------------------------------------


def test_enumerating_a_continuous_site_names_it():
    def model():
        cp.sample("w", cp.dist.Normal(0.0, 1.0), infer={"enumerate": "parallel"})

    with pytest.raises(ValueError, match="site 'w'.*Normal has no finite support"):
        TraceEnum_ELBO(max_plate_nesting=0).loss(model, lambda: None)


def test_too_small_max_plate_nesting_names_the_site_and_plate():
    @config_enumerate
    def model():
        with cp.plate("outer", 2, dim=-2), cp.plate("inner", 3):
            z = cp.sample("z", cp.dist.Bernoulli(0.5))
            cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.zeros(2, 3))

    with pytest.raises(ValueError, match="site 'z': plate 'outer' uses dim -2.*max_plate_nesting=1.*at least 2"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)
    assert TraceEnum_ELBO(max_plate_nesting=2).loss(model, lambda: None) > 0  # and right it works
    assert TraceEnum_ELBO().loss(model, lambda: None) > 0  # found from a first run


def test_model_enumeration_more_global_than_guide_enumeration_is_refused():
    @config_enumerate
    def model():
        z = cp.sample("z", cp.dist.Bernoulli(0.5))
        with cp.plate("rows", 3):
            a = cp.sample("a", cp.dist.Bernoulli(0.5))
            cp.sample("x", cp.dist.Normal(a + z, 1.0), obs=torch.zeros(3))

    @config_enumerate
    def guide():
        with cp.plate("rows", 3):
            cp.sample("a", cp.dist.Bernoulli(0.5))

    with pytest.raises(ValueError, match="site 'a'"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide)


def test_sequential_enumeration_in_the_model_is_refused_naming_the_site():
    @config_enumerate(default="sequential")
    def model():
        z = cp.sample("z", cp.dist.Bernoulli(0.5))
        cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.tensor(0.0))

    with pytest.raises(ValueError, match="model site 'z' is marked for sequential"):
        TraceEnum_ELBO(max_plate_nesting=0).loss(model, lambda: None)


def test_no_enumerated_site_warns_and_bad_arguments_are_refused():
    def model():
        cp.sample("x", cp.dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))

    with pytest.warns(UserWarning, match="no sample sites configured for enumeration"):
        TraceEnum_ELBO(max_plate_nesting=0).loss(model, lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TraceEnum_ELBO(max_plate_nesting=0, strict_enumeration_warning=False).loss(model, lambda: None)
    with pytest.raises(ValueError, match="temperature"):
        infer_discrete(model, temperature=0.5)
    with pytest.raises(ValueError, match="default"):
        config_enumerate(model, default="everything")


def test_iter_discrete_traces_yields_one_trace_per_sequential_assignment():
    from causalppl.infer.enum import iter_discrete_traces

    def model():
        cp.sample("a", cp.dist.Bernoulli(0.3), infer={"enumerate": "sequential"})
        cp.sample("b", cp.dist.Categorical(torch.ones(3) / 3), infer={"enumerate": "sequential"})
        cp.sample("c", cp.dist.Bernoulli(0.5), infer={"enumerate": "parallel"})  # left to the handlers

    traces = list(iter_discrete_traces("flat", model))
    assert sorted((int(t.nodes["a"]["value"]), int(t.nodes["b"]["value"])) for t in traces) == \
        sorted(itertools.product(range(2), range(3)))


def test_trace_enum_sample_elbo_draws_from_the_posterior_of_its_last_run():
    from causalppl.infer.discrete import TraceEnumSample_ELBO

    data = torch.tensor([0.3, 1.1, 0.8])

    @config_enumerate
    def model():
        z = cp.sample("z", cp.dist.Bernoulli(0.4))
        with cp.plate("rows", 3):
            cp.sample("x", cp.dist.Normal(z, 1.0), obs=data)
        return z

    elbo = TraceEnumSample_ELBO(max_plate_nesting=1)
    loss = elbo.loss(model, lambda: None)
    assert loss == pytest.approx(TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None), abs=1e-9)
    draws = torch.stack([elbo.sample_saved() for _ in range(4000)])
    like = [cp.dist.Normal(float(v), 1.0).log_prob(data).sum().exp() for v in (0, 1)]
    posterior = 0.4 * like[1] / (0.4 * like[1] + 0.6 * like[0])
    assert abs(draws.mean() - posterior) < 4 * math.sqrt(posterior * (1 - posterior) / 4000)
    with pytest.raises(RuntimeError, match="call loss"):
        TraceEnumSample_ELBO().sample_saved()


@pytest.mark.parametrize("enumerate_", ["parallel", "sequential"])
def test_guide_values_of_probability_zero_cost_nothing(enumerate_):
    # q(z=1) = 0 in the first row and q(z=0) = 0 in the last: their -log q = inf is weighted by 0, not nan.
    probs = torch.tensor([0.0, 0.5, 1.0])

    def model():
        with cp.plate("rows", 3):
            cp.sample("z", cp.dist.Bernoulli(probs))

    def guide():
        with cp.plate("rows", 3):
            cp.sample("z", cp.dist.Bernoulli(cp.param("q", probs.clone(), constraint=C.unit_interval)),
                      infer={"enumerate": enumerate_})

    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide)
    assert loss == pytest.approx(0.0, abs=1e-9)   # q = p: the KL is 0


# -- Pyro's tutorial ----------------------------------------------------------------------------------


def test_gmm_tutorial_runs_and_learns_the_component_locations():
    torch.set_default_dtype(torch.float32)  # as the tutorial runs
    spec = importlib.util.spec_from_file_location("gmm_enumeration", EXAMPLES / "gmm_enumeration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(steps=200, seeds=20, quiet=True)
    locs, order = results["locs"].sort()
    # Pyro's tutorial reports locs = [0.49887404 10.984463], weights [0.375 0.625], scale 0.65.
    assert locs.tolist() == pytest.approx([0.499, 10.984], abs=0.05)
    assert results["weights"][order].tolist() == pytest.approx([0.375, 0.625], abs=0.02)
    assert results["scale"].item() == pytest.approx(0.651, abs=0.03)
    low = int(order[0])
    # MAP membership: the first two points with the low component, the rest with the high one.
    assert (results["map_assignment"] == low).tolist() == [True, True, False, False, False]
    switch = results["new_data"][(results["new_assignment"] != low).nonzero()[0]].item()
    assert 5.0 < switch < 6.5  # the boundary between the components lies near 5.7
    probs = results["assignment_probs"][:, low]
    assert (probs[:2] > 0.95).all() and (probs[2:] < 0.05).all()
    assert results["guide_losses"][-1] < results["guide_losses"][0]


def test_svi_fits_a_mixture_with_enumerated_assignments():
    cp.set_rng_seed(1)
    data = torch.cat([torch.randn(60) * 0.5 - 3.0, torch.randn(40) * 0.5 + 2.0])

    @config_enumerate
    def model(data):
        weights = cp.param("weights", torch.ones(2) / 2, constraint=C.simplex)
        locs = cp.param("locs", torch.tensor([-1.0, 1.0]))
        with cp.plate("data", len(data)):
            a = cp.sample("a", cp.dist.Categorical(weights))
            cp.sample("obs", cp.dist.Normal(locs[a], 0.5), obs=data)

    svi = SVI(model, lambda data: None, cp.optim.Adam({"lr": 0.05}), TraceEnum_ELBO(max_plate_nesting=1))
    for _ in range(300):
        svi.step(data)
    store = cp.get_param_store()
    assert store["locs"].tolist() == pytest.approx([-3.0, 2.0], abs=0.25)
    assert store["weights"].tolist() == pytest.approx([0.6, 0.4], abs=0.1)


# -- against Pyro itself (where it is installed) --------------------------------------------------------


def _pyro_cases(P, D, cfg):
    data = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0, 3.0, 4.0])

    @cfg
    def gmm(data):
        weights = P.param("weights", torch.ones(2) / 2, constraint=C.simplex)
        scale = P.param("scale", torch.tensor(2.0), constraint=C.positive)
        locs = P.param("locs", torch.tensor([1.0, 9.0]))
        with P.plate("data", len(data)):
            a = P.sample("assignment", D.Categorical(weights))
            P.sample("obs", D.Normal(locs[a], scale), obs=data)

    @cfg
    def guide_enum(data):
        with P.plate("data", len(data)):
            probs = P.param("assignment_probs", torch.ones(len(data), 2) / 2, constraint=C.simplex)
            P.sample("assignment", D.Categorical(probs))

    @cfg
    def hmm(data):
        trans = P.param("trans", torch.tensor([[0.8, 0.2], [0.3, 0.7]]), constraint=C.simplex)
        locs = P.param("locs", torch.tensor([1.0, 9.0]))
        x = 0
        for t in P.markov(range(len(data))):
            x = P.sample(f"x_{t}", D.Categorical(trans[x]))
            P.sample(f"y_{t}", D.Normal(locs[x], 1.0), obs=data[t])

    @cfg
    def mixed(data):
        loc = P.sample("loc", D.Normal(0.0, 10.0))
        b = P.sample("b", D.Bernoulli(0.5))
        with P.plate("data", len(data)):
            a = P.sample("a", D.Bernoulli(0.5))
            P.sample("obs", D.Normal(loc + 5 * a + b, 2.0), obs=data)

    def make_mixed_guide(strategy):
        def guide(data):
            m = P.param("m", torch.tensor(3.0))
            q = P.param("q", torch.tensor(0.4), constraint=C.unit_interval)
            P.sample("loc", D.Normal(m, 1.0))
            P.sample("b", D.Bernoulli(q), infer={"enumerate": strategy} if strategy else {})
        return guide

    H = cp.handlers if P is cp else __import__("pyro").poutine
    mask = torch.tensor([True, False, True, True, False, True, True])

    @cfg
    def scaled_and_masked(data):
        locs = P.param("locs", torch.tensor([1.0, 9.0]))
        with H.scale(scale=0.3), P.plate("data", len(data)):
            a = P.sample("a", D.Bernoulli(0.3))
            with H.mask(mask=mask):
                P.sample("obs", D.Normal(locs[a.long()], 2.0), obs=data)

    @cfg
    def second_order_hmm(data):
        trans = P.param("trans", torch.softmax(torch.arange(8.0).reshape(2, 2, 2) / 3, -1), constraint=C.simplex)
        locs = P.param("locs", torch.tensor([-1.0, 2.0]))
        with P.plate("seqs", 2, dim=-1):
            x1 = x2 = 0
            for t in P.markov(range(len(data)), history=2):
                x = P.sample(f"x_{t}", D.Categorical(trans[x2, x1]))
                P.sample(f"y_{t}", D.Normal(locs[x], 1.0), obs=torch.stack([data[t], -data[t]]))
                x2, x1 = x1, x

    @cfg
    def factorial_hmm(data):
        trans = P.param("trans", torch.tensor([[0.9, 0.1], [0.2, 0.8]]), constraint=C.simplex)
        w = v = 0
        for t in P.markov(range(len(data))):
            w = P.sample(f"w_{t}", D.Categorical(trans[w]))
            v = P.sample(f"v_{t}", D.Categorical(trans[v]))
            P.sample(f"y_{t}", D.Normal(w.double() + 4 * v.double(), 1.0), obs=data[t])

    return {
        "scaled_and_masked": (scaled_and_masked, lambda data: None, 1),
        "second_order_hmm": (second_order_hmm, lambda data: None, 1),
        "factorial_hmm": (factorial_hmm, lambda data: None, 0),
        "gmm": (gmm, lambda data: None, 1), "guide_enum": (gmm, guide_enum, 1), "hmm": (hmm, lambda data: None, 0),
        "score": (mixed, make_mixed_guide(None), 1), "parallel": (mixed, make_mixed_guide("parallel"), 1),
        "sequential": (mixed, make_mixed_guide("sequential"), 1),
    }, data


@pytest.mark.parametrize("case", ["gmm", "guide_enum", "hmm", "score", "parallel", "sequential", "scaled_and_masked",
                                  "second_order_hmm", "factorial_hmm"])
def test_loss_and_gradients_equal_pyros(case):
    pyro = pytest.importorskip("pyro")
    import pyro.distributions as pdist

    out = {}
    for name, (P, D, cfg, elbo_cls) in {
        "pyro": (pyro, pdist, pyro.infer.config_enumerate, pyro.infer.TraceEnum_ELBO),
        "cp": (cp, cp.dist, config_enumerate, TraceEnum_ELBO),
    }.items():
        cases, data = _pyro_cases(P, D, cfg)
        model, guide, nesting = cases[case]
        P.clear_param_store()
        P.set_rng_seed(0)  # the same draws for the sampled sites
        loss = elbo_cls(max_plate_nesting=nesting).differentiable_loss(model, guide, data)
        params = dict(P.get_param_store().named_parameters())
        grads = torch.autograd.grad(loss, list(params.values()))
        out[name] = loss.item(), {k: g for k, g in zip(params, grads)}
    assert out["cp"][0] == pytest.approx(out["pyro"][0], abs=1e-6)
    assert out["cp"][1].keys() == out["pyro"][1].keys()
    for key, grad in out["pyro"][1].items():
        assert torch.allclose(out["cp"][1][key], grad, atol=1e-6), key
