"""Discrete distributions as tables: an SCM enumerated exactly, or the frequencies of a DataFrame.

Both are *sources*: ``source.support(v)`` is the tuple of values of node v
and ``source.marginal(nodes)`` a float64 tensor with one axis per node. An
estimand (:mod:`causalppl.causal.estimand`) evaluates on either, which turns
an identification formula into an estimator.

An SCM is enumerated over the joint of all its nodes' finite supports:
each mechanism is called once with batched tensors of every assignment of
its parents, and marginals are contracted by variable elimination, so
latent nodes are summed out exactly. Mechanisms must return distributions
with ``enumerate_support`` (Bernoulli, Categorical, Binomial, ...).

>>> import causalppl as cp
>>> scm = cp.SCM().add("u", "Bernoulli(0.5)", latent=True)
>>> _ = scm.add("x", "Bernoulli(0.2 + 0.6*u)").add("y", "Bernoulli(0.1 + 0.4*x + 0.4*u)")
>>> def rounded(d): return {k: round(p, 6) for k, p in d.items()}
>>> rounded(exact_distribution(scm, "y"))                    # P(y)
{0: 0.5, 1: 0.5}
>>> rounded(exact_distribution(scm, "y", do={"x": 1}))       # P(y | do(x=1)), by surgery
{0: 0.3, 1: 0.7}
"""

from __future__ import annotations

import itertools

import torch

from causalppl.causal.estimand import Fraction, P, Product, Sum
from causalppl.causal.separators import sorted_nodes
from causalppl.contract import Factor
from causalppl.contract import contract as shared_contract


def _python(value):
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# ---------------------------------------------------------------------------
# tables and their contraction


class Table:
    """A nonnegative function of some discrete variables: ``vars`` and a tensor with one axis each."""

    __slots__ = ("vars", "values")

    def __init__(self, vars, values):
        self.vars = tuple(vars)
        self.values = values

    def aligned(self, order):
        """The values with axes permuted to `order` (a superset of ``vars``), size-1 axes for the rest."""
        present = [v for v in order if v in self.vars]
        t = self.values.permute([self.vars.index(v) for v in present])
        shape = [t.shape[present.index(v)] if v in self.vars else 1 for v in order]
        return t.reshape(shape)


def contract(tables, keep):
    """Sum the product of `tables` over every variable not in `keep`: a Table over `keep`, in that order.

    Variable elimination in a min-fill order, by :func:`causalppl.contract.contract`
    (the contraction exact queries and enumerated discrete latents use too).
    """
    tables = list(tables)
    keep = tuple(keep)
    if not tables:
        return Table((), torch.ones((), dtype=torch.float64))
    factors = [Factor(t.values, t.vars) for t in tables]
    return Table(keep, shared_contract(factors, keep))


def _divide(num, den):
    out = num / den
    return torch.where(den == 0, torch.zeros_like(out), out)


# ---------------------------------------------------------------------------
# sources


class EnumeratedSCM:
    """The exact distribution of a discrete SCM, as conditional probability tables.

    Intervened nodes (after ``scm.do``) take their one value. Every node must
    be enumerable; an SCM with model inputs or Bayesian mechanisms is refused.
    """

    def __init__(self, scm):
        from causalppl.handlers import param_scope

        if scm.inputs:
            raise ValueError(f"cannot enumerate an SCM with model inputs {list(scm.inputs)}; "
                             "make them nodes")
        self.scm = scm
        self._supports = {}
        self._values = {}
        self.cpts = []
        interventions = scm.interventions
        with torch.no_grad(), param_scope(store=scm.params):
            for node in scm.nodes:
                if node in interventions:
                    value = torch.as_tensor(interventions[node])
                    self._values[node] = value.reshape(1)
                    self._supports[node] = (_python(value),)
                    self.cpts.append(Table((node,), torch.ones(1, dtype=torch.float64)))
                    continue
                self.cpts.append(self._cpt(node))

    def _cpt(self, node):
        mechanism = self.scm.mechanism(node)
        if mechanism.global_sites:
            raise ValueError(f"node '{node}': cannot enumerate a Bayesian mechanism "
                             f"(its sites {list(mechanism.global_sites)} are random)")
        parents = [p for p in mechanism.parents]
        grid = list(itertools.product(*(range(len(self._supports[p])) for p in parents)))
        columns = {p: self._values[p][torch.tensor([row[i] for row in grid], dtype=torch.long)]
                   for i, p in enumerate(parents)}
        d = mechanism(**columns)
        if not getattr(d, "has_enumerate_support", False) or d.event_shape != ():
            raise ValueError(f"node '{node}': cannot enumerate {type(d).__name__}; exact answers "
                             "need scalar discrete mechanisms (Bernoulli, Categorical, ...)")
        values = d.enumerate_support(expand=False)  # (K, 1, ...)
        if isinstance(d, torch.distributions.Bernoulli):
            p = d.probs.to(torch.float64).reshape(1, -1)
            probs = torch.cat([1 - p, p])
        elif isinstance(d, torch.distributions.Categorical):
            probs = d.probs.to(torch.float64).reshape(-1, values.shape[0]).T
        else:
            probs = d.log_prob(values).exp().to(torch.float64).reshape(values.shape[0], -1)
        probs = probs.expand(values.shape[0], len(grid)).T  # (rows, K)
        values = values.reshape(-1)
        self._values[node] = values
        self._supports[node] = tuple(_python(v) for v in values)
        shape = [len(self._supports[p]) for p in parents] + [len(values)]
        return Table(tuple(parents) + (node,), probs.reshape(shape))

    def support(self, node):
        return self._supports[node]

    def marginal(self, nodes):
        return contract(self.cpts, tuple(nodes)).values


class Frequencies:
    """Plug-in frequencies of the discrete columns of a pandas DataFrame."""

    def __init__(self, frame):
        if len(frame) == 0:
            raise ValueError("the DataFrame has no rows")
        self.frame = frame
        self._supports = {}
        self._codes = {}

    def _column(self, node):
        if node not in self._codes:
            if node not in self.frame.columns:
                raise KeyError(f"'{node}' is not a column of the data "
                               f"(columns: {', '.join(map(str, self.frame.columns))})")
            column = self.frame[node]
            if column.isna().any():
                raise ValueError(f"column '{node}' has missing values")
            levels = sorted(column.unique(), key=lambda v: (str(type(v)), v))
            self._supports[node] = tuple(_python(v) for v in levels)
            code = {v: i for i, v in enumerate(levels)}
            self._codes[node] = torch.tensor(column.map(code).to_numpy(), dtype=torch.long)
        return self._codes[node]

    def support(self, node):
        self._column(node)
        return self._supports[node]

    def marginal(self, nodes):
        nodes = tuple(nodes)
        codes = [self._column(v) for v in nodes]
        shape = [len(self._supports[v]) for v in nodes]
        flat = torch.zeros((), dtype=torch.long)
        for c, k in zip(codes, shape, strict=True):
            flat = flat * k + c
        counts = torch.bincount(flat.reshape(-1), minlength=max(1, _prod(shape)))
        return (counts.to(torch.float64) / len(self.frame)).reshape(shape)


def _prod(xs):
    out = 1
    for x in xs:
        out *= x
    return out


def as_source(source):
    """An SCM, a DataFrame, or a source already (anything with ``support`` and ``marginal``)."""
    if hasattr(source, "support") and hasattr(source, "marginal"):
        return source
    if hasattr(source, "mechanism") and hasattr(source, "nodes"):
        return EnumeratedSCM(source)
    if hasattr(source, "columns") and hasattr(source, "to_numpy"):
        return Frequencies(source)
    raise TypeError("expected a discrete SCM or a pandas DataFrame of observed columns, "
                    f"got {type(source).__name__}")


# ---------------------------------------------------------------------------
# evaluating estimands


def table(expr, source, cache=None) -> Table:
    """The values of estimand `expr` on `source`, as a Table over ``expr.free``."""
    cache = {} if cache is None else cache
    if isinstance(expr, P):
        key = expr
        if key not in cache:
            joint_vars = tuple(sorted_nodes(expr.head | expr.given))
            joint = Table(joint_vars, source.marginal(joint_vars))
            if expr.given:
                given = tuple(sorted_nodes(expr.given))
                den = Table(given, source.marginal(given))
                joint = Table(joint_vars, _divide(joint.values, den.aligned(joint_vars)))
            cache[key] = joint
        return cache[key]
    if isinstance(expr, Product):
        return contract([table(f, source, cache) for f in expr.factors], tuple(sorted_nodes(expr.free)))
    if isinstance(expr, Sum):
        keep = tuple(sorted_nodes(expr.free))
        return contract([table(f, source, cache) for f in
                         (expr.body.factors if isinstance(expr.body, Product) else (expr.body,))], keep)
    if isinstance(expr, Fraction):
        keep = tuple(sorted_nodes(expr.free))
        num, den = table(expr.numerator, source, cache), table(expr.denominator, source, cache)
        return Table(keep, _divide(num.aligned(keep), den.aligned(keep)))
    raise TypeError(f"not an estimand node: {expr!r}")


def index_of(source, node, value):
    """The position of `value` in the support of `node`; a ValueError names both otherwise."""
    support = source.support(node)
    value = _python(torch.as_tensor(value)) if not isinstance(value, str) else value
    for i, v in enumerate(support):
        if v == value:
            return i
    raise ValueError(f"node '{node}' has no value {value!r} (its values: {list(support)})")


def distribution(expr, source, outcome, fixed):
    """P(outcome | fixed) from estimand `expr`: a dict value -> probability.

    `fixed` assigns the treatment (and for a conditional effect the
    conditioning nodes); keys are the outcome's values, tuples of them (in
    the order of `outcome`) for several. A free variable that is neither
    (ID adds one when the effect does not depend on it) is averaged over its
    observed distribution.
    """
    source = as_source(source)
    outcome = tuple(outcome)
    for node, value in fixed.items():
        index_of(source, node, value)  # checks the value exists
    t = table(expr, source)
    # Other free variables were added as treatments by ID (line 3) because
    # the effect does not depend on them: average over their observed law.
    extra = tuple(v for v in t.vars if v not in fixed and v not in outcome)
    if extra:
        t = contract([t, Table(extra, source.marginal(extra))], [v for v in t.vars if v not in extra])
    index = tuple(index_of(source, v, fixed[v]) if v in fixed else slice(None) for v in t.vars)
    values = t.values[index] if index else t.values
    rest = [v for v in t.vars if v not in fixed]
    missing = [v for v in outcome if v not in rest]
    if missing:
        raise ValueError(f"the estimand does not mention outcome {missing}")
    full = Table(rest, values).aligned(outcome)
    out = {}
    for combo in itertools.product(*(range(len(source.support(v))) for v in outcome)):
        key = tuple(source.support(v)[i] for v, i in zip(outcome, combo, strict=True))
        out[key[0] if len(outcome) == 1 else key] = float(full[combo])
    return out


def exact_distribution(scm, outcome, do=None):
    """P(outcome | do(...)) of a discrete SCM by exact enumeration of the mutilated model.

    Parameters
    ----------
    scm : SCM
        Discrete mechanisms only; latent nodes are summed out.
    outcome : node or list of nodes
    do : dict, optional
        Interventions; the model is cut with ``scm.do(**do)`` first.

    Returns
    -------
    dict
        Outcome value (a tuple of values for several outcomes) -> probability.
    """
    outcome = [outcome] if isinstance(outcome, str) else list(outcome)
    source = EnumeratedSCM(scm.do(**do) if do else scm)
    t = source.marginal(outcome)
    out = {}
    for combo in itertools.product(*(range(len(source.support(v))) for v in outcome)):
        key = tuple(source.support(v)[i] for v, i in zip(outcome, combo, strict=True))
        out[key[0] if len(outcome) == 1 else key] = float(t[combo])
    return out
