"""JitTrace_ELBO / JitTraceMeanField_ELBO: the loss captured once and replayed gives the eager numbers."""

import math
import warnings

import pytest
import torch

import causalppl as cp
from causalppl.infer import JitTrace_ELBO, JitTraceMeanField_ELBO, NonFiniteLossError, Trace_ELBO, TraceMeanField_ELBO
from causalppl.infer.autoguide import AutoDiagonalNormal, AutoNormal

pytestmark = pytest.mark.usefixtures("one_thread_seeded")

dist = cp.dist


def scalar_model(x):
    z = cp.sample("z", dist.Normal(0.0, 1.0))
    cp.sample("x", dist.Normal(z, 1.0), obs=x)


def scalar_guide(x):
    loc = cp.param("loc", torch.tensor(0.0))
    scale = cp.param("scale", torch.tensor(1.0), constraint=cp.constraints.positive)
    cp.sample("z", dist.Normal(loc, scale))


def confounder_model(x, y):
    """A latent per row, positive and real globals (the benchmarks' W5, with a learned noise scale)."""
    a = cp.sample("a", dist.Normal(0.0, 10.0))
    noise = cp.sample("noise", dist.LogNormal(0.0, 1.0))
    with cp.plate("rows", len(x)):
        u = cp.sample("u", dist.Normal(0.0, 1.0))
        cp.sample("x", dist.Normal(a * u, noise), obs=x)
        cp.sample("y", dist.Normal(2.0 * x + u, 1.0), obs=y)


def subsampled_model(x):
    loc = cp.sample("loc", dist.Normal(0.0, 5.0))
    with cp.plate("rows", len(x), subsample_size=16) as idx:
        cp.sample("x", dist.Normal(loc, 1.0), obs=x[idx])


def discrete_model(x):
    """A Bernoulli latent: the guide's draw has no rsample, so the loss carries a score term."""
    p = cp.param("p", torch.tensor(0.3), constraint=cp.constraints.unit_interval)
    flip = cp.sample("flip", dist.Bernoulli(p))
    cp.sample("x", dist.Normal(3.0 * flip, 1.0), obs=x)


def discrete_guide(x):
    q = cp.param("q", torch.tensor(0.5), constraint=cp.constraints.unit_interval)
    cp.sample("flip", dist.Bernoulli(q))


def fit(elbo, model, guide, *args, steps=60, lr=0.05):
    """Fit from scratch; ``guide`` is a guide function, or an autoguide class (a fresh one is made)."""
    cp.clear_param_store()
    cp.set_rng_seed(1)
    if isinstance(guide, type):
        guide = guide(model)
    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": lr}), elbo)
    losses = [svi.step(*args) for _ in range(steps)]
    params = {name: value.detach().clone() for name, value in cp.get_param_store().items()}
    return losses, params


def assert_same_fit(jit_elbo, eager_elbo, model, guide, *args, **kwargs):
    jit_losses, jit_params = fit(jit_elbo, model, guide, *args, **kwargs)
    losses, params = fit(eager_elbo, model, guide, *args, **kwargs)
    assert jit_losses == pytest.approx(losses, rel=1e-5, abs=1e-5)
    assert jit_params.keys() == params.keys()
    for name, value in params.items():
        assert torch.allclose(jit_params[name], value, rtol=1e-5, atol=1e-6), name
    return jit_elbo


def rows(n=40):
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(n, generator=gen)
    x = 1.5 * u + 0.5 * torch.randn(n, generator=gen)
    return x, 2.0 * x + u + torch.randn(n, generator=gen)


@pytest.mark.parametrize("case", ["scalar", "autonormal", "diagonal", "subsampled", "score", "particles",
                                  "vectorized particles"])
def test_a_seeded_fit_replays_the_eager_numbers(case):
    x, y = rows()
    model, guide, args, options = {
        "scalar": (scalar_model, scalar_guide, (torch.tensor(2.0),), {}),
        "autonormal": (confounder_model, AutoNormal, (x, y), {}),
        "diagonal": (confounder_model, AutoDiagonalNormal, (x, y), {}),
        "subsampled": (subsampled_model, AutoNormal, (x,), {}),
        "score": (discrete_model, discrete_guide, (torch.tensor(2.5),), {}),
        "particles": (scalar_model, scalar_guide, (torch.tensor(2.0),), {"num_particles": 3}),
        "vectorized particles": (scalar_model, scalar_guide, (torch.tensor(2.0),),
                                 {"num_particles": 4, "vectorize_particles": True}),
    }[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a capture that gave up would warn
        elbo = assert_same_fit(JitTrace_ELBO(**options), Trace_ELBO(**options), model, guide, *args)
    assert elbo.compiled_calls == 59  # every call after the first, eager one


def test_mean_field_replays_the_eager_numbers():
    elbo = assert_same_fit(JitTraceMeanField_ELBO(), TraceMeanField_ELBO(), scalar_model, scalar_guide,
                           torch.tensor(2.0))
    assert elbo.compiled_calls == 59


def test_the_fit_reaches_the_analytic_posterior():
    # z ~ N(0, 1), x | z ~ N(z, 1), x = 2: the posterior is N(1, 1/2).
    _, params = fit(JitTrace_ELBO(num_particles=8, vectorize_particles=True), scalar_model, scalar_guide,
                    torch.tensor(2.0), steps=1500, lr=0.02)
    assert params["loc"].item() == pytest.approx(1.0, abs=0.08)
    assert params["scale"].item() == pytest.approx(math.sqrt(0.5), abs=0.08)


def test_new_argument_shapes_and_a_new_param_store_are_captured_afresh():
    elbo = JitTrace_ELBO()
    x, y = rows(40)
    first, _ = fit(elbo, scalar_model, scalar_guide, torch.tensor(2.0), steps=5)
    again, _ = fit(elbo, scalar_model, scalar_guide, torch.tensor(2.0), steps=5)  # a cleared store: new leaves
    assert again == first
    assert elbo.compiled_calls == 4 + 5  # the first call after the store was cleared is captured afresh

    def model(x):
        z = cp.sample("z", dist.Normal(0.0, 1.0))
        with cp.plate("rows", len(x)):
            cp.sample("x", dist.Normal(z, 1.0), obs=x)

    guide = scalar_guide
    losses = [elbo.loss(model, guide, x[:n]) for n in (10, 10, 10, 20, 20, 20)]
    cp.set_rng_seed(3)
    replayed = elbo.loss(model, guide, x[:20] + 1.0)  # other data, same shape: the same capture
    cp.set_rng_seed(3)
    assert replayed == pytest.approx(Trace_ELBO().loss(model, guide, x[:20] + 1.0), rel=1e-5)
    assert all(math.isfinite(v) for v in losses)
    assert elbo.compiled_calls == 9 + 5


def test_a_program_that_reads_tensor_values_runs_eagerly_with_a_warning():
    def branching_model(x):
        z = cp.sample("z", dist.Normal(0.0, 1.0))
        if z > 0:  # a Python branch on a value: cannot be captured
            cp.sample("x", dist.Normal(z, 1.0), obs=x)
        else:
            cp.sample("x", dist.Normal(-z, 2.0), obs=x)

    with pytest.warns(RuntimeWarning, match=r"JitTrace_ELBO: the loss could not be captured .*runs eagerly"):
        losses, _ = fit(JitTrace_ELBO(), branching_model, scalar_guide, torch.tensor(1.0), steps=10)
    expected, _ = fit(Trace_ELBO(), branching_model, scalar_guide, torch.tensor(1.0), steps=10)
    assert losses == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pyro's flag for its tracer's warnings silences this one too
        quiet, _ = fit(JitTrace_ELBO(ignore_jit_warnings=True), branching_model, scalar_guide, torch.tensor(1.0),
                       steps=10)
    assert quiet == expected


def test_a_non_finite_loss_names_the_site_and_keeps_the_params():
    def model(x):
        z = cp.sample("z", dist.Normal(0.0, 1.0))
        cp.sample("x", dist.Normal(z, cp.param("noise", torch.tensor(1.0))), obs=x)

    cp.clear_param_store()
    svi = cp.infer.SVI(model, scalar_guide, cp.optim.Adam({"lr": 0.01}), JitTrace_ELBO())
    for _ in range(3):
        svi.step(torch.tensor(1.0))
    assert svi.loss.compiled_calls == 2
    with torch.no_grad():
        cp.get_param_store().leaf("noise").fill_(-1.0)  # a negative scale: log density NaN
    before = cp.param("loc").detach().clone()
    with pytest.raises(NonFiniteLossError, match="log density of .*'x'"):
        svi.step(torch.tensor(1.0))
    assert torch.equal(cp.param("loc").detach(), before)


def test_compile_option_gives_the_eager_numbers():
    x, y = rows()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # where torch.compile cannot run, the capture is replayed uncompiled
        elbo = assert_same_fit(JitTrace_ELBO(jit_options={"compile": True}), Trace_ELBO(), confounder_model,
                               AutoNormal, x, y, steps=8)
    assert elbo.compiled_calls == 7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_replay_on_cuda_gives_the_eager_numbers():
    x, y = (t.cuda() for t in rows())
    assert_same_fit(JitTrace_ELBO(), Trace_ELBO(), confounder_model, AutoNormal, x, y, steps=10)


def test_jit_options_are_checked_by_name():
    assert JitTrace_ELBO(jit_options={"check_trace": False}, ignore_jit_warnings=True).jit_options == {
        "check_trace": False}
    with pytest.raises(ValueError, match=r"unknown jit_options \['compiled'\].*'compile'"):
        JitTrace_ELBO(jit_options={"compiled": True})


def test_arguments_that_are_new_objects_at_every_call_do_not_grow_the_captures_without_bound():
    def model(data):
        cp.sample("z", dist.Normal(0.0, 1.0))

    def guide(data):
        cp.sample("z", dist.Normal(cp.param("loc", torch.tensor(0.0)), 1.0))

    elbo = JitTrace_ELBO()
    cp.clear_param_store()
    for i in range(200):
        elbo.loss(model, guide, [i])  # a list: unhashable, told apart by identity
    assert len(elbo._captures) <= 64


def test_a_distribution_made_outside_the_model_with_validation_on_is_captured():
    # It keeps its own validate_args=True; the capture skips its checks of values (the eager call made them).
    prior = dist.Independent(dist.Normal(torch.zeros(2), 1.0, validate_args=True), 1)
    data = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))

    def model(data):
        w = cp.sample("w", prior)
        with cp.plate("rows", len(data)):
            cp.sample("y", dist.Normal(data[:, :2] @ w, 1.0), obs=data[:, 2])

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        elbo = assert_same_fit(JitTrace_ELBO(), Trace_ELBO(), model, AutoNormal, data, steps=10)
    assert elbo.compiled_calls == 9


def test_tensors_inside_containers_are_inputs_of_the_capture():
    def model(batch):
        z = cp.sample("z", dist.Normal(0.0, 1.0))
        with cp.plate("rows", len(batch["x"])):
            cp.sample("x", dist.Normal(z + batch["shift"][0], 1.0), obs=batch["x"])

    elbo = JitTrace_ELBO()
    cp.clear_param_store()
    batch = {"x": torch.zeros(5), "shift": [torch.tensor(0.0)]}
    for _ in range(3):
        elbo.loss(model, scalar_guide, batch)
    assert elbo.compiled_calls == 2
    batch["x"] = torch.full((5,), 3.0)  # the same dict, a new tensor in it: the replay reads the new one
    cp.set_rng_seed(4)
    replayed = elbo.loss(model, scalar_guide, batch)
    cp.set_rng_seed(4)
    assert replayed == pytest.approx(Trace_ELBO().loss(model, scalar_guide, batch), rel=1e-6)
    assert elbo.compiled_calls == 3


def test_params_in_a_param_scope_are_replayed_without_capturing_again():
    store = cp.ParamStore()
    scoped_guide = cp.handlers.param_scope(scalar_guide, store=store)
    cp.clear_param_store()
    cp.set_rng_seed(2)
    elbo = JitTrace_ELBO()
    svi = cp.infer.SVI(scalar_model, scoped_guide, cp.optim.Adam({"lr": 0.05}), elbo)
    losses = [svi.step(torch.tensor(2.0)) for _ in range(30)]
    assert elbo.compiled_calls == 29 and len(elbo._captures) == 1
    assert "loc" in store and "loc" not in cp.get_param_store()
    captures = [c for c in elbo._captures.values() if not isinstance(c, str)]
    assert captures[0].current()
    store.clear()  # a cleared scope: its leaves are gone, so the next call captures afresh
    assert not captures[0].current()
    cp.set_rng_seed(2)
    eager = cp.infer.SVI(scalar_model, cp.handlers.param_scope(scalar_guide, store=cp.ParamStore()),
                         cp.optim.Adam({"lr": 0.05}), Trace_ELBO())
    assert losses == pytest.approx([eager.step(torch.tensor(2.0)) for _ in range(30)], rel=1e-5)


def test_steps_replay_forward_and_backward_as_one_graph_with_autograd_s_gradients():
    x, y = rows()
    elbo = JitTrace_ELBO()
    fit(elbo, confounder_model, AutoNormal, x, y, steps=3)
    (capture,) = [c for c in elbo._captures.values() if not isinstance(c, str)]
    assert capture.joint is not None
    # The joint graph's gradients are autograd's through the forward capture, on the same random numbers.
    leaves = capture.leaves
    cp.set_rng_seed(5)
    capture.graph(*leaves, x, y).backward()
    expected = [leaf.grad.clone() for leaf in leaves]
    for leaf in leaves:
        leaf.grad = None
    cp.set_rng_seed(5)
    JitTrace_ELBO._joint_step(capture, [x, y])
    for leaf, want in zip(leaves, expected, strict=True):
        assert torch.allclose(leaf.grad, want, rtol=1e-5, atol=1e-6)
    # loss_and_grads accumulates, as backward does.
    cp.set_rng_seed(5)
    JitTrace_ELBO._joint_step(capture, [x, y])
    for leaf, want in zip(leaves, expected, strict=True):
        assert torch.allclose(leaf.grad, 2 * want, rtol=1e-5, atol=1e-6)


def test_tensor_arguments_that_require_grad_get_their_gradients():
    def model(shift):
        z = cp.sample("z", dist.Normal(shift, 1.0))
        cp.sample("x", dist.Normal(z, 1.0), obs=torch.tensor(1.0))

    grads = []
    jit = JitTrace_ELBO()
    for elbo in (jit, Trace_ELBO()):
        cp.clear_param_store()
        shift = torch.tensor(0.5, requires_grad=True)
        for step in range(4):
            cp.set_rng_seed(step)
            elbo.loss_and_grads(model, scalar_guide, shift)
        grads.append(shift.grad.clone())
    assert jit.compiled_calls == 3
    assert torch.allclose(grads[0], grads[1], rtol=1e-5)


def test_a_non_finite_loss_names_the_site_through_a_constrained_param():
    # The capture's own traces hold the constrained value as it was; the site is named from an eager rerun.
    def model(x):
        z = cp.sample("z", dist.Normal(0.0, 1.0))
        noise = cp.param("noise", torch.tensor(1.0), constraint=cp.constraints.positive)
        cp.sample("x", dist.Normal(z, noise), obs=x)

    def guide(x):
        cp.sample("z", dist.Normal(cp.param("loc", torch.tensor(0.0)), 1.0))

    cp.clear_param_store()
    svi = cp.infer.SVI(model, guide, cp.optim.Adam({"lr": 0.01}), JitTrace_ELBO())
    for _ in range(3):
        svi.step(torch.tensor(1.0))
    with torch.no_grad():
        cp.get_param_store().leaf("noise").fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="log density of .*'x'"):
        svi.step(torch.tensor(1.0))
