"""The SCM's interventions beyond ``do(x=v)``: shifts, stochastic interventions, mechanism replacement.

* **shift / functional**: ``scm.do(x=lambda x: x + 1)`` or ``scm.do(x="x + 1")``.
  The node keeps its mechanism and its parents; its value is the function of
  its *natural* value (drawn from its mechanism with its own noise). Further
  parameters (``lambda x, z: x + z``) or names in the expression read other
  nodes, which become parents.
* **stochastic**: ``scm.do(x=cp.dist.Bernoulli(0.3))`` or
  ``scm.do(x="Bernoulli(0.3)")``. The node is drawn from the given law, cut
  from its parents; a law written with other nodes' names
  (``"Bernoulli(sigmoid(z))"``) is a policy that reads them. In a
  counterfactual world the draw is fresh: the randomisation is not the
  unit's noise.
* **replacement**: ``scm.replace(x="Normal(z, 0.5)")``. The node's mechanism
  is replaced; its parents are the new mechanism's (existing nodes, keeping
  the graph acyclic). In a counterfactual world the node keeps its noise,
  carried to the new mechanism (see :func:`causalppl.noise.transfer`).

Each is an :class:`Intervention` with ``kind`` ``"shift"``, ``"stochastic"``
or ``"replace"``, a ``text`` when it was written as an expression (what DOT
files and the CLI hold), and the parents it reads.

>>> import causalppl as cp
>>> scm = cp.graphs.load("confounded")
>>> shifted = scm.do(x="x + 1")
>>> shifted.soft_interventions["x"], shifted.parents("x")
(shift(x + 1), ('z',))
"""

from __future__ import annotations

import inspect

import torch
from torch.distributions import Distribution

from causalppl.graph.expr import Expression, ExpressionError, parse_expression, returns_distribution
from causalppl.graph.mechanism import Mechanism, as_mechanism, mechanism_text
from causalppl.interventions import Functional, Randomized, Shifted, fit_shape, functional
from causalppl.noise import predict, transfer


class Intervention:
    """A shift, stochastic intervention or replacement of one node (see the module docstring)."""

    kind = ""

    def __init__(self, node, text=None, parents=()):
        self.node, self.text, self.parents = node, text, tuple(parents)

    def describe(self):
        """Short text for labels and messages: the expression, or what the callable is."""
        return self.text if self.text is not None else self._callable_text()

    def _callable_text(self):
        return "a Python callable"

    def __repr__(self):
        return f"{self.kind}({self.describe()})"


class Shift(Intervention):
    """``node := f(natural value of node, other nodes)``."""

    kind = "shift"

    def __init__(self, node, function, text=None):
        self.function = function  # an interventions.Functional
        super().__init__(node, text, function.others)

    @classmethod
    def from_callable(cls, node, fn):
        return cls(node, functional(node, fn))

    @classmethod
    def from_expression(cls, node, expr):
        others = tuple(name for name in expr.names if name != node)
        natural = node if node in expr.names else None

        def evaluate(value=None, **values):
            if natural is not None:
                values[natural] = value
            return expr(**values)

        function = Functional(lambda **kw: evaluate(kw.pop("_natural"), **kw), "_natural", others, expr.text)
        return cls(node, function, expr.text)

    def _callable_text(self):
        return f"f({self.node})" if not self.parents else f"f({', '.join((self.node,) + self.parents)})"

    def effective(self, natural):
        """The node's mechanism under the shift: its natural mechanism's law, pushed through the shift."""
        return Mechanism(ShiftMechanism(self, natural), ShiftMechanism.parents_of(self, natural))

    def world_value(self, context):
        return self.function.world_value(context)


class Stochastic(Intervention):
    """``node ~ law`` drawn afresh, cut from the node's parents (the law may read other nodes)."""

    kind = "stochastic"

    def __init__(self, node, law, text=None, parents=()):
        self.law = law  # a Distribution, or a callable of ``parents`` returning one (an Expression)
        super().__init__(node, text, parents)

    def distribution(self, **values):
        if isinstance(self.law, Distribution):
            return self.law
        return self.law(**{name: values[name] for name in self.parents})

    def _callable_text(self):
        return repr(self.law)

    def effective(self, natural):
        return Mechanism(StochasticMechanism(self), self.parents, text=None)

    def world_value(self, context):
        return Randomized(self.distribution, self.parents).world_value(context) if self.parents else \
            Randomized(self.law).world_value(context)


class Replace(Intervention):
    """``node``'s mechanism replaced by ``mechanism``; the node keeps its noise."""

    kind = "replace"

    def __init__(self, node, mechanism):
        self.mechanism = mechanism
        super().__init__(node, mechanism.text, mechanism.parents)

    def _callable_text(self):
        return mechanism_text(self.mechanism)

    def world_value(self, context):
        fn = self.mechanism(**{name: context.lookup(name) for name in self.parents})
        noise = transfer(context.fn, context.noise, fn, self.node)
        return predict(fn, noise, self.node)


class ShiftMechanism:
    """The mechanism of a shifted node: its natural mechanism's distribution, then the shift."""

    def __init__(self, shift, natural):
        self.shift, self.natural = shift, natural
        self.parents = self.parents_of(shift, natural)
        self.global_sites = natural.global_sites  # Bayesian weights stay the natural mechanism's
        self.prepare = natural.prepare
        self.labels = getattr(natural.fn, "labels", None)
        self.text = f"{mechanism_text(natural)}, shifted: {shift.describe()}"

    @staticmethod
    def parents_of(shift, natural):
        return tuple(dict.fromkeys(natural.parents + tuple(p for p in shift.parents if p != shift.node)))

    def __call__(self, **values):
        base = self.natural(**{name: values[name] for name in self.natural.parents})
        others = {name: values[name] for name in self.shift.parents}
        function = self.shift.function
        return Shifted(base, lambda natural: function(natural, **others))

    def __repr__(self):
        return f"ShiftMechanism({self.text!r})"


class StochasticMechanism:
    """The mechanism of a stochastically intervened node: its law, whatever its old parents."""

    def __init__(self, stochastic):
        self.stochastic = stochastic
        self.parents = stochastic.parents
        self.text = f"~ {stochastic.describe()}"

    def __call__(self, **values):
        return self.stochastic.distribution(**values)

    def __repr__(self):
        return f"StochasticMechanism({self.stochastic.describe()!r})"


def distribution_text(distribution):
    """Expression text for a simple fixed distribution (``Bernoulli(probs=0.3)``), or ``None``.

    >>> distribution_text(torch.distributions.Bernoulli(0.3)), distribution_text(torch.distributions.Normal(0.0, 2.0))
    ('Bernoulli(probs=0.3)', 'Normal(loc=0.0, scale=2.0)')
    """
    family = type(distribution).__name__
    try:
        cls = getattr(torch.distributions, family)
        signature = inspect.signature(cls.__init__)
    except (AttributeError, TypeError, ValueError):
        return None
    state = vars(distribution)
    parts = []
    for name in signature.parameters:
        if name in ("self", "validate_args") or name not in state:
            continue
        value = state[name]
        if name in ("probs", "logits") and getattr(distribution, "_param", None) is not None \
                and value is not distribution._param:
            continue  # torch fills in the other one lazily
        if isinstance(value, torch.Tensor):
            value = _short(value.detach().cpu())
        elif isinstance(value, (int, float)):
            value = repr(value)
        else:
            return None
        parts.append(f"{name}={value}")
    text = f"{family}({', '.join(parts)})"
    try:
        parse_expression(text)
    except ExpressionError:
        return None
    return text


def _short(tensor):
    """A tensor as the shortest text that reads back to the same values in its dtype (``0.3``, not ``0.30000001``)."""
    if tensor.dim() > 0:
        return "[" + ", ".join(_short(item) for item in tensor) + "]"
    number = tensor.item()
    if not tensor.is_floating_point():
        return repr(number)
    for digits in range(1, 18):
        text = f"{number:.{digits}g}"
        if torch.tensor(float(text), dtype=tensor.dtype).item() == number:
            return repr(float(text))
    return repr(number)


def parse_intervention(scm, node, value):
    """A ``do`` value for ``node`` as an :class:`Intervention`, or ``None`` when it is a plain value.

    Callables are shifts, distributions stochastic interventions; strings
    that are not one of a labelled node's labels are parsed as expressions
    (never evaluated as Python): a distribution call is stochastic, an
    expression with names a shift, a constant a plain value (``None``).
    """
    if isinstance(value, Intervention):
        return value
    if isinstance(value, Distribution):
        return Stochastic(node, value, distribution_text(value))
    if callable(value) and not isinstance(value, (torch.Tensor, Expression)):
        return Shift.from_callable(node, value)
    if isinstance(value, Expression):
        return _from_expression(scm, node, value)
    if isinstance(value, str):
        labels = scm.labels(node)
        if labels is not None and value in labels:
            return None
        try:
            expr = parse_expression(value)
        except ExpressionError as err:
            if value.strip().isidentifier() or not value.strip():
                return None  # check_value says what a value must be
            raise ValueError(f"node '{node}': do value {value!r} is neither a number, a label nor an intervention "
                             f"expression ({err})") from None
        if not expr.names and not returns_distribution(expr):
            if value.strip().isidentifier() or labels is not None:
                return None  # a word, or a labelled node's code as text: check_value decides
            return _constant(node, expr)
        if value.strip().isidentifier() and value.strip() not in scm:
            return None  # a bare word: an unknown label (check_value names the node's labels)
        return _from_expression(scm, node, expr)
    return None


class _Constant(Intervention):
    kind = "do"

    def __init__(self, node, value, text):
        self.value = value
        super().__init__(node, text)


def _constant(node, expr):
    try:
        value = expr()
    except ExpressionError as err:
        raise ValueError(f"node '{node}': do value {expr.text!r}: {err}") from None
    return _Constant(node, value, expr.text)


def _from_expression(scm, node, expr):
    if returns_distribution(expr):
        if node in expr.names:
            raise ValueError(f"node '{node}': a stochastic intervention {expr.text!r} cannot read '{node}' itself; "
                             f"a function of its natural value is a shift (such as '{node} + 1')")
        _check_names(scm, node, expr.names, expr.text)
        return Stochastic(node, expr, expr.text, expr.names)
    if not expr.names:
        return _constant(node, expr)
    _check_names(scm, node, [name for name in expr.names if name != node], expr.text)
    return Shift.from_expression(node, expr)


def _check_names(scm, node, names, text):
    unknown = [name for name in names if name not in scm and name not in scm.inputs]
    if unknown:
        raise ValueError(f"node '{node}': the intervention {text!r} reads {', '.join(map(repr, unknown))}, which "
                         f"{'is not a node' if len(unknown) == 1 else 'are not nodes'} "
                         f"(nodes: {', '.join(scm.nodes)})")


def replacement(scm, node, mechanism):
    """The :class:`Replace` of ``node``'s mechanism by ``mechanism`` (any form ``SCM.add`` takes)."""
    try:
        mechanism = as_mechanism(mechanism, node=node)
    except ExpressionError as err:
        raise ExpressionError(f"replace: {err}") from None
    if node in mechanism.parents:
        raise ValueError(f"replace: node '{node}': its new mechanism {mechanism_text(mechanism)!r} reads '{node}' "
                         "itself (a cycle)")
    unknown = [name for name in mechanism.parents if name not in scm and name not in scm.inputs]
    if unknown:
        which = "is not a node" if len(unknown) == 1 else "are not nodes"
        raise ValueError(f"replace: node '{node}': its new mechanism {mechanism_text(mechanism)!r} reads "
                         f"{', '.join(map(repr, unknown))}, which {which} (nodes: {', '.join(scm.nodes)}); "
                         "a replacement's parents must exist")
    return Replace(node, mechanism)


__all__ = ["Intervention", "Shift", "Stochastic", "Replace", "parse_intervention", "replacement",
           "distribution_text", "fit_shape"]
