"""What a fit learned, in the data's units: a coefficient table and a readable text.

:func:`summary_rows` gives one :class:`Row` per learned number of each
learnable mechanism (``node, parameter, parent, estimate, sd``), undoing the
mechanisms' standardisation; ``sd`` is the maximum-likelihood standard error
carried to the data's units, or the sd of the posterior draws of a Bayesian
mechanism, NaN when unknown (a point fit by SVI). :func:`describe` writes a
fit as one equation per node.

>>> import torch, causalppl as cp
>>> x = torch.arange(6.0)
>>> result = cp.SCM.from_graph([("x", "y")]).fit({"x": x, "y": 1 + 2 * x + torch.tensor([0.1, -0.1] * 3)})
>>> print(describe(result).splitlines()[3])
  y ~ 1.04 + 1.98·x + N(0, 0.0956²)
"""

from __future__ import annotations

import math
from collections import namedtuple

import torch

from causalppl.causal.learnable import (
    CategoricalTable,
    LinearGaussian,
    Logistic,
    MLPGaussian,
    MultinomialLogistic,
)

Row = namedtuple("Row", "node parameter parent estimate sd")
Row.__doc__ = "One learned number: ``node``, ``parameter``, ``parent`` ('' if none), ``estimate``, ``sd``."

NAN = float("nan")


def summary_table(result):
    """:func:`summary_rows` as a pandas DataFrame, or the list of rows without pandas."""
    rows = summary_rows(result)
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows, columns=Row._fields)


def summary_rows(result):
    """One :class:`Row` per learned number of every learnable, non-intervened node."""
    scm = result.scm
    rows = []
    for node in scm.nodes:
        mechanism = scm.mechanism(node).fn
        if node in scm.interventions or not hasattr(mechanism, "spec"):
            continue
        if not mechanism.bayesian and not _has_params(scm.params, node):
            continue  # never run, nothing learned
        rows += _rows_of(result, mechanism)
    return rows


def _rows_of(result, mechanism):
    if isinstance(mechanism, (LinearGaussian, Logistic)):
        return _linear_rows(result, mechanism)
    if isinstance(mechanism, MultinomialLogistic):
        return _multinomial_rows(result, mechanism)
    if isinstance(mechanism, CategoricalTable):
        return _table_rows(result, mechanism)
    if isinstance(mechanism, MLPGaussian):
        return [_scale_row(result, mechanism)]
    return []


def _has_params(store, node):
    return any(name.startswith(f"{node}.") for name in store.keys())


# -- linear and logistic -------------------------------------------------------------


def _affine_map(mechanism):
    """``(base, J)`` with data-unit ``(bias, *weights) = base + J @ (bias, *weights)`` in standardised units.

    Read off the mechanism's own ``_to_data_units`` (an affine map) at the origin and the unit vectors.
    """
    size = mechanism.num_features + 1

    def apply(vector):
        out = mechanism._to_data_units(float(vector[0]), [float(v) for v in vector[1:]])
        return torch.tensor([out["bias"], *out["weights"].values()], dtype=torch.float64)

    base = apply(torch.zeros(size))
    jacobian = torch.stack([apply(unit) - base for unit in torch.eye(size, dtype=torch.float64)], dim=1)
    return base, jacobian


def _estimate_and_sd(result, mechanism, vector, covariance, draws):
    """Data-unit estimates and sds of ``(bias, *weights)``: from a point value and its covariance,
    or from posterior draws ``(S, 1 + F)``."""
    base, jacobian = _affine_map(mechanism)
    if draws is not None:
        converted = base + draws.double() @ jacobian.T
        return converted.mean(0).tolist(), converted.std(0).tolist()
    estimate = (base + jacobian @ vector.double()).tolist()
    if covariance is None:
        return estimate, [NAN] * len(estimate)
    variance = (jacobian @ covariance.double().cpu() @ jacobian.T).diagonal()
    return estimate, variance.clamp_min(0).sqrt().tolist()


def _point_vector(store, node, num_features, index=None):
    bias = store[f"{node}.bias"].detach().double().cpu()
    weight = (store[f"{node}.weight"].detach().double().cpu() if num_features
              else torch.zeros(bias.shape + (0,), dtype=torch.float64))
    if index is not None:
        bias, weight = bias[index], weight[index]
    return torch.cat([bias.reshape(1), weight.reshape(-1)])


def _posterior_vectors(result, mechanism):
    """Posterior draws of ``(bias, *weights)`` as ``(S, 1 + F)``, or None before a fit."""
    posterior = result.scm._state.posterior or {}
    node = mechanism.node
    if f"{node}.bias" not in posterior:
        return None
    bias = posterior[f"{node}.bias"].detach().cpu().reshape(-1, 1)
    parts = [bias]
    if mechanism.num_features:
        parts.append(posterior[f"{node}.weight"].detach().cpu().reshape(bias.shape[0], -1))
    return torch.cat(parts, dim=1)


def _linear_rows(result, mechanism):
    node = mechanism.node
    estimate = result.estimates.get(node)
    if mechanism.bayesian:
        draws = _posterior_vectors(result, mechanism)
        if draws is None or f"{node}.scale" not in result.scm.params and isinstance(mechanism, LinearGaussian):
            return []  # not fitted yet
        values, sds = _estimate_and_sd(result, mechanism, None, None, draws)
    else:
        vector = _point_vector(result.scm.params, node, mechanism.num_features)
        covariance = estimate.covariance if estimate is not None else None
        values, sds = _estimate_and_sd(result, mechanism, vector, covariance, None)
    rows = [Row(node, "bias", "", values[0], sds[0])]
    rows += [Row(node, "weight", feature, value, sd)
             for feature, value, sd in zip(mechanism.feature_names, values[1:], sds[1:], strict=True)]
    if isinstance(mechanism, LinearGaussian):
        rows.append(_scale_row(result, mechanism))
    return rows


def _scale_row(result, mechanism):
    """The noise scale in the data's units (``centre + spread * (... + scale * noise)``)."""
    node = mechanism.node
    spread = mechanism._centre_scale(node)[1]
    scale = spread * float(result.scm.params[f"{node}.scale"].detach())
    estimate = result.estimates.get(node)
    sd = spread * float(estimate.standard_errors["scale"]) if estimate is not None else NAN
    return Row(node, "scale", "", scale, sd)


# -- multinomial logistic ------------------------------------------------------------


def _multinomial_rows(result, mechanism):
    node = mechanism.node
    labels = mechanism.labels or tuple(range(mechanism.num_categories))
    estimate = result.estimates.get(node)
    rows = []
    for k, label in enumerate(labels[1:]):
        vector = _point_vector(result.scm.params, node, mechanism.num_features, index=k)
        covariance = estimate.covariance[k] if estimate is not None else None
        values, sds = _estimate_and_sd(result, mechanism, vector, covariance, None)
        rows.append(Row(node, f"bias[{node}={label}]", "", values[0], sds[0]))
        rows += [Row(node, f"weight[{node}={label}]", feature, value, sd)
                 for feature, value, sd in zip(mechanism.feature_names, values[1:], sds[1:], strict=True)]
    return rows


# -- categorical tables ---------------------------------------------------------------


def _table_rows(result, mechanism):
    node = mechanism.node
    if mechanism.bayesian:
        draws = (result.scm._state.posterior or {}).get(f"{node}.probs")
        if draws is None:
            return []
        draws = draws.detach().double().cpu()
        probs, sds = draws.mean(0), draws.std(0)
    else:
        probs = result.scm.params[f"{node}.probs"].detach().double().cpu()
        estimate = result.estimates.get(node)
        sds = (estimate.standard_errors["probs"].double().cpu() if estimate is not None
               else torch.full_like(probs, NAN))
    node_labels = mechanism.labels or tuple(range(mechanism.num_categories))
    parent_labels = [_labels_of(result.scm, parent, card)
                     for parent, card in zip(mechanism.parents, mechanism.parent_cardinalities, strict=True)]
    rows = []
    for index in torch.cartesian_prod(*[torch.arange(s) for s in probs.shape]).reshape(-1, probs.dim()):
        *config, state = index.tolist()
        given = ", ".join(f"{p}={labels[c]}" for p, labels, c in zip(mechanism.parents, parent_labels, config,
                                                                   strict=True))
        text = f"P({node}={node_labels[state]}" + (f" | {given})" if given else ")")
        rows.append(Row(node, text, "", float(probs[tuple(index)]), float(sds[tuple(index)])))
    return rows


def _labels_of(scm, name, count):
    """A parent's state labels: its mechanism's, else its codes."""
    labels = getattr(scm.mechanism(name).fn, "labels", None) if name in scm else None
    return tuple(labels) if labels is not None and len(labels) == count else tuple(range(count))


# ---------------------------------------------------------------------------
# describe: one equation per node
# ---------------------------------------------------------------------------


def describe(result):
    """A readable account of a fit: method, steps, final loss, one equation per node, notes."""
    loss = f"{result.losses[-1]:.6g}" if result.losses else "none"
    if result.method == "mle":
        how = "method mle (exact maximum likelihood, no SVI steps)"
    elif getattr(result, "mcmc", None) is not None:
        mcmc = result.mcmc
        how = (f"method {result.method}, {mcmc.num_chains} chain(s) x {mcmc.num_samples} NUTS draws after "
               f"{mcmc.warmup_steps} warmup steps")
    else:
        how = f"method {result.method}, {len(result.losses)} SVI steps"
        engine = getattr(result, "engine", None)
        if engine and engine != "reference":
            how += f" ({engine} graph)" if engine == "compiled" else f" ({engine})"
    lines = [f"FitResult: {how}; final loss {loss}", "coefficients (data units):"]
    rows = summary_rows(result)
    scm = result.scm
    for node in scm.nodes:
        if node in scm.interventions:
            lines.append(f"  {node} := do({float(scm.interventions[node].float().mean()):.3g})")
            continue
        if node in scm._soft:
            lines.append(f"  {node} {'~' if scm._soft[node].kind == 'stochastic' else ':='} "
                         f"{scm._soft[node].describe()}")
            continue
        lines.append(f"  {node} ~ {_equation(scm, node, [r for r in rows if r.node == node])}")
    if result.notes:
        lines.append("notes:")
        lines += [f"  {note}" for note in result.notes]
    choices = getattr(scm._state, "choices", None)
    if isinstance(choices, dict) and choices:
        lines.append("mechanisms chosen:")
        lines += [f"  {node}: {why}" for node, why in choices.items()]
    return "\n".join(lines)


def _equation(scm, node, rows):
    mechanism = scm.mechanism(node)
    fn = mechanism.fn
    by_name = {r.parameter: r for r in rows}
    if isinstance(fn, (LinearGaussian, Logistic)) and "bias" in by_name:
        terms = _linear_terms(by_name["bias"].estimate, [r for r in rows if r.parameter == "weight"])
        posterior = " (posterior means)" if fn.bayesian else ""
        if isinstance(fn, Logistic):
            return f"Bernoulli(logit = {terms}){posterior}"
        return f"{terms} + N(0, {by_name['scale'].estimate:.3g}²){posterior}"
    if isinstance(fn, MultinomialLogistic):
        return f"Categorical(softmax of {len(fn.feature_names)} features, {fn.num_categories} classes)"
    if isinstance(fn, CategoricalTable):
        given = f" | {', '.join(fn.parents)}" if fn.parents else ""
        return f"P({node}{given}): a table of {math.prod(fn.parent_cardinalities)} rows, {fn.num_categories} states"
    if isinstance(fn, MLPGaussian) and "scale" in by_name:
        return f"MLP({', '.join(fn.parents)}) + N(0, {by_name['scale'].estimate:.3g}²)"
    return mechanism.text or getattr(fn, "text", None) or repr(mechanism)


def _linear_terms(bias, weight_rows):
    text = f"{bias:.3g}"
    for row in sorted(weight_rows, key=lambda r: -abs(r.estimate)):
        sign = "-" if row.estimate < 0 else "+"
        text += f" {sign} {abs(row.estimate):.3g}·{row.parent}"
    return text
