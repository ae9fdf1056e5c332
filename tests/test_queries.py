"""Tests of causalppl.causal.queries: interventional means, ATE, association, summaries."""

import itertools
import math

import pytest
import torch

import causalppl as cp
from causalppl.causal import Distribution, EffectResult, QueryResult, Summary, association, ate, interventional
from causalppl.causal.exact import ExactResult


@pytest.fixture
def confounded():
    return cp.graphs.load("confounded")


# -- the confounded SCM: z -> x, z -> y, x -> y; y = 2x + 3z + noise -----------------------


def test_ate_recovers_the_causal_effect(confounded):
    cp.set_rng_seed(0)
    n = 50_000
    effect = ate(confounded, "x", "y", n=n)
    # Both arms share their noise, so every row's effect is exactly 2: no Monte Carlo error.
    assert effect.stderr < 1e-6
    assert effect.ate == pytest.approx(2.0, abs=1e-5)
    assert "Monte Carlo error only" in effect.covers
    assert effect.ate == pytest.approx(effect.treated_mean - effect.control_mean)
    assert abs(effect.treated_mean - 2.0) < 4 * math.sqrt(10 / n)
    assert abs(effect.control_mean) < 4 * math.sqrt(10 / n)


def test_naive_association_is_not_the_effect(confounded):
    cp.set_rng_seed(1)
    naive = association(confounded, "x", "y", n=20_000)
    # E[y | x] = 2x + 3 E[z | x] = 2x + 1.5x: the backdoor path adds 1.5.
    assert abs(naive.ate - 3.5) < max(4 * naive.stderr, 0.1)
    effect = ate(confounded, "x", "y", n=20_000)
    assert abs(naive.ate - effect.ate) > 1.0


def test_interventional_with_evidence_upstream(confounded):
    cp.set_rng_seed(2)
    n = 5000
    result = interventional(confounded, do={"x": 1.0}, evidence={"z": 1.0}, n=n)
    assert torch.all(result["z"] == 1.0) and torch.all(result["x"] == 1.0)
    # y | do(x=1), z=1 ~ N(2 + 3, 1)
    summary = result.summary("y")
    assert abs(summary.mean - 5.0) < 4 / math.sqrt(n)
    assert summary.std == pytest.approx(1.0, abs=0.05)
    conditional = ate(confounded, "x", "y", evidence={"z": 1.0}, n=n)
    assert abs(conditional.ate - 2.0) < 4 * math.sqrt(2 / n)


def test_interventional_with_evidence_downstream(confounded):
    cp.set_rng_seed(3)
    n = 5000
    # In the world where x := 1, seeing y = 5 says y - 2 = 3z + noise = 3: z | . ~ N(0.9, sqrt(0.1)).
    result = interventional(confounded, do={"x": 1.0}, evidence={"y": 5.0}, n=n)
    z = result.summary("z")
    assert result.ess is not None and 0 < result.ess <= n
    assert abs(z.mean - 0.9) < 4 * math.sqrt(0.1 / result.ess) + 0.01
    assert z.std == pytest.approx(math.sqrt(0.1), rel=0.1)


def test_do_agrees_between_graph_surgery_and_query(confounded):
    cp.set_rng_seed(4)
    n = 20_000
    result = interventional(confounded, do={"x": 1.0}, n=n)
    assert abs(result.mean("y") - 2.0) < 4 * math.sqrt(10 / n)
    assert abs(result.mean("z")) < 4 / math.sqrt(n)  # do(x) leaves the confounder alone


# -- the sprinkler against exact enumeration ------------------------------------------------

P_CLOUDY = 0.5
P_SPRINKLER = {1: 0.1, 0: 0.5}
P_RAIN = {1: 0.8, 0: 0.2}
P_WET = {(0, 0): 0.0, (1, 0): 0.9, (0, 1): 0.9, (1, 1): 0.99}


def bern(p, value):
    return p if value else 1 - p


def test_sprinkler_do_matches_enumeration():
    # P(wet=1 | do(sprinkler=1)) = sum_{c, r} P(c) P(r | c) P(wet=1 | s=1, r): the sprinkler
    # factor P(s | c) drops out of the truncated factorisation.
    exact = sum(bern(P_CLOUDY, c) * bern(P_RAIN[c], r) * P_WET[1, r]
                for c, r in itertools.product((0, 1), repeat=2))
    assert exact == pytest.approx(0.945)
    cp.set_rng_seed(5)
    n = 20_000
    result = interventional(cp.graphs.load("sprinkler"), do={"sprinkler": 1.0}, n=n)  # exact: all discrete
    assert result.mean("wet") == pytest.approx(exact, abs=1e-6)
    assert torch.all(result["sprinkler"] == 1.0)  # rows, drawn when asked for
    sampled = interventional(cp.graphs.load("sprinkler"), do={"sprinkler": 1.0}, n=n, method="sample")
    assert abs(sampled.mean("wet") - exact) < 4 * math.sqrt(exact * (1 - exact) / n)


def test_sprinkler_conditioning_matches_enumeration():
    def joint(c, s, r, w):
        return bern(P_CLOUDY, c) * bern(P_SPRINKLER[c], s) * bern(P_RAIN[c], r) * bern(P_WET[s, r], w)

    on = sum(joint(c, 1, r, w) for c, r, w in itertools.product((0, 1), repeat=3))
    exact = sum(joint(c, 1, r, 1) for c, r in itertools.product((0, 1), repeat=2)) / on
    assert exact == pytest.approx(0.927)
    cp.set_rng_seed(6)
    n = 20_000
    result = interventional(cp.graphs.load("sprinkler"), evidence={"sprinkler": 1.0}, n=n)
    assert result.mean("wet") == pytest.approx(exact, abs=1e-6)
    sampled = interventional(cp.graphs.load("sprinkler"), evidence={"sprinkler": 1.0}, n=n, method="sample")
    assert abs(sampled.mean("wet") - exact) < 4 * math.sqrt(exact * (1 - exact) / sampled.ess)


# -- results and their summaries ----------------------------------------------------------


def test_query_result_summary_and_str(confounded):
    cp.set_rng_seed(7)
    n = 1000
    result = interventional(confounded, do={"x": 1.0}, n=n)
    assert isinstance(result, QueryResult)
    assert result.do == {"x": 1.0} and result.evidence == {} and result.ess is None
    assert result["y"].shape == (n,)
    summary = result.summary("y")
    assert isinstance(summary, Summary) and summary.n == n
    assert summary.mean == pytest.approx(float(result["y"].mean()), abs=1e-5)
    assert summary.std == pytest.approx(float(result["y"].std()), rel=1e-4)
    assert summary.stderr == pytest.approx(summary.std / math.sqrt(n))
    assert result.mean("y") == summary.mean
    assert set(result.summary()) == {"z", "x", "y"}
    text = str(result)
    assert text.splitlines()[0] == "do(x=1)"
    assert any(line.strip().startswith("y: ") for line in text.splitlines())
    assert "±" in str(summary) and f"n={n}" in str(summary)

    given = interventional(confounded, do={"x": 1.0}, evidence={"z": 0.5}, n=200)
    assert str(given).splitlines()[0] == "do(x=1) given z=0.5"
    assert str(interventional(confounded, n=10)).splitlines()[0] == "observational"


def test_effect_result_str_and_interval(confounded):
    cp.set_rng_seed(8)
    effect = ate(confounded, "x", "y", treated=2.0, control=-1.0, n=2000)
    assert isinstance(effect, EffectResult)
    assert (effect.treatment, effect.outcome, effect.treated, effect.control) == ("x", "y", 2.0, -1.0)
    low, high = effect.interval()
    assert low < effect.ate < high
    assert high - low == pytest.approx(2 * 1.96 * effect.stderr)
    assert effect.treated_result.do == {"x": 2.0} and effect.control_result.do == {"x": -1.0}
    text = str(effect)
    assert text.startswith("ATE of x on y (do(x=2) vs do(x=-1)): ")
    assert "95%" in text
    assert abs(effect.ate - 6.0) < 4 * effect.stderr + 1e-6  # 2 * (2 - (-1))


# -- errors -----------------------------------------------------------------------------


def test_unknown_nodes_raise_key_error_naming_them(confounded):
    with pytest.raises(KeyError, match="'w'"):
        ate(confounded, "w", "y")
    with pytest.raises(KeyError, match="'nope'"):
        ate(confounded, "x", "nope")
    with pytest.raises(KeyError, match="'q'"):
        interventional(confounded, do={"q": 1.0}, n=10)
    with pytest.raises(KeyError, match="'q'"):
        interventional(confounded, evidence={"q": 1.0}, n=10)
    with pytest.raises(KeyError, match="'w'.*nodes: z, x, y"):
        interventional(confounded, n=10).summary("w")


def test_treatment_equal_to_outcome_is_an_error(confounded):
    with pytest.raises(ValueError, match="treatment and outcome are both 'x'"):
        ate(confounded, "x", "x")


def test_likelihood_weighting_weighs_each_row_by_its_own_bayesian_weights():
    # Unfitted, the weights follow their N(0, 1) prior: y = w x + b + N(0, 1) noise.
    # Given y = 3 at x = 1: y | w, b ~ N(w + b, 1), so P(y) = N(0, 3) and
    # E[w | y = 3] = Cov(w, y) / Var(y) * 3 = 1.
    cp.set_rng_seed(0)
    scm = cp.SCM.from_graph([("x", "y")], bayesian=True, mechanisms="linear")
    scm.params["y.scale"] = torch.tensor(1.0)
    result = cp.causal.interventional(scm, do={"x": 1.0}, evidence={"y": 3.0}, n=4000)
    values, log_weights = cp.causal.queries.weighted_samples(scm.do(x=1.0).condition(y=3.0), 40_000)
    assert values["y.weight"].shape == (40_000, 1)
    posterior_w = float((log_weights.exp() * values["y.weight"][:, 0]).sum())
    assert posterior_w == pytest.approx(1.0, abs=0.1)
    assert set(result.samples) == {"x", "y"}


def test_ate_with_an_input_the_treatment_reads():
    cp.set_rng_seed(0)
    effect = ate(cp.graphs.load("scale"), "weight", "measurement", n=5000, guess=8.5)
    # E[measurement | weight] = weight: each row's conditional mean gives the effect exactly.
    assert effect.ate == pytest.approx(1.0, abs=1e-5) and effect.stderr < 1e-5


def test_effects_average_conditional_means_not_noisy_draws():
    # A Bernoulli outcome: P(y=1 | do(t)) = 0.2 + 0.5 t exactly, row by row.
    scm = cp.SCM().add("t", "Bernoulli(0.5)").add("y", "Bernoulli(0.2 + 0.5 * t)")
    effect = ate(scm, "t", "y", n=200)
    assert effect.ate == pytest.approx(0.5, abs=1e-6)
    assert effect.treated_mean == pytest.approx(0.7, abs=0.15)  # the arms' means are of the draws


# -- labels and categorical outcomes ---------------------------------------------------------
# smoke ~ Bern(0.5); either ~ Bern(0.1 + 0.6 smoke); dysp ~ Bern(0.1 + 0.7 either), labelled no/yes.


def labelled():
    return (cp.SCM()
            .add("smoke", "Bernoulli(0.5)", labels=("no", "yes"))
            .add("either", "Bernoulli(0.1 + 0.6*smoke)", labels=("no", "yes"))
            .add("dysp", "Bernoulli(0.1 + 0.7*either)", labels=("no", "yes")))


def within(p, estimate, n):
    """|estimate - p| within four binomial standard errors of ``n`` draws."""
    return abs(estimate - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_distribution_by_label_under_do(one_thread_seeded):
    n = 4000
    result = interventional(labelled(), do={"either": "yes"}, n=n, method="sample")  # Monte Carlo errors
    assert torch.all(result["either"] == 1.0)  # samples are codes
    dysp = result.distribution("dysp")
    assert isinstance(dysp, Distribution)
    assert list(dysp.probs) == ["no", "yes"] and sum(dysp.probs.values()) == pytest.approx(1.0)
    assert within(0.8, dysp["yes"], n)
    assert dysp.stderr["yes"] == pytest.approx(math.sqrt(dysp["yes"] * (1 - dysp["yes"]) / n))
    assert str(dysp).splitlines() == [
        f"P(dysp | do(either=yes))  n={n}",
        f"  no   {dysp['no']:.4f} ± {dysp.stderr['no']:.2g}",
        f"  yes  {dysp['yes']:.4f} ± {dysp.stderr['yes']:.2g}",
    ]
    with pytest.raises(KeyError, match="'dysp' has no level 'maybe'"):
        dysp["maybe"]


def test_distribution_given_labelled_evidence(one_thread_seeded):
    # P(dysp=yes | smoke) = 0.8 P(either=yes | smoke) + 0.1 P(either=no | smoke): 0.17 and 0.59.
    exact = 0.59 / (0.59 + 0.17)
    result = interventional(labelled(), evidence={"dysp": "yes"}, n=4000)
    smoke = result.distribution("smoke")
    assert smoke["yes"] == pytest.approx(exact, abs=1e-6)
    assert str(smoke).splitlines()[0] == "P(smoke | given dysp=yes)  exact"
    sampled = interventional(labelled(), evidence={"dysp": "yes"}, n=4000, method="sample")
    assert within(exact, sampled.distribution("smoke")["yes"], sampled.ess)
    assert str(sampled.distribution("smoke")).splitlines()[0] == "P(smoke | given dysp=yes)  n=4000"
    # the same evidence as a code gives the same query
    assert interventional(labelled(), evidence={"dysp": 1.0}, n=10).query() == "given dysp=yes"


def test_query_result_str_shows_distributions_by_label(one_thread_seeded, confounded):
    text = str(interventional(labelled(), do={"either": 1.0}, n=2000))
    lines = text.splitlines()
    assert lines[0] == "do(either=yes)"  # a code shown as its label
    assert lines[3] == "  dysp: no 0.2, yes 0.8 (exact)"
    lines = str(interventional(labelled(), do={"either": 1.0}, n=2000, method="sample")).splitlines()
    assert lines[3].startswith("  dysp: no 0.") and ", yes 0." in lines[3] and "(± " in lines[3]
    assert "±" in str(interventional(confounded, n=10)).splitlines()[1]  # continuous nodes: means


def test_unlabelled_discrete_nodes_use_their_codes(one_thread_seeded):
    n = 4000
    result = interventional(cp.graphs.load("sprinkler"), do={"sprinkler": 1.0}, n=n)
    wet = result.distribution("wet")
    assert list(wet.probs) == [0, 1]
    assert wet[1] == pytest.approx(result.mean("wet"))
    assert within(0.945, wet[1], n)


def test_distribution_of_a_continuous_node_is_an_error(confounded):
    with pytest.raises(ValueError, match="node 'y' is not discrete"):
        interventional(confounded, n=10).distribution("y")
    with pytest.raises(KeyError, match="'w'"):
        interventional(confounded, n=10).distribution("w")


def test_ate_with_labels_and_outcome_levels(one_thread_seeded):
    scm = labelled()
    effect = ate(scm, "either", "dysp", treated="yes", control="no", n=4000)
    assert effect.ate == pytest.approx(0.7, abs=1e-6) and effect.stderr == 0.0  # exact: all discrete
    assert str(effect).startswith("ATE of either on dysp (do(either=yes) vs do(either=no)): ")
    assert effect.treated_result.do == {"either": "yes"}
    level = ate(scm, "either", "dysp", treated="yes", control="no", outcome_level="no", n=4000)
    assert level.ate == pytest.approx(-0.7, abs=1e-6)
    assert str(level).startswith("ATE of either on P(dysp=no) ")
    by_code = ate(scm, "either", "dysp", treated="yes", control="no", outcome_level=1, n=4000)
    assert by_code.ate == pytest.approx(0.7, abs=1e-6)
    sampled = ate(scm, "either", "dysp", treated="yes", control="no", outcome_level="no", n=4000, method="sample")
    assert abs(sampled.ate + 0.7) < 4 * sampled.stderr + 1e-6 and "Monte Carlo" in sampled.covers
    assert not isinstance(sampled.treated_result, ExactResult)
    naive = association(scm, "either", "dysp", treated="yes", control="no", n=4000, method="sample")
    assert not isinstance(naive.treated_result, ExactResult) and naive.stderr > 0


def three_level_scm(labels=("new", "returning", "loyal")):
    """t ~ Bern(0.5); c | t ~ Categorical([0.5, 0.3, 0.2] if t = 0 else [0.2, 0.3, 0.5])."""
    def customer(t):
        low, high = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])
        return cp.dist.Categorical(probs=low + t.unsqueeze(-1) * (high - low))

    return (cp.SCM()
            .add("t", "Bernoulli(0.5)", labels=("no", "yes"))
            .add("c", customer, labels=labels))


def test_ate_on_a_categorical_outcome_needs_a_level(one_thread_seeded):
    with pytest.raises(ValueError, match=r"node 'c' is categorical with levels 'new', 'returning', 'loyal': "
                                         r"give outcome_level="):
        ate(three_level_scm(), "t", "c", treated="yes", control="no", n=100)
    with pytest.raises(ValueError, match=r"node 'c': unknown outcome_level 'gold'; its levels are 'new'"):
        ate(three_level_scm(), "t", "c", treated="yes", control="no", outcome_level="gold", n=100)
    effect = ate(three_level_scm(), "t", "c", treated="yes", control="no", outcome_level="loyal", n=4000)
    assert effect.ate == pytest.approx(0.3, abs=1e-6)  # 0.5 - 0.2, exactly
    result = interventional(three_level_scm(), do={"t": "yes"}, n=4000).distribution("c")
    assert list(result.probs) == ["new", "returning", "loyal"]
    assert result["loyal"] == pytest.approx(0.5, abs=1e-6)
    # without labels the levels are the codes 0, 1, 2
    unlabelled = three_level_scm(labels=None)
    with pytest.raises(ValueError, match=r"node 'c' is categorical with levels 0, 1, 2"):
        ate(unlabelled, "t", "c", n=100)
    assert abs(ate(unlabelled, "t", "c", outcome_level=2, n=4000).ate - 0.3) < 0.1
    with pytest.raises(ValueError, match=r"outcome_level=1, but node 'y' is not discrete"):
        ate(cp.graphs.load("confounded"), "x", "y", outcome_level=1, n=10)


def test_labels_that_disagree_with_the_mechanism_name_the_node():
    scm = three_level_scm(labels=("low", "high"))
    with pytest.raises(ValueError, match=r"node 'c' has 2 labels \('low', 'high'\), but its mechanism draws 3"):
        interventional(scm, n=10)


def test_unknown_labels_in_queries_name_the_node(confounded):
    scm = labelled()
    with pytest.raises(ValueError, match=r"node 'either': unknown label 'maybe'; its labels are 'no', 'yes'"):
        interventional(scm, do={"either": "maybe"}, n=10)
    with pytest.raises(ValueError, match=r"node 'dysp': unknown label 'perhaps'"):
        interventional(scm, evidence={"dysp": "perhaps"}, n=10)
    with pytest.raises(ValueError, match=r"node 'either': unknown label 'maybe'"):
        ate(scm, "either", "dysp", treated="maybe", control="no", n=10)
    with pytest.raises(ValueError, match=r"node 'dysp': unknown outcome_level 'often'"):
        ate(scm, "either", "dysp", treated="yes", control="no", outcome_level="often", n=10)
    with pytest.raises(ValueError, match=r"node 'x' has no labels"):
        ate(confounded, "x", "y", treated="high", n=10)


def test_evidence_with_no_finite_weight_in_any_draw_is_named():
    def y(x):
        return cp.dist.Normal(x + float("nan"), 1.0, validate_args=False)

    scm = cp.SCM().add("x", "Normal(0, 1)").add("y", y).condition(y=1.0)
    with pytest.raises(ValueError, match=r"the evidence y=1 gives NaN log densities in every one of 20000 draws"):
        scm.sample(5)
