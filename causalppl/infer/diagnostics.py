"""MCMC diagnostics: autocorrelation, effective sample size, split R-hat, intervals.

Every function takes samples as a tensor whose ``chain_dim`` indexes chains
and ``sample_dim`` the draws of each chain (``(chains, draws, *shape)`` by
default) and returns one number per entry of ``shape``. The definitions are
Stan's (and Pyro's ``pyro.ops.stats``):

- :func:`autocorrelation` by FFT, normalised to 1 at lag 0;
- :func:`effective_sample_size`: ``chains * draws / tau`` with the integrated
  autocorrelation time ``tau`` from Geyer's initial monotone sequence over
  the chains' combined autocorrelations (Stan's estimator);
- :func:`gelman_rubin` and :func:`split_gelman_rubin` (each chain cut in
  halves, so one chain that drifts shows up too);
- :func:`hpdi` (highest posterior density interval), :func:`quantile`.

For an AR(1) chain ``x[t] = phi x[t-1] + noise`` the autocorrelation at lag
``k`` is ``phi**k``, so ``tau = (1 + phi) / (1 - phi)``:

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> phi, draws = 0.5, 4000
>>> x = torch.zeros(4, draws, dtype=torch.float64)
>>> noise = torch.randn(4, draws, generator=g, dtype=torch.float64)
>>> for t in range(1, draws):
...     x[:, t] = phi * x[:, t - 1] + noise[:, t]
>>> ess = effective_sample_size(x).item()
>>> abs(ess / (4 * draws * (1 - phi) / (1 + phi)) - 1) < 0.1
True
>>> float(split_gelman_rubin(x)) < 1.01
True
"""

from __future__ import annotations

import torch

__all__ = [
    "autocorrelation", "autocovariance", "effective_sample_size", "gelman_rubin", "hpdi", "pi", "quantile",
    "split_gelman_rubin",
]


def _chains_first(input, chain_dim, sample_dim):
    """``input`` as ``(chains, draws, *rest)``."""
    if input.dim() < 2:
        raise ValueError(f"expected samples with a chain and a draw dim, got shape {tuple(input.shape)}")
    chain_dim = chain_dim % input.dim()
    sample_dim = sample_dim % input.dim()
    if chain_dim == sample_dim:
        raise ValueError(f"chain_dim and sample_dim are the same dim ({chain_dim})")
    return input.movedim((chain_dim, sample_dim), (0, 1))


def _next_fast_len(size):
    """The smallest ``n >= size`` whose prime factors are 2, 3 and 5 only: a length the FFT handles quickly.

    >>> _next_fast_len(433)
    450
    """
    if size < 1:
        raise ValueError(f"expected a positive length, got {size}")
    n = size
    while True:
        rest = n
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return n
        n += 1


def autocorrelation(input, dim=0):
    """The autocorrelation of ``input`` along ``dim`` at lags ``0 .. n-1`` (1 at lag 0).

    The lag-``k`` autocovariance averages the ``n - k`` products of centred
    values that lag ``k`` apart (Pyro's and Stan's estimator), computed by
    FFT with zero padding, and is divided by the lag-0 one; a constant
    sequence has autocorrelation 1 at every lag.

    >>> autocorrelation(torch.tensor([1.0, -1.0, 1.0, -1.0]))
    tensor([ 1.0000, -1.0000,  1.0000, -1.0000])
    """
    n = input.size(dim)
    x = input.movedim(dim, -1)
    centred = x - x.mean(dim=-1, keepdim=True)
    length = 2 * _next_fast_len(n)
    spectrum = torch.fft.rfft(centred, n=length)
    acov = torch.fft.irfft(spectrum.real.square() + spectrum.imag.square(), n=length)[..., :n]
    acov = acov / torch.arange(n, 0, -1, dtype=acov.dtype, device=acov.device)
    variance = acov[..., :1]
    constant = variance == 0
    acorr = acov / variance.clamp(min=torch.finfo(variance.dtype).tiny)
    acorr = torch.where(constant, torch.ones_like(acorr), acorr)
    return acorr.movedim(-1, dim)


def autocovariance(input, dim=0):
    """The autocovariance of ``input`` along ``dim`` (the biased estimator, dividing by ``n``)."""
    return autocorrelation(input, dim) * input.var(dim, unbiased=False, keepdim=True)


def _variances(x):
    """Within-chain variance ``W`` and the pooled estimate ``var+`` of ``x`` shaped ``(chains, draws, ...)``.

    With one chain both are the chain's variance about its mean (dividing by
    ``n``), so that the combined autocorrelation of :func:`effective_sample_size`
    is the chain's own.
    """
    draws = x.size(1)
    within = x.var(dim=1, unbiased=True).mean(dim=0)
    pooled = (draws - 1) / draws * within
    if x.size(0) == 1:
        return pooled, pooled
    return within, pooled + x.mean(dim=1).var(dim=0, unbiased=True)


def gelman_rubin(input, chain_dim=0, sample_dim=1):
    """R-hat of samples from at least two chains of at least two draws each."""
    x = _chains_first(input, chain_dim, sample_dim)
    if x.size(0) < 2 or x.size(1) < 2:
        raise ValueError(f"gelman_rubin needs >= 2 chains of >= 2 draws, got shape {tuple(x.shape[:2])}")
    within, pooled = _variances(x)
    return (pooled / within).sqrt()


def split_gelman_rubin(input, chain_dim=0, sample_dim=1):
    """R-hat with every chain split into its first and second half (needs >= 4 draws a chain).

    Near 1 for chains that mix; well above 1 (1.1 is the usual alarm) for
    chains that stay apart or drift.
    """
    x = _chains_first(input, chain_dim, sample_dim)
    if x.size(1) < 4:
        raise ValueError(f"split_gelman_rubin needs >= 4 draws per chain, got {x.size(1)}")
    half = x.size(1) // 2
    halves = torch.cat([x[:, :half], x[:, -half:]], dim=0)
    return gelman_rubin(halves)


def effective_sample_size(input, chain_dim=0, sample_dim=1):
    """The effective sample size of the draws (Stan's estimator, Geyer's initial monotone sequence).

    The chains' autocovariances are combined with the between-chain variance
    into one autocorrelation ``rho_k``; pairs ``rho_{2m} + rho_{2m+1}`` are
    summed while positive and made non-increasing, and ``tau = -1 + 2 *
    (their sum)``; the result is ``chains * draws / tau``.
    """
    x = _chains_first(input, chain_dim, sample_dim)
    chains, draws = x.size(0), x.size(1)
    if draws < 2:
        raise ValueError(f"effective_sample_size needs >= 2 draws per chain, got {draws}")
    gamma = autocovariance(x, dim=1)  # (chains, draws, ...)
    within, pooled = _variances(x)
    rho = 1 - (within - gamma.mean(dim=0)) / pooled  # (draws, ...)
    rho[0] = 1
    pairs = rho[: draws - draws % 2].reshape((draws // 2, 2) + rho.shape[1:]).sum(dim=1)
    if pairs.size(0) > 1:
        # Geyer: positive pair sums only (the first negative one ends the sequence), made monotone.
        tail = torch.cummin(pairs[1:].clamp(min=0), dim=0).values
        tau = -1 + 2 * pairs[0] + 2 * tail.sum(dim=0)
    else:
        tau = -1 + 2 * pairs[0]
    return chains * draws / tau


def quantile(input, probs, dim=0):
    """Sample quantiles of ``input`` along ``dim`` (linear interpolation), one entry of ``dim`` per entry of
    ``probs`` (a scalar ``probs`` drops ``dim``).

    >>> quantile(torch.arange(11.0), [0.1, 0.5])
    tensor([1., 5.])
    """
    probs = torch.as_tensor(probs, dtype=input.dtype, device=input.device)
    out = torch.quantile(input, probs, dim=dim)
    return out if probs.dim() == 0 else out.movedim(0, dim)  # the quantiles where ``dim`` was (Pyro)


def pi(input, prob, dim=0):
    """The central interval holding ``prob`` of the draws: quantiles ``(1 -+ prob) / 2``."""
    return quantile(input, [(1 - prob) / 2, (1 + prob) / 2], dim=dim)


def hpdi(input, prob, dim=0):
    """The highest posterior density interval: the narrowest interval of sorted draws
    ``[x_(i), x_(i + m)]`` with ``m = int(prob * n)`` (Pyro's convention).

    Returns ``(lower, upper)`` stacked along ``dim``.

    >>> hpdi(torch.tensor([0.0, 1.0, 2.0, 3.0, 100.0, 4.0, 5.0, 6.0, 7.0, 8.0]), 0.8)
    tensor([0., 8.])
    """
    x = input.movedim(dim, 0)
    n = x.size(0)
    sorted_x = x.sort(dim=0).values
    length = min(int(prob * n), n - 1)
    widths = sorted_x[length:] - sorted_x[: n - length]
    start = widths.argmin(dim=0, keepdim=True)
    lower = sorted_x.gather(0, start)
    upper = sorted_x.gather(0, start + length)
    return torch.cat([lower, upper], dim=0).movedim(0, dim)
