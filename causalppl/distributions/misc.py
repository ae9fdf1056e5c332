"""ImproperUniform, MaskedMixture and Empirical.

>>> import torch
>>> ImproperUniform(constraints.positive, (2,)).log_prob(torch.ones(3, 2))
tensor([[0., 0.],
        [0., 0.],
        [0., 0.]])
>>> d = Empirical(torch.tensor([0.0, 1.0, 1.0]), torch.zeros(3))
>>> d.mean, round(d.log_prob(torch.tensor(1.0)).exp().item(), 4)
(tensor(0.6667), 0.6667)
"""

import copy

import torch

from causalppl.distributions import Categorical, TorchDistribution, constraints

__all__ = ["Empirical", "ImproperUniform", "MaskedMixture"]


class ImproperUniform(TorchDistribution):
    """A flat (improper) density on ``support``: ``log_prob`` is 0 everywhere, and it cannot be sampled.

    Useful to declare a latent whose density comes from other factors (e.g.
    ``obs=`` sites on functions of it) for HMC/NUTS or MAP. For a flat factor
    that can still be drawn, use ``.mask(False)`` on a proper distribution.

    :param support: a :class:`~torch.distributions.constraints.Constraint`.
    :param batch_shape: default ``()``.
    :param event_shape: default ``()``.
    """

    arg_constraints = {}

    def __init__(self, support, batch_shape=torch.Size(), event_shape=torch.Size(), validate_args=None):
        if not isinstance(support, constraints.Constraint):
            raise TypeError(f"ImproperUniform: support must be a Constraint, got {support!r}")
        self._support = support
        super().__init__(torch.Size(batch_shape), torch.Size(event_shape), validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return self._support

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ImproperUniform, _instance)
        new._support = self._support
        super(ImproperUniform, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:value.dim() - len(self.event_shape)], self.batch_shape)
        dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
        return torch.zeros((), dtype=dtype, device=value.device).expand(shape)

    def sample(self, sample_shape=torch.Size()):
        raise NotImplementedError("ImproperUniform cannot be sampled: it has no normalised density "
                                  "(use .mask(False) on a proper distribution to get a flat factor that can be)")

    def rsample(self, sample_shape=torch.Size()):
        self.sample(sample_shape)


class _MaskedConstraint(constraints.Constraint):
    """``constraint1`` where ``mask`` is True and ``constraint0`` elsewhere."""

    def __init__(self, mask, constraint0, constraint1):
        self.mask, self.constraint0, self.constraint1 = mask, constraint0, constraint1
        self.is_discrete = constraint0.is_discrete or constraint1.is_discrete
        self.event_dim = max(constraint0.event_dim, constraint1.event_dim)

    def check(self, value):
        return torch.where(self.mask, self.constraint1.check(value), self.constraint0.check(value))


def _unvalidated(d):
    d = copy.copy(d)
    d._validate_args = False  # a value is only valid for the component it came from
    return d


class MaskedMixture(TorchDistribution):
    """A draw of ``component1`` where ``mask`` is True and of ``component0`` where it is False.

    The mask is usually itself sampled (and often enumerated): e.g. a change
    point ``t`` gives ``mask = torch.arange(T) >= t``. Batch shapes of the
    mask and both components broadcast; their event shapes must agree.

    The ``mask`` attribute (Pyro's name) hides the ``.mask(...)`` method here;
    wrap in :class:`~causalppl.distributions.MaskedDistribution` to mask its log density.

    :param torch.Tensor mask: a bool tensor.
    :param component0: the distribution where ``mask`` is False.
    :param component1: the distribution where ``mask`` is True.
    """

    arg_constraints = {}

    def __init__(self, mask, component0, component1, validate_args=None):
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool:
            raise TypeError(f"MaskedMixture: mask must be a bool tensor, got dtype {mask.dtype}")
        if component0.event_shape != component1.event_shape:
            raise ValueError(f"MaskedMixture: the components' event shapes differ: "
                             f"{tuple(component0.event_shape)} vs {tuple(component1.event_shape)}")
        try:
            batch_shape = torch.broadcast_shapes(mask.shape, component0.batch_shape, component1.batch_shape)
        except RuntimeError as e:
            raise ValueError(f"MaskedMixture: mask shape {tuple(mask.shape)} and the components' batch shapes "
                             f"{tuple(component0.batch_shape)}, {tuple(component1.batch_shape)} do not broadcast"
                             ) from e
        self.mask = mask
        self.component0 = _unvalidated(component0)
        self.component1 = _unvalidated(component1)
        self.has_rsample = bool(component0.has_rsample and component1.has_rsample)
        super().__init__(batch_shape, component0.event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(MaskedMixture, _instance)
        batch_shape = torch.Size(batch_shape)
        new.mask = self.mask.expand(batch_shape)
        new.component0 = self.component0.expand(batch_shape)
        new.component1 = self.component1.expand(batch_shape)
        new.has_rsample = self.has_rsample
        super(MaskedMixture, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _event_mask(self):
        return self.mask.reshape(self.mask.shape + (1,) * len(self.event_shape))

    @constraints.dependent_property
    def support(self):
        s0, s1 = self.component0.support, self.component1.support
        return s0 if s0 is s1 else _MaskedConstraint(self.mask, s0, s1)

    def _draw(self, method, sample_shape):
        x0 = getattr(self.component0.expand(self.batch_shape), method)(sample_shape)
        x1 = getattr(self.component1.expand(self.batch_shape), method)(sample_shape)
        return torch.where(self._event_mask(), x1, x0)

    def sample(self, sample_shape=torch.Size()):
        return self._draw("sample", sample_shape)

    def rsample(self, sample_shape=torch.Size()):
        return self._draw("rsample", sample_shape)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return torch.where(self.mask, self.component1.log_prob(value), self.component0.log_prob(value))

    @property
    def mean(self):
        return torch.where(self._event_mask(), self.component1.mean, self.component0.mean)

    @property
    def variance(self):
        return torch.where(self._event_mask(), self.component1.variance, self.component0.variance)


def _broadcast_or_none(*shapes):
    try:
        return torch.broadcast_shapes(*shapes)
    except RuntimeError:
        return None


class Empirical(TorchDistribution):
    """The weighted empirical distribution of ``samples``.

    ``samples`` has shape ``batch_shape + (num_samples,) + event_shape`` and
    ``log_weights`` (unnormalised) shape ``batch_shape + (num_samples,)``: the
    draws are aggregated along the dim right after the batch dims.
    ``log_prob(x)`` is the log of the total normalised weight of the samples
    equal to ``x`` (``-inf`` for a value never seen). Under validation ``x``
    must have shape ``batch_shape + event_shape`` (or broadcast to it), as in
    Pyro; without it, leading sample dims are scored as well.

    :param torch.Tensor samples: the atoms.
    :param torch.Tensor log_weights: their log weights.
    """

    arg_constraints = {}
    support = constraints.real
    has_enumerate_support = True

    def __init__(self, samples, log_weights, validate_args=None):
        samples, log_weights = torch.as_tensor(samples), torch.as_tensor(log_weights)
        if log_weights.dim() < 1 or samples.shape[:log_weights.dim()] != log_weights.shape:
            raise ValueError(f"Empirical: the shape of log_weights {tuple(log_weights.shape)} must be the "
                             f"leftmost part of the shape of samples {tuple(samples.shape)}")
        self._samples = samples
        self._log_weights = log_weights
        self._aggregation_dim = log_weights.dim() - 1
        self._categorical = Categorical(logits=log_weights, validate_args=False)
        super().__init__(log_weights.shape[:-1], samples.shape[log_weights.dim():], validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, samples, log_weights):
        samples, log_weights = torch.Size(samples), torch.Size(log_weights)
        return log_weights[:-1], samples[len(log_weights):]

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        n = self._log_weights.shape[-1]
        new = Empirical(self._samples.expand(batch_shape + (n,) + self.event_shape),
                        self._log_weights.expand(batch_shape + (n,)), validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def sample_size(self):
        """The number of atoms (all batches together)."""
        return self._log_weights.numel()

    @property
    def log_weights(self):
        return self._log_weights

    def _normalised_log_weights(self):
        return self._log_weights - self._log_weights.logsumexp(-1, keepdim=True)

    def sample(self, sample_shape=torch.Size()):
        sample_shape = torch.Size(sample_shape)
        n = sample_shape.numel()
        with torch.no_grad():
            index = self._categorical.sample((n,))  # (n,) + batch_shape
        k, ev = self._aggregation_dim, len(self.event_shape)
        index = index.reshape(index.shape + (1,) + (1,) * ev).expand((n,) + self.batch_shape + (1,) + self.event_shape)
        atoms = self._samples.unsqueeze(0).expand((n,) + self._samples.shape)
        picked = atoms.gather(k + 1, index).squeeze(k + 1)
        return picked.reshape(sample_shape + self.batch_shape + self.event_shape)

    def log_prob(self, value):
        value = torch.as_tensor(value, dtype=self._samples.dtype, device=self._samples.device)
        full = self.batch_shape + self.event_shape
        if self._validate_args and (value.dim() > len(full) or _broadcast_or_none(value.shape, full) != full):
            # Pyro's rule (no vectorised scoring); without validation, leading sample dims are scored too.
            raise ValueError(f"Empirical.log_prob: value.shape must be {tuple(full)} (batch_shape + event_shape) "
                             f"or broadcast to it, got {tuple(value.shape)}")
        ev = len(self.event_shape)
        # value: sample_shape + batch_shape + event_shape -> compare against every atom.
        atoms_at = value.unsqueeze(value.dim() - ev)
        same = atoms_at == self._samples
        if ev:
            same = same.flatten(-ev).all(-1)
        log_w = self._normalised_log_weights()
        return torch.where(same, log_w, torch.full_like(log_w, -float("inf"))).logsumexp(-1)

    def _check_numeric(self, what):
        if not (self._samples.is_floating_point() or self._samples.is_complex()):
            raise ValueError(f"Empirical.{what} is undefined for integer samples (dtype {self._samples.dtype}); "
                             f"convert them to a float dtype, or one-hot encode categories")

    def _weighted_mean(self, values):
        weights = self._normalised_log_weights().exp()
        weights = weights.reshape(weights.shape + (1,) * len(self.event_shape))
        return (values * weights).sum(self._aggregation_dim)

    @property
    def mean(self):
        self._check_numeric("mean")
        return self._weighted_mean(self._samples)

    @property
    def variance(self):
        self._check_numeric("variance")
        centred = self._samples - self.mean.unsqueeze(self._aggregation_dim)
        return self._weighted_mean(centred.pow(2))

    def enumerate_support(self, expand=True):
        """The atoms, with the sample dim first: ``(num_samples,) + batch_shape + event_shape``."""
        return self._samples.movedim(self._aggregation_dim, 0)
