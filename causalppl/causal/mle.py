"""Exact maximum likelihood for fully observed learnable mechanisms.

A node is *fully observed* when its own values and its parents' values are
all known (data columns, observed or intervened values, model inputs). Its
likelihood factor then involves only its own params, so their maximum
likelihood estimate has a closed form or a few Newton steps:

- :class:`LinearGaussian`: least squares (Cholesky solve of the normal
  equations), ``scale = sqrt(RSS / n)``;
- :class:`Logistic` and :class:`MultinomialLogistic`: Newton's method (IRLS)
  on the exact log-likelihood, class 0 the reference;
- :class:`CategoricalTable`: counting, with an optional pseudo-count.

Everything is computed in the mechanisms' own standardised units (the
features their ``_features`` builds) and written into the SCM's param store;
each :class:`Estimate` also carries standard errors (from
``sigma^2 (X'X)^-1``, the inverse Fisher information, or ``sqrt(p(1-p)/n)``).

>>> import torch, causalppl as cp
>>> x = torch.tensor([0.0, 1.0, 2.0, 3.0])
>>> scm = cp.SCM.from_graph([("x", "y")])
>>> estimates = fit_mle(scm, {"x": x, "y": 1 + 2 * x})
>>> scm.mechanism("y").fn.coefficients(scm.params)["weights"]
{'x': 2.0}
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch.distributions import constraints

from causalppl.causal.learnable import CategoricalTable, LinearGaussian, Logistic, MultinomialLogistic

EXACT_KINDS = (LinearGaussian, Logistic, MultinomialLogistic, CategoricalTable)
NEWTON_STEPS = 50  # Newton converges in about 5-10 steps; more means separated classes
NEWTON_TOLERANCE = 1e-9  # stop when no coefficient moves by more than this (relative)
SEPARATION_LIMIT = 30.0  # |log-odds coefficient| beyond this: the data separate the classes
SEPARATION_RIDGE = 1e-2  # the small ridge penalty that then keeps the estimate finite

_CONSTRAINTS = {"scale": constraints.positive, "probs": constraints.simplex}


class SeparationWarning(UserWarning):
    """A logistic node's classes are separated by its features: its MLE is infinite."""


@dataclass
class Estimate:
    """One node's maximum-likelihood fit, in its mechanism's standardised units.

    ``params``: suffix (``"weight"``, ``"bias"``, ``"scale"``, ``"probs"``) ->
    tensor, as written to the param store under ``"node.suffix"``;
    ``standard_errors``: the same suffixes -> tensors of the same shapes;
    ``covariance``: of ``(bias, *weights)`` for linear and logistic nodes,
    one block per non-reference class for multinomial ones (``(K-1, P, P)``),
    else None; ``nll``: the node's negative log-likelihood at the estimate,
    in the data's units; ``rows``: how many rows it was fitted to.
    """

    node: str
    params: dict
    standard_errors: dict
    covariance: torch.Tensor | None = None
    nll: float = 0.0
    rows: int = 0
    notes: list = field(default_factory=list)


def why_not_exact(mechanism, node, known):
    """Why the node cannot be fitted exactly (a short phrase), or None when it can.

    ``known`` is the set of names whose values are known.

    >>> why_not_exact(LinearGaussian("y", ["u"]), "y", {"y"})
    "its parent 'u' has no data column"
    >>> why_not_exact(LinearGaussian("y", ["x"]), "y", {"x", "y"}) is None
    True
    """
    if not isinstance(mechanism, EXACT_KINDS):
        kind = getattr(mechanism, "name", type(mechanism).__name__)
        return f"{kind} has no closed-form maximum likelihood"
    if mechanism.bayesian:
        return "its mechanism is Bayesian (its weights are a posterior, learned by SVI)"
    if node not in known:
        return "it is latent (no data column)"
    missing = [parent for parent in mechanism.parents if parent not in known]
    if missing:
        return f"its parent {', '.join(repr(p) for p in missing)} has no data column"
    return None


def fit_mle(scm, values, nodes=None, alpha=0.0, total=None):
    """Fit ``nodes`` (default: every learnable node) of ``scm`` exactly; write their params.

    Parameters
    ----------
    scm : SCM
    values : dict of name -> 1-d tensor
        Known values, one row per entry (all the same length).
    nodes : iterable of str, optional
    alpha : float
        Pseudo-count added to every cell of a categorical table (0 = maximum likelihood).
    total : callable, optional
        Sums a tensor of sufficient statistics over the shards of the rows
        (:meth:`causalppl.causal.distributed.Parallel.total`: X'X, X'y, RSS,
        counts, Newton's gradient and information); default: one shard, the
        identity. The estimates are then those of all the rows together.

    Returns
    -------
    dict of node -> Estimate

    Raises
    ------
    ValueError naming the node when it cannot be fitted exactly (see :func:`why_not_exact`).

    >>> import torch, causalppl as cp
    >>> scm = cp.SCM.from_graph([("a", "b")], mechanisms="categorical",
    ...                         data={"a": torch.tensor([0, 0, 1]), "b": torch.tensor([0, 1, 1])})
    >>> _ = fit_mle(scm, {"a": torch.tensor([0, 0, 1]), "b": torch.tensor([0, 1, 1])})
    >>> scm.params["b.probs"].detach()
    tensor([[0.5000, 0.5000],
            [0.0000, 1.0000]])
    """
    nodes = list(scm.nodes if nodes is None else nodes)
    estimates = {}
    for node in nodes:
        mechanism = scm.mechanism(node).fn
        reason = why_not_exact(mechanism, node, set(values))
        if reason is not None:
            raise ValueError(f"node '{node}': cannot fit it by maximum likelihood: {reason}")
        estimate = fit_node(mechanism, values, alpha=alpha, total=total)
        write_params(scm.params, estimate)
        estimates[node] = estimate
    return estimates


def fit_node(mechanism, values, alpha=0.0, total=None):
    """The :class:`Estimate` of one fully observed mechanism from ``values`` (name -> rows).

    >>> import torch
    >>> m = Logistic("t", [])
    >>> round(float(fit_node(m, {"t": torch.tensor([0.0, 1.0, 1.0, 1.0])}).params["bias"]), 4)
    1.0986
    """
    total = total or _one_shard
    if isinstance(mechanism, LinearGaussian):
        return _fit_linear_gaussian(mechanism, values, total)
    if isinstance(mechanism, (Logistic, MultinomialLogistic)):
        return _fit_softmax(mechanism, values, total)
    if isinstance(mechanism, CategoricalTable):
        return _fit_table(mechanism, values, alpha, total)
    raise TypeError(f"node '{mechanism.node}': {type(mechanism).__name__} has no exact fit")


def write_params(store, estimate):
    """Write an estimate's params into ``store`` as ``node.suffix`` with their constraints.

    A param already there is replaced (its optimiser state, if any, is not kept).
    """
    for suffix, value in estimate.params.items():
        name = f"{estimate.node}.{suffix}"
        if name in store:
            del store[name]
        store.get_param(name, value, _CONSTRAINTS.get(suffix, constraints.real))


# ---------------------------------------------------------------------------
# Shared pieces: rows, design matrices, codes
# ---------------------------------------------------------------------------

_DTYPE = torch.float64  # solve in double precision whatever the params' dtype


def _one_shard(tensor):
    """The sum of a statistic over the shards of the rows, when there is one shard."""
    return tensor


def _total_rows(total, rows, reference):
    return int(total(torch.tensor(float(rows), dtype=_DTYPE, device=reference.device)))


def _rows(mechanism, values):
    """The number of rows, checking that the node's and its parents' columns agree."""
    lengths = {name: values[name].numel() for name in (mechanism.node, *mechanism.parents)}
    rows = max(lengths.values())
    wrong = {name: size for name, size in lengths.items() if size not in (1, rows)}
    if wrong:
        raise ValueError(f"node '{mechanism.node}': columns of different lengths {lengths}")
    return rows


def _column(values, name, rows):
    value = torch.as_tensor(values[name])
    return value.reshape(-1).expand(rows) if value.numel() == 1 else value.reshape(-1)


def _design(mechanism, values, rows):
    """``[1, features]``: the (rows, 1 + F) matrix of the mechanism's own features, in float64."""
    parent_values = [_column(values, parent, rows).to(_DTYPE) for parent in mechanism.parents]
    device = values[mechanism.node].device
    columns = [torch.ones(rows, dtype=_DTYPE, device=device)]
    columns += [feature.to(_DTYPE).expand(rows) for feature in mechanism._features(parent_values)]
    return torch.stack(columns, dim=1)


def _codes(value, node, what, count):
    """Integer codes ``0 .. count - 1`` of a column; a ValueError naming the node otherwise."""
    codes = value.long()
    if value.numel() and (not bool((codes == value).all()) or int(codes.min()) < 0
                          or int(codes.max()) >= count):
        low, high = float(value.min()), float(value.max())
        raise ValueError(
            f"node '{node}': {what} must take integer values in 0..{count - 1}, got values in "
            f"{low:g}..{high:g}"
        )
    return codes


def _to_params(tensor, reference):
    return tensor.to(dtype=torch.get_default_dtype(), device=reference.device)


# ---------------------------------------------------------------------------
# LinearGaussian: least squares
# ---------------------------------------------------------------------------


def _fit_linear_gaussian(mechanism, values, total=_one_shard):
    """Least squares in standardised units; ``scale = sqrt(RSS / n)``, SEs from ``s^2 (X'X)^-1``.

    ``s^2 = RSS / (n - P)`` (the usual unbiased residual variance) for the
    coefficients' SEs; the scale's SE is its asymptotic ``scale / sqrt(2 n)``.
    """
    rows = _rows(mechanism, values)
    design = _design(mechanism, values, rows)
    centre, spread = mechanism._centre_scale(mechanism.node)
    target = (_column(values, mechanism.node, rows).to(_DTYPE) - centre) / spread
    coef, gram_inverse, notes = _least_squares(mechanism.node, design, target, total)
    rss = float(total(((target - design @ coef) ** 2).sum()))
    rows = _total_rows(total, rows, target)
    # A perfect fit has RSS 0; a positive scale is still needed for a density.
    scale = max(math.sqrt(rss / rows), 1e-12)
    size = design.shape[1]
    dof_variance = rss / (rows - size) if rows > size else float("nan")
    covariance = dof_variance * gram_inverse
    errors = covariance.diagonal().clamp_min(0).sqrt()
    params = {"bias": coef[0]}
    standard_errors = {"bias": errors[0]}
    if mechanism.num_features:
        params["weight"], standard_errors["weight"] = coef[1:], errors[1:]
    params["scale"] = torch.tensor(scale, dtype=_DTYPE)
    standard_errors["scale"] = torch.tensor(scale / math.sqrt(2 * rows), dtype=_DTYPE)
    reference = values[mechanism.node]
    nll = rows * (0.5 * (1 + math.log(2 * math.pi)) + math.log(spread * scale))
    return Estimate(
        mechanism.node,
        {k: _to_params(v, reference) for k, v in params.items()},
        {k: _to_params(v, reference) for k, v in standard_errors.items()},
        covariance=covariance, nll=nll, rows=rows, notes=notes,
    )


def _least_squares(node, design, target, total=_one_shard):
    """Coefficients and ``(X'X)^-1`` by a Cholesky solve; a pseudo-inverse when ``X'X`` is singular."""
    gram = total(design.T @ design)
    moment = total(design.T @ target)
    chol, info = torch.linalg.cholesky_ex(gram)
    if int(info) == 0:
        coef = torch.cholesky_solve(moment[:, None], chol)[:, 0]
        return coef, torch.cholesky_inverse(chol), []
    inverse = torch.linalg.pinv(gram)
    note = (f"node '{node}': its features are collinear (X'X is singular); the minimum-norm "
            "least-squares solution was used")
    warnings.warn(note, stacklevel=4)
    return inverse @ moment, inverse, [note]


# ---------------------------------------------------------------------------
# Logistic and MultinomialLogistic: Newton's method (IRLS)
# ---------------------------------------------------------------------------


def _fit_softmax(mechanism, values, total=_one_shard):
    """Newton's method on the exact log-likelihood; SEs from the inverse Fisher information."""
    rows = _rows(mechanism, values)
    design = _design(mechanism, values, rows)
    classes = 2 if isinstance(mechanism, Logistic) else mechanism.num_categories
    codes = _codes(_column(values, mechanism.node, rows), mechanism.node, "its values", classes)
    coef, information, nll, notes = _newton_with_guard(mechanism.node, design, codes, classes, total)
    rows = _total_rows(total, rows, design)
    size = design.shape[1]
    covariance = torch.linalg.inv(information)
    errors = covariance.diagonal().clamp_min(0).sqrt().reshape(classes - 1, size)
    blocks = torch.stack([covariance[k * size:(k + 1) * size, k * size:(k + 1) * size]
                          for k in range(classes - 1)])
    if isinstance(mechanism, Logistic):  # one class beside the reference: scalar bias, (F,) weight
        coef, errors, blocks = coef[0], errors[0], blocks[0]
    params = {"bias": coef[..., 0]}
    standard_errors = {"bias": errors[..., 0]}
    if mechanism.num_features:
        params["weight"], standard_errors["weight"] = coef[..., 1:], errors[..., 1:]
    reference = values[mechanism.node]
    return Estimate(
        mechanism.node,
        {k: _to_params(v, reference) for k, v in params.items()},
        {k: _to_params(v, reference) for k, v in standard_errors.items()},
        covariance=blocks, nll=nll, rows=rows, notes=notes,
    )


def _newton_with_guard(node, design, codes, classes, total=_one_shard):
    """Newton's method; when the classes are separated, refit with a small ridge and warn."""
    coef, information, nll, converged = _newton(design, codes, classes, ridge=0.0, total=total)
    if converged:
        return coef, information, nll, []
    note = (f"node '{node}': its features separate its classes (the maximum-likelihood "
            f"coefficients are infinite); a ridge penalty {SEPARATION_RIDGE:g} * |coef|^2 / 2 "
            "keeps them finite")
    warnings.warn(note, SeparationWarning, stacklevel=4)
    coef, information, nll, _ = _newton(design, codes, classes, ridge=SEPARATION_RIDGE, total=total)
    return coef, information, nll, [note]


def _newton(design, codes, classes, ridge, total=_one_shard):
    """Maximise the (ridge-penalised) softmax log-likelihood, class 0 the reference.

    Returns ``(coef (K-1, P), information ((K-1) P, (K-1) P), nll, converged)``;
    ``converged`` is False when a coefficient runs past :data:`SEPARATION_LIMIT`
    or the steps do not settle (separated classes).
    """
    rows, size = design.shape
    others = classes - 1
    indicators = (codes[:, None] == torch.arange(1, classes, device=codes.device)).to(design.dtype)
    coef = torch.zeros(others, size, dtype=design.dtype, device=design.device)
    penalty = ridge * torch.eye(others * size, dtype=design.dtype, device=design.device)
    nll = _softmax_nll(design, codes, coef, ridge, total)
    converged = False
    for _ in range(NEWTON_STEPS):
        probs = _class_probs(design, coef)
        gradient = total((indicators - probs).T @ design) - ridge * coef
        information = total(_softmax_information(design, probs)) + penalty
        step = torch.linalg.solve(information, gradient.reshape(-1)).reshape(others, size)
        coef, nll = _damped_step(design, codes, coef, step, nll, ridge, total)
        if float(step.abs().max()) <= NEWTON_TOLERANCE * (1 + float(coef.abs().max())):
            converged = True
            break
        if float(coef.abs().max()) > SEPARATION_LIMIT:
            break
    information = total(_softmax_information(design, _class_probs(design, coef))) + penalty
    return coef, information, nll, converged


def _damped_step(design, codes, coef, step, nll, ridge, total=_one_shard):
    """Take the Newton step, halving it (up to 10 times) while it does not lower the loss."""
    for _ in range(10):
        candidate = coef + step
        candidate_nll = _softmax_nll(design, codes, candidate, ridge, total)
        if candidate_nll <= nll + 1e-9 * abs(nll):
            return candidate, candidate_nll
        step = step / 2
    return coef, nll


def _logits(design, coef):
    logits = design @ coef.T
    return torch.cat([torch.zeros_like(logits[:, :1]), logits], dim=1)


def _class_probs(design, coef):
    """Probabilities of classes 1 .. K-1 (rows, K-1)."""
    return torch.softmax(_logits(design, coef), dim=1)[:, 1:]


def _softmax_nll(design, codes, coef, ridge, total=_one_shard):
    log_probs = torch.log_softmax(_logits(design, coef), dim=1)
    nll = -float(total(log_probs.gather(1, codes[:, None]).sum()))
    return nll + 0.5 * ridge * float((coef ** 2).sum())


def _softmax_information(design, probs):
    """Fisher information: block ``(j, k)`` is ``X' diag(p_j (delta_jk - p_k)) X``."""
    others = probs.shape[1]
    blocks = []
    for j in range(others):
        row = []
        for k in range(others):
            weight = probs[:, j] * ((1.0 if j == k else 0.0) - probs[:, k])
            row.append(design.T @ (design * weight[:, None]))
        blocks.append(torch.cat(row, dim=1))
    return torch.cat(blocks, dim=0)


# ---------------------------------------------------------------------------
# CategoricalTable: counting
# ---------------------------------------------------------------------------


def _fit_table(mechanism, values, alpha, total=_one_shard):
    """Counts over (parent configuration, state) in one bincount; ``(counts + alpha) / total``.

    Parent configurations with no rows (and ``alpha = 0``) get the uniform
    row, and a note says how many did. SEs are ``sqrt(p (1 - p) / n_row)``
    (NaN for empty rows).
    """
    if alpha < 0:
        raise ValueError(f"node '{mechanism.node}': alpha must be a non-negative pseudo-count, got {alpha!r}")
    rows = _rows(mechanism, values)
    states = mechanism.num_categories
    node_codes = _codes(_column(values, mechanism.node, rows), mechanism.node, "its values", states)
    flat = torch.zeros(rows, dtype=torch.long, device=node_codes.device)
    for parent, card in zip(mechanism.parents, mechanism.parent_cardinalities, strict=True):
        # Row-major, the last parent varying fastest: the mechanism's own layout.
        flat = flat * card + _codes(_column(values, parent, rows), mechanism.node, f"parent '{parent}'", card)
    configurations = math.prod(mechanism.parent_cardinalities)
    counts = torch.bincount(flat * states + node_codes, minlength=configurations * states)
    counts = total(counts.reshape(configurations, states).to(_DTYPE))
    rows = _total_rows(total, rows, counts)
    totals = counts.sum(1, keepdim=True)
    smoothed = counts + alpha
    empty = smoothed.sum(1) == 0
    probs = torch.where(empty[:, None], torch.full_like(smoothed, 1.0 / states),
                        smoothed / smoothed.sum(1, keepdim=True).clamp_min(1e-300))
    errors = (probs * (1 - probs) / totals).sqrt()  # NaN (0/0) or inf where a row is empty
    errors = torch.where(totals > 0, errors, torch.full_like(errors, float("nan")))
    nll = -float(torch.where(counts > 0, counts * probs.log(), torch.zeros_like(probs)).sum())
    notes = []
    if bool(empty.any()):
        notes.append(
            f"node '{mechanism.node}': {int(empty.sum())} of {configurations} parent configurations "
            "have no rows; their table rows are uniform"
        )
    shape = mechanism._shape()
    reference = values[mechanism.node]
    return Estimate(
        mechanism.node,
        {"probs": _to_params(probs.reshape(shape), reference)},
        {"probs": _to_params(errors.reshape(shape), reference)},
        nll=nll, rows=rows, notes=notes,
    )
