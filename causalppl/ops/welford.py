"""Running (co)variance estimates, one sample at a time (Welford's scheme), for mass matrix adaptation.

- :class:`WelfordCovariance`: the diagonal or the dense sample covariance;
- :class:`WelfordArrowheadCovariance`: a dense block over the first
  ``head_size`` coordinates (their rows of the covariance) and a diagonal over
  the rest, the structure of an arrowhead mass matrix.

``get_covariance(regularize=True)`` shrinks the estimate towards ``1e-3 * I`` as
Stan does: ``n / (n + 5) * cov + 1e-3 * 5 / (n + 5) * I``.

>>> import torch
>>> w = WelfordCovariance(diagonal=True)
>>> for x in torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]]):
...     w.update(x)
>>> w.get_covariance(regularize=False)
tensor([4., 0.])
"""

import torch

__all__ = ["WelfordArrowheadCovariance", "WelfordCovariance"]


def _stan_shrink(cov, n, diagonal):
    """Stan's regularisation of a covariance estimate from ``n`` samples (its diagonal when ``diagonal``)."""
    cov = cov * (n / (n + 5.0))
    shrinkage = 1e-3 * 5.0 / (n + 5.0)
    if diagonal:
        return cov + shrinkage
    return cov + shrinkage * torch.eye(cov.size(-2), cov.size(-1), dtype=cov.dtype, device=cov.device)


class WelfordCovariance:
    """Running mean and sample covariance of vectors: diagonal (a variance vector) or dense (a matrix).

    The sums are kept in float64; the estimate comes back in the samples' dtype.
    """

    def __init__(self, diagonal=True):
        self.diagonal = diagonal
        self.reset()

    def reset(self):
        self.n_samples = 0
        self._mean = None
        self._m2 = None
        self._dtype = None

    @property
    def n(self):
        return self.n_samples

    def update(self, sample):
        """Add one sample (a vector)."""
        self._dtype = sample.dtype
        x = sample.detach().double()
        self.n_samples += 1
        if self._mean is None:
            self._mean = torch.zeros_like(x)
            self._m2 = torch.zeros_like(x) if self.diagonal else x.new_zeros(x.shape + x.shape)
        delta_before = x - self._mean
        self._mean = self._mean + delta_before / self.n_samples
        delta_after = x - self._mean
        if self.diagonal:
            self._m2 = self._m2 + delta_before * delta_after
        else:
            self._m2 = self._m2 + torch.outer(delta_after, delta_before)

    def get_covariance(self, regularize=True):
        """The unbiased sample covariance (Stan-shrunk when ``regularize``); needs two samples."""
        if self.n_samples < 2:
            raise RuntimeError(f"WelfordCovariance needs at least 2 samples to estimate a covariance, "
                               f"got {self.n_samples}")
        cov = self._m2 / (self.n_samples - 1)
        if not self.diagonal:
            cov = (cov + cov.T) / 2
        if regularize:
            cov = _stan_shrink(cov, self.n_samples, self.diagonal)
        return cov.to(self._dtype)


class WelfordArrowheadCovariance:
    """Running covariance in arrowhead form: ``top = cov[:head_size]`` (dense rows) and the diagonal of the rest.

    >>> import torch
    >>> w = WelfordArrowheadCovariance(head_size=1)
    >>> for x in torch.tensor([[0.0, 0.0, 1.0], [2.0, 2.0, 1.0], [4.0, 4.0, 4.0]]):
    ...     w.update(x)
    >>> top, bottom_diag = w.get_covariance(regularize=False)
    >>> top, bottom_diag
    (tensor([[4., 4., 3.]]), tensor([4., 3.]))
    """

    def __init__(self, head_size=0):
        if head_size < 0:
            raise ValueError(f"WelfordArrowheadCovariance: head_size must be >= 0, got {head_size}")
        self.head_size = head_size
        self.reset()

    def reset(self):
        self.n_samples = 0
        self._mean = None
        self._m2_top = None
        self._m2_bottom = None
        self._dtype = None

    def update(self, sample):
        """Add one sample (a vector of at least ``head_size`` entries)."""
        if sample.size(-1) < self.head_size:
            raise ValueError(f"WelfordArrowheadCovariance: a sample of size {sample.size(-1)} is smaller than "
                             f"head_size={self.head_size}")
        self._dtype = sample.dtype
        x = sample.detach().double()
        h = self.head_size
        self.n_samples += 1
        if self._mean is None:
            self._mean = torch.zeros_like(x)
            self._m2_top = x.new_zeros(h, x.size(-1))
            self._m2_bottom = x.new_zeros(x.size(-1) - h)
        delta_before = x - self._mean
        self._mean = self._mean + delta_before / self.n_samples
        delta_after = x - self._mean
        self._m2_top = self._m2_top + torch.outer(delta_after[:h], delta_before)
        self._m2_bottom = self._m2_bottom + delta_after[h:] * delta_before[h:]

    def get_covariance(self, regularize=True):
        """``(top, bottom_diag)``: the first ``head_size`` rows of the covariance and the rest's diagonal."""
        if self.n_samples < 2:
            raise RuntimeError(f"WelfordArrowheadCovariance needs at least 2 samples to estimate a covariance, "
                               f"got {self.n_samples}")
        top = self._m2_top / (self.n_samples - 1)
        bottom = self._m2_bottom / (self.n_samples - 1)
        if regularize:
            top = _stan_shrink(top, self.n_samples, diagonal=False)  # the head block's diagonal
            bottom = _stan_shrink(bottom, self.n_samples, diagonal=True)
        return top.to(self._dtype), bottom.to(self._dtype)
