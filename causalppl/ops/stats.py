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

__all__ = ["autocorrelation", "autocovariance", "effective_sample_size", "gelman_rubin", "hpdi", "pi", "quantile",
           "split_gelman_rubin"]
