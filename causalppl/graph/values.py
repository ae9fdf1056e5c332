"""Checking the values that enter a model: ``do``, ``condition``, data columns, observations.

Every check raises an error that names the node (or data column), shows the
value given and says what was expected, so that a bad value is caught where it
enters and not as a torch message from some child's mechanism.

* :func:`check_value` -- a value for ``do``/``condition``: a number, a tensor,
  a (rectangular) list of numbers or a node's label; never ``None``, a dict,
  a complex number, NaN or infinity.
* :func:`check_column` -- a data column read by :mod:`causalppl.graph.columns`
  for a node: strings are refused for a node without labels.
* :func:`check_support` -- an observed value against the support of the
  distribution the node's mechanism returned (the lowered model calls it).

>>> check_value("x", 1.5)
tensor(1.5000)
>>> check_value("x", float("nan"), what="condition")
Traceback (most recent call last):
...
ValueError: node 'x': condition value nan is not a number (NaN); expected a finite number
>>> import torch
>>> check_support("rain", torch.tensor(2.0), torch.distributions.Bernoulli(0.3))
Traceback (most recent call last):
...
ValueError: node 'rain': observed value 2.0 is outside the support of its Bernoulli mechanism (0 or 1)
"""

from __future__ import annotations

import numbers

import torch
from torch.distributions import constraints

from causalppl.runtime import as_tensor


def _shown(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _code_of(node, value, labels, what):
    """The code of one scalar value: ``labels.index(value)`` for a label; a number is a code already."""
    if labels is not None and not isinstance(value, torch.Tensor) and _is_label(value, labels):
        return labels.index(value)
    if isinstance(value, bool) or (isinstance(value, numbers.Real) and not isinstance(value, complex)):
        if labels is not None:
            number = float(value)
            if not (number.is_integer() and 0 <= number < len(labels)):
                listed = ", ".join(map(repr, labels))
                raise ValueError(f"node '{node}': {value!r} is neither one of its labels ({listed}) "
                                 f"nor one of their codes 0..{len(labels) - 1}")
        return float(value)
    if isinstance(value, (str, bytes)):
        if labels is None:
            raise ValueError(f"node '{node}' has no labels, so {value!r} cannot be translated to a code "
                             f"(a {what} value); give a number, or declare labels with "
                             f"add('{node}', ..., labels=(...))")
        raise ValueError(f"node '{node}': unknown label {value!r}; its labels are {', '.join(map(repr, labels))}")
    raise _not_a_number(node, value, what, labels)


def _is_label(value, labels):
    try:
        return value in labels
    except Exception:  # an object whose == does not return a bool (an array, say)
        return False


def _not_a_number(node, value, what, labels):
    kind = "None" if value is None else type(value).__name__
    expected = "a finite number, a list of numbers or a tensor"
    if labels is not None:
        expected = f"one of its labels ({', '.join(map(repr, labels))}), a code, or a list of them"
    return ValueError(f"node '{node}': {what} value {_shown(value)} ({kind}) is not a number; expected {expected}")


def _nested(node, value, labels, what):
    """A (nested) list of labels or numbers -> nested list of float codes; ragged lists are refused."""
    if isinstance(value, (list, tuple)):
        items = [_nested(node, item, labels, what) for item in value]
        shapes = {_shape(item) for item in items}
        if len(shapes) > 1:
            raise ValueError(f"node '{node}': {what} value {_shown(value)} is a ragged list (rows of different "
                             "lengths); expected a number, or a list of numbers of one shape")
        return items
    if isinstance(value, torch.Tensor):
        if value.dim() != 0:
            return [_nested(node, item, labels, what) for item in value]
        value = value.item()
    return _code_of(node, value, labels, what)


def _shape(item):
    return (len(item),) + (_shape(item[0]) if item else ()) if isinstance(item, list) else ()


def to_tensor(node, value, labels=None, what="given"):
    """``value`` for ``node`` as a tensor: labels become codes, numbers stay as they are.

    Accepts a number, a bool, a label of a labelled node, a tensor, a numpy
    array, or a rectangular (nested) list of these. Raises ``ValueError``
    naming ``node`` and the value otherwise (``None``, a dict, a string for a
    node without labels, an unknown label, a ragged list, complex numbers).
    A value equal to one of the labels is that label, so numeric labels take
    precedence over codes.

    >>> to_tensor("t", ["no", "yes"], labels=("no", "yes")), to_tensor("x", [[1, 2], [3, 4]]).shape
    (tensor([0., 1.]), torch.Size([2, 2]))
    """
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise ValueError(f"node '{node}': {what} value has complex numbers (dtype {value.dtype}); "
                             "expected real numbers")
        if labels is not None and value.numel() and value.device.type == "cpu":
            _check_codes(node, value, labels, what)
        return value
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        array = _numpy(node, value, what)
        if array is not None and labels is None:
            return array
        return to_tensor(node, value.tolist() if hasattr(value, "tolist") else list(value), labels, what)
    if isinstance(value, complex):
        raise ValueError(f"node '{node}': {what} value {value!r} is complex; expected a real number")
    if isinstance(value, (list, tuple)):
        return as_tensor(_nested(node, value, labels, what))
    return as_tensor(_code_of(node, value, labels, what))


def _numpy(node, value, what):
    """A numeric numpy array as a tensor, or ``None`` for arrays of objects/strings (read item by item)."""
    import numpy as np

    array = np.asarray(value)
    if array.dtype.kind == "c":
        raise ValueError(f"node '{node}': {what} value has complex numbers (dtype {array.dtype}); "
                         "expected real numbers")
    if array.dtype.kind in "biuf":
        return torch.as_tensor(array, dtype=torch.get_default_dtype())
    return None


def _check_codes(node, value, labels, what):
    number = value.detach().double()
    ok = (number == torch.round(number)) & (number >= 0) & (number < len(labels))
    if not bool(ok.all()):
        bad = value.reshape(-1)[~ok.reshape(-1)]
        raise ValueError(f"node '{node}': {what} value {bad[0].item()!r} is not one of its codes "
                         f"0..{len(labels) - 1} (labels {', '.join(map(repr, labels))})")


def check_finite(node, value, what="given"):
    """Raise ``ValueError`` naming ``node`` when tensor ``value`` holds NaN or an infinity."""
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        flat = value.detach().reshape(-1)
        index = int((~torch.isfinite(flat)).nonzero()[0])
        bad = float(flat[index])
        where = f" (at index {index})" if value.dim() else ""
        kind = "is not a number (NaN)" if bad != bad else "is infinite"
        raise ValueError(f"node '{node}': {what} value {bad}{where} {kind}; expected a finite number")


def check_value(node, value, labels=None, what="given"):
    """``value`` for ``do``/``condition`` on ``node``, checked: a finite real tensor (codes for labels).

    >>> check_value("t", "yes", labels=("no", "yes"), what="do")
    tensor(1.)
    >>> check_value("x", None, what="do")
    Traceback (most recent call last):
    ...
    ValueError: node 'x': do value None (None) is not a number; expected a finite number, a list of numbers or a tensor
    """
    tensor = to_tensor(node, value, labels, what)
    if tensor.dtype == torch.bool:
        tensor = tensor.to(torch.get_default_dtype())
    check_finite(node, tensor, what)
    return tensor


def check_count(value, name="n", low=1):
    """A number of draws or rows: a whole number >= ``low`` (NumPy integers too; not bool, not 2.5).

    >>> check_count(2.5)
    Traceback (most recent call last):
    ...
    ValueError: n must be a whole number >= 1, got 2.5
    """
    import operator

    if not isinstance(value, bool):
        try:
            number = operator.index(value)
        except TypeError:
            number = None
        if number is not None and number >= low:
            return number
    raise ValueError(f"{name} must be a whole number >= {low}, got {_shown(value)}")


def check_input(name, value):
    """A model input's value (such as ``guess`` in ``scm.sample(n, guess=8.5)``), checked as a do value.

    >>> check_input("guess", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: input 'guess': value inf is infinite; expected a finite number
    """
    if isinstance(value, (str, bytes)):
        raise ValueError(f"input '{name}': value {_shown(value)} is a string; expected a finite number, "
                         "a list of numbers or a tensor")
    try:
        return check_value(name, value, what="input")
    except ValueError as err:
        message = str(err).replace(f"node '{name}': input value", f"input '{name}': value", 1)
        raise ValueError(message) from None


def check_column(node, column, node_labels):
    """Check a data column read for ``node`` (a :class:`causalppl.graph.columns.Column`); return its values.

    Without node labels, a column of strings cannot be coded (which string is
    which number?), so it is refused; a column of numeric categories (or
    booleans) gives its numbers.
    """
    if node_labels is None and column.labels is not None:
        labels = column.labels
        if not all(isinstance(label, (bool, numbers.Real)) for label in labels):
            shown = ", ".join(map(repr, labels[:5])) + (", ..." if len(labels) > 5 else "")
            raise ValueError(
                f"data column '{node}': holds labels ({shown}) but node '{node}' has no labels; "
                f"give numbers, or declare labels with add('{node}', ..., labels=(...))")
        numbers_ = torch.tensor([float(label) for label in labels], dtype=column.values.dtype)
        return numbers_[column.values.long().cpu()].to(column.values.device)
    return column.values


# ---------------------------------------------------------------------------
# support of a mechanism's distribution
# ---------------------------------------------------------------------------


def _base(fn):
    while isinstance(fn, torch.distributions.Independent):
        fn = fn.base_dist
    return fn


def describe_support(fn):
    """The support of distribution ``fn`` in words, e.g. ``'0 or 1'``, ``'integers 0..2'``."""
    from causalppl.distributions import Delta

    base = _base(fn)
    if isinstance(base, Delta):
        distinct = torch.unique(base.v.detach())
        if distinct.numel() == 1:
            return f"only its value {distinct.item():g}"
        return "only its own value, a function of its parents, which no draw here matches"
    return describe_constraint(fn.support)


def describe_constraint(support):
    """A support constraint in words: ``constraints.boolean`` -> ``'0 or 1'``."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.boolean:
        return "0 or 1"
    if isinstance(support, constraints.integer_interval):
        low, high = (_scalar(bound) for bound in (support.lower_bound, support.upper_bound))
        return f"integers {low}..{high}"
    if isinstance(support, constraints._IntegerGreaterThan):
        return f"integers >= {_scalar(support.lower_bound)}"
    if support is constraints.real:
        return "finite real numbers"
    if isinstance(support, constraints.greater_than):
        return f"numbers > {_scalar(support.lower_bound)}"
    if isinstance(support, constraints.greater_than_eq):
        return f"numbers >= {_scalar(support.lower_bound)}"
    if isinstance(support, constraints.less_than):
        return f"numbers < {_scalar(support.upper_bound)}"
    if isinstance(support, constraints.interval):
        return f"numbers in [{_scalar(support.lower_bound)}, {_scalar(support.upper_bound)}]"
    if isinstance(support, constraints.half_open_interval):
        return f"numbers in [{_scalar(support.lower_bound)}, {_scalar(support.upper_bound)})"
    return repr(support)


def _scalar(bound):
    if isinstance(bound, torch.Tensor):
        if bound.numel() != 1:
            return "(per row)"
        bound = bound.item()
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def _inside(fn, value):
    """Elementwise: is ``value`` in the support of ``fn``? (For a Delta: is it its value?)"""
    from causalppl.distributions import Delta

    base = _base(fn)
    if isinstance(base, Delta):
        # A point mass: evidence it never takes has probability zero in every draw.
        return value == base.v
    inside = fn.support.check(value)
    if value.is_floating_point():
        finite = torch.isfinite(value)
        event_dims = len(fn.event_shape)
        if event_dims:
            finite = finite.reshape(finite.shape[: finite.dim() - event_dims] + (-1,)).all(-1)
        inside = inside & finite
    return inside


def check_shape(node, value, fn, what="observed"):
    """Raise ``ValueError`` naming ``node`` when ``value`` cannot broadcast with a draw of ``fn``.

    (Inside a plate of ``n`` rows, one value or one per row fits; 3 values for 4 rows do not.)
    """
    shape = tuple(fn.batch_shape + fn.event_shape)
    try:
        torch.broadcast_shapes(tuple(value.shape), shape)
    except RuntimeError:
        raise ValueError(f"node '{node}': its {what} value of shape {tuple(value.shape)} does not fit the "
                         f"shape {shape} of its mechanism's draws (give one value, or one per row)") from None


def _moves(fn):
    """Does the support of ``fn`` differ between its batch entries (bounds that depend on the parents)?"""
    from causalppl.distributions import Delta

    if isinstance(_base(fn), Delta):
        return True
    support = fn.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    for name in ("lower_bound", "upper_bound"):
        bound = getattr(support, name, None)
        if isinstance(bound, torch.Tensor) and bound.numel() > 1 and bool(bound.min() != bound.max()):
            return True
    return False


def check_support(node, value, fn, what="observed"):
    """Raise ``ValueError`` naming ``node`` when ``value`` lies outside the support of ``fn``.

    ``fn`` is the distribution the node's mechanism returned in this run.
    A fixed support (``0 or 1``, ``integers 0..2``, finite reals) must hold
    everywhere. A support that moves with the parents (a ``Delta`` node's one
    value, ``Uniform(0, z)``) varies from draw to draw, so only evidence
    that no draw allows is refused.
    """
    value = torch.as_tensor(value)
    try:
        inside = _inside(fn, value)
    except RuntimeError:  # shapes that do not broadcast: check_shape reports them
        return
    if inside.numel() == 0 or bool(inside.any() if _moves(fn) else inside.all()):
        return
    event_shape = tuple(value.shape[value.dim() - len(fn.event_shape):]) if fn.event_shape else ()
    batch = torch.broadcast_to(value.detach(), inside.shape + event_shape).reshape(inside.numel(), -1)
    index = int((~inside.reshape(-1)).nonzero()[0])
    bad = batch[index].item() if batch.shape[1] == 1 else batch[index].tolist()
    per_row = value.dim() > len(event_shape) and value.numel() > max(batch.shape[1], 1)
    where = f" (row {index})" if per_row else ""
    family = type(_base(fn)).__name__
    raise ValueError(f"node '{node}': {what} value {bad!r}{where} is outside the support of its {family} "
                     f"mechanism ({describe_support(fn)})")


# ---------------------------------------------------------------------------
# support known before the model runs (do and condition values)
# ---------------------------------------------------------------------------

_DISCRETE = (constraints._Boolean, constraints._IntegerInterval, constraints._IntegerGreaterThan)
_COUNTS = {"Categorical", "Binomial", "Multinomial"}  # supports that depend on the params: at least codes


def _fixed(support):
    """``support`` when it is one constraint for every parameter value (not a dependent property)."""
    if isinstance(support, constraints.Constraint) and not isinstance(support, constraints._Dependent) \
            and support.event_dim == 0:
        return support
    return None


def mechanism_support(mechanism):
    """``(family, constraint)`` of the values ``mechanism`` can produce, when known without running
    the model; else ``None``.

    Known: an expression whose distribution is fixed (``Bernoulli(0.3)``, no parents: evaluated
    once), or whose family has one support whatever its parameters (``Bernoulli(sigmoid(z))``:
    0 or 1; ``Poisson(...)``: integers >= 0; ``Categorical(...)``: at least integer codes);
    the learned ``Logistic`` (0 or 1) and ``MultinomialLogistic`` (its codes); a fixed
    ``Distribution``. A ``Delta`` (its support is its own value) is not.

    >>> from causalppl.graph.mechanism import as_mechanism
    >>> mechanism_support(as_mechanism("Bernoulli(sigmoid(z))"))
    ('Bernoulli', Boolean())
    """
    from causalppl.distributions import Delta
    from causalppl.graph.expr import Expression, _distributions
    from causalppl.graph.mechanism import FixedDistribution

    fn = getattr(mechanism, "fn", mechanism)
    if getattr(fn, "name", None) == "Logistic":
        return "Logistic", constraints.boolean
    if isinstance(getattr(fn, "num_categories", None), int):
        return type(fn).__name__, constraints.integer_interval(0, fn.num_categories - 1)
    distribution = None
    if isinstance(fn, FixedDistribution):
        distribution = fn.distribution
    elif isinstance(fn, Expression):
        if not fn.names:
            try:
                distribution = fn()
            except Exception:  # the model's run reports it, naming the node
                return None
        else:
            family = _family(fn.text)
            cls = _distributions().get(family)
            if cls is None or issubclass(cls, Delta):
                return None
            if family in _COUNTS:
                return family, constraints.nonnegative_integer
            support = _fixed(getattr(cls, "support", None))
            return (family, support) if support is not None else None
    if not isinstance(distribution, torch.distributions.Distribution) or isinstance(_base(distribution), Delta):
        return None
    try:
        support = distribution.support
    except NotImplementedError:
        return None
    if not isinstance(support, constraints.Constraint) or support.event_dim != 0:
        return None
    return type(_base(distribution)).__name__, support


def _family(text):
    """The distribution an expression's outermost call names (``'Normal'`` for ``Normal(x, 1)``)."""
    import re

    found = re.match(r"\s*([A-Za-z_][A-Za-z_0-9]*)\s*\(", text)
    return found.group(1) if found else None


def check_in_support(node, value, mechanism, what="do"):
    """Raise ``ValueError`` naming ``node``, the value and the support when ``value`` cannot come
    from ``mechanism`` (see :func:`mechanism_support`).

    ``do`` values are checked against discrete supports only (``rain=2`` for a
    Bernoulli, ``1.5`` for a category): a continuous node may be set outside
    its natural range on purpose (``dose=0`` for a LogNormal dose).
    ``condition`` values are checked against every support known in advance;
    the model checks them again against the distribution of each run.

    >>> from causalppl.graph.mechanism import as_mechanism
    >>> check_in_support("rain", torch.tensor(2.0), as_mechanism("Bernoulli(0.3)"))
    Traceback (most recent call last):
    ...
    ValueError: node 'rain': do value 2.0 is outside the support of its Bernoulli mechanism (0 or 1)
    """
    found = mechanism_support(mechanism)
    if found is None or not isinstance(value, torch.Tensor) or value.numel() == 0:
        return
    family, support = found
    if what == "do" and not isinstance(support, _DISCRETE):
        return
    try:
        inside = support.check(value.detach())
    except (RuntimeError, TypeError, ValueError):  # shapes that do not broadcast: the run reports them
        return
    if value.is_floating_point():
        inside = inside & torch.isfinite(value.detach())
    if bool(inside.all()):
        return
    flat = torch.broadcast_to(value.detach(), inside.shape).reshape(-1)
    index = int((~inside.reshape(-1)).nonzero()[0])
    where = f" (at index {index})" if value.dim() else ""
    raise ValueError(f"node '{node}': {what} value {flat[index].item()!r}{where} is outside the support of its "
                     f"{family} mechanism ({describe_constraint(support)})")
