"""Interventional and observational queries: posterior samples, effects, ATE.

Everything is Monte Carlo over the lowered model, vectorised in one plate:
forward sampling when nothing is observed, likelihood weighting (importance
sampling with the model as proposal) and resampling when something is.
Every summary carries its Monte Carlo standard error.

>>> import causalppl as cp
>>> cp.set_rng_seed(0)
>>> scm = cp.graphs.load("confounded")
>>> effect = cp.causal.ate(scm, "x", "y", n=20000)
>>> abs(effect.ate - 2.0) < 4 * effect.stderr
True
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from causalppl.handlers import trace
from causalppl.trace import log_prob_of


def _log_weights(tr, n):
    """Per-row sum of the observed sites' log densities (shape ``(n,)``)."""
    total = torch.zeros(n)
    for site in tr.nodes.values():
        if site["type"] == "sample" and site["is_observed"] and not site["intervened"]:
            log_prob = log_prob_of(site)
            rows = log_prob.reshape(n, -1).sum(-1) if log_prob.dim() > 0 else log_prob
            total = total.to(log_prob.device) + rows
    return total


def weighted_samples(scm, num_samples, **inputs):
    """(samples dict, normalised log weights) by likelihood weighting over ``num_samples`` rows.

    The samples hold every node and, for Bayesian mechanisms, each row's
    weights (sites named ``node.weight`` and so on): every row carries its own
    draw of them, so each row is weighed by its own likelihood.
    """
    with torch.no_grad():
        with trace() as tr:
            values, weights = scm.model.simulate(num_samples, **inputs)
        log_weights = _log_weights(tr.trace, num_samples)
    # Observed nodes come back as their (unbatched) observed values.
    values = {node: value.expand((num_samples,) + value.shape) if node in scm.observed else value
              for node, value in values.items()}
    values.update(weights)
    return values, log_weights - torch.logsumexp(log_weights, 0)


def effective_sample_size(log_weights):
    """Kish's effective sample size of normalised log weights."""
    return float(torch.exp(-torch.logsumexp(2 * log_weights, 0)))


def posterior_samples(scm, n, num_proposals=None, min_ess=100, **inputs):
    """``n`` draws of every node given the SCM's observed nodes.

    Likelihood weighting with ``num_proposals`` (default ``max(20 n, 20000)``)
    prior draws, then multinomial resampling. Warns when the effective
    sample size falls below ``min_ess``.
    """
    samples, ess = _resample(scm, n, num_proposals or max(20 * n, 20000), inputs)
    if ess < min_ess:
        warnings.warn(
            f"likelihood weighting kept an effective sample size of only {ess:.0f} "
            f"given {sorted(scm.observed)}; estimates may be poor (fit the SCM by SVI instead)",
            stacklevel=3,
        )
    return nodes_only(scm, samples)


def nodes_only(scm, samples):
    """Drop the per-row weight sites from a samples dict, keeping the nodes."""
    return {name: value for name, value in samples.items() if name in scm}


def _resample(scm, n, num_proposals, inputs):
    """``n`` resampled rows of a likelihood-weighted run, and its effective sample size."""
    values, log_weights = weighted_samples(scm, num_proposals, **inputs)
    index = torch.multinomial(log_weights.exp(), n, replacement=True)
    samples = {node: value.index_select(0, index.to(value.device)) for node, value in values.items()}
    return samples, effective_sample_size(log_weights)


@dataclass
class Summary:
    """Mean, standard deviation and Monte Carlo standard error of one quantity."""

    mean: float
    std: float
    stderr: float
    n: int

    def __str__(self):
        return f"{self.mean:.4g} ± {self.stderr:.2g} (sd {self.std:.4g}, n={self.n})"


def summarize(samples, ess=None):
    samples = samples.detach().double().reshape(samples.shape[0], -1).squeeze(-1)
    n = samples.shape[0]
    std = float(samples.std(0).mean()) if n > 1 else 0.0
    effective = ess if ess is not None else n
    return Summary(float(samples.mean(0).mean()), std, std / math.sqrt(max(effective, 1)), n)


@dataclass
class QueryResult:
    """Samples of every node under a query, with summaries."""

    samples: dict
    do: dict
    evidence: dict
    ess: float | None = None

    def summary(self, node=None):
        """A :class:`Summary` of ``node`` (or a dict of them for all nodes)."""
        if node is not None:
            if node not in self.samples:
                raise KeyError(f"'{node}' is not a node (nodes: {', '.join(self.samples)})")
            return summarize(self.samples[node], self.ess)
        return {name: summarize(value, self.ess) for name, value in self.samples.items()}

    def mean(self, node):
        return self.summary(node).mean

    def __getitem__(self, node):
        return self.samples[node]

    def __str__(self):
        head = []
        if self.do:
            head.append("do(" + ", ".join(f"{k}={_fmt(v)}" for k, v in self.do.items()) + ")")
        if self.evidence:
            head.append("given " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.evidence.items()))
        lines = [" ".join(head) or "observational"]
        lines += [f"  {name}: {summary}" for name, summary in self.summary().items()]
        return "\n".join(lines)


def _fmt(value):
    value = torch.as_tensor(value)
    return f"{value.item():g}" if value.numel() == 1 else str(value.tolist())


def interventional(scm, do=None, evidence=None, n=10000, **inputs):
    """Samples of every node under ``do`` interventions, given ``evidence``.

    ``evidence`` is observed in the intervened world (conditional effects).
    After a Bayesian fit every row carries its own posterior draw of the
    mechanism weights, so the samples integrate over the fitted posterior.

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.graphs.load("confounded")
    >>> result = cp.causal.interventional(scm, do={"x": 1.0}, n=20000)
    >>> abs(result.mean("y") - 2.0) < 0.1
    True
    """
    do, evidence = dict(do or {}), dict(evidence or {})
    query = scm.do(**do) if do else scm
    if not evidence:
        with torch.no_grad():
            values, _ = query.model.simulate(n, **inputs)
        return QueryResult(values, do, evidence)
    samples, ess = _resample(query.condition(**evidence), n, max(20 * n, 20000), inputs)
    return QueryResult(nodes_only(scm, samples), do, evidence, ess=min(ess, n))


@dataclass
class EffectResult:
    """An average effect: ``ate = E[Y | do(T=treated)] - E[Y | do(T=control)]``.

    ``stderr`` is the Monte Carlo standard error of ``ate``. When the
    parameters are uncertain too (a Bayesian fit's posterior, or ``bootstrap=``
    refits of a point fit), ``draws`` holds the effect under each parameter
    draw, ``sd`` their spread, and :meth:`interval` their percentile interval;
    ``covers`` says in words what the interval covers.
    """

    treatment: str
    outcome: str
    treated: object
    control: object
    ate: float
    stderr: float
    treated_mean: float
    control_mean: float
    treated_result: QueryResult
    control_result: QueryResult
    sd: float | None = None
    draws: torch.Tensor | None = None
    covers: str = "Monte Carlo error only (the model's parameters are taken as known)"

    def interval(self, level=0.95):
        """The ``level`` interval: percentiles of ``draws`` when there are any,
        else the normal-approximation interval of the Monte Carlo estimate."""
        if not 0 < level < 1:
            raise ValueError(f"interval: level must be between 0 and 1, got {level!r}")
        if self.draws is not None and len(self.draws) > 1:
            tail = (1 - level) / 2
            low, high = torch.quantile(self.draws.double(), torch.tensor([tail, 1 - tail], dtype=torch.double))
            return float(low), float(high)
        z = _normal_quantile(0.5 + level / 2)
        return self.ate - z * self.stderr, self.ate + z * self.stderr

    def __str__(self):
        low, high = self.interval()
        spread = f"sd {self.sd:.2g}" if self.sd is not None else f"± {self.stderr:.2g}"
        return (
            f"ATE of {self.treatment} on {self.outcome} "
            f"(do({self.treatment}={_fmt(self.treated)}) vs do({self.treatment}={_fmt(self.control)})): "
            f"{self.ate:.4g} {spread} [95% {low:.4g}, {high:.4g}; covers {self.covers}]"
        )


def _normal_quantile(p):
    return float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(p, dtype=torch.double)))


def ate(scm, treatment, outcome, treated=1.0, control=0.0, evidence=None, n=10000, bootstrap=None,
        **inputs):
    """Average treatment effect of ``treatment`` on ``outcome`` by simulation under do.

    With ``evidence`` it is the conditional effect given that evidence. Both
    arms share their random numbers, so the Monte Carlo error is that of the
    per-row differences. After a Bayesian fit the result integrates over the
    posterior of the weights and reports its spread (``sd``, ``interval``).
    ``bootstrap=B`` refits a fitted SCM on ``B`` resampled copies of its data
    and reports the spread of the ``B`` effects: parameter and Monte Carlo
    uncertainty together.

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> effect = cp.causal.ate(cp.graphs.load("confounded"), "x", "y", n=2000)
    >>> round(effect.ate, 2), effect.stderr < 1e-6    # shared noise: every row's effect is exactly 2
    (2.0, True)
    """
    for name in (treatment, outcome):
        if name not in scm:
            raise KeyError(f"'{name}' is not a node (nodes: {', '.join(scm.nodes)})")
    if treatment == outcome:
        raise ValueError(f"treatment and outcome are both '{treatment}'")
    if bootstrap is not None:
        from causalppl.causal.bootstrap import bootstrap_ate

        return bootstrap_ate(scm, treatment, outcome, treated, control, evidence, n, bootstrap, inputs)
    seed = int(torch.randint(2**62, ()))
    with _common_random_numbers(seed):
        high = interventional(scm, {treatment: treated}, evidence, n, **inputs)
    with _common_random_numbers(seed):
        low = interventional(scm, {treatment: control}, evidence, n, **inputs)
    effect = _contrast(treatment, outcome, treated, control, high, low, paired=not evidence)
    posterior = scm._state.posterior if scm.model.global_sites else None
    if posterior and not evidence:
        draws = next(iter(posterior.values())).shape[0]
        _add_parameter_draws(effect, _group_means(_difference(high, low, outcome), draws),
                             f"the posterior of the weights ({draws} draws) and Monte Carlo error")
    elif posterior:
        effect.covers = ("Monte Carlo error only (the estimate averages over the posterior of the "
                         "weights, but this interval does not show its spread)")
    return effect


def _common_random_numbers(seed):
    """A block whose random draws start from ``seed``, leaving the global stream as it was."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    fork = torch.random.fork_rng(devices=devices)

    class _Seeded:
        def __enter__(self):
            fork.__enter__()
            torch.manual_seed(seed)

        def __exit__(self, *exc):
            return fork.__exit__(*exc)

    return _Seeded()


def _difference(high, low, outcome):
    return high.samples[outcome].double().reshape(len(high.samples[outcome]), -1).mean(-1) - \
        low.samples[outcome].double().reshape(len(low.samples[outcome]), -1).mean(-1)


def _group_means(values, groups):
    """Means of ``values`` by row group ``i % groups`` (the posterior draw row ``i`` used)."""
    groups = min(groups, len(values))
    index = torch.arange(len(values), device=values.device) % groups
    totals = torch.zeros(groups, dtype=values.dtype, device=values.device).index_add_(0, index, values)
    return totals / torch.bincount(index, minlength=groups).to(values.dtype)


def _add_parameter_draws(effect, draws, covers):
    effect.draws = draws.detach().cpu()
    effect.sd = float(effect.draws.std()) if len(effect.draws) > 1 else 0.0
    effect.covers = covers
    return effect


def _contrast(treatment, outcome, treated, control, high, low, paired=False):
    high_summary, low_summary = high.summary(outcome), low.summary(outcome)
    stderr = math.hypot(high_summary.stderr, low_summary.stderr)
    if paired:
        stderr = summarize(_difference(high, low, outcome)).stderr
    return EffectResult(
        treatment, outcome, treated, control,
        ate=high_summary.mean - low_summary.mean,
        stderr=stderr,
        treated_mean=high_summary.mean, control_mean=low_summary.mean,
        treated_result=high, control_result=low,
    )


def association(scm, treatment, outcome, treated=1.0, control=0.0, n=10000, **inputs):
    """The naive contrast ``E[Y | T=treated] - E[Y | T=control]`` (conditioning, not do).

    It equals the ATE only when nothing confounds treatment and outcome.
    """
    high = interventional(scm, evidence={treatment: treated}, n=n, **inputs)
    low = interventional(scm, evidence={treatment: control}, n=n, **inputs)
    return _contrast(treatment, outcome, treated, control, high, low)
