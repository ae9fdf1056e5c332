"""Packed tensors (causalppl.ops.packed) and special functions (causalppl.ops.special)."""

import itertools

import pytest
import torch

from causalppl.ops import packed
from causalppl.ops.special import log_beta, log_binomial, safe_log

DIMS = {-1: "a", -2: "b", -3: "c"}
SYMBOLS = {symbol: dim for dim, symbol in DIMS.items()}


@pytest.mark.parametrize("shape", [(), (4,), (3, 1), (2, 3, 4), (2, 1, 4)])
def test_pack_drops_size_one_dims_and_unpack_restores_them(shape):
    x = torch.randn(shape)
    p = packed.pack(x, DIMS)
    assert p._pyro_dims == "".join(DIMS[k - len(shape)] for k, n in enumerate(shape) if n > 1)
    assert torch.equal(packed.unpack(p, SYMBOLS), x.reshape(x.shape[next((k for k, n in enumerate(shape) if n > 1),
                                                                          len(shape)):]))


def test_unpack_reads_dims_in_any_order():
    x = torch.randn(2, 3, 4)
    p = packed.pack(x, DIMS)
    swapped = p.permute(2, 0, 1)
    swapped._pyro_dims = "acb"
    assert torch.equal(packed.unpack(swapped, SYMBOLS), x)


def test_broadcast_all_is_torch_broadcasting_by_name():
    xs = [torch.randn(3, 1), torch.randn(4), torch.randn(2, 1, 1)]
    outs = packed.broadcast_all(*(packed.pack(x, DIMS) for x in xs))
    for out, expected in zip(outs, torch.broadcast_tensors(*xs)):
        assert out._pyro_dims == "abc"
        assert torch.equal(packed.unpack(out, SYMBOLS), expected)
    product = packed.mul(packed.pack(xs[0], DIMS), packed.pack(xs[1], DIMS))
    assert torch.equal(packed.unpack(product, SYMBOLS), xs[0] * xs[1])


def test_packing_a_dim_without_a_symbol_is_refused():
    with pytest.raises(ValueError, match="no symbol"):
        packed.pack(torch.zeros(2, 3), {-1: "a"})
    p = packed.pack(torch.zeros(3), DIMS)
    with pytest.raises(ValueError, match="already packed"):
        packed.pack(p, DIMS)


def test_safe_log_is_log_with_a_finite_gradient_at_zero():
    x = torch.tensor([0.0, 0.5, 2.0], requires_grad=True)
    y = safe_log(x)
    assert torch.equal(y[1:], x[1:].log())
    (grad,) = torch.autograd.grad(y.sum(), [x])
    assert torch.isfinite(grad).all() and torch.allclose(grad[1:], 1 / x[1:])


@pytest.mark.parametrize("tol", [0.02, 0.1, 0.5])
def test_fast_log_beta_is_within_tol_below_the_exact_value(tol):
    x = torch.logspace(-3, 3, 50, dtype=torch.float64)
    y = x.unsqueeze(-1)
    exact = log_beta(x, y)
    fast = log_beta(x, y, tol=tol)
    assert (fast <= exact + 1e-6).all() and (exact < fast + tol).all()


def test_log_binomial_counts_subsets():
    for n, k in itertools.product(range(8), repeat=2):
        if k <= n:
            value = log_binomial(torch.tensor(float(n)), torch.tensor(float(k)))
            assert round(value.exp().item()) == len(list(itertools.combinations(range(n), k)))
    fast = log_binomial(torch.tensor(60.0), torch.tensor(20.0), tol=0.05)
    assert abs(fast.item() - (61.0 - 1) * 0 - (torch.tensor(61.0).lgamma() - torch.tensor(21.0).lgamma()
                                               - torch.tensor(41.0).lgamma()).item()) < 0.05
    with pytest.raises(ValueError, match="tol"):
        log_beta(torch.tensor(1.0), torch.tensor(1.0), tol=-1)
