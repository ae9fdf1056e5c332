"""Pyro's ``pyro.poutine.plate_messenger`` path: the plate handler under its messenger names.

``PlateMessenger`` and ``SubsampleMessenger`` are :class:`causalppl.plate`
itself (one class both declares conditional independence and subsamples).

>>> import torch, causalppl as cp
>>> with PlateMessenger("rows", 10, subsample_size=3) as ind:
...     x = cp.sample("x", cp.dist.Normal(0.0, 1.0))
>>> len(ind), x.shape
(3, torch.Size([3]))
"""

from causalppl.runtime import plate

PlateMessenger = plate
SubsampleMessenger = plate

__all__ = ["PlateMessenger", "SubsampleMessenger"]
