"""Running covariance estimates (causalppl.ops.welford) against the batch formulas."""

import pytest
import torch

from causalppl.ops.welford import WelfordArrowheadCovariance, WelfordCovariance


def draws(n=200, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    return torch.randn(n, dim, generator=g, dtype=torch.float64) @ mixing.T


@pytest.mark.parametrize("diagonal", [True, False])
def test_welford_matches_the_unbiased_sample_covariance(diagonal):
    x = draws()
    w = WelfordCovariance(diagonal=diagonal)
    for row in x:
        w.update(row)
    exact = torch.cov(x.T)
    expected = exact.diagonal() if diagonal else exact
    torch.testing.assert_close(w.get_covariance(regularize=False), expected)
    # Stan's shrinkage towards 1e-3 I.
    n = x.shape[0]
    shrunk = expected * n / (n + 5) + 1e-3 * 5 / (n + 5) * (1 if diagonal else torch.eye(4, dtype=x.dtype))
    torch.testing.assert_close(w.get_covariance(), shrunk)
    assert w.n_samples == n


def test_welford_needs_two_samples():
    w = WelfordCovariance()
    w.update(torch.zeros(3))
    with pytest.raises(RuntimeError, match="at least 2 samples"):
        w.get_covariance()


@pytest.mark.parametrize("head_size", [0, 1, 3, 4])
def test_arrowhead_is_the_head_rows_and_the_tail_diagonal(head_size):
    x = draws(seed=1)
    w = WelfordArrowheadCovariance(head_size=head_size)
    for row in x:
        w.update(row)
    top, bottom = w.get_covariance(regularize=False)
    exact = torch.cov(x.T)
    torch.testing.assert_close(top, exact[:head_size])
    torch.testing.assert_close(bottom, exact.diagonal()[head_size:])
    top_r, bottom_r = w.get_covariance(regularize=True)
    n = x.shape[0]
    torch.testing.assert_close(bottom_r, bottom * n / (n + 5) + 1e-3 * 5 / (n + 5))
    if head_size:
        torch.testing.assert_close(top_r[0, 0], top[0, 0] * n / (n + 5) + 1e-3 * 5 / (n + 5))
        if head_size < 4:
            torch.testing.assert_close(top_r[0, -1], top[0, -1] * n / (n + 5))
