"""Autoregressive networks (MADE, Germain et al. 2015): output ``i`` depends on inputs before ``i`` only.

:class:`AutoRegressiveNN` maps ``x`` of length ``D`` to parameters (by
default a mean and a log-scale per entry) such that the parameters of entry
``permutation[k]`` depend only on the entries ``permutation[:k]``. It is the
network inside :class:`~causalppl.distributions.affine_autoregressive.AffineAutoregressive`
(inverse autoregressive flows).

>>> import torch
>>> arn = AutoRegressiveNN(3, [8])
>>> mean, log_scale = arn(torch.zeros(3))
>>> tuple(mean.shape), tuple(log_scale.shape)
((3,), (3,))
"""

from __future__ import annotations

import torch
from torch import nn


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 ``mask`` (out_features x in_features)."""

    def __init__(self, in_features, out_features, mask, bias=True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x):
        return nn.functional.linear(x, self.mask * self.weight, self.bias)


def create_mask(input_dim, context_dim, hidden_dims, permutation, output_dim_multiplier):
    """The masks ``[input->hidden1, ..., hiddenK->output]`` and the input->output skip mask.

    The network's inputs are ``context_dim`` context entries (degree 0: every
    output may see them) followed by the ``input_dim`` entries; entry
    ``permutation[k]`` gets degree ``k + 1``. A hidden unit of degree ``d``
    sees inputs of degree ``<= d``; an output of degree ``d`` sees hidden
    units of degree ``< d``, so it never depends on its own entry or later ones.

    >>> import torch
    >>> masks, skip = create_mask(2, 0, [4], torch.tensor([1, 0]), 1)
    >>> skip.tolist()   # entry 0 comes second: it may see entry 1
    [[0.0, 1.0], [0.0, 0.0]]
    """
    degree = torch.empty(input_dim, dtype=torch.long)
    degree[torch.as_tensor(permutation, dtype=torch.long)] = torch.arange(1, input_dim + 1)
    degree = torch.cat([torch.zeros(context_dim, dtype=torch.long), degree])
    hidden_degrees = [torch.linspace(0, input_dim - 1, h).round().long() for h in hidden_dims]
    out_degree = degree[context_dim:].repeat(output_dim_multiplier)
    masks = [(hidden_degrees[0].unsqueeze(-1) >= degree.unsqueeze(0))]
    for lower, upper in zip(hidden_degrees, hidden_degrees[1:], strict=False):
        masks.append(upper.unsqueeze(-1) >= lower.unsqueeze(0))
    masks.append(out_degree.unsqueeze(-1) > hidden_degrees[-1].unsqueeze(0))
    skip = out_degree.unsqueeze(-1) > degree.unsqueeze(0)
    return [m.float() for m in masks], skip.float()


class AutoRegressiveNN(nn.Module):
    """A MADE network: ``AutoRegressiveNN(input_dim, hidden_dims, param_dims=[1, 1], permutation=None,
    skip_connections=False, nonlinearity=nn.ReLU())``.

    Returns one tensor per entry of ``param_dims`` (a tuple, or the tensor
    itself when there is one), each of shape ``(..., p, input_dim)`` for a
    ``p > 1`` entry and ``(..., input_dim)`` for ``p == 1``. ``permutation``
    (a random one by default) orders the inputs.

    >>> import torch
    >>> arn = AutoRegressiveNN(4, [10], permutation=torch.arange(4))
    >>> x = torch.randn(4, requires_grad=True)
    >>> mean, _ = arn(x)
    >>> torch.autograd.grad(mean[0], x)[0].abs().sum().item()   # the first output sees no input
    0.0
    """

    def __init__(self, input_dim, hidden_dims, param_dims=(1, 1), permutation=None, skip_connections=False,
                 nonlinearity=None):
        super().__init__()
        if input_dim < 1:
            raise ValueError(f"AutoRegressiveNN: input_dim must be positive, got {input_dim}")
        if not hidden_dims:
            raise ValueError("AutoRegressiveNN: give at least one hidden layer size")
        self.input_dim = input_dim
        self.hidden_dims = list(hidden_dims)
        self.param_dims = list(param_dims)
        self.count_params = len(self.param_dims)
        self.output_multiplier = sum(self.param_dims)
        self.all_ones = all(p == 1 for p in self.param_dims)
        if permutation is None:
            permutation = torch.randperm(input_dim)
        self.register_buffer("permutation", torch.as_tensor(permutation, dtype=torch.long))
        masks, skip_mask = create_mask(input_dim, 0, self.hidden_dims, self.permutation, self.output_multiplier)
        sizes = [input_dim] + self.hidden_dims + [input_dim * self.output_multiplier]
        self.layers = nn.ModuleList(
            MaskedLinear(sizes[i], sizes[i + 1], masks[i]) for i in range(len(sizes) - 1))
        self.skip_layer = MaskedLinear(input_dim, sizes[-1], skip_mask, bias=False) if skip_connections else None
        self.f = nn.ReLU() if nonlinearity is None else nonlinearity

    def get_permutation(self):
        """The order of the inputs: entry ``permutation[k]`` depends on ``permutation[:k]``."""
        return self.permutation

    def forward(self, x):
        h = x
        for layer in self.layers[:-1]:
            h = self.f(layer(h))
        h = self.layers[-1](h)
        if self.skip_layer is not None:
            h = h + self.skip_layer(x)
        if self.output_multiplier == 1:
            return h
        h = h.reshape(x.shape[:-1] + (self.output_multiplier, self.input_dim))
        if self.count_params == 1:
            return h
        if self.all_ones:
            return tuple(h.unbind(-2))
        out, start = [], 0
        for p in self.param_dims:
            piece = h[..., start:start + p, :]
            out.append(piece.squeeze(-2) if p == 1 else piece)
            start += p
        return tuple(out)


__all__ = ["AutoRegressiveNN", "MaskedLinear", "create_mask"]
