"""Mechanisms: what turns a node's parents into a distribution over the node.

A mechanism is given as

* a callable whose parameter names are its parents,
  ``lambda weight: dist.Normal(weight, 0.75)``;
* an expression string, ``"Normal(2*x + 1, 0.5)"`` (parsed, never ``eval``-ed);
* a fixed ``torch.distributions.Distribution`` (a root node);
* any object with a ``parents`` tuple that is callable with those parents as
  keyword arguments (the learnable mechanisms of :mod:`causalppl.causal.learn`).

>>> m = as_mechanism("Normal(2*x + 1, 0.5)")
>>> m.parents, m.text
(('x',), 'Normal(2*x + 1, 0.5)')
"""

from __future__ import annotations

import inspect

import torch

from causalppl.graph.expr import Expression, ExpressionError, parse_expression


class Mechanism:
    """A callable ``mechanism(**parent_values) -> Distribution`` with named parents."""

    def __init__(self, fn, parents, text=None):
        self.fn = fn
        self.parents = tuple(parents)
        self.text = text  # the expression string, when there is one (for DOT output)
        # Mechanisms with global latent sites (Bayesian weights) draw them in
        # ``prepare``, once per model run, outside the rows plate (see LoweredModel).
        self.global_sites = tuple(getattr(fn, "global_sites", ()))
        self.prepare = getattr(fn, "prepare", None) if self.global_sites else None

    def __call__(self, **parent_values):
        return self.fn(**parent_values)

    def __repr__(self):
        if self.text is not None:
            return f"Mechanism({self.text!r})"
        described = getattr(self.fn, "text", None) or getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"Mechanism({described}, parents={self.parents})"


class FixedDistribution:
    """A root mechanism that always returns the same ``distribution`` (kept, so it can be saved).

    >>> FixedDistribution(torch.distributions.Normal(0.0, 1.0))()
    Normal(loc: 0.0, scale: 1.0)
    """

    def __init__(self, distribution):
        self.distribution = distribution

    def __call__(self):
        return self.distribution

    def __repr__(self):
        return repr(self.distribution)


def as_mechanism(mechanism, node="?"):
    """Wrap any accepted mechanism form in a :class:`Mechanism`.

    Raises ``TypeError`` naming ``node`` when the form is not accepted, and
    :class:`ExpressionError` naming it for an expression that is not allowed.
    """
    if isinstance(mechanism, Mechanism):
        return mechanism
    if isinstance(mechanism, str):
        try:
            expr = parse_expression(mechanism)
        except ExpressionError as err:
            raise ExpressionError(f"node '{node}': {err}") from None
        return Mechanism(expr, expr.names, text=expr.text)
    if isinstance(mechanism, Expression):
        return Mechanism(mechanism, mechanism.names, text=mechanism.text)
    if isinstance(mechanism, torch.distributions.Distribution):
        return Mechanism(FixedDistribution(mechanism), (), text=None)
    if hasattr(mechanism, "parents") and callable(mechanism):
        # Learnable mechanisms have no expression text: DOT writes them as callables.
        return Mechanism(mechanism, mechanism.parents)
    if callable(mechanism):
        return Mechanism(mechanism, _parameter_names(mechanism, node))
    raise TypeError(
        f"node '{node}': a mechanism must be a callable of its parents, an expression string "
        f"or a Distribution, got {type(mechanism).__name__} {mechanism!r}"
    )


def _parameter_names(fn, node):
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as err:
        raise TypeError(f"node '{node}': cannot read the parameters of mechanism {fn!r}") from err
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(
                f"node '{node}': mechanism parameters must be named parents; "
                f"*{parameter.name} / **{parameter.name} is not allowed"
            )
        if parameter.default is not parameter.empty:
            continue  # a parameter with a default is a constant, not a parent
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise TypeError(f"node '{node}': parent '{parameter.name}' must not be positional-only")
        names.append(parameter.name)
    return names


class MissingMechanism(ValueError):
    """A query needs a mechanism that a node of a structure-only graph does not have."""


class Unspecified:
    """The mechanism of a node whose graph gave only its structure (a plain DOT, GML or dagitty file).

    Such an SCM is a causal DAG: identification, drawing, surgery and
    :meth:`SCM.from_graph` work on it; sampling and queries need mechanisms
    and say so.

    >>> m = Unspecified("y", ["x"])
    >>> m.parents, m.text
    (('x',), None)
    >>> m(x=1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    causalppl.graph.mechanism.MissingMechanism: node 'y' has no mechanism: the graph gives only its structure; ...
    """

    text = None

    def __init__(self, node, parents=()):
        self.node = node
        self.parents = tuple(parents)

    def __call__(self, **parent_values):
        raise missing_mechanism([self.node])

    def __repr__(self):
        return f"Unspecified({self.node!r}, parents={self.parents!r})"


def missing_mechanism(nodes):
    """The :class:`MissingMechanism` error for ``nodes`` (a query that needs their mechanisms)."""
    nodes = list(nodes)
    which = f"node '{nodes[0]}' has" if len(nodes) == 1 else f"nodes {', '.join(map(repr, nodes))} have"
    return MissingMechanism(
        f"{which} no mechanism: the graph gives only its structure; learn mechanisms from data with "
        "cp.SCM.from_graph(graph, data) and fit, or give each node a mechanism")


def is_unspecified(mechanism):
    """Whether ``mechanism`` (a :class:`Mechanism` or its ``fn``) is :class:`Unspecified`."""
    return isinstance(getattr(mechanism, "fn", mechanism), Unspecified)


def mechanism_text(mechanism):
    """A one-line text for a mechanism: its expression, a learnable's description, or its repr.

    >>> mechanism_text(as_mechanism("Normal(x, 1)")), mechanism_text(as_mechanism(Unspecified("y")))
    ('Normal(x, 1)', '')
    """
    if mechanism.text is not None:
        return mechanism.text
    fn = mechanism.fn
    if isinstance(fn, Unspecified):
        return ""
    return str(getattr(fn, "text", None) or repr(fn))
