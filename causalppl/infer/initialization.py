"""Initialisation strategies for latent sites, and a handler that applies one (Pyro's
``pyro.infer.autoguide.initialization``).

The strategies (``init_to_median``, ``init_to_value``, ...) live with the
autoguides that use them; :class:`InitMessenger` runs any of them on a plain
model: each latent sample site takes the strategy's value instead of a draw.

>>> import torch, causalppl as cp
>>> def model():
...     return cp.sample("x", cp.dist.Normal(0.0, 1.0))
>>> with InitMessenger(init_to_value(values={"x": torch.tensor(3.0)})):
...     model()
tensor(3.)
"""

from __future__ import annotations

import torch

from causalppl.infer.autoguide import (  # noqa: F401  (Pyro's names, re-exported here)
    init_to_feasible,
    init_to_generated,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_uniform,
    init_to_value,
)
from causalppl.runtime import Messenger, draw


class InitMessenger(Messenger):
    """Give each latent sample site the value ``init_fn(site)`` (observed and already-valued sites are left alone).

    The site handed to ``init_fn`` carries a prior draw under ``"value"`` (strategies read its shape,
    dtype and device from it). The value must fit the site's support.
    """

    def __init__(self, init_fn=None):
        # Pyro's signature: the strategy comes first; ``InitMessenger(init_fn)(model)`` wraps a model.
        if init_fn is None or not callable(init_fn):
            raise ValueError(f"InitMessenger needs an init_fn (e.g. init_to_median), got {init_fn!r}")
        super().__init__(None)
        self.init_fn = init_fn

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None:
            return
        with torch.no_grad():
            site = {**msg, "value": draw(msg["fn"], msg["name"]).detach()}
            value = torch.as_tensor(self.init_fn(site))
        if value.shape != site["value"].shape:
            raise ValueError(
                f"InitMessenger: init_fn gave sample site '{msg['name']}' a value of shape {tuple(value.shape)}, "
                f"expected {tuple(site['value'].shape)}"
            )
        msg["value"] = value.to(site["value"])
        msg["infer"] = {**msg["infer"], "init": True}


__all__ = ["InitMessenger", "init_to_feasible", "init_to_generated", "init_to_mean", "init_to_median",
           "init_to_sample", "init_to_uniform", "init_to_value"]
