"""Sum-product contraction of named factors: the one implementation behind exact
discrete queries (:mod:`causalppl.causal.exact`, :mod:`causalppl.causal.discrete`)
and the enumeration of discrete latents (:mod:`causalppl.infer.traceenum`,
:mod:`causalppl.infer.discrete`).

A :class:`Factor` is a tensor with one named dimension per variable. Three
semirings say what "product" and "sum" mean:

- :data:`PROB`: probabilities, ``*`` and ``+`` (one ``torch.einsum`` per step);
- :data:`LOG`: log probabilities, ``+`` and log-sum-exp (the einsum of the
  exponentiated factors, each shifted by its maximum, so nothing underflows);
- :data:`MAX`: log probabilities, ``+`` and ``max`` (max-product, for MAP).

:func:`contract` sums a product of factors down to the variables in ``keep``
by variable elimination in a greedy min-fill order (Koller & Friedman 2009,
*Probabilistic Graphical Models*, Algorithms 9.1 and 9.4).

Plates add a second kind of variable: a plate's dimension indexes
conditionally independent copies, so it is never summed but multiplied out
(``prod`` over the dimension; a sum in log space), and only once every
variable local to the plate has been summed. :func:`sum_product_tree` and
:func:`sum_product` do this, deepest plates first (the algorithm of Obermeyer
et al. 2019, "Tensor variable elimination for plated factor graphs"). Each
plate may carry a scale (``size / subsample_size``) that multiplies its
product in log space.

>>> import torch
>>> f = [Factor(torch.tensor([0.3, 0.7]), ("a",)), Factor(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), ("a", "b"))]
>>> contract(f, keep=("b",))
tensor([0.4100, 0.5900])
>>> logs = [Factor(t.table.log(), t.variables) for t in f]
>>> contract(logs, keep=("b",), semiring=LOG).exp()
tensor([0.4100, 0.5900])
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from causalppl.ops.special import log_bounded_grad

__all__ = [
    "LOG", "MAX", "PROB", "Factor", "IntractableError", "align", "contract", "eliminate", "elimination_order",
    "min_fill", "posterior_marginal", "sum_product", "sum_product_tree",
]


@dataclass(frozen=True)
class Factor:
    """A tensor with one dimension per named variable (variables are any hashable names).

    >>> Factor(torch.tensor([[0.9, 0.1], [0.4, 0.6]]), ("a", "c")).variables
    ('a', 'c')
    """

    table: torch.Tensor
    variables: tuple


class IntractableError(ValueError):
    """A plated contraction that would need every copy of a plate at once (it has no plated form)."""


def align(factor, variables):
    """``factor.table`` permuted to the order of ``variables`` (a superset), with size-1 dims for the others.

    >>> align(Factor(torch.zeros(2, 3), ("b", "a")), ("a", "c", "b")).shape
    torch.Size([3, 1, 2])
    """
    present = [v for v in variables if v in factor.variables]
    table = factor.table
    if tuple(present) != factor.variables:
        table = table.permute([factor.variables.index(v) for v in present])
    shape, sizes = [], dict(zip(present, table.shape))
    for v in variables:
        shape.append(sizes.get(v, 1))
    return table.reshape(shape)


# -- semirings ------------------------------------------------------------------------------------

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _equation(factors, output):
    letters = {}
    for variable in (*output, *(v for f in factors for v in f.variables)):
        if variable not in letters:
            if len(letters) == len(_LETTERS):
                raise ValueError(f"a contraction step over more than {len(_LETTERS)} variables: "
                                 f"{', '.join(map(str, letters))}, ...")
            letters[variable] = _LETTERS[len(letters)]
    inputs = ",".join("".join(letters[v] for v in f.variables) for f in factors)
    return f"{inputs}->{''.join(letters[v] for v in output)}"


def _common(factors):
    """The factors with one dtype (torch's promotion), as einsum wants."""
    dtypes = {f.table.dtype for f in factors}
    if len(dtypes) <= 1:
        return factors
    dtype = functools.reduce(torch.promote_types, dtypes)
    return [Factor(f.table.to(dtype), f.variables) for f in factors]


def _safe_log(x):
    """``log`` whose gradient at 0 is large and finite instead of ``inf`` (``0 * inf`` would be NaN)."""
    return log_bounded_grad(x, torch.finfo(x.dtype).tiny) if x.requires_grad else x.log()


class Semiring:
    """What a contraction multiplies and sums with (see the module docstring)."""

    name = ""

    def einsum(self, factors, output):
        """The product of ``factors`` summed over every variable not in ``output``: a Factor over ``output``."""
        raise NotImplementedError

    def plate_product(self, factor, plate, scale=1.0):
        """``factor`` multiplied out over the copies of ``plate`` (the product raised to ``scale``)."""
        raise NotImplementedError

    def one(self, like=None):
        raise NotImplementedError

    def times(self, a, b):
        """The product of two tensors (aligned already)."""
        raise NotImplementedError

    def __repr__(self):
        return self.name


class _Prob(Semiring):
    name = "PROB"

    def einsum(self, factors, output):
        output = tuple(output)
        factors = _common(factors)
        return Factor(torch.einsum(_equation(factors, output), *(f.table for f in factors)), output)

    def plate_product(self, factor, plate, scale=1.0):
        axis = factor.variables.index(plate)
        table = factor.table.prod(axis)
        if scale != 1.0:
            table = table**scale
        return Factor(table, factor.variables[:axis] + factor.variables[axis + 1:])

    def one(self, like=None):
        return torch.ones(()) if like is None else like.new_ones(())

    def times(self, a, b):
        return a * b


class _Log(Semiring):
    name = "LOG"

    def einsum(self, factors, output):
        output = tuple(output)
        if len(factors) == 1 and factors[0].variables == output:
            return factors[0]
        kept = set(output)
        factors = _common(factors)
        shifted, shifts = [], []
        for f in factors:
            drop = [i for i, v in enumerate(f.variables) if v not in kept]
            shift = f.table.detach()
            if drop:
                shift = shift.amax(dim=drop, keepdim=True)
            shift = shift.clamp(min=torch.finfo(shift.dtype).min)  # an all -inf slice stays -inf, not NaN
            shifted.append(Factor((f.table - shift).exp(), f.variables))
            if drop:
                shift = shift.squeeze(drop) if shift.dim() else shift
            shifts.append(Factor(shift, tuple(v for v in f.variables if v in kept)))
        table = _safe_log(torch.einsum(_equation(shifted, output), *(f.table for f in shifted)))
        for shift in shifts:
            table = table + align(shift, output)
        return Factor(table, output)

    def plate_product(self, factor, plate, scale=1.0):
        axis = factor.variables.index(plate)
        table = factor.table.sum(axis)
        if scale != 1.0:
            table = table * scale
        return Factor(table, factor.variables[:axis] + factor.variables[axis + 1:])

    def one(self, like=None):
        return torch.zeros(()) if like is None else like.new_zeros(())

    def times(self, a, b):
        return a + b


class _Max(_Log):
    name = "MAX"

    def einsum(self, factors, output):
        output = tuple(output)
        variables = tuple(dict.fromkeys((*output, *(v for f in factors for v in f.variables))))
        total = None
        for f in factors:
            aligned = align(f, variables)
            total = aligned if total is None else total + aligned
        drop = list(range(len(output), len(variables)))
        if total is None:
            return Factor(torch.zeros(()), ())
        if drop:
            total = total.amax(dim=drop)
        sizes = {v: n for f in factors for v, n in zip(f.variables, f.table.shape)}
        return Factor(total.expand([sizes[v] for v in output]), output)


PROB = _Prob()
LOG = _Log()
MAX = _Max()


# -- elimination order ------------------------------------------------------------------------------


def _interaction_graph(factors):
    """Variable -> the set of variables it shares a factor with (the moral graph, as plain sets)."""
    neighbours = {}
    for factor in factors:
        for variable in factor.variables:
            neighbours.setdefault(variable, set()).update(factor.variables)
    for variable, others in neighbours.items():
        others.discard(variable)
    return neighbours


def _fill_in(neighbours, variable):
    """How many edges eliminating ``variable`` adds: pairs of its neighbours not yet adjacent."""
    around = neighbours[variable]
    present = sum(len(neighbours[other] & around) for other in around) // 2
    return len(around) * (len(around) - 1) // 2 - present


def elimination_order(factors, keep):
    """A greedy min-fill order of the variables not in ``keep`` (Koller & Friedman, Alg. 9.4).

    Each step eliminates the variable that adds the fewest fill edges to the
    interaction graph, ties broken by the size of the factor it creates.

    >>> chain = [Factor(torch.ones(2, 2), ("a", "b")), Factor(torch.ones(2, 2), ("b", "c"))]
    >>> elimination_order(chain, keep=("c",))
    ['a', 'b']
    """
    return min_fill(factors, keep)[0]


def min_fill(factors, keep):
    """:func:`elimination_order`, and the most entries one of its steps multiplies together."""
    neighbours = _interaction_graph(factors)
    sizes = {v: n for f in factors for v, n in zip(f.variables, f.table.shape)}
    candidates = set(neighbours) - set(keep)

    def cost(v):
        return _fill_in(neighbours, v), math.prod(sizes[u] for u in neighbours[v]), str(v)

    costs = {v: cost(v) for v in candidates}
    order, largest = [], 1
    while costs:
        variable = min(costs, key=costs.get)
        largest = max(largest, costs.pop(variable)[1] * sizes[variable])
        around = neighbours.pop(variable)
        for other in around:
            neighbours[other] |= around - {other}
            neighbours[other].discard(variable)
        # Only the neighbours and their neighbours see their fill-in change.
        touched = around.union(*(neighbours[other] for other in around))
        costs.update({v: cost(v) for v in touched if v in costs})
        order.append(variable)
    return order, largest


# -- contraction --------------------------------------------------------------------------------------


def eliminate(factors, variable, semiring=PROB):
    """Sum ``variable`` out of the product of the factors that mention it (Alg. 9.1, one step)."""
    touching = [f for f in factors if variable in f.variables]
    rest = [f for f in factors if variable not in f.variables]
    output = tuple(dict.fromkeys(v for f in touching for v in f.variables if v != variable))
    return rest + [semiring.einsum(touching, output)]


def contract(factors, keep, order=None, semiring=PROB):
    """The product of ``factors`` summed over every variable not in ``keep``, as a tensor over ``keep``.

    Variables are eliminated in ``order`` (variables not among the factors
    are skipped), by default a fresh min-fill order.

    >>> f = [Factor(torch.tensor([0.3, 0.7]), ("a",)), Factor(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), ("a", "b"))]
    >>> contract(f, keep=("b",))
    tensor([0.4100, 0.5900])
    >>> contract(f, keep=())
    tensor(1.)
    """
    keep = tuple(keep)
    if not factors:
        return semiring.one()
    present = {v for f in factors for v in f.variables}
    missing = [v for v in keep if v not in present]
    if missing:
        raise ValueError(f"contract: no factor has the variable(s) {missing} to keep")
    order = elimination_order(factors, keep) if order is None else order
    factors = list(factors)
    for variable in order:
        if variable in present and variable not in keep:
            factors = eliminate(factors, variable, semiring)
    return semiring.einsum(factors, keep).table


# -- plates ---------------------------------------------------------------------------------------------


def _partition(factors, sum_vars):
    """The connected components of ``factors`` linked by shared ``sum_vars``: (factors, their sum vars) pairs."""
    components, seen = [], set()
    for start in range(len(factors)):
        if start in seen:
            continue
        seen.add(start)
        members, variables, pending = [start], set(), [start]
        while pending:
            index = pending.pop()
            linked = [v for v in factors[index].variables if v in sum_vars and v not in variables]
            variables.update(linked)
            for other in range(len(factors)):
                if other not in seen and any(v in linked for v in factors[other].variables):
                    seen.add(other)
                    members.append(other)
                    pending.append(other)
        components.append(([factors[i] for i in sorted(members)], variables))
    return components


def sum_product_tree(factors, sum_vars, plates, semiring=LOG, scales=None, names=None):
    """Sum ``sum_vars`` out of the product of plated ``factors``, keeping each result in its plates.

    ``plates`` are the variables that index plate copies; a factor lives in
    the plates among its variables (its *ordinal*). Deepest ordinals first,
    the factors of each ordinal are grouped by the variables local to it,
    those are summed out, and what still mentions a shallower variable is
    multiplied out over the plates that variable is not in, then handled at
    its ordinal. Returns ``[(Factor, ordinal)]``: factors with no sum variable
    left, not yet multiplied out over their ordinal's plates (so a caller can
    keep per-copy terms). Variables neither summed nor plates (kept
    variables) stay. ``scales`` maps a plate to the exponent of its product.
    ``names`` maps variables to what an error message should call them.

    Raises :class:`IntractableError` when a factor would need a variable in
    two plates that do not nest (or a kept variable inside a plate that a
    summed variable outside it couples).

    >>> import torch
    >>> rows = "rows"
    >>> prior = Factor(torch.tensor([0.5, 0.5]).log(), ("z",))                  # a global z
    >>> like = Factor(torch.tensor([[0.9, 0.2], [0.1, 0.6], [0.9, 0.2]]).log(), (rows, "z"))
    >>> [(tuple(f.variables), sorted(o)) for f, o in sum_product_tree([prior, like], {"z"}, {rows})]
    [((), [])]
    """
    sum_vars, plates = frozenset(sum_vars), frozenset(plates)
    scales = scales or {}
    names = names or {}
    var_to_ordinal, ordinal_to_factors = {}, {}
    for f in factors:
        ordinal = plates.intersection(f.variables)
        ordinal_to_factors.setdefault(ordinal, []).append(f)
        for v in f.variables:
            if v not in plates:
                var_to_ordinal[v] = var_to_ordinal.get(v, ordinal) & ordinal
    ordinal_to_vars = {}
    for v, ordinal in var_to_ordinal.items():
        if v in sum_vars:
            ordinal_to_vars.setdefault(ordinal, set()).add(v)

    results = []
    while ordinal_to_factors:
        leaf = max(ordinal_to_factors, key=len)
        leaf_factors = ordinal_to_factors.pop(leaf)
        for group, group_vars in _partition(leaf_factors, ordinal_to_vars.get(leaf, set())):
            keep = tuple(dict.fromkeys(v for f in group for v in f.variables if v not in group_vars))
            f = Factor(contract(group, keep, semiring=semiring), keep)
            remaining = [v for v in f.variables if v not in plates]
            if not any(v in sum_vars for v in remaining):
                results.append((f, leaf))
                continue
            new_plates = frozenset().union(*(var_to_ordinal[v] for v in remaining))
            if new_plates == leaf:
                def shown(variables):
                    return ", ".join(sorted(str(names.get(v, v)) for v in variables))
                where = "; ".join(f"{names.get(v, v)} is in plates [{shown(var_to_ordinal[v])}]" for v in remaining)
                raise IntractableError(
                    f"Expected tree-structured plate nesting: cannot sum out the variables in plates "
                    f"[{shown(leaf)}]: {where}, so they would have to be "
                    "summed jointly over every copy of those plates; restructure the model (a variable "
                    "outside a plate should not depend on one inside it) or enumerate fewer sites"
                )
            for plate in leaf - new_plates:
                f = semiring.plate_product(f, plate, scales.get(plate, 1.0))
            ordinal_to_factors.setdefault(new_plates, []).append(f)
    return results


def sum_product(factors, sum_vars, plates, semiring=LOG, scales=None, names=None):
    """The product of plated ``factors`` with ``sum_vars`` summed out and every plate multiplied out: a tensor
    over the kept variables, in the order they first appear (a scalar when there are none).

    >>> import torch
    >>> prior = Factor(torch.tensor([0.5, 0.5]).log(), ("z",))
    >>> like = Factor(torch.tensor([[0.9, 0.2], [0.1, 0.6]]).log(), ("rows", "z"))
    >>> round(sum_product([prior, like], {"z"}, {"rows"}).exp().item(), 6)  # 0.5 * 0.9 * 0.1 + 0.5 * 0.2 * 0.6
    0.105
    """
    total = None
    kept = []
    for f, ordinal in sum_product_tree(factors, sum_vars, plates, semiring, scales, names):
        for plate in ordinal:
            f = semiring.plate_product(f, plate, (scales or {}).get(plate, 1.0))
        kept += [v for v in f.variables if v not in kept]
        total = f if total is None else Factor(semiring.times(align(total, kept), align(f, kept)), tuple(kept))
    if total is None:
        like = next((f.table for f in factors), None)
        return semiring.one(like)
    return align(total, kept)


def posterior_marginal(factors, sum_vars, plates, variable, semiring=LOG, names=None):
    """The posterior of ``variable`` (one of ``sum_vars``) per copy of its plates: a Factor over
    ``(its plates..., variable)``.

    Found as the gradient of the total (:func:`sum_product`) with respect to a
    zero log factor on the variable, the way Pyro's marginals and samplers
    use the backward pass: under :data:`LOG` it is ``P(variable = k | rest)``;
    under :data:`MAX` it is 1 at the value of a maximising joint assignment
    (split between ties). The factors are read, never differentiated.

    >>> import torch
    >>> prior = Factor(torch.tensor([0.5, 0.5]).log(), ("z",))
    >>> like = Factor(torch.tensor([[0.9, 0.2], [0.1, 0.6]]).log(), ("rows", "z"))
    >>> posterior_marginal([prior, like], {"z"}, {"rows"}, "z").table   # (0.045, 0.06) / 0.105
    tensor([0.4286, 0.5714])
    """
    touching = [f for f in factors if variable in f.variables]
    if not touching:
        raise ValueError(f"posterior_marginal: no factor has the variable {variable!r}")
    ordinal = frozenset(plates).intersection(*(f.variables for f in touching))
    sizes = {v: n for f in touching for v, n in zip(f.variables, f.table.shape)}
    variables = tuple(v for v in dict.fromkeys(u for f in touching for u in f.variables) if v in ordinal)
    variables += (variable,)
    like = touching[0].table
    with torch.enable_grad():
        delta = torch.zeros([sizes[v] for v in variables], dtype=like.dtype, device=like.device, requires_grad=True)
        detached = [Factor(f.table.detach(), f.variables) for f in factors]
        total = sum_product(detached + [Factor(delta, variables)], sum_vars, plates, semiring, names=names)
        (grad,) = torch.autograd.grad(total.sum(), [delta])
    return Factor(grad, variables)
