"""Helpers around guides (Pyro's ``pyro.infer.autoguide.utils``).

>>> import torch, causalppl as cp
>>> guide = lambda: cp.sample("c", cp.dist.Bernoulli(torch.tensor([0.5, 0.5])))
>>> mean_field_entropy(guide, ())
tensor([0.6931, 0.6931])
>>> product((2, 3, 4))
24
"""

from __future__ import annotations

import math

from causalppl.handlers import trace


def _product(shape):
    """The number of elements of a tensor of this shape (1 for ``()``)."""
    return math.prod(shape)


product = _product


def mean_field_entropy(model, args, whitelist=None):
    """The sum of the entropies of ``model``'s sample sites (those in ``whitelist`` when given), as
    the mean-field approximation of its joint entropy; batch-shaped like the sites.
    """
    tr = trace(model).get_trace(*args)
    entropy = 0.0
    for name, site in tr.nodes.items():
        if site["type"] != "sample" or type(site["fn"]).__name__ == "_Subsample":
            continue
        if whitelist is None or name in whitelist:
            entropy = entropy + site["fn"].entropy()
    return entropy


__all__ = ["mean_field_entropy", "product"]
