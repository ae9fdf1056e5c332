"""``torch.distributions.transforms`` plus the transforms Pyro adds.

Every name of torch's module is here and is the same object
(``cp.dist.transforms.ExpTransform is torch.distributions.transforms.ExpTransform``).
Added: :class:`CorrMatrixCholeskyTransform` (a correlation matrix to its
Cholesky factor), :class:`OrderedTransform` (a real vector to an increasing
one), :class:`Permute`, :class:`LowerCholeskyAffine`, the old name
``CorrLCholeskyTransform``, and ``biject_to`` / ``transform_to`` for the
constraints in :mod:`causalppl.distributions.constraints`.

>>> import torch
>>> OrderedTransform()(torch.tensor([0.0, 0.0, 0.0]))
tensor([0., 1., 2.])
>>> from torch.distributions import biject_to
>>> from causalppl.distributions import constraints
>>> c = biject_to(constraints.corr_matrix)(torch.zeros(3))
>>> bool(constraints.corr_matrix.check(c))
True
"""

import torch
from torch.distributions import biject_to, transform_to
from torch.distributions import transforms as _torch_transforms
from torch.distributions.transforms import *  # noqa: F401,F403
from torch.distributions.transforms import (
    ComposeTransform,
    CorrCholeskyTransform,
    ExpTransform,
    SoftplusTransform,
    Transform,
)
from torch.distributions.transforms import __all__ as _torch_all

from causalppl.distributions import constraints

for _name, _value in vars(_torch_transforms).items():
    if not _name.startswith("__"):
        globals().setdefault(_name, _value)
del _name, _value


class CorrMatrixCholeskyTransform(Transform):
    """A correlation matrix to its lower Cholesky factor (and back with ``.inv``).

    On the ``d(d-1)/2`` free entries (below the diagonal), the map ``L -> L L^T``
    has Jacobian determinant ``prod_i L_ii^(d - i)`` (``i`` counted from 1), so
    this direction's log-determinant is ``-sum_i (d - i) log L_ii``.
    """

    domain = constraints.corr_matrix
    codomain = constraints.corr_cholesky
    bijective = True

    def __eq__(self, other):
        return isinstance(other, CorrMatrixCholeskyTransform)

    def _call(self, x):
        chol, info = torch.linalg.cholesky_ex(x)
        if info.ne(0).any():  # singular up to rounding (see constraints.corr_matrix): jitter, renormalise rows
            eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
            nudged = torch.linalg.cholesky(x + 10 * torch.finfo(x.dtype).eps * eye)
            nudged = nudged / nudged.norm(dim=-1, keepdim=True)
            chol = torch.where(info.ne(0)[..., None, None], nudged, chol)
        return chol

    def _inverse(self, y):
        return y @ y.mT

    def log_abs_det_jacobian(self, x, y):
        d = y.shape[-1]
        powers = torch.arange(d - 1, -1, -1, dtype=y.dtype, device=y.device)  # d - i for i = 1..d
        return -(powers * y.diagonal(dim1=-2, dim2=-1).log()).sum(-1)


class OrderedTransform(Transform):
    """A real vector to an increasing one: ``y_0 = x_0``, ``y_i = y_{i-1} + exp(x_i)``."""

    domain = constraints.real_vector
    codomain = constraints.ordered_vector
    bijective = True

    def __eq__(self, other):
        return isinstance(other, OrderedTransform)

    def _call(self, x):
        steps = torch.cat([x[..., :1], x[..., 1:].exp()], dim=-1)
        return steps.cumsum(-1)

    def _inverse(self, y):
        return torch.cat([y[..., :1], (y[..., 1:] - y[..., :-1]).log()], dim=-1)

    def log_abs_det_jacobian(self, x, y):
        return x[..., 1:].sum(-1)


class Permute(Transform):
    """Reorders dim ``dim`` of a value by ``permutation``: ``y = x.index_select(dim, permutation)``.

    Volume preserving (log-determinant 0); ``dim`` is negative, counted from the right.
    """

    bijective = True
    volume_preserving = True

    def __init__(self, permutation, *, dim=-1, cache_size=1):
        if dim >= 0:
            raise ValueError(f"Permute: dim must be negative (counted from the right), got {dim}")
        super().__init__(cache_size=cache_size)
        self.permutation = torch.as_tensor(permutation, dtype=torch.long)
        self.dim = dim

    @property
    def domain(self):
        return constraints.independent(constraints.real, -self.dim)

    @property
    def codomain(self):
        return constraints.independent(constraints.real, -self.dim)

    @property
    def inv_permutation(self):
        inverse = torch.empty_like(self.permutation)
        inverse[self.permutation] = torch.arange(len(self.permutation), device=self.permutation.device)
        return inverse

    def __eq__(self, other):
        return isinstance(other, Permute) and self.dim == other.dim and torch.equal(self.permutation,
                                                                                   other.permutation)

    def _call(self, x):
        return x.index_select(self.dim, self.permutation.to(x.device))

    def _inverse(self, y):
        return y.index_select(self.dim, self.inv_permutation.to(y.device))

    def log_abs_det_jacobian(self, x, y):
        return x.new_zeros(x.shape[:x.dim() + self.dim])

    def with_cache(self, cache_size=1):
        return self if self._cache_size == cache_size else Permute(self.permutation, dim=self.dim,
                                                                   cache_size=cache_size)


class LowerCholeskyAffine(Transform):
    """``y = loc + scale_tril @ x`` for vectors ``x``, with ``scale_tril`` lower triangular (positive diagonal)."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, loc, scale_tril, cache_size=0):
        super().__init__(cache_size=cache_size)
        if scale_tril.dim() < 2 or scale_tril.shape[-1] != scale_tril.shape[-2]:
            raise ValueError(f"LowerCholeskyAffine: scale_tril must be square, got shape {tuple(scale_tril.shape)}")
        self.loc, self.scale_tril = loc, scale_tril

    def __eq__(self, other):
        return (isinstance(other, LowerCholeskyAffine) and torch.equal(self.loc, other.loc)
                and torch.equal(self.scale_tril, other.scale_tril))

    def _call(self, x):
        return self.loc + (self.scale_tril @ x.unsqueeze(-1)).squeeze(-1)

    def _inverse(self, y):
        return torch.linalg.solve_triangular(self.scale_tril, (y - self.loc).unsqueeze(-1), upper=False).squeeze(-1)

    def log_abs_det_jacobian(self, x, y):
        per_event = self.scale_tril.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1)
        return per_event.expand(torch.broadcast_shapes(per_event.shape, x.shape[:-1]))

    def with_cache(self, cache_size=1):
        return self if self._cache_size == cache_size else LowerCholeskyAffine(self.loc, self.scale_tril,
                                                                               cache_size=cache_size)


# Pyro's older name for torch's CorrCholeskyTransform (unconstrained vector -> Cholesky factor of a correlation).
CorrLCholeskyTransform = CorrCholeskyTransform


def _to_corr_matrix(constraint):
    return ComposeTransform([CorrCholeskyTransform(), CorrMatrixCholeskyTransform().inv])


def _to_ordered_vector(constraint):
    return OrderedTransform()


def _to_positive_ordered_vector(constraint):
    return ComposeTransform([OrderedTransform(), ExpTransform()])


def _to_softplus_positive(constraint):
    return SoftplusTransform()


# Registered on our own constraint classes only: what torch does for its own constraints is unchanged.
for _registry in (biject_to, transform_to):
    _registry.register(type(constraints.corr_matrix), _to_corr_matrix)
    _registry.register(type(constraints.ordered_vector), _to_ordered_vector)
    _registry.register(type(constraints.positive_ordered_vector), _to_positive_ordered_vector)
    _registry.register(type(constraints.softplus_positive), _to_softplus_positive)
del _registry

__all__ = sorted(set(_torch_all) | {
    "CorrLCholeskyTransform", "CorrMatrixCholeskyTransform", "LowerCholeskyAffine", "OrderedTransform", "Permute",
})
