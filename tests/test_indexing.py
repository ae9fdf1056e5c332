"""Vindex: broadcasting advanced indexing, checked against explicit loops."""

import itertools

import pytest
import torch

from causalppl.ops.indexing import Index, Vindex, vindex


def test_vindex_with_batch_dims_matches_a_loop_over_every_batch_and_kept_position():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 3, 5, 6)  # batch (4, 1), event (3, 5, 6)
    i = torch.randint(3, (2, 1, 1))
    j = torch.randint(6, (7,))
    out = Vindex(x)[..., i, :, j]
    batch = torch.broadcast_shapes((4, 1), i.shape, j.shape)
    assert out.shape == batch + (5,)
    for pos in itertools.product(*map(range, batch)):
        xb = x[tuple(p if s > 1 else 0 for p, s in zip(pos[-2:], (4, 1)))]
        ib = i[tuple(p if s > 1 else 0 for p, s in zip(pos[-3:], i.shape))]
        jb = j[pos[-1]]
        assert torch.equal(out[pos], xb[ib, :, jb])


def test_vindex_without_ellipsis_indexes_every_dim_and_keeps_slices_in_order():
    x = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    i = torch.tensor([[1], [0]])
    out = vindex(x, (i, slice(None), 2))
    assert out.shape == (2, 1, 3)
    assert out[0, 0].tolist() == x[1, :, 2].tolist() and out[1, 0].tolist() == x[0, :, 2].tolist()
    both = Vindex(x)[i, :, :]
    assert both.shape == (2, 1, 3, 4) and torch.equal(both[1, 0], x[0])


def test_vindex_keeps_unindexed_trailing_dims_whole():
    x = torch.arange(12.0).reshape(3, 4)
    rows = torch.tensor([2, 0, 2, 1])
    out = Vindex(x)[rows]
    assert out.shape == (4, 4) and torch.equal(out, x[rows])


def test_vindex_is_plain_indexing_without_tensor_indices_and_index_flattens():
    x = torch.randn(3, 4)
    assert torch.equal(Vindex(x)[1, :], x[1, :])
    assert Index(x)[..., (Ellipsis, None)].shape == (3, 4, 1)


@pytest.mark.parametrize("args, match", [
    ((slice(None), Ellipsis, torch.tensor([0])), "only come first"),
    ((torch.tensor([0]), slice(0, 2)), "full slices"),
    ((torch.tensor([0.5]), 0), "integers"),
    ((torch.tensor([0]), 0, 0), "3 indices for a tensor of 2 dims"),
])
def test_vindex_refuses_what_it_cannot_broadcast(args, match):
    with pytest.raises(ValueError, match=match):
        vindex(torch.zeros(3, 4), args)
