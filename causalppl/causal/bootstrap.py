"""The bootstrap over the data: refit a fitted SCM on resampled rows and ask each refit again.

A point fit takes its parameters as known, so the Monte Carlo interval of
an effect ignores how much they would change with other data. The bootstrap
puts that back: :func:`fit` records its data and options on the SCM, and
:func:`bootstrap_ate` refits copies of the SCM on ``B`` resampled-with-
replacement copies of those rows (same options, warm-started from the fitted
params, optionally fewer steps) and reports the spread of the ``B`` effects.

>>> import torch, causalppl as cp
>>> cp.set_rng_seed(0)
>>> x = torch.randn(200)
>>> data = {"x": x, "y": 2 * x + torch.randn(200)}
>>> scm = cp.SCM.from_graph([("x", "y")], data)
>>> _ = scm.fit(data, steps=200, lr=0.05, progress=False)
>>> effect = cp.causal.ate(scm, "x", "y", n=200, bootstrap=5, bootstrap_steps=20)
>>> len(effect.draws), effect.covers.startswith("bootstrap over the data (B=5 refits")
(5, True)
"""

from __future__ import annotations

import warnings

import torch

from causalppl.causal.fit import ConvergenceWarning, fit


def fit_record(scm):
    """What the SCM's last fit recorded: ``{"data": ..., "options": ...}``.

    Raises ``ValueError`` when the SCM was never fitted, or was fitted with no
    data rows to resample.
    """
    record = scm._state.fit
    if record is None:
        raise ValueError("bootstrap needs an SCM fitted to data: call scm.fit(data) first "
                         f"(nodes: {', '.join(scm.nodes)})")
    if not record["data"]:
        raise ValueError("bootstrap resamples the rows of the last fit's data, but that fit had no data "
                         f"(it fitted the observed values of {', '.join(sorted(scm.observed)) or 'no node'})")
    return record


def resample_rows(data, inputs=None):
    """The columns of ``data`` (and per-row ``inputs``) at rows drawn with replacement.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> rows, _ = resample_rows({"x": torch.arange(5.0)})
    >>> rows["x"].shape, bool(torch.isin(rows["x"], torch.arange(5.0)).all())
    (torch.Size([5]), True)
    """
    size = len(next(iter(data.values())))
    column = next(iter(data.values()))
    index = torch.randint(size, (size,), device=column.device)
    rows = {name: value.index_select(0, index) for name, value in data.items()}
    per_row = {name: value.index_select(0, index.to(value.device))
               if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size else value
               for name, value in (inputs or {}).items()}
    return rows, per_row


def refit(scm, record, steps=None):
    """A copy of ``scm`` refitted to a resample of the recorded data; returns ``(copy, FitResult)``.

    The copy starts from the SCM's fitted params (a warm start), with the
    recorded fit options; ``steps`` overrides their number of SVI steps.
    """
    options = dict(record["options"])
    rows, inputs = resample_rows(record["data"], options.pop("inputs", {}))
    if steps is not None:
        options["steps"] = steps
    copy = scm.copy()
    with warnings.catch_warnings():
        # bootstrap_ate reports unconverged refits once, not once per refit
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=r"fit\(steps=0\)")  # steps=0 here means: copy the fit
        result = fit(copy, data=rows, progress=False, **options, **inputs)
    return copy, result


def bootstrap_ate(scm, treatment, outcome, treated, control, evidence, n, B, inputs, steps=None,
                  outcome_level=None):
    """The ATE with its bootstrap distribution over ``B`` refits (what ``ate(..., bootstrap=B)`` returns).

    ``ate`` is the full-data estimate; ``draws`` the ``B`` refits' effects
    (each from ``n`` Monte Carlo rows with common random numbers between the
    arms), ``sd`` their standard deviation and ``interval()`` their
    percentile interval. ``steps`` (``ate``'s ``bootstrap_steps``) gives each
    refit fewer SVI steps than the original fit; refits start from the fitted
    params, so a fraction of them usually suffices.

    Raises ``ValueError`` for an SCM that was never fitted to data, or for
    ``B`` below 2.
    """
    from causalppl.causal.queries import ate

    record = fit_record(scm)
    if not isinstance(B, int) or isinstance(B, bool) or B < 2:
        raise ValueError(f"bootstrap must be a number of refits of at least 2, got {B!r}")
    query = dict(treated=treated, control=control, evidence=evidence, n=n, outcome_level=outcome_level, **inputs)
    effect = ate(scm, treatment, outcome, **query)
    draws, unconverged = [], 0
    for _ in range(B):
        refitted, result = refit(scm, record, steps)
        unconverged += result.converged is False
        draws.append(ate(refitted, treatment, outcome, **query).ate)
    if unconverged:
        warnings.warn(f"bootstrap: {unconverged} of {B} refits did not converge; the spread may be off "
                      "(raise bootstrap_steps=)", ConvergenceWarning, stacklevel=3)
    effect.draws = torch.tensor(draws, dtype=torch.double)
    effect.sd = float(effect.draws.std())
    effect.covers = f"bootstrap over the data (B={B} refits: parameter uncertainty) and Monte Carlo error"
    return effect
