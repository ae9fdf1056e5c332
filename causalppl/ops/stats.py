"""Statistics of samples where Pyro keeps them (``pyro.ops.stats``).

The MCMC diagnostics (autocorrelation, effective sample size, R-hat,
intervals) live in :mod:`causalppl.infer.diagnostics` and are re-exported
here; this module adds :func:`resample` and :func:`waic`.

>>> import torch
>>> from causalppl.ops.stats import effective_sample_size, waic
>>> chains = torch.randn(2, 1000)
>>> bool(effective_sample_size(chains) > 1000)
True
>>> log_lik = torch.full((50, 3), -1.0)          # every draw gives each point likelihood e^-1
>>> waic(log_lik)                                # -2 * (lpd - p_waic) summed: 3 points, no variance
(tensor(6.), tensor(0.))
"""

import torch

from causalppl.infer.diagnostics import (  # noqa: F401
    _next_fast_len,
    autocorrelation,
    autocovariance,
    effective_sample_size,
    gelman_rubin,
    hpdi,
    pi,
    quantile,
    split_gelman_rubin,
)


def weighed_quantile(input, probs, log_weights, dim=0):
    """Quantiles of weighted draws: the smallest draw along ``dim`` whose cumulative normalised weight
    reaches each of ``probs`` (``log_weights`` has one unnormalised log weight per draw).

    >>> import torch
    >>> weighed_quantile(torch.tensor([1.0, 2.0, 3.0]), [0.5], torch.tensor([0.0, 0.0, 2.0]).log())
    tensor([3.])
    """
    x = input.movedim(dim, 0)
    weights = torch.softmax(torch.as_tensor(log_weights, dtype=x.dtype, device=x.device).reshape(-1), 0)
    sorted_x, order = x.sort(dim=0)
    cdf = weights[order].cumsum(0)
    probs = torch.as_tensor(probs, dtype=x.dtype, device=x.device)
    rows = []
    for prob in probs:
        index = (cdf < prob).sum(0, keepdim=True).clamp(max=x.shape[0] - 1)
        rows.append(sorted_x.gather(0, index).squeeze(0))
    return torch.stack(rows).movedim(0, dim) if dim else torch.stack(rows)

__all__ = ["autocorrelation", "autocovariance", "effective_sample_size", "gelman_rubin", "hpdi", "pi", "quantile",
           "resample", "split_gelman_rubin", "waic", "weighed_quantile"]

_fft_next_good_size = _next_fast_len  # Pyro's older name


def _cummin(input):
    """The running minimum of ``input`` along dim 0."""
    return torch.cummin(input, dim=0).values


def resample(input, num_samples, dim=0, replacement=False):
    """``num_samples`` slices of ``input`` along ``dim``, drawn uniformly (without replacement by default).

    >>> resample(torch.arange(5.0), 5).sort().values
    tensor([0., 1., 2., 3., 4.])
    """
    weights = torch.ones(input.size(dim), dtype=torch.float, device=input.device)
    index = torch.multinomial(weights, num_samples, replacement)
    return input.index_select(dim, index)


def _weighted_mean(input, log_weights, dim, keepdim=False):
    shape = [-1] + [1] * (input.dim() - dim - 1)
    weights = (log_weights - log_weights.max()).exp().reshape(shape)
    return (input * weights).sum(dim, keepdim=keepdim) / weights.sum()


def waic(input, log_weights=None, pointwise=False, dim=0):
    """The Widely Applicable Information Criterion of log likelihoods ``input`` (draws along ``dim``).

    Returns ``(waic, p_waic)``: ``waic = -2 * (lpd - p_waic)`` with ``lpd`` the
    log of the (weighted) mean likelihood and ``p_waic`` the variance of the
    log likelihood over the draws (unbiased, with frequency weights
    ``exp(log_weights)``), both summed over the points unless ``pointwise``
    (Vehtari, Gelman & Gabry 2017, eqs. 3, 4 and 6).
    """
    dim = dim % input.dim()
    draws = input.size(dim)
    if log_weights is None:
        log_weights = torch.zeros(draws, dtype=input.dtype, device=input.device)
    shape = [-1] + [1] * (input.dim() - dim - 1)
    lpd = torch.logsumexp(input + log_weights.reshape(shape), dim=dim) - torch.logsumexp(log_weights, dim=0)
    deviation = (input - _weighted_mean(input, log_weights, dim, keepdim=True)).square()
    p_waic = _weighted_mean(deviation, log_weights, dim) * (draws / (draws - 1.0))
    criterion = -2 * (lpd - p_waic)
    return (criterion, p_waic) if pointwise else (criterion.sum(), p_waic.sum())
