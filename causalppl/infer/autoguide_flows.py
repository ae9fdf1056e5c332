"""Autoguides whose joint over the unconstrained latents is a normalizing flow.

:class:`AutoNormalizingFlow` pushes a standard Normal on the ``D``
unconstrained latent entries through learnable bijections;
:class:`AutoIAFNormal` uses inverse autoregressive flows (affine
autoregressive transforms over MADE networks) as those bijections.

>>> import torch, causalppl as cp
>>> cp.clear_param_store()
>>> def model():
...     cp.sample("z", cp.dist.Normal(torch.zeros(3), 1.0).to_event(1))
>>> guide = AutoIAFNormal(model, hidden_dim=[8])
>>> tuple(guide()["z"].shape)
(3,)
"""

from __future__ import annotations

import torch
from torch import nn

from causalppl.distributions import Normal
from causalppl.distributions.affine_autoregressive import AffineAutoregressive
from causalppl.infer.autoguide import AutoContinuous, init_to_feasible
from causalppl.nn.auto_reg_nn import AutoRegressiveNN


class AutoNormalizingFlow(AutoContinuous):
    """``AutoNormalizingFlow(model, init_transform_fn)``: ``init_transform_fn(D)`` returns the flow's
    bijections (a torch ``Transform``, or a list of them, that are ``nn.Module`` s when they learn).

    The joint is ``TransformedDistribution(Normal(0, 1)^D, transforms)``; the
    transforms are the guide's submodule ``transforms``, and their weights are
    its params ``{prefix}.transforms$$$...``.
    """

    def __init__(self, model, init_transform_fn, init_loc_fn=init_to_feasible, *, prefix=None):
        super().__init__(model, init_loc_fn=init_loc_fn, prefix=prefix)
        self._init_transform_fn = init_transform_fn
        self.transforms = None

    def _params(self):
        if self.transforms is None:
            made = self._init_transform_fn(self.latent_dim)
            made = list(made) if isinstance(made, (list, tuple)) else [made]
            self.transforms = nn.ModuleList(made)
        return (self.transforms,)

    def _loc_scale(self):
        raise NotImplementedError(f"{type(self).__name__}: a flow has no closed-form median or quantiles")

    def get_posterior(self, *args, **kwargs):
        """The flow: a standard Normal over the ``D`` unconstrained entries, pushed through the transforms."""
        self._check_ready()
        (transforms,) = self._params()
        loc = self._init_loc()
        base = Normal(torch.zeros_like(loc), torch.ones_like(loc)).to_event(1)
        return torch.distributions.TransformedDistribution(base, list(transforms))


class AutoIAFNormal(AutoNormalizingFlow):
    """``AutoIAFNormal(model, hidden_dim=None, init_loc_fn=None, num_transforms=1)``: an inverse
    autoregressive flow guide.

    ``num_transforms`` affine autoregressive transforms, each over a MADE
    network with hidden layers ``hidden_dim`` (an int or a list; default
    ``[3 * D + 1]``), in a random input order each.

    >>> import torch, causalppl as cp
    >>> cp.clear_param_store()
    >>> guide = AutoIAFNormal(lambda: cp.sample("z", cp.dist.Normal(torch.zeros(2), 1.0).to_event(1)))
    >>> sorted(cp.handlers.trace(guide).get_trace().stochastic_nodes)
    ['_AutoIAFNormal_latent', 'z']
    """

    def __init__(self, model, hidden_dim=None, init_loc_fn=None, num_transforms=1, *, prefix=None,
                 **init_transform_kwargs):
        if num_transforms < 1:
            raise ValueError(f"AutoIAFNormal: num_transforms must be at least 1, got {num_transforms}")
        if isinstance(hidden_dim, int):
            hidden_dim = [hidden_dim]

        def init_transform_fn(dim):
            hidden = hidden_dim if hidden_dim is not None else [3 * dim + 1]
            return [AffineAutoregressive(AutoRegressiveNN(dim, hidden), **init_transform_kwargs)
                    for _ in range(num_transforms)]

        super().__init__(model, init_transform_fn, init_loc_fn=init_loc_fn or init_to_feasible, prefix=prefix)


__all__ = ["AutoIAFNormal", "AutoNormalizingFlow"]
