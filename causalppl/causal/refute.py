"""Checking a causal graph against data, and refuting an effect estimate.

:func:`falsify` tests every conditional independence the graph's local
Markov condition implies (each node is independent of its non-descendants
given its parents) and compares the graph with graphs whose nodes are
permuted, as DoWhy-gcm's ``falsify_graph`` does (Eulig et al. 2023, "Toward
falsifying causal graphs using a permutation-based test"): a graph worth
keeping violates few of its independences, and fewer than most permuted
graphs violate theirs.

The refuters re-estimate the effect of a treatment after a change that
should not move it (or should move it in a known way), as DoWhy's refuters
do: :func:`placebo_treatment`, :func:`random_common_cause`,
:func:`data_subset`, :func:`unobserved_common_cause`; :func:`refute` picks
one by name. The effect is the backdoor-adjusted least-squares slope
(:func:`backdoor_estimate`).

>>> import causalppl as cp
>>> cp.set_rng_seed(0)
>>> scm = cp.graphs.load("confounded")
>>> data = scm.sample(2000)
>>> falsify(scm, data).rejected
False
>>> falsify([("z", "x"), ("x", "y")], data).rejected     # the edge z -> y is missing
True
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import networkx as nx
import torch

from causalppl.causal.identify import backdoor_sets
from causalppl.graph.columns import read_columns

CI_METHODS = ("regression", "kernel")
KERNEL_ROWS = 1000  # HSIC is quadratic in the rows: larger data are subsampled


# ---------------------------------------------------------------------------
# data and graphs


def _as_dag(graph):
    """A plain ``networkx.DiGraph`` from a DiGraph, an SCM, or a list of edges."""
    if hasattr(graph, "graph") and isinstance(graph.graph, nx.DiGraph):
        graph = graph.graph
    if isinstance(graph, (list, tuple)):
        graph = nx.DiGraph(list(graph))
    if not isinstance(graph, nx.DiGraph):
        raise TypeError(f"expected a networkx.DiGraph, an SCM or a list of edges, got {type(graph).__name__}")
    if not nx.is_directed_acyclic_graph(graph):
        raise ValueError(f"the graph has a cycle: {nx.find_cycle(graph)}")
    dag = nx.DiGraph()
    dag.add_nodes_from(graph.nodes)
    dag.add_edges_from(graph.edges)
    return dag


def _features(data):
    """Column name -> feature matrix ``(rows, k)``: codes of a categorical column one-hot, others as they are."""
    features = {}
    for name, column in read_columns(data).items():
        values = column.values.double().reshape(len(column.values), -1)
        if column.kind == "categorical" and column.cardinality > 2:
            codes = values[:, 0].long()
            values = torch.nn.functional.one_hot(codes, column.cardinality)[:, 1:].double()
        features[name] = values
    return features


def _require_columns(features, names, what):
    missing = [name for name in names if name not in features]
    if missing:
        raise KeyError(f"{what}: the data have no column for {', '.join(map(repr, missing))} "
                       f"(columns: {', '.join(features)})")


def _design(features, names, rows):
    """An intercept and the named columns' features: ``(rows, 1 + k)``."""
    ones = torch.ones(rows, 1, dtype=torch.double, device=_device(features))
    return torch.cat([ones] + [features[name].to(ones.device) for name in names], -1)


def _device(features):
    return next(iter(features.values())).device


def _residuals(target, design):
    """Least-squares residuals of ``target`` (rows, k) on ``design``, in double precision."""
    target, design = target.double(), design.double()
    solution = torch.linalg.lstsq(design.cpu(), target.cpu()).solution.to(target.device)
    return target - design @ solution


def _normal_sf(z):
    return 0.5 * math.erfc(z / math.sqrt(2))


# ---------------------------------------------------------------------------
# conditional independence tests


@dataclass
class IndependenceTest:
    """One implied independence ``x _||_ y | given`` and what the data say about it."""

    x: str
    y: str
    given: tuple
    statistic: float
    p_value: float
    rejected: bool = False

    def __str__(self):
        given = f" | {', '.join(self.given)}" if self.given else ""
        verdict = "rejected" if self.rejected else "not rejected"
        return f"{self.x} _||_ {self.y}{given}: p = {self.p_value:.3g} ({verdict})"


def partial_correlation_test(features, x, y, given=()):
    """``(statistic, p_value)`` for ``x _||_ y | given``: the partial correlation by regression, Fisher's z.

    The residuals of ``x`` and ``y`` on ``given`` (least squares with an
    intercept) are correlated; with several feature columns (one-hot) the
    largest correlation is Bonferroni-corrected.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(500, 1, generator=g, dtype=torch.double)
    >>> f = {"z": z, "x": z + torch.randn(500, 1, generator=g), "y": z + torch.randn(500, 1, generator=g)}
    >>> partial_correlation_test(f, "x", "y")[1] < 1e-6, partial_correlation_test(f, "x", "y", ["z"])[1] > 0.01
    (True, True)
    """
    rows = features[x].shape[0]
    design = _design(features, given, rows)
    rx, ry = _residuals(features[x], design), _residuals(features[y], design)
    rx, ry = rx - rx.mean(0), ry - ry.mean(0)
    scale = rx.norm(dim=0).unsqueeze(-1) * ry.norm(dim=0).unsqueeze(0)
    correlation = (rx.T @ ry) / scale.clamp_min(1e-300)
    dof = rows - design.shape[1] - 2
    if dof < 1:
        raise ValueError(f"testing {x} _||_ {y} given {list(given)} needs more than {design.shape[1] + 2} rows")
    r = float(correlation.abs().max().clamp(max=1 - 1e-12))
    z = math.atanh(r) * math.sqrt(dof)
    p = min(1.0, 2 * _normal_sf(z) * correlation.numel())
    return z, p


def _gaussian_gram(values):
    distances = torch.cdist(values, values).pow(2)
    positive = distances[distances > 0]
    bandwidth = positive.median() if positive.numel() else torch.tensor(1.0, dtype=values.dtype)
    return torch.exp(-distances / bandwidth)


def kernel_test(features, x, y, given=()):
    """``(statistic, p_value)`` for ``x _||_ y | given`` by HSIC of the regression residuals.

    The residuals of ``x`` and ``y`` on ``given`` (least squares) are tested
    for any dependence by the Hilbert-Schmidt independence criterion with
    Gaussian kernels (median bandwidth) and its gamma approximation
    (Gretton et al. 2008). At most 1000 rows are used.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(400, 1, generator=g, dtype=torch.double)
    >>> f = {"x": x, "y": x ** 2 + 0.1 * torch.randn(400, 1, generator=g), "w": torch.randn(400, 1, generator=g)}
    >>> kernel_test(f, "x", "y")[1] < 1e-3, kernel_test(f, "x", "w")[1] > 0.01   # uncorrelated, yet dependent
    (True, True)
    """
    rows = features[x].shape[0]
    design = _design(features, given, rows)
    rx, ry = _residuals(features[x], design), _residuals(features[y], design)
    if rows > KERNEL_ROWS:
        keep = torch.randperm(rows, device=rx.device)[:KERNEL_ROWS]
        rx, ry, rows = rx[keep], ry[keep], KERNEL_ROWS
    rx, ry = rx / rx.std(0).clamp_min(1e-12), ry / ry.std(0).clamp_min(1e-12)
    k, l_ = _gaussian_gram(rx), _gaussian_gram(ry)
    centring = torch.eye(rows, dtype=k.dtype, device=k.device) - 1.0 / rows
    kc, lc = centring @ k @ centring, centring @ l_ @ centring
    statistic = float((kc * lc).sum() / rows)
    # Gamma approximation of the null distribution (mean and variance of rows * HSIC).
    mu_k = float((k.sum() - k.trace()) / (rows * (rows - 1)))
    mu_l = float((l_.sum() - l_.trace()) / (rows * (rows - 1)))
    mean = (1 + mu_k * mu_l - mu_k - mu_l)
    var_terms = (kc * lc / 6).pow(2)
    variance = float((var_terms.sum() - var_terms.trace()) / (rows * (rows - 1)))
    variance = 72 * (rows - 4) * (rows - 5) / (rows * (rows - 1) * (rows - 2) * (rows - 3)) * variance
    variance *= rows ** 2  # of rows * HSIC
    if mean <= 0 or variance <= 0:
        return statistic, 1.0
    shape, scale = mean ** 2 / variance, variance / mean
    gamma = torch.distributions.Gamma(torch.tensor(shape, dtype=torch.double),
                                      torch.tensor(1 / scale, dtype=torch.double))
    p = 1.0 - float(torch.special.gammainc(gamma.concentration, gamma.rate * statistic))
    return statistic, max(p, 0.0)


CI_TESTS = {"regression": partial_correlation_test, "kernel": kernel_test}


# ---------------------------------------------------------------------------
# falsify


def local_markov_statements(graph):
    """The local Markov independences of a DAG: ``(x, y, parents of x)`` for each non-descendant ``y``.

    A statement and its mirror with the same conditioning set are listed once.

    >>> local_markov_statements(nx.DiGraph([("a", "b"), ("b", "c")]))
    [('c', 'a', ('b',))]
    """
    position = {node: i for i, node in enumerate(graph.nodes)}
    statements, seen = [], set()
    for x in graph.nodes:
        parents = tuple(sorted(graph.predecessors(x), key=position.__getitem__))
        others = set(graph.nodes) - nx.descendants(graph, x) - set(parents) - {x}
        for y in sorted(others, key=position.__getitem__):
            key = (frozenset((x, y)), frozenset(parents))
            if key not in seen:
                seen.add(key)
                statements.append((x, y, parents))
    return statements


def _markov_class(graph):
    """Skeleton and v-structures: two DAGs imply the same independences iff these agree."""
    skeleton = frozenset(frozenset(edge) for edge in graph.edges)
    colliders = frozenset(
        (frozenset((a, b)), c) for c in graph.nodes
        for a, b in itertools.combinations(graph.predecessors(c), 2)
        if not graph.has_edge(a, b) and not graph.has_edge(b, a))
    return skeleton, colliders


@dataclass
class FalsifyResult:
    """What the data say about a graph's implied independences, against permuted graphs.

    ``tests``: one :class:`IndependenceTest` per local Markov statement;
    each is ``rejected`` when its p-value falls below ``significance``
    divided by the number of tests (Bonferroni). ``rejected`` (also
    ``falsified``): the data reject at least one implied independence.
    ``permuted_violations``: the fraction of its own statements each
    permuted graph violates; ``permutation_p_value``: the share of permuted
    graphs that do at least as well as the given one (small: the graph fits
    the data better than a random relabelling). ``informative``: few
    permuted graphs imply the same independences as the given one (the
    share, ``equivalent_share``, is below ``significance``), so the
    comparison with them means something.
    """

    tests: list
    significance: float
    method: str
    permuted_violations: list = field(default_factory=list)
    permutation_p_value: float = math.nan
    equivalent_share: float = math.nan

    @property
    def violations(self):
        """The rejected tests."""
        return [test for test in self.tests if test.rejected]

    @property
    def violation_fraction(self):
        return len(self.violations) / len(self.tests) if self.tests else 0.0

    @property
    def rejected(self):
        return bool(self.violations)

    @property
    def falsified(self):
        return self.rejected

    @property
    def p_value(self):
        """Same as ``permutation_p_value``."""
        return self.permutation_p_value

    @property
    def informative(self):
        return self.equivalent_share < self.significance

    def __str__(self):
        lines = [f"{len(self.violations)} of {len(self.tests)} implied independences rejected "
                 f"({self.method} tests, significance {self.significance:g}, Bonferroni)"]
        lines += [f"  {test}" for test in self.tests]
        if self.permuted_violations:
            lines.append(f"it does better than {100 * (1 - self.permutation_p_value):.0f}% of "
                         f"{len(self.permuted_violations)} permuted graphs (p = {self.permutation_p_value:.3g}); "
                         f"{100 * self.equivalent_share:.0f}% of them imply the same independences"
                         f"{'' if self.informative else ' (so the comparison is not informative)'}")
        verdict = "the data reject the graph" if self.rejected else "the data do not reject the graph"
        lines.append(verdict)
        return "\n".join(lines)


def _run_tests(statements, test, features, significance, cache):
    """Test each statement (cached by statement, as permuted graphs share many)."""
    level = significance / max(len(statements), 1)
    results = []
    for x, y, given in statements:
        key = (frozenset((x, y)), frozenset(given))
        if key not in cache:
            cache[key] = test(features, x, y, given)
        statistic, p = cache[key]
        results.append(IndependenceTest(x, y, tuple(given), statistic, p, p < level))
    return results


def _permutations(nodes, count, generator):
    """``count`` random relabellings of ``nodes`` (every one, when there are no more than ``count``)."""
    if math.factorial(len(nodes)) <= count:
        return [dict(zip(nodes, order)) for order in itertools.permutations(nodes)]
    return [dict(zip(nodes, [nodes[i] for i in torch.randperm(len(nodes), generator=generator).tolist()]))
            for _ in range(count)]


def falsify(graph, data, method="regression", significance=0.05, permutations=50, seed=None):
    """Test the independences ``graph`` implies against ``data``, and compare with permuted graphs.

    Parameters
    ----------
    graph : networkx.DiGraph, SCM, or list of edges
        The causal graph; every node needs a data column.
    data : dict of columns or DataFrame
    method : "regression" (partial correlation, Fisher's z) or "kernel" (HSIC
        of the regression residuals: catches non-linear dependence)
    significance : the level of the tests (Bonferroni over a graph's tests)
    permutations : how many node permutations form the baseline (all of
        them when there are fewer; 0 for none)
    seed : for the permutations

    Returns
    -------
    FalsifyResult

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> data = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(a, 1)").add("c", "Normal(b, 1)").sample(1000)
    >>> result = falsify([("a", "b"), ("b", "c")], data)
    >>> [str(t).split(":")[0] for t in result.tests], result.rejected
    (['c _||_ a | b'], False)
    """
    if method not in CI_TESTS:
        raise ValueError(f"falsify: method must be one of {', '.join(CI_TESTS)}, got {method!r}")
    dag = _as_dag(graph)
    features = _features(data)
    _require_columns(features, list(dag.nodes), "falsify")
    cache = {}
    test = CI_TESTS[method]
    result = FalsifyResult(_run_tests(local_markov_statements(dag), test, features, significance, cache),
                           significance, method)
    if permutations:
        generator = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(2**31, ())))
        own_class = _markov_class(dag)
        fractions, same = [], 0
        for relabel in _permutations(list(dag.nodes), permutations, generator):
            permuted = nx.relabel_nodes(dag, relabel)
            tests = _run_tests(local_markov_statements(permuted), test, features, significance, cache)
            fractions.append(sum(t.rejected for t in tests) / len(tests) if tests else 0.0)
            same += _markov_class(permuted) == own_class
        result.permuted_violations = fractions
        result.permutation_p_value = sum(f <= result.violation_fraction for f in fractions) / len(fractions)
        result.equivalent_share = same / len(fractions)
    return result


# ---------------------------------------------------------------------------
# effect estimates and refuters


@dataclass
class EffectEstimate:
    """A backdoor-adjusted least-squares effect: ``value`` ± ``stderr``, adjusting for ``adjustment``."""

    treatment: str
    outcome: str
    value: float
    stderr: float
    adjustment: tuple

    def __str__(self):
        given = f" adjusting for {', '.join(self.adjustment)}" if self.adjustment else ""
        return f"effect of {self.treatment} on {self.outcome}{given}: {self.value:.4g} ± {self.stderr:.2g}"


def _adjustment(graph, features, treatment, outcome, adjustment):
    if adjustment is not None:
        return tuple(adjustment)
    dag = _as_dag(graph)
    latent = [node for node in dag.nodes if node not in features]
    sets = backdoor_sets(dag, treatment, outcome, latent=latent)
    if not sets:
        raise ValueError(f"no observed backdoor adjustment set identifies the effect of '{treatment}' on "
                         f"'{outcome}' in this graph (latent: {latent or 'none'}); give adjustment= yourself")
    return tuple(sorted(min(sets, key=lambda s: (len(s), sorted(map(str, s)))), key=str))


def _slope(features, treatment, outcome, adjustment):
    """The least-squares coefficient of the treatment in ``outcome ~ 1 + treatment + adjustment``."""
    y = features[outcome][:, :1]
    design = _design(features, (treatment, *adjustment), y.shape[0])
    solution = torch.linalg.lstsq(design.cpu(), y.cpu()).solution
    residual = y.cpu() - design.cpu() @ solution
    sigma2 = residual.pow(2).sum() / max(y.shape[0] - design.shape[1], 1)
    covariance = sigma2 * torch.linalg.pinv(design.cpu().T @ design.cpu())
    return float(solution[1, 0]), float(covariance[1, 1].sqrt())


def backdoor_estimate(graph, data, treatment, outcome, adjustment=None):
    """The effect of ``treatment`` on ``outcome`` by least squares, adjusting for a backdoor set.

    ``adjustment`` defaults to the smallest valid set among the observed
    nodes (:func:`causalppl.causal.identify.backdoor_sets`; nodes without a
    data column count as latent). Returns an :class:`EffectEstimate`.

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.graphs.load("confounded")
    >>> estimate = backdoor_estimate(scm, scm.sample(5000), "x", "y")
    >>> estimate.adjustment, abs(estimate.value - 2) < 4 * estimate.stderr
    (('z',), True)
    """
    features = _features(data)
    _require_columns(features, [treatment, outcome], "backdoor_estimate")
    chosen = _adjustment(graph, features, treatment, outcome, adjustment)
    _require_columns(features, chosen, "backdoor_estimate")
    value, stderr = _slope(features, treatment, outcome, chosen)
    return EffectEstimate(treatment, outcome, value, stderr, chosen)


@dataclass
class RefuteResult:
    """An estimate, the estimates after a refuter's change, and the verdict.

    ``new_estimates`` holds one re-estimate per simulation; ``new_effect``
    their mean. ``p_value`` is the probability, under what the refuter
    expects, of a discrepancy at least as large as the one seen (``None``
    when it expects none in particular); ``passed``: the refuter does not
    cast doubt on the estimate. ``expected`` says what it expects.
    """

    method: str
    estimate: EffectEstimate
    new_estimates: torch.Tensor
    p_value: float | None
    passed: bool
    expected: str

    @property
    def new_effect(self):
        return float(self.new_estimates.mean())

    def __str__(self):
        p = f", p = {self.p_value:.3g}" if self.p_value is not None else ""
        verdict = "passed" if self.passed else "FAILED"
        return (f"refute by {self.method}: estimate {self.estimate.value:.4g}, new effect {self.new_effect:.4g} "
                f"over {len(self.new_estimates)} simulation(s); expected {self.expected}{p}: {verdict}")


def _mean_test(values, centre):
    """Two-sided p-value that ``values`` (independent re-estimates) are centred at ``centre``."""
    if len(values) < 2:
        return 1.0
    spread = float(values.std()) / math.sqrt(len(values))
    if spread == 0:
        return 1.0 if float(values.mean()) == centre else 0.0
    return 2 * _normal_sf(abs(float(values.mean()) - centre) / spread)


def _start(graph, data, treatment, outcome, adjustment):
    features = _features(data)
    _require_columns(features, [treatment, outcome], "refute")
    chosen = _adjustment(graph, features, treatment, outcome, adjustment)
    _require_columns(features, chosen, "refute")
    value, stderr = _slope(features, treatment, outcome, chosen)
    return features, EffectEstimate(treatment, outcome, value, stderr, chosen)


def placebo_treatment(graph, data, treatment, outcome, simulations=20, adjustment=None, significance=0.05):
    """Replace the treatment by a random permutation of itself: the effect should vanish.

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.graphs.load("confounded")
    >>> placebo_treatment(scm, scm.sample(2000), "x", "y").passed
    True
    """
    features, estimate = _start(graph, data, treatment, outcome, adjustment)
    rows = features[treatment].shape[0]
    new = []
    for _ in range(simulations):
        shuffled = dict(features)
        shuffled[treatment] = features[treatment][torch.randperm(rows, device=features[treatment].device)]
        new.append(_slope(shuffled, treatment, outcome, estimate.adjustment)[0])
    new = torch.tensor(new, dtype=torch.double)
    p = _mean_test(new, 0.0)
    return RefuteResult("placebo treatment", estimate, new, p, p >= significance, "a new effect of 0")


def random_common_cause(graph, data, treatment, outcome, simulations=20, adjustment=None, significance=0.05):
    """Add an independent random covariate to the adjustment set: the estimate should not move.

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.graphs.load("confounded")
    >>> random_common_cause(scm, scm.sample(2000), "x", "y").passed
    True
    """
    features, estimate = _start(graph, data, treatment, outcome, adjustment)
    rows = features[treatment].shape[0]
    name = "_random_common_cause"
    new = []
    for _ in range(simulations):
        extended = {**features, name: torch.randn(rows, 1, dtype=torch.double, device=_device(features))}
        new.append(_slope(extended, treatment, outcome, (*estimate.adjustment, name))[0])
    new = torch.tensor(new, dtype=torch.double)
    p = _mean_test(new, estimate.value)
    return RefuteResult("random common cause", estimate, new, p, p >= significance,
                        f"the estimate {estimate.value:.4g} unchanged")


def data_subset(graph, data, treatment, outcome, fraction=0.8, simulations=20, adjustment=None,
                significance=0.05):
    """Re-estimate on random subsets of ``fraction`` of the rows: the estimate should not move.

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.graphs.load("confounded")
    >>> data_subset(scm, scm.sample(2000), "x", "y").passed
    True
    """
    if not 0 < fraction < 1:
        raise ValueError(f"data_subset: fraction must be between 0 and 1, got {fraction!r}")
    features, estimate = _start(graph, data, treatment, outcome, adjustment)
    rows = features[treatment].shape[0]
    keep = max(int(fraction * rows), len(estimate.adjustment) + 3)
    new = []
    for _ in range(simulations):
        index = torch.randperm(rows, device=_device(features))[:keep]
        subset = {name: value[index] for name, value in features.items()}
        new.append(_slope(subset, treatment, outcome, estimate.adjustment)[0])
    new = torch.tensor(new, dtype=torch.double)
    # Given the data, the subsets are independent draws whose estimates centre on the full estimate.
    p = _mean_test(new, estimate.value)
    return RefuteResult("data subset", estimate, new, p, p >= significance,
                        f"the estimate {estimate.value:.4g} unchanged")


def _confound(values, u, strength):
    """``values`` confounded by ``u``: shifted by ``strength`` sds per sd of ``u``, or flipped for a 0/1 column."""
    binary = bool(((values == 0) | (values == 1)).all())
    if binary:
        flip = torch.rand_like(u) < strength
        return torch.where(flip, (u > 0).to(values.dtype), values)
    return values + strength * values.std() * u


def unobserved_common_cause(graph, data, treatment, outcome, strength=(0.1, 0.1), simulations=20,
                            adjustment=None):
    """Simulate an unobserved common cause ``U`` of treatment and outcome, and re-estimate without it.

    ``strength = (on_treatment, on_outcome)`` (one number: both): a
    continuous column gains ``strength * sd(column) * U`` with
    ``U ~ N(0, 1)``; a 0/1 column is set to ``U > 0`` with probability
    ``strength``. The new effect shows how far a confounder of that strength
    would move the estimate; ``passed`` says the effect keeps its sign.

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.graphs.load("confounded")
    >>> result = unobserved_common_cause(scm, scm.sample(2000), "x", "y", strength=0.5)
    >>> 2.4 < result.new_effect < 2.9, result.passed     # closed form: 2.62
    (True, True)
    """
    on_treatment, on_outcome = (strength, strength) if isinstance(strength, (int, float)) else strength
    for value in (on_treatment, on_outcome):
        if value < 0:
            raise ValueError(f"unobserved_common_cause: strengths must be >= 0, got {strength!r}")
    features, estimate = _start(graph, data, treatment, outcome, adjustment)
    rows = features[treatment].shape[0]
    new = []
    for _ in range(simulations):
        u = torch.randn(rows, 1, dtype=torch.double, device=_device(features))
        confounded = {**features, treatment: _confound(features[treatment], u, on_treatment),
                      outcome: _confound(features[outcome], u, on_outcome)}
        new.append(_slope(confounded, treatment, outcome, estimate.adjustment)[0])
    new = torch.tensor(new, dtype=torch.double)
    same_sign = math.copysign(1, float(new.mean())) == math.copysign(1, estimate.value)
    return RefuteResult(f"unobserved common cause (strength {on_treatment:g} on {treatment}, "
                        f"{on_outcome:g} on {outcome})", estimate, new, None, same_sign, "the same sign")


REFUTERS = {
    "placebo_treatment": placebo_treatment,
    "random_common_cause": random_common_cause,
    "data_subset": data_subset,
    "unobserved_common_cause": unobserved_common_cause,
}
ALIASES = {"placebo": "placebo_treatment", "subset": "data_subset", "unobserved": "unobserved_common_cause",
           "random": "random_common_cause",
           # DoWhy's names
           "placebo_treatment_refuter": "placebo_treatment", "data_subset_refuter": "data_subset",
           "add_unobserved_common_cause": "unobserved_common_cause"}
OPTION_ALIASES = {"num_simulations": "simulations", "subset_fraction": "fraction"}


def _options(options):
    """DoWhy's option names as ours (``num_simulations``, ``effect_strength_on_treatment``, ...)."""
    options = {OPTION_ALIASES.get(key, key): value for key, value in options.items()}
    on_treatment = options.pop("effect_strength_on_treatment", None)
    on_outcome = options.pop("effect_strength_on_outcome", None)
    if on_treatment is not None or on_outcome is not None:
        default = options.get("strength", (0.1, 0.1))
        default = (default, default) if isinstance(default, (int, float)) else default
        options["strength"] = (default[0] if on_treatment is None else on_treatment,
                               default[1] if on_outcome is None else on_outcome)
    return options


def refute(model, data, treatment, outcome, method="placebo_treatment", **options):
    """Refute the backdoor estimate of ``treatment`` on ``outcome`` with one of the refuters.

    ``model`` is an SCM or a graph (only its structure is used); ``method``
    one of ``placebo_treatment``, ``random_common_cause``, ``data_subset``,
    ``unobserved_common_cause`` (or ``placebo``, ``random``, ``subset``,
    ``unobserved``, or DoWhy's names); ``options`` go to that refuter
    (DoWhy's ``num_simulations``, ``subset_fraction``,
    ``effect_strength_on_treatment`` / ``_on_outcome`` are understood).
    Returns a :class:`RefuteResult`.

    >>> import causalppl as cp
    >>> cp.set_rng_seed(0)
    >>> scm = cp.graphs.load("confounded")
    >>> print(refute(scm, scm.sample(1000), "x", "y", method="placebo").expected)
    a new effect of 0
    """
    name = ALIASES.get(method, method)
    if name not in REFUTERS:
        known = ", ".join(list(REFUTERS) + list(ALIASES))
        raise ValueError(f"refute: unknown method {method!r}; known: {known}")
    return REFUTERS[name](model, data, treatment, outcome, **_options(options))
