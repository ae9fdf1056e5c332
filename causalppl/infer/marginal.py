"""``EmpiricalMarginal``: the weighted draws of one site of a Monte Carlo posterior, as a distribution.

>>> import torch, causalppl as cp
>>> cp.set_rng_seed(0)
>>> def scale(guess):
...     weight = cp.sample("weight", cp.dist.Normal(guess, 1.0))
...     return cp.sample("measurement", cp.dist.Normal(weight, 0.75), obs=torch.tensor(9.5))
>>> posterior = cp.infer.Importance(scale, num_samples=20000).run(8.5)
>>> marginal = EmpiricalMarginal(posterior, sites="weight")
>>> round(marginal.mean.item(), 1), round(marginal.variance.item(), 2)
(9.1, 0.36)
"""

from __future__ import annotations

import torch

from causalppl.distributions import Empirical


class EmpiricalMarginal(Empirical):
    """The draws of ``sites`` of a run :class:`~causalppl.infer.Importance`, weighted by its weights.

    ``sites`` is a site name (``"_RETURN"``, the model's return value, by
    default) or a list of names of sites with one shape, stacked on the
    right.
    """

    def __init__(self, trace_posterior, sites=None, validate_args=None):
        if not hasattr(trace_posterior, "get_samples") or not hasattr(trace_posterior, "log_weights"):
            raise TypeError(
                f"EmpiricalMarginal needs a run posterior such as cp.infer.Importance(...).run(), "
                f"got {type(trace_posterior).__name__}"
            )
        if trace_posterior.log_weights is None:
            raise RuntimeError("EmpiricalMarginal: call .run(*args, **kwargs) on the posterior first")
        sites = "_RETURN" if sites is None else sites
        if isinstance(sites, str):
            samples = trace_posterior.get_samples(sites)
        else:
            draws = [trace_posterior.get_samples(site) for site in sites]
            shapes = {tuple(draw.shape) for draw in draws}
            if len(shapes) > 1:
                raise ValueError(f"EmpiricalMarginal: sites {list(sites)} have different shapes {sorted(shapes)}")
            samples = torch.stack(draws, dim=-1)
        log_weights = trace_posterior.log_weights.to(samples.dtype if samples.dtype.is_floating_point else None)
        super().__init__(samples, log_weights, validate_args=validate_args)
