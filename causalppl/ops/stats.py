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
           "split_gelman_rubin", "weighed_quantile"]
