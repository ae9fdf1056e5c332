"""``torch.distributions.constraints`` plus the constraints Pyro adds.

Every name of torch's module is here and is the same object
(``cp.dist.constraints.positive is torch.distributions.constraints.positive``);
the additions are :data:`integer`, :data:`corr_matrix`,
:data:`ordered_vector`, :data:`positive_ordered_vector` and
:data:`softplus_positive`. ``biject_to`` / ``transform_to`` know them once
:mod:`causalppl.distributions.transforms` is imported (``causalppl`` does so).

>>> import torch
>>> corr_matrix.check(torch.tensor([[1.0, 0.5], [0.5, 1.0]]))
tensor(True)
>>> ordered_vector.check(torch.tensor([0.0, 2.0, 1.0]))
tensor(False)
"""

import torch
from torch.distributions import constraints as _torch_constraints
from torch.distributions.constraints import *  # noqa: F401,F403
from torch.distributions.constraints import Constraint, _GreaterThan, _IndependentConstraint
from torch.distributions.constraints import __all__ as _torch_all

# torch's private constraint classes too, for isinstance checks written against them.
for _name, _value in vars(_torch_constraints).items():
    if not _name.startswith("__"):
        globals().setdefault(_name, _value)
del _name, _value

IndependentConstraint = _IndependentConstraint
corr_cholesky_constraint = _torch_constraints.corr_cholesky  # Pyro's older name


class _Integer(Constraint):
    """Any integer (negative ones too)."""

    is_discrete = True

    def check(self, value):
        return value % 1 == 0


class _CorrMatrix(Constraint):
    """Symmetric positive definite matrices with unit diagonal (correlation matrices)."""

    event_dim = 2

    def check(self, value):
        tol = 1e-6 if value.dtype == torch.float64 else 1e-4
        symmetric = (value - value.mT).abs().le(tol).all(-1).all(-1)
        unit_diagonal = (value.diagonal(dim1=-2, dim2=-1) - 1).abs().le(tol).all(-1)
        # Positive definite up to rounding: L L^T of a valid Cholesky factor can have an
        # eigenvalue a few ulps below zero when it is nearly singular.
        jitter = 10 * torch.finfo(value.dtype).eps
        eye = torch.eye(value.shape[-1], dtype=value.dtype, device=value.device)
        positive_definite = torch.linalg.cholesky_ex(value + jitter * eye).info.eq(0)
        return symmetric & unit_diagonal & positive_definite


class _OrderedVector(Constraint):
    """Real vectors whose entries strictly increase along the last dim."""

    event_dim = 1

    def check(self, value):
        if value.dim() == 0:
            raise ValueError("ordered_vector: expected a vector, got a scalar")
        return (value[..., 1:] > value[..., :-1]).all(-1)


class _PositiveOrderedVector(_OrderedVector):
    """Positive vectors whose entries strictly increase along the last dim."""

    def check(self, value):
        return super().check(value) & (value > 0).all(-1)


class _SoftplusPositive(_GreaterThan):
    """``positive``, but ``biject_to`` maps into it with softplus rather than exp."""

    def __init__(self):
        super().__init__(lower_bound=0.0)


integer = _Integer()
corr_matrix = _CorrMatrix()
ordered_vector = _OrderedVector()
positive_ordered_vector = _PositiveOrderedVector()
softplus_positive = _SoftplusPositive()

__all__ = sorted(set(_torch_all) | {
    "IndependentConstraint", "corr_cholesky_constraint", "corr_matrix", "integer", "ordered_vector",
    "positive_ordered_vector", "softplus_positive",
})
