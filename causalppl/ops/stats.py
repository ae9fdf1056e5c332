"""MCMC statistics where Pyro keeps them (``pyro.ops.stats``); they live in :mod:`causalppl.infer.diagnostics`.

>>> import torch
>>> from causalppl.ops.stats import effective_sample_size
>>> chains = torch.randn(2, 1000)
>>> bool(effective_sample_size(chains) > 1000)
True
"""

from causalppl.infer.diagnostics import (  # noqa: F401
    autocorrelation,
    autocovariance,
    effective_sample_size,
    gelman_rubin,
    hpdi,
    pi,
    quantile,
    split_gelman_rubin,
)


def waic(input, log_weights=None, pointwise=False, dim=0):
    """The widely applicable information criterion and its effective number of parameters ``(waic, p_waic)``.

    ``input`` holds log likelihoods, draws along ``dim``; ``log_weights`` weighs the draws (equal by default).
    ``lpd`` = log of the (weighted) mean likelihood, ``p_waic`` = the (weighted, unbiased) variance of the log
    likelihood, ``waic = -2 (lpd - p_waic)`` (Vehtari & Gelman, formulas 3, 4, 6); summed over the other dims
    unless ``pointwise``.

    >>> import torch
    >>> w, p = waic(torch.tensor([[-1.0], [-1.0]]))
    >>> w.item(), p.item()
    (2.0, 0.0)
    """
    import torch

    dim = input.dim() + dim if dim < 0 else dim
    n = input.size(dim)
    if log_weights is None:
        log_weights = torch.zeros(n, dtype=input.dtype, device=input.device)
    log_w = torch.as_tensor(log_weights, dtype=input.dtype, device=input.device).reshape(
        [-1] + [1] * (input.dim() - dim - 1))
    lpd = torch.logsumexp(input + log_w, dim=dim) - torch.logsumexp(log_w.reshape(-1), 0)
    weights = torch.softmax(log_w, dim=0) if dim == 0 else torch.softmax(log_w.reshape(-1), 0).reshape(log_w.shape)
    mean = (weights * input).sum(dim, keepdim=True)
    p_waic = (weights * (input - mean).pow(2)).sum(dim) * (n / (n - 1.0))
    value = -2 * (lpd - p_waic)
    return (value, p_waic) if pointwise else (value.sum(), p_waic.sum())


def weighed_quantile(input, probs, log_weights, dim=0):
    """Quantiles of weighted draws: the smallest draw along ``dim`` whose cumulative normalised weight
    reaches each of ``probs`` (``log_weights`` has one unnormalised log weight per draw).

    >>> import torch
    >>> weighed_quantile(torch.tensor([1.0, 2.0, 3.0]), [0.5], torch.tensor([0.0, 0.0, 2.0]).log())
    tensor([3.])
    """
    import torch

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
           "split_gelman_rubin", "waic", "weighed_quantile"]
