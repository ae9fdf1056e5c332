"""causalppl.infer.graph_rewrites: fewer ops in a captured graph, the same values."""

import copy

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import causalppl as cp
from causalppl.infer.graph_rewrites import simplify

aten = torch.ops.aten


def calls(graph_module):
    return [node.target for node in graph_module.graph.nodes if node.op == "call_function"]


def rewritten(fn, *inputs, no_grad=True):
    """(captured graph, the same graph simplified)."""
    graph = make_fx(fn)(*inputs)
    return graph, simplify(copy.deepcopy(graph), no_grad=no_grad)


def same_values(a, b):
    a, b = (a,) if isinstance(a, torch.Tensor) else a, (b,) if isinstance(b, torch.Tensor) else b
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        assert torch.allclose(x, y, rtol=1e-6, atol=1e-6)


def elbo_like(loc, log_scale, x):
    """The shape of an ELBO's joint graph: draws, summed sites, constants from the backward seed."""
    eps = torch.randn(x.shape)
    z = loc + log_scale.exp() * eps
    terms = [((x - z) ** 2).sum(), (eps * eps).sum(), log_scale.sum(), (z * x).sum(), loc.sum()]
    total = terms[0]
    for c, term in zip((-0.5, 2.0, 0.25, -1.0), terms[1:], strict=True):
        total = torch.add(total, term, alpha=c)
    seed = torch.ones_like(total)
    return total.detach(), (seed * 3.0).expand(x.shape) * z.detach(), seed.mul(-1.0)


@pytest.mark.parametrize("shape", [(7,), (3, 5)])
def test_values_are_kept_on_the_same_random_numbers(shape):
    inputs = (torch.randn(shape), torch.randn(shape), torch.randn(shape))
    graph, simple = rewritten(elbo_like, *inputs)
    torch.manual_seed(3)
    want = graph(*inputs)
    torch.manual_seed(3)
    got = simple(*inputs)
    same_values(got, want)
    assert len(calls(simple)) < len(calls(graph))


def test_constants_are_computed_once_and_random_draws_at_every_call():
    def fn(x):
        seed = torch.ones_like(x).mul(2.0)
        return x * seed + torch.randn(x.shape)

    x = torch.zeros(4)
    _, simple = rewritten(fn, x)
    assert aten.ones_like.default not in calls(simple)
    assert aten.mul.Scalar not in calls(simple) and aten.mul.Tensor in calls(simple)
    assert not torch.equal(simple(x), simple(x))  # the draw is not folded into a constant


def test_tensors_written_in_place_are_not_folded():
    def fn(x):
        buffer = torch.zeros(3)
        buffer.add_(x)
        view = torch.ones(3)[:2]
        view.mul_(x[:2])
        return buffer * 1.0, view * 1.0

    x = torch.tensor([1.0, 2.0, 3.0])
    graph, simple = rewritten(fn, x)
    first = simple(x)
    same_values(simple(x), first)  # a folded zeros would have accumulated x across calls
    same_values(first, graph(x))


def test_uninitialised_tensors_are_not_constants():
    def fn(x):
        return x + torch.empty(3).mul(0.0) + torch.empty_like(x).mul(0.0)

    _, simple = rewritten(fn, torch.zeros(3))
    targets = calls(simple)
    assert aten.empty.memory_format in targets and aten.empty_like.default in targets


def test_returned_constants_are_fresh_tensors_at_every_call():
    def fn(x):
        return torch.ones_like(x).mul(-1.0), x * 2

    x = torch.arange(3.0)
    _, simple = rewritten(fn, x)
    grad, _ = simple(x)
    grad += 10.0  # what a caller accumulating into .grad does
    again, _ = simple(x)
    assert torch.equal(again, -torch.ones(3))
    assert again.data_ptr() != grad.data_ptr()


def test_sums_of_products_become_dots_and_add_chains_one_stack():
    def fn(a, b, c):
        parts = [(a * b).sum(), (b * c).sum(), (a * c).sum(), a.sum(), c.sum()]
        total = parts[0]
        for term in parts[1:]:
            total = torch.add(total, term, alpha=-2.0)
        return total

    inputs = tuple(torch.randn(2, 6) for _ in range(3))
    graph, simple = rewritten(fn, *inputs)
    same_values(simple(*inputs), graph(*inputs))
    targets = calls(simple)
    assert targets.count(aten.stack.default) == 1
    assert targets.count(aten.dot.default) == 4  # three products and the chain
    assert aten.add.Tensor not in targets and aten.mul.Tensor not in targets


def test_each_of_several_add_chains_becomes_its_own_stack():
    def fn(x):
        parts = [x[i] * (i + 1) for i in range(10)]
        first, second = parts[0], parts[5]
        for i in range(1, 5):
            first = torch.add(first, parts[i], alpha=float(i))
            second = torch.add(second, parts[5 + i], alpha=-float(i))
        return first, torch.add(second, first, alpha=0.5)

    x = torch.randn(10)
    graph, simple = rewritten(fn, x)
    same_values(simple(x), graph(x))
    assert calls(simple).count(aten.stack.default) == 2


def test_short_chains_and_products_of_broadcast_shapes_are_left_as_they_are():
    def fn(a, b):
        return torch.add((a * b).sum(), a.sum(), alpha=3.0)

    a, b = torch.randn(4, 1), torch.randn(4, 5)
    graph, simple = rewritten(fn, a, b)
    assert calls(simple) == calls(graph)
    same_values(simple(a, b), graph(a, b))


def test_detach_goes_only_where_the_graph_is_replayed_without_autograd():
    def fn(x):
        return x.exp().detach() * x

    x = torch.randn(3)
    _, kept = rewritten(fn, x, no_grad=False)
    _, dropped = rewritten(fn, x, no_grad=True)
    assert aten.detach.default in calls(kept)
    assert aten.detach.default not in calls(dropped)
    same_values(dropped(x), kept(x))


def test_a_captured_svi_step_loses_its_backward_seed_and_detach_copies():
    def model(x, y):
        a = cp.sample("a", cp.dist.Normal(0.0, 10.0))
        with cp.plate("rows", len(x)):
            u = cp.sample("u", cp.dist.Normal(0.0, 1.0))
            cp.sample("y", cp.dist.Normal(a * x + u, 0.5), obs=y)

    cp.clear_param_store()
    cp.set_rng_seed(0)
    x = torch.randn(50)
    y = 2 * x + torch.randn(50)
    elbo = cp.infer.JitTrace_ELBO()
    svi = cp.infer.SVI(model, cp.infer.autoguide.AutoNormal(model), cp.optim.Adam({"lr": 0.01}), elbo)
    for _ in range(3):
        svi.step(x, y)
    (capture,) = [c for c in elbo._captures.values() if not isinstance(c, str)]
    graph = capture.joint[0]
    targets = calls(graph)
    assert aten.ones_like.default not in targets and aten.mul.Scalar not in targets
    detaches = [node for node in graph.graph.nodes if node.target is aten.detach.default]
    assert all(user.op == "output" for node in detaches for user in node.users)
