"""The runtime's per-step shortcuts give the numbers of the long way round.

Normal with a number scale, a guide Normal's log density read off its draw's
noise, and the optimisers' fused update called directly: each is checked
against torch's own computation (values, gradients, parameter trajectories).
"""

import math

import pytest
import torch

import causalppl as cp
from causalppl.infer.elbo import _log_prob_of_own_draw


def test_normal_with_a_number_scale_matches_torch():
    loc = torch.linspace(-1.0, 1.0, 5)
    ours, torchs = cp.dist.Normal(loc, 0.7), torch.distributions.Normal(loc, 0.7)
    value = torch.linspace(-2.0, 2.0, 5)
    assert torch.allclose(ours.log_prob(value), torchs.log_prob(value), atol=1e-6)
    assert torch.equal(ours.scale, torchs.scale) and ours.batch_shape == torchs.batch_shape
    assert torch.allclose(ours.entropy(), torchs.entropy()) and torch.allclose(ours.cdf(value), torchs.cdf(value))
    wide = ours.expand([3, 5])
    assert wide.scale.shape == (3, 5)
    assert torch.allclose(wide.log_prob(value), torchs.expand([3, 5]).log_prob(value), atol=1e-6)


def test_expanding_a_number_scale_normal_keeps_what_torch_keeps():
    checked = cp.dist.Normal(torch.tensor(0.5), 0.7, validate_args=True).expand([4])
    assert type(checked) is cp.dist.Normal and checked._validate_args and checked.batch_shape == (4,)
    assert torch.equal(checked.scale, torch.full((4,), 0.7)) and torch.equal(checked.mean, torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="support|value"):
        checked.log_prob(torch.tensor([0.0, float("nan"), 0.0, 0.0]))
    forced = cp.dist.Normal(torch.tensor(0.0), 1.0).has_rsample_(False).expand([2])
    assert forced.has_rsample is False  # a has_rsample_() choice survives expand
    row = cp.dist.Normal(torch.zeros(3), 2.0).expand([2, 3])
    value = torch.randn(2, 3)
    assert torch.allclose(row.log_prob(value), torch.distributions.Normal(torch.zeros(2, 3), 2.0).log_prob(value))


def test_normal_with_a_number_scale_still_validates():
    with pytest.raises(ValueError, match="scale"):
        cp.dist.Normal(torch.zeros(2), -1.0, validate_args=True)
    with pytest.raises(ValueError, match="scale"):
        cp.dist.Normal(torch.zeros(2), 0.0, validate_args=True)


def test_log_prob_of_own_draw_equals_log_prob_with_its_gradients():
    torch.manual_seed(0)
    loc = torch.randn(6, requires_grad=True)
    raw = torch.randn(6, requires_grad=True)
    fn = cp.dist.Normal(loc, raw.exp(), validate_args=False)
    z = fn.rsample()
    short = fn._log_prob_of_draw(z)
    full = fn.log_prob(z)
    assert torch.allclose(short, full, atol=1e-5)
    g_short = torch.autograd.grad(short.sum(), (loc, raw), retain_graph=True, allow_unused=True,
                                  materialize_grads=True)
    g_full = torch.autograd.grad(full.sum(), (loc, raw))
    for a, b in zip(g_short, g_full, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(g_short[0], torch.zeros(6))  # at its own draw, log q does not move with loc
    assert torch.allclose(g_short[1], -torch.ones(6))  # d/draw of -log(exp(raw)) = -1
    assert fn._log_prob_of_draw(z.detach().clone()) is None  # not its own draw: the long way


def test_log_prob_of_own_draw_with_a_number_scale():
    loc = torch.zeros(4, requires_grad=True)
    fn = cp.dist.Normal(loc, 2.0, validate_args=False)
    z = fn.rsample()
    assert torch.allclose(fn._log_prob_of_draw(z), fn.log_prob(z), atol=1e-6)


def test_masked_guide_site_takes_the_long_way():
    fn = cp.dist.Normal(torch.zeros(3), 1.0, validate_args=False)
    z = fn.rsample()
    site = {"fn": fn, "value": z, "mask": torch.tensor([True, False, True])}
    assert _log_prob_of_own_draw(site) is None
    site["mask"] = None
    assert torch.allclose(_log_prob_of_own_draw(site), fn.log_prob(z))


def test_elbo_gradient_is_the_closed_form():
    # model z ~ N(0, 1), x ~ N(z, 1) observed at 1; guide N(m, s): the ELBO's gradient in m is
    # E[d/dm (log p - log q)] = 1 - 2 m per sample in expectation; per draw it is exact in m's
    # pathwise term: d/dm [-(z^2)/2 - (1 - z)^2/2] = -z + (1 - z) with z = m + s eps.
    cp.clear_param_store()
    cp.set_rng_seed(3)

    def model():
        z = cp.sample("z", cp.dist.Normal(torch.tensor(0.0), 1.0))
        cp.sample("x", cp.dist.Normal(z, 1.0), obs=torch.tensor(1.0))

    def guide():
        m = cp.param("m", torch.tensor(0.3))
        s = cp.param("s", torch.tensor(0.5), constraint=cp.constraints.positive)
        cp.sample("z", cp.dist.Normal(m, s))

    elbo = cp.infer.Trace_ELBO()
    loss = elbo.differentiable_loss(model, guide)
    (_, model_trace), (_, guide_trace) = elbo.last_traces
    z = guide_trace.nodes["z"]["value"].detach()
    store = cp.get_param_store()
    m_leaf, s_leaf = store["m"].unconstrained(), store["s"].unconstrained()
    grad_m, grad_s = torch.autograd.grad(loss, (m_leaf, s_leaf))
    eps = (z - 0.3) / 0.5
    assert math.isclose(grad_m.item(), -(-z + (1 - z)).item(), abs_tol=1e-5)
    # d/d log s of -(log p - log q): -(1 - 2 z) * s * eps - 1 (the entropy's -log s term)
    assert math.isclose(grad_s.item(), (-(1 - 2 * z) * 0.5 * eps - 1).item(), abs_tol=1e-5)


@pytest.mark.parametrize("make, cls, args", [
    (cp.optim.Adam, torch.optim.Adam, {"lr": 0.01}),
    (cp.optim.Adam, torch.optim.Adam, {"lr": 0.02, "betas": (0.8, 0.95), "weight_decay": 0.1, "eps": 1e-6}),
    (cp.optim.Adam, torch.optim.Adam, {"lr": 0.01, "maximize": True}),
    (cp.optim.SGD, torch.optim.SGD, {"lr": 0.01}),
    (cp.optim.SGD, torch.optim.SGD, {"lr": 0.01, "momentum": 0.1}),
    (cp.optim.SGD, torch.optim.SGD, {"lr": 0.01, "momentum": 0.5, "nesterov": True, "weight_decay": 0.01}),
    (cp.optim.SGD, torch.optim.SGD, {"lr": 0.01, "momentum": 0.5, "dampening": 0.2}),
])
def test_fused_update_follows_torch_step_for_step(make, cls, args):
    torch.manual_seed(0)
    ours = [torch.randn(4, requires_grad=True), torch.randn((), requires_grad=True)]
    ref = [p.detach().clone().requires_grad_(True) for p in ours]
    optim, reference = make(args), cls(ref, **args)
    for step in range(6):
        for params in (ours, ref):
            sum((p - 1.0).square().sum() * (i + 1) for i, p in enumerate(params)).backward()
        if step == 3:  # a step where one parameter got no gradient
            ours[1].grad = ref[1].grad = None
        optim(ours)
        reference.step()
        for p in ours + ref:
            p.grad = None
        if step == 4:  # the learning rate changed between steps (as a scheduler does)
            for group in optim.optimizer.param_groups + reference.param_groups:
                group["lr"] *= 0.5
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-7, rtol=0)


def test_delta_at_its_own_point_skips_the_comparison_and_agrees_with_it():
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    for density in (0.0, torch.tensor([0.5, -1.0])):
        delta = cp.dist.Delta(v, log_density=density, event_dim=1)
        drawn = delta.rsample()
        assert drawn is v  # the point itself, so log_prob needs no comparison
        compared = delta.log_prob(v.clone())
        assert torch.equal(delta.log_prob(drawn), compared)
        assert delta.log_density.shape == (2,)
    off = cp.dist.Delta(v, event_dim=1).log_prob(v + 1.0)
    assert torch.equal(off, torch.full((2,), -math.inf))


def _total(term):
    """A summed shortcut's value as one tensor (LinearTerms applied, tuples added)."""
    from causalppl.distributions import LinearTerm

    if isinstance(term, LinearTerm):
        return term.value * term.coefficient + term.constant
    if isinstance(term, tuple):
        return sum(_total(part) for part in term)
    return torch.as_tensor(term)


@pytest.mark.parametrize("shape", [(), (7,), (3, 4)])
def test_summed_log_prob_is_the_sum_of_log_prob_with_its_gradients(shape):
    torch.manual_seed(1)
    loc = torch.randn(shape, requires_grad=True)
    value = torch.randn(shape, requires_grad=True)
    fn = cp.dist.Normal(loc, 0.6, validate_args=False)
    short, full = _total(fn._summed_log_prob(value)), fn.log_prob(value).sum()
    assert torch.allclose(short, full, atol=1e-5)
    for a, b in zip(torch.autograd.grad(short, (loc, value)), torch.autograd.grad(full, (loc, value)), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    # No shortcut where it would not be the same sum: broadcasting, a tensor scale, validation on.
    assert fn._summed_log_prob(torch.zeros((2,) + tuple(shape))) is None
    assert cp.dist.Normal(loc, torch.ones(shape), validate_args=False)._summed_log_prob(value) is None
    assert cp.dist.Normal(loc, 0.6, validate_args=True)._summed_log_prob(value) is None


@pytest.mark.parametrize("sample_shape", [(), (5,)])
def test_summed_log_prob_of_own_draw_is_the_sum_of_the_per_entry_one(sample_shape):
    # _log_prob_of_draw's values and gradients are checked against log_prob above; the sum must keep both.
    torch.manual_seed(2)
    loc = torch.randn(4, requires_grad=True)
    raw = torch.randn(4, requires_grad=True)
    for scale in (raw.exp(), raw.exp()[:1].expand(4), 0.3):  # per entry, one broadcast, a number
        fn = cp.dist.Normal(loc, scale, validate_args=False)
        z = fn.rsample(sample_shape)
        short, full = _total(fn._summed_log_prob_of_draw(z)), fn._log_prob_of_draw(z).sum()
        assert torch.allclose(short, full, atol=1e-4)
        assert torch.allclose(short, fn.log_prob(z).sum(), atol=1e-4)
        if isinstance(scale, torch.Tensor):
            for a, b in zip(torch.autograd.grad(short, raw, retain_graph=True),
                            torch.autograd.grad(full, raw, retain_graph=True), strict=True):
                assert torch.allclose(a, b, atol=1e-5)
        assert fn._summed_log_prob_of_draw(z.detach().clone()) is None


def test_the_elbo_adds_linear_terms_numbers_and_tensors_alike():
    from causalppl.distributions import LinearTerm
    from causalppl.infer.elbo import _loss_of_terms

    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(3.0, requires_grad=True)
    log_q = [LinearTerm(a, -0.5, 1.0), 4.0, (LinearTerm(b, 2.0, 0.0), b)]
    log_p = [a, LinearTerm(b, -1.0, -2.0)]
    loss = _loss_of_terms(log_q, log_p)
    # (-0.5 a + 1 + 4 + 2 b + b) - (a - b - 2) = -1.5 a + 4 b + 7
    assert loss.item() == pytest.approx(-1.5 * 2 + 4 * 3 + 7)
    assert [g.item() for g in torch.autograd.grad(loss, (a, b))] == [-1.5, 4.0]
    assert _loss_of_terms([1.5], [0.5]).item() == 1.0


@pytest.mark.parametrize("first_under_inference_mode", [False, True])
def test_the_elbo_sums_many_sites_in_one_stack_or_one_chain_alike(first_under_inference_mode):
    from causalppl.distributions import LinearTerm
    from causalppl.infer.elbo import _loss_of_terms

    gen = torch.Generator().manual_seed(0)
    leaves = [torch.randn((), generator=gen).requires_grad_() for _ in range(6)]
    coefficients = [0.5, -2.0, 1.0, 3.0, -0.25, 1.5]

    def terms(values):
        return [LinearTerm(v, c, 0.1) for v, c in zip(values, coefficients, strict=True)], [values[0]]

    want_value = sum(c * v for v, c in zip(leaves, coefficients, strict=True)) + 0.6 - leaves[0]
    want_grads = torch.autograd.grad(want_value, leaves)
    if first_under_inference_mode:  # the cached coefficients must still be usable by backward later
        with torch.inference_mode():
            _loss_of_terms(*terms([leaf.detach() for leaf in leaves]))
    stacked = _loss_of_terms(*terms(leaves))  # all 0-dim: one stack and one dot
    chained = _loss_of_terms(*terms([leaves[0].expand(1), *leaves[1:]]))  # one 1-dim term: the chain of adds
    for loss in (stacked, chained):
        assert loss.detach().reshape(()).item() == pytest.approx(want_value.item(), rel=1e-6)
        grads = torch.autograd.grad(loss.sum(), leaves)
        assert torch.allclose(torch.stack(grads), torch.stack(want_grads), rtol=1e-6)
