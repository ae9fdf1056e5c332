"""Interventional and observational queries: posterior samples, effects, ATE.

On a fully discrete SCM the answers are exact by default (``method="auto"``):
variable elimination, in :mod:`causalppl.causal.exact`. Everything else
(``method="sample"``) is Monte Carlo over the lowered model, vectorised in one plate:
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

import contextlib
import math
import numbers
import warnings
from dataclasses import dataclass, field

import torch

from causalppl.graph.scm import code_label
from causalppl.graph.values import check_count
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
    values, log_weights, _ = _weighted(scm, num_samples, inputs)
    return values, log_weights


def _weighted(scm, num_samples, inputs):
    """:func:`weighted_samples`, plus the discrete nodes' levels (see :func:`levels_of`)."""
    with torch.no_grad():
        with trace() as tr:
            values, weights = scm.model.simulate(num_samples, **inputs)
        log_weights = _log_weights(tr.trace, num_samples)
    _check_evidence(scm, log_weights)
    # Observed nodes come back as their (unbatched) observed values.
    values = {node: value.expand((num_samples,) + value.shape) if node in scm.observed else value
              for node, value in values.items()}
    values.update(weights)
    return values, log_weights - torch.logsumexp(log_weights, 0), levels_of(scm, tr.trace)


def _check_evidence(scm, log_weights):
    """Evidence that no draw can produce leaves nothing to weigh: say so, naming the observed nodes."""
    if log_weights.numel() and not bool(torch.isfinite(log_weights).any()):
        given = ", ".join(f"{node}={_shown(value)}" for node, value in scm.observed.items())
        nan = bool(torch.isnan(log_weights).all())
        why = "gives NaN log densities" if nan else "has probability zero"
        raise ValueError(f"the evidence {given} {why} in every one of {log_weights.numel()} draws from the "
                         "model; check the observed values against their nodes' mechanisms")


def _shown(value):
    value = torch.as_tensor(value)
    return f"{value.item():g}" if value.numel() == 1 else f"<{tuple(value.shape)} values>"


def _simulate(scm, n, inputs):
    """``n`` forward draws of every node, the discrete nodes' levels, and each drawn node's
    distribution given its parents (row by row)."""
    with torch.no_grad(), trace() as tr:
        values, _ = scm.model.simulate(n, **inputs)
    conditionals = {node: site["fn"] for node, site in tr.trace.nodes.items()
                    if node in values and site["type"] == "sample" and not site["is_observed"]
                    and not site["intervened"]}
    return values, levels_of(scm, tr.trace), conditionals


def _num_states(fn):
    """How many states a Bernoulli (2) or Categorical (K) draws; ``None`` for anything else."""
    while isinstance(fn, torch.distributions.Independent):
        fn = fn.base_dist
    if isinstance(fn, torch.distributions.Bernoulli):
        return 2
    if isinstance(fn, torch.distributions.Categorical):
        return fn.probs.shape[-1]
    return None


def levels_of(scm, tr):
    """Discrete node -> ``{code: label}`` in code order, from the SCM's labels and a trace of its model.

    A node with labels maps code ``k`` to ``labels[k]``; a node without labels
    whose mechanism draws from a Bernoulli or a Categorical uses its codes as
    labels. Continuous nodes (and unlabelled intervened ones) are left out.
    Raises ``ValueError`` naming the node when its labels and its
    mechanism disagree on the number of states.

    >>> import causalppl as cp
    >>> from causalppl.handlers import trace
    >>> scm = cp.SCM().add("t", "Bernoulli(0.3)", labels=("no", "yes")).add("c", "Categorical(probs=[0.5, 0.5])")
    >>> with trace() as tr:
    ...     _ = scm.model(n=3)
    >>> levels_of(scm, tr.trace)
    {'t': {0: 'no', 1: 'yes'}, 'c': {0: 0, 1: 1}}
    """
    levels = {}
    for node in scm.nodes:
        site = tr.nodes.get(node)
        states = None
        if site is not None and site["type"] == "sample" and not site.get("intervened"):
            states = _num_states(site["fn"])
        labels = scm.labels(node)
        if labels is not None and states is not None and states != len(labels):
            raise ValueError(f"node '{node}' has {len(labels)} labels {labels!r}, but its mechanism "
                             f"draws {states} states (codes 0..{states - 1})")
        if labels is not None:
            levels[node] = dict(enumerate(labels))
        elif states is not None:
            levels[node] = {k: k for k in range(states)}
    return levels


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
    samples, ess, _ = _resample_with_levels(scm, n, num_proposals, inputs)
    return samples, ess


def _resample_with_levels(scm, n, num_proposals, inputs):
    values, log_weights, levels = _weighted(scm, num_proposals, inputs)
    index = torch.multinomial(log_weights.exp(), n, replacement=True)
    samples = {node: value.index_select(0, index.to(value.device)) for node, value in values.items()}
    return samples, effective_sample_size(log_weights), levels


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
class Distribution:
    """``P(node = level | query)`` for each level of a discrete node, with Monte Carlo standard errors.

    ``probs`` and ``stderr`` map each label (the codes, for a node without
    labels) to a probability and its standard error, in code order.

    >>> d = Distribution("y", {"no": 0.75, "yes": 0.25}, {"no": 0.01, "yes": 0.01}, 1000, "do(t=yes)")
    >>> d["yes"], str(d).splitlines()[0]
    (0.25, 'P(y | do(t=yes))  n=1000')
    """

    node: str
    probs: dict
    stderr: dict
    n: int
    query: str = ""

    def __getitem__(self, label):
        if label not in self.probs:
            raise KeyError(f"node '{self.node}' has no level {label!r} (levels: {', '.join(map(repr, self.probs))})")
        return self.probs[label]

    def __str__(self):
        given = f" | {self.query}" if self.query else ""
        width = max(len(str(label)) for label in self.probs)
        lines = [f"P({self.node}{given})  n={self.n}"]
        lines += [f"  {str(label):<{width}}  {p:.4f} ± {self.stderr[label]:.2g}" for label, p in self.probs.items()]
        return "\n".join(lines)


@dataclass
class QueryResult:
    """Samples of every node under a query, with summaries.

    ``samples`` hold codes for discrete nodes; ``levels`` maps each discrete
    node to ``{code: label}`` (see :func:`levels_of`), which
    :meth:`distribution` and the printed form use.
    """

    samples: dict
    do: dict
    evidence: dict
    ess: float | None = None
    levels: dict = field(default_factory=dict)
    # node -> its distribution given its parents in each row (forward draws only);
    # effects average these conditional means instead of the noisy draws.
    conditionals: dict = field(default_factory=dict, repr=False)

    def _require(self, node):
        if node not in self.samples:
            raise KeyError(f"'{node}' is not a node (nodes: {', '.join(self.samples)})")

    def summary(self, node=None):
        """A :class:`Summary` of ``node`` (or a dict of them for all nodes)."""
        if node is not None:
            self._require(node)
            return summarize(self.samples[node], self.ess)
        return {name: summarize(value, self.ess) for name, value in self.samples.items()}

    def mean(self, node):
        return self.summary(node).mean

    def distribution(self, node):
        """``P(node = level | do, evidence)`` for every level of discrete ``node``: a :class:`Distribution`.

        >>> import causalppl as cp
        >>> cp.set_rng_seed(0)
        >>> scm = cp.SCM().add("t", "Bernoulli(0.5)", labels=("no", "yes"))
        >>> scm = scm.add("y", "Bernoulli(0.2 + 0.6 * t)", labels=("well", "ill"))
        >>> d = cp.causal.interventional(scm, do={"t": "yes"}, n=4000, method="sample").distribution("y")
        >>> list(d.probs), abs(d["ill"] - 0.8) < 4 * d.stderr["ill"]
        (['well', 'ill'], True)
        """
        self._require(node)
        if node not in self.levels:
            raise ValueError(f"node '{node}' is not discrete (it has no labels, and its mechanism is not a "
                             f"Bernoulli or Categorical); use summary('{node}') for its mean")
        values = self.samples[node].detach().reshape(-1)
        effective = self.ess if self.ess is not None else len(self.samples[node])
        probs, stderr = {}, {}
        for code, label in self.levels[node].items():
            p = float((values == code).double().mean())
            probs[label] = p
            stderr[label] = math.sqrt(p * (1 - p) / max(effective, 1))
        return Distribution(node, probs, stderr, len(self.samples[node]), self.query())

    def query(self):
        """The query in words: ``do(t=yes) given z=0.5`` (empty when observational)."""
        head = []
        if self.do:
            head.append("do(" + ", ".join(f"{k}={self._fmt(k, v)}" for k, v in self.do.items()) + ")")
        if self.evidence:
            head.append("given " + ", ".join(f"{k}={self._fmt(k, v)}" for k, v in self.evidence.items()))
        return " ".join(head)

    def _fmt(self, node, value):
        labels = tuple(self.levels[node].values()) if node in self.levels else None
        label = code_label(labels, value) if _is_number(value) else None
        return str(label) if label is not None else _fmt(value)

    def __getitem__(self, node):
        return self.samples[node]

    def to_dict(self):
        """The query and, per node, its mean, sd and standard error (and, when discrete, its
        distribution by label) as JSON-ready data."""
        from causalppl.tables import plain

        nodes = {}
        for name in self.samples:
            summary = self.summary(name)
            nodes[name] = {"mean": summary.mean, "sd": summary.std, "stderr": summary.stderr, "n": summary.n}
            if name in self.levels:
                nodes[name]["distribution"] = self.distribution(name).probs
        return plain({"do": self.do, "evidence": self.evidence, "ess": self.ess, "nodes": nodes})

    def to_frame(self, labels=True):
        """The samples as a pandas DataFrame (discrete nodes as categories of their labels)."""
        from causalppl.graph.samples import Samples

        names = {node: tuple(levels.values()) for node, levels in self.levels.items()
                 if list(levels) == list(range(len(levels)))}
        return Samples(self.samples, names).to_frame(labels=labels)

    def __str__(self):
        lines = [self.query() or "observational"]
        for name in self.samples:
            if name in self.levels:
                shown = self.distribution(name)
                worst = max(shown.stderr.values())
                text = ", ".join(f"{label} {p:.4g}" for label, p in shown.probs.items()) + f" (± {worst:.2g})"
            else:
                text = str(self.summary(name))
            lines.append(f"  {name}: {text}")
        return "\n".join(lines)


def _is_number(value):
    return isinstance(value, (numbers.Number, torch.Tensor))


def _fmt(value):
    """A value as text: numbers as ``%g``, tensors as lists, labels as themselves, interventions by their text."""
    if value is None:
        return "natural"
    if hasattr(value, "describe"):
        return value.describe()
    if not _is_number(value) and not isinstance(value, (list, tuple)):
        return str(value)
    if isinstance(value, (list, tuple)) and not all(_is_number(v) for v in value):
        return str(list(value))
    value = torch.as_tensor(value)
    return f"{value.item():g}" if value.numel() == 1 else str(value.tolist())


METHODS = ("auto", "exact", "sample")


def _exact(method, inputs, query, *args, **options):
    """The answer of ``exact.<query>`` when ``method`` allows it and exact inference applies, else ``None``.

    ``"auto"`` falls back silently (``None``: sample); ``"exact"`` raises
    :class:`~causalppl.causal.exact.ExactInferenceError` naming the node.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if method == "sample":
        return None
    from causalppl.causal import exact

    if inputs:
        if method == "exact":
            raise exact.ExactInferenceError(f"exact inference does not apply: inputs given ({', '.join(inputs)})")
        return None
    return getattr(exact, query)(*args, required=method == "exact", **options)


def interventional(scm, do=None, evidence=None, n=10000, method="auto", distributed=False, **inputs):
    """Samples of every node under ``do`` interventions, given ``evidence``.

    ``method="exact"`` answers by variable elimination (an exact
    :class:`~causalppl.causal.exact.ExactResult`, whose samples are drawn only
    if asked for); it needs every node that is not intervened on to be a
    Bernoulli or Categorical without Bayesian weights, and raises naming the
    node that is not. ``"auto"`` (the default) is exact where it applies and
    samples elsewhere; ``"sample"`` always samples.

    ``evidence`` is observed in the intervened world (conditional effects).
    Values may be labels of labelled nodes (``do={"t": "yes"}``); the samples
    hold codes, and :meth:`QueryResult.distribution` reports by label.
    After a Bayesian fit every row carries its own posterior draw of the
    mechanism weights, so the samples integrate over the fitted posterior.
    ``distributed=True`` shares the ``n`` draws among the ranks of ``torchrun``
    and combines their summaries (:func:`causalppl.causal.distributed.interventional`).

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.graphs.load("confounded")
    >>> result = cp.causal.interventional(scm, do={"x": 1.0}, n=20000)
    >>> abs(result.mean("y") - 2.0) < 0.1
    True
    """
    n = check_count(n)
    if distributed:
        from causalppl.causal import distributed as shared

        return shared.interventional(scm, do, evidence, n, **inputs)
    do, evidence = dict(do or {}), dict(evidence or {})
    answer = _exact(method, inputs, "interventional", scm, do, evidence, n=n)
    if answer is not None:
        return answer
    query = scm.do(**do) if do else scm
    do = _shown_do(query, do)
    if not evidence:
        values, levels, conditionals = _simulate(query, n, inputs)
        return QueryResult(values, do, evidence, levels=levels, conditionals=conditionals)
    samples, ess, levels = _resample_with_levels(query.condition(**evidence), n, max(20 * n, 20000), inputs)
    return QueryResult(nodes_only(scm, samples), do, evidence, ess=min(ess, n), levels=levels)


def _shown_do(query, do):
    """``do`` with shifts and stochastic interventions as their :class:`Intervention` (which prints its text)."""
    soft = query.soft_interventions
    return {node: soft[node] if node in soft and not isinstance(value, (numbers.Number, torch.Tensor, list, tuple))
            else value for node, value in do.items()}


def _arm(treatment, value):
    """One arm of an effect: ``do(treatment=value)``, or no intervention at all (``None``: the natural value)."""
    return {} if value is None else {treatment: value}


@dataclass
class EffectResult:
    """An average effect: ``ate = E[Y | do(T=treated)] - E[Y | do(T=control)]``.

    With ``outcome_level`` it is ``P(Y=level | do(T=treated)) - P(Y=level | do(T=control))``.

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
    outcome_level: object = None

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

    def to_dict(self):
        """The effect as JSON-ready data (``ate``, ``stderr``, ``interval``, ``covers``, ...)."""
        from causalppl.tables import plain

        low, high = self.interval()
        return plain({"treatment": self.treatment, "outcome": self.outcome, "treated": self.treated,
                      "control": self.control, "outcome_level": self.outcome_level, "ate": self.ate,
                      "stderr": self.stderr, "sd": self.sd, "interval": [low, high], "covers": self.covers,
                      "treated_mean": self.treated_mean, "control_mean": self.control_mean})

    def to_frame(self):
        """A one-row pandas DataFrame of :meth:`to_dict` (the interval as ``low`` and ``high``)."""
        from causalppl.tables import frame

        row = self.to_dict()
        row["low"], row["high"] = row.pop("interval")
        return frame([row])

    def __str__(self):
        low, high = self.interval()
        spread = f"sd {self.sd:.2g}" if self.sd is not None else f"± {self.stderr:.2g}"
        target = self.outcome if self.outcome_level is None else f"P({self.outcome}={_fmt(self.outcome_level)})"
        return (
            f"ATE of {self.treatment} on {target} "
            f"({_arm_text(self.treatment, self.treated)} vs {_arm_text(self.treatment, self.control)}): "
            f"{self.ate:.4g} {spread} [95% {low:.4g}, {high:.4g}; covers {self.covers}]"
        )


def _arm_text(treatment, value):
    return f"natural {treatment}" if value is None else f"do({treatment}={_fmt(value)})"


def _normal_quantile(p):
    return float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(p, dtype=torch.double)))


def ate(scm, treatment, outcome, treated=1.0, control=0.0, evidence=None, n=10000, bootstrap=None,
        outcome_level=None, bootstrap_steps=None, method="auto", distributed=False, **inputs):
    """Average treatment effect of ``treatment`` on ``outcome`` by simulation under do.

    ``method`` works as in :func:`interventional`: on a discrete SCM the
    effect is exact by default (the difference of exact means; ``stderr`` 0).

    With ``evidence`` it is the conditional effect given that evidence. Both
    arms share their random numbers, so the Monte Carlo error is that of the
    per-row differences. After a Bayesian fit the result integrates over the
    posterior of the weights and reports its spread (``sd``, ``interval``).
    ``bootstrap=B`` refits a fitted SCM on ``B`` resampled copies of its data
    (``bootstrap_steps`` SVI steps each) and reports the spread of the ``B``
    effects: parameter and Monte Carlo uncertainty together.

    ``treated``, ``control`` and the evidence may be labels of labelled
    nodes. For a discrete outcome, ``outcome_level`` (a label or code) makes
    the effect ``P(Y=level | do(treated)) - P(Y=level | do(control))``; it is
    required when the outcome has more than two levels. ``distributed=True``
    shares the draws among the ranks of ``torchrun`` (:func:`causalppl.causal.distributed.ate`).

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> effect = cp.causal.ate(cp.graphs.load("confounded"), "x", "y", n=2000)
    >>> round(effect.ate, 2), effect.stderr < 1e-6    # shared noise: every row's effect is exactly 2
    (2.0, True)
    """
    n = check_count(n)
    for name in (treatment, outcome):
        if name not in scm:
            raise KeyError(f"'{name}' is not a node (nodes: {', '.join(scm.nodes)})")
    if treatment == outcome:
        raise ValueError(f"treatment and outcome are both '{treatment}'")
    labels = scm.labels(outcome)
    if labels is not None:  # fail before simulating when the levels are known up front
        _outcome_code(outcome, dict(enumerate(labels)), outcome_level)
    if distributed:
        from causalppl.causal import distributed as shared

        return shared.ate(scm, treatment, outcome, treated, control, evidence, n, outcome_level, **inputs)
    if bootstrap is not None:
        from causalppl.causal.bootstrap import bootstrap_ate

        return bootstrap_ate(scm, treatment, outcome, treated, control, evidence, n, bootstrap, inputs,
                             steps=bootstrap_steps, outcome_level=outcome_level)
    answer = _exact(method, inputs, "ate", scm, treatment, outcome, treated, control, evidence, n=n,
                    outcome_level=outcome_level)
    if answer is not None:
        return answer
    posterior = scm._state.posterior if scm.model.global_sites else None
    if posterior and not evidence:
        # At least two rows per posterior draw, so each draw's effect and its
        # Monte Carlo noise can both be estimated (see _posterior_effects).
        n = max(n, 2 * next(iter(posterior.values())).shape[0])
    seed = int(torch.randint(2**62, ()))
    with _common_random_numbers(seed):
        high = interventional(scm, _arm(treatment, treated), evidence, n, method="sample", **inputs)
    with _common_random_numbers(seed):
        low = interventional(scm, _arm(treatment, control), evidence, n, method="sample", **inputs)
    treated, control = _shown_arm(treated, high, treatment), _shown_arm(control, low, treatment)
    code = _outcome_code(outcome, high.levels.get(outcome), outcome_level)
    effect = _contrast(treatment, outcome, treated, control, high, low, paired=not evidence, code=code)
    effect.outcome_level = outcome_level
    if posterior and not evidence:
        draws = next(iter(posterior.values())).shape[0]
        _add_parameter_draws(effect, _posterior_effects(_difference(high, low, outcome, code), draws),
                             f"the posterior of the weights ({draws} draws) and Monte Carlo error")
    elif posterior:
        effect.covers = ("Monte Carlo error only (the estimate averages over the posterior of the "
                         "weights, but this interval does not show its spread)")
    return effect


def _shown_arm(value, result, treatment):
    return result.do.get(treatment, value) if value is not None else None


def _outcome_code(outcome, levels, level):
    """The code of ``level`` among the outcome's ``levels`` (``None``: compare means).

    A discrete outcome with more than two levels has no meaningful mean, so
    it needs a level; a continuous outcome has none to give.
    """
    if levels is None:
        if level is not None:
            raise ValueError(f"outcome_level={level!r}, but node '{outcome}' is not discrete (it has no labels, "
                             "and its mechanism is not a Bernoulli or Categorical)")
        return None
    listed = ", ".join(map(repr, levels.values()))
    if level is None:
        if len(levels) > 2:
            raise ValueError(f"node '{outcome}' is categorical with levels {listed}: give outcome_level= "
                             f"(one of them) to compare P({outcome}=level) between the arms")
        return None
    for code, label in levels.items():
        if not isinstance(level, torch.Tensor) and level == label:
            return code
    if _is_number(level) and code_label(tuple(levels), level) is not None:
        return int(float(level))  # a code given for a labelled node
    raise ValueError(f"node '{outcome}': unknown outcome_level {level!r}; its levels are {listed}")


@contextlib.contextmanager
def _common_random_numbers(seed):
    """A block whose random draws start from ``seed``, leaving the global stream as it was."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _outcome_rows(result, outcome, code=None):
    """Per-row outcome (mean over event dims): the value, or the indicator of level ``code``.

    Where the outcome's distribution given its parents is known, each row
    gives its conditional mean (or the probability of ``code``) instead: the
    same expectation with the outcome's own noise averaged out
    (Rao-Blackwellisation), which matters most for discrete outcomes.
    """
    values = result.samples[outcome]
    expected = _conditional_mean(result.conditionals.get(outcome), code, values.shape)
    if expected is not None:
        values = expected
    elif code is not None:
        values = values == code
    return values.double().reshape(len(values), -1).mean(-1)


def _conditional_mean(fn, code, shape):
    """E[value] (or P(value = code)) under ``fn``, with ``shape``; ``None`` when unknown."""
    if fn is None:
        return None
    try:
        if code is None:
            mean = fn.mean
        elif isinstance(fn, torch.distributions.Bernoulli):
            mean = fn.probs if int(code) == 1 else 1 - fn.probs
        elif isinstance(fn, torch.distributions.Categorical):
            mean = fn.probs[..., int(code)]
        else:
            return None
    except NotImplementedError:
        return None
    if not torch.isfinite(mean).all():
        return None  # e.g. a Cauchy outcome: keep the draws
    return mean.expand(shape) if mean.shape != shape else mean


def _difference(high, low, outcome, code=None):
    return _outcome_rows(high, outcome, code) - _outcome_rows(low, outcome, code)


def _posterior_effects(values, groups):
    """The effect under each posterior draw, from the rows that used it (row ``i`` used draw ``i % groups``).

    A draw's mean over its few rows carries Monte Carlo noise, which would
    widen the spread of the draws beyond the posterior's (a discrete outcome
    has much of it). So the group means are shrunk towards their mean by the
    factor that removes the within-group noise from their variance (the
    one-way analysis-of-variance estimate of the between-draw variance); for
    outcomes the shared noise makes exact, nothing is shrunk.

    >>> rows = torch.tensor([1.0, 3.0, 5.0, 7.0])       # draws 0 and 1 alternate
    >>> _posterior_effects(rows, 2)                      # groups {1, 5} and {3, 7}: the difference is noise
    tensor([4., 4.], dtype=torch.float64)
    """
    values = values.double()
    index = torch.arange(len(values), device=values.device) % groups
    counts = torch.bincount(index, minlength=groups).to(values.dtype)
    means = torch.zeros(groups, dtype=values.dtype, device=values.device).index_add_(0, index, values) / counts
    if groups < 2:
        return means
    squares = torch.zeros_like(means).index_add_(0, index, (values - means[index]) ** 2)
    within = float(squares.sum() / (counts - 1).clamp(min=1).sum())  # pooled within-draw variance
    between = float(means.var())
    noise = within * float((1 / counts).mean())
    if between <= 0:
        return means
    factor = math.sqrt(max(between - noise, 0.0) / between)
    centre = means.mean()
    return centre + factor * (means - centre)


def _add_parameter_draws(effect, draws, covers):
    effect.draws = draws.detach().cpu()
    effect.sd = float(effect.draws.std()) if len(effect.draws) > 1 else 0.0
    effect.covers = covers
    return effect


def _contrast(treatment, outcome, treated, control, high, low, paired=False, code=None):
    high_summary = summarize(_outcome_rows(high, outcome, code), high.ess)
    low_summary = summarize(_outcome_rows(low, outcome, code), low.ess)
    stderr = math.hypot(high_summary.stderr, low_summary.stderr)
    if paired:
        stderr = summarize(_difference(high, low, outcome, code)).stderr
    return EffectResult(
        treatment, outcome, treated, control,
        ate=high_summary.mean - low_summary.mean,
        stderr=stderr,
        treated_mean=high_summary.mean, control_mean=low_summary.mean,
        treated_result=high, control_result=low,
    )


def association(scm, treatment, outcome, treated=1.0, control=0.0, n=10000, outcome_level=None, method="auto",
                **inputs):
    """The naive contrast ``E[Y | T=treated] - E[Y | T=control]`` (conditioning, not do).

    It equals the ATE only when nothing confounds treatment and outcome.
    ``outcome_level`` and ``method`` work as in :func:`ate`.
    """
    answer = _exact(method, inputs, "association", scm, treatment, outcome, treated, control, n=n,
                    outcome_level=outcome_level)
    if answer is not None:
        return answer
    high = interventional(scm, evidence={treatment: treated}, n=n, method="sample", **inputs)
    low = interventional(scm, evidence={treatment: control}, n=n, method="sample", **inputs)
    code = _outcome_code(outcome, high.levels.get(outcome), outcome_level)
    effect = _contrast(treatment, outcome, treated, control, high, low, code=code)
    effect.outcome_level = outcome_level
    return effect
