"""Tests of causalppl.causal.counterfactual: abduction, action, prediction with shared noise."""

import math

import pytest
import torch

import causalppl as cp
from causalppl import dist
from causalppl.causal import CounterfactualError, CounterfactualResult, counterfactual


@pytest.fixture
def confounded():
    return cp.graphs.load("confounded")


# -- linear Gaussian: z = e_z, x = z + e_x, y = 2x + 3z + e_y ------------------------------

NODES = ("z", "x", "y")
WEIGHTS = torch.tensor([[0.0, 0.0, 0.0],  # row i: node i = sum_j WEIGHTS[i, j] node_j + e_i
                        [1.0, 0.0, 0.0],
                        [3.0, 2.0, 0.0]], dtype=torch.float64)


def exact_counterfactual(evidence, do, target):
    """Mean and sd of ``target`` in the ``do`` world given ``evidence``, in closed form.

    Nodes are linear in the standard normal noise e: nodes = (I - W)^-1 e. The
    evidence is a linear constraint A e = v, so e | evidence is Gaussian with
    mean A^T (A A^T)^-1 v and covariance I - A^T (A A^T)^-1 A. In the do world
    the intervened rows of W and e are replaced by the constant; the target is
    again linear in e.
    """
    eye = torch.eye(3, dtype=torch.float64)
    factual = torch.linalg.inv(eye - WEIGHTS)
    rows = [NODES.index(name) for name in evidence]
    A = factual[rows]
    v = torch.tensor(list(evidence.values()), dtype=torch.float64)
    gain = A.T @ torch.linalg.inv(A @ A.T)
    mean_e, cov_e = gain @ v, eye - gain @ A
    weights, keep, const = WEIGHTS.clone(), torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for name, value in do.items():
        i = NODES.index(name)
        weights[i], keep[i], const[i] = 0.0, 0.0, value
    world = torch.linalg.inv(eye - weights)  # nodes_cf = world (keep * e + const)
    row = world[NODES.index(target)]
    mean = float(row @ (keep * mean_e + const))
    var = float((row * keep) @ cov_e @ (row * keep))
    return mean, math.sqrt(max(var, 0.0))


def test_closed_form_helper_agrees_with_hand_derivation():
    # z | x=2, y=9 has precision 1 + 1 + 9 and mean (2 + 3 * (9 - 4)) / 11.
    assert exact_counterfactual({"x": 2.0, "y": 9.0}, {}, "z") == pytest.approx((17 / 11, 1 / math.sqrt(11)))
    # had z been 0: y = 2 (x - z) + (y - 2x - 3z) = y - 5z
    assert exact_counterfactual({"x": 2.0, "y": 9.0}, {"z": 0.0}, "y") == pytest.approx(
        (14 / 11, 5 / math.sqrt(11)))
    # had x been 0, given y = 9 only: y - 2x with x | y ~ N(7 * 9 / 30, sqrt(11 / 30))
    assert exact_counterfactual({"y": 9.0}, {"x": 0.0}, "y") == pytest.approx((4.8, 2 * math.sqrt(11 / 30)))


def test_full_evidence_gives_y_5_exactly(confounded):
    cp.set_rng_seed(0)
    world = confounded.counterfactual(evidence={"z": 1.0, "x": 2.0, "y": 9.0}, do={"x": 0.0}, n=50)
    assert isinstance(world, CounterfactualResult)
    assert torch.equal(world["y"], torch.full((50,), 5.0))
    assert torch.equal(world["z"], torch.ones(50)) and torch.equal(world["x"], torch.zeros(50))
    assert torch.equal(world.factual["y"], torch.full((50,), 9.0))
    text = str(world)
    assert text.splitlines()[0] == "counterfactual do(x=0) given z=1, x=2, y=9:"
    assert "y: factual 9 -> counterfactual 5" in text


def test_partial_evidence_do_x_is_exact_in_every_draw(confounded):
    # y - 2x carries z and the noise together: no posterior uncertainty reaches y_cf.
    cp.set_rng_seed(1)
    world = counterfactual(confounded, evidence={"x": 2.0, "y": 9.0}, do={"x": 0.0}, n=500)
    assert torch.allclose(world["y"], torch.full((500,), 5.0), atol=1e-4)
    assert world["z"].std() > 0.1  # z itself is still uncertain
    assert torch.equal(world["z"], world.factual["z"])  # upstream of the action: unchanged


@pytest.mark.parametrize("evidence, do, target", [
    ({"x": 2.0, "y": 9.0}, {"z": 0.0}, "y"),
    ({"x": 2.0, "y": 9.0}, {"z": 0.0}, "x"),
    ({"y": 9.0}, {"x": 0.0}, "y"),
    ({"x": -1.0}, {"z": 1.0}, "y"),
])
def test_partial_evidence_matches_closed_form(confounded, evidence, do, target):
    cp.set_rng_seed(2)
    n = 4000
    mean, sd = exact_counterfactual(evidence, do, target)
    world = counterfactual(confounded, evidence=evidence, do=do, n=n)
    draws = world[target].double()
    # Resampled draws repeat: allow for an effective sample size of n / 2.
    assert abs(float(draws.mean()) - mean) < 4 * sd * math.sqrt(2 / n)
    assert float(draws.std()) == pytest.approx(sd, rel=0.1)


def test_partial_evidence_by_svi(confounded):
    cp.set_rng_seed(3)
    mean, sd = exact_counterfactual({"x": 2.0, "y": 9.0}, {"z": 0.0}, "y")
    world = counterfactual(confounded, evidence={"x": 2.0, "y": 9.0}, do={"z": 0.0},
                           n=4000, method="svi", steps=1000)
    assert abs(float(world.factual["z"].mean()) - 17 / 11) < 0.1
    assert abs(world.mean("y") - mean) < 0.35  # 5 * the tolerance on z
    assert float(world["y"].std()) == pytest.approx(sd, rel=0.3)
    assert len(cp.get_param_store()) == 0  # the guide's params belong to the fit, not the global store


# -- Bernoulli and Categorical by Gumbel-max ---------------------------------------------

BASE = torch.tensor([0.0, 1.0, 2.0])
SHIFT = torch.tensor([2.0, 0.0, -2.0])
P_B = torch.tensor([0.2, 0.5, 0.9])


def discrete_scm():
    """a ~ Bernoulli(0.4); c ~ Categorical(BASE + a SHIFT); b ~ Bernoulli(P_B[c])."""
    return (cp.SCM()
            .add("a", "Bernoulli(0.4)")
            .add("c", lambda a: dist.Categorical(logits=BASE + torch.as_tensor(a).unsqueeze(-1) * SHIFT))
            .add("b", lambda c: dist.Bernoulli(probs=P_B[torch.as_tensor(c).long()])))


def gumbels(shape):
    return -torch.log(-torch.log(torch.rand(shape).clamp(1e-12, 1 - 1e-7)))


def test_gumbel_max_stability_with_full_evidence():
    cp.set_rng_seed(4)
    scm = discrete_scm()
    evidence = {"a": 1.0, "c": 0, "b": 1.0}
    same = scm.counterfactual(evidence=evidence, do={"a": 1.0}, n=2000)
    assert torch.all(same["c"] == 0) and torch.all(same["b"] == 1)
    same_c = scm.counterfactual(evidence=evidence, do={"c": 0}, n=2000)
    assert torch.all(same_c["b"] == 1)


def test_gumbel_max_stability_with_latent_nodes():
    # Only a is seen; c and b are drawn. Setting a to its own value changes nothing, draw by draw.
    cp.set_rng_seed(5)
    world = discrete_scm().counterfactual(evidence={"a": 0.0}, do={"a": 0.0}, n=5000)
    assert torch.equal(world["c"].long(), world.factual["c"].long())
    assert torch.equal(world["b"].float(), world.factual["b"].float())
    assert len(torch.unique(world["c"])) == 3  # the factual draws really vary


def test_categorical_counterfactual_matches_brute_force_gumbels():
    cp.set_rng_seed(6)
    n, m = 20_000, 400_000
    world = discrete_scm().counterfactual(evidence={"a": 0.0, "c": 1}, do={"a": 1.0}, n=n)
    ours = torch.bincount(world["c"].long(), minlength=3).double() / n
    # Brute force: draw explicit Gumbels, keep those that reproduce the factual argmax,
    # and push them through the counterfactual logits.
    g = gumbels((m, 3))
    kept = g[(BASE + g).argmax(-1) == 1]
    brute = torch.bincount((BASE + SHIFT + kept).argmax(-1), minlength=3).double() / len(kept)
    assert brute[1] > 0.3 and brute[0] > 0.3 and brute[2] == 0  # logit 2 fell below the others
    for k in range(3):
        p = float(brute[k])
        tol = 4 * math.sqrt(p * (1 - p) * (1 / n + 1 / len(kept))) + 1e-9
        assert abs(float(ours[k]) - p) < tol, (k, float(ours[k]), p)


def test_bernoulli_counterfactual_matches_brute_force_gumbels():
    cp.set_rng_seed(7)
    n, m = 20_000, 400_000
    world = discrete_scm().counterfactual(evidence={"a": 0.0, "c": 1, "b": 1.0}, do={"c": 0}, n=n)
    ours = world.mean("b")
    # Two-class Gumbel-max: b = argmax([0, logit p] + g).
    g = gumbels((m, 2))

    def logits(p):
        return torch.stack([torch.tensor(0.0), torch.logit(p)])

    kept = g[(logits(P_B[1]) + g).argmax(-1) == 1]
    brute = float((logits(P_B[0]) + kept).argmax(-1).double().mean())
    # Binary Gumbel-max is a logistic threshold: P(b_cf = 1 | b = 1) = min(p_cf, p) / p = 0.4.
    assert brute == pytest.approx(0.4, abs=4 * math.sqrt(0.24 / len(kept)))
    assert abs(ours - brute) < 4 * math.sqrt(0.24 * (1 / n + 1 / len(kept)))
    # Raising the probability keeps b = 1 for sure (monotone noise).
    up = discrete_scm().counterfactual(evidence={"a": 0.0, "c": 1, "b": 1.0}, do={"c": 2}, n=1000)
    assert torch.all(up["b"] == 1)


# -- transformed distributions, unsupported mechanisms, bad calls ---------------------------


def test_lognormal_node_shares_its_base_noise():
    scm = (cp.SCM().add("a", "Normal(0.0, 1.0)").add("b", "LogNormal(a, 0.5)").add("c", "Normal(b, 1.0)"))
    evidence = {"a": 0.0, "b": 2.0, "c": 3.0}
    world = scm.counterfactual(evidence=evidence, do={"a": 1.0}, n=20)
    # log b = a + 0.5 e  ->  e = 2 log 2; with a = 1, b = exp(1 + log 2) = 2e; c keeps c - b = 1.
    assert torch.allclose(world["b"], torch.full((20,), 2 * math.e))
    assert torch.allclose(world["c"], torch.full((20,), 1 + 2 * math.e))
    same = scm.counterfactual(evidence=evidence, do={"a": 0.0}, n=20)
    assert torch.allclose(same["b"], torch.full((20,), 2.0)) and torch.allclose(same["c"], torch.full((20,), 3.0))


def test_unsupported_distribution_names_the_node():
    # Beta has neither a cdf nor an icdf in torch: no noise model (a Poisson node has one: see test_worlds.py).
    scm = cp.SCM().add("a", "Normal(0.0, 1.0)").add("share", "Beta(exp(a), 2.0)")
    with pytest.raises(CounterfactualError, match="'share'.*Beta"):
        scm.counterfactual(evidence={"a": 0.0, "share": 0.5}, do={"a": 1.0}, n=10)
    assert issubclass(CounterfactualError, ValueError)


def test_counterfactual_needs_the_unoperated_scm(confounded):
    with pytest.raises(ValueError, match="without do/condition surgery"):
        confounded.do(x=1.0).counterfactual(evidence={"y": 1.0}, do={"x": 0.0})
    with pytest.raises(ValueError, match="without do/condition surgery"):
        confounded.condition(z=1.0).counterfactual(evidence={"y": 1.0}, do={"x": 0.0})


def test_bad_nodes_and_method(confounded):
    with pytest.raises(KeyError, match="'w'"):
        confounded.counterfactual(evidence={"w": 1.0}, do={"x": 0.0})
    with pytest.raises(KeyError, match="'w'"):
        confounded.counterfactual(evidence={"x": 1.0}, do={"w": 0.0})
    with pytest.raises(ValueError, match="method must be 'importance' or 'svi'"):
        confounded.counterfactual(evidence={"x": 1.0}, do={"x": 0.0}, method="mcmc")


def test_counterfactual_accepts_labels(one_thread_seeded):
    # Binary Gumbel-max is monotone: with dysp = yes at P(yes | either=yes) = 0.8, the world where
    # either := no keeps dysp = yes with probability P(yes | either=no) / 0.8 = 0.1 / 0.8.
    scm = (cp.SCM()
           .add("either", "Bernoulli(0.5)", labels=("no", "yes"))
           .add("dysp", "Bernoulli(0.1 + 0.7*either)", labels=("no", "yes")))
    n = 4000
    world = scm.counterfactual(evidence={"either": "yes", "dysp": "yes"}, do={"either": "no"}, n=n)
    assert torch.all(world["either"] == 0.0) and torch.all(world.factual["dysp"] == 1.0)
    assert abs(world.mean("dysp") - 0.125) < 4 * math.sqrt(0.125 * 0.875 / n)
    assert str(world).startswith("counterfactual do(either=no) given either=yes, dysp=yes:")
    cp.set_rng_seed(1)
    by_label = scm.counterfactual(evidence={"either": "yes", "dysp": "yes"}, do={"either": "no"}, n=50)
    cp.set_rng_seed(1)
    by_code = scm.counterfactual(evidence={"either": 1.0, "dysp": 1.0}, do={"either": 0.0}, n=50)
    assert torch.equal(by_label["dysp"], by_code["dysp"])
    with pytest.raises(ValueError, match=r"node 'either': unknown label 'maybe'; its labels are 'no', 'yes'"):
        scm.counterfactual(evidence={"dysp": "yes"}, do={"either": "maybe"})


@pytest.mark.parametrize("value, fragment", [(float("nan"), "NaN"), (float("inf"), "infinite"),
                                             (None, "is not a number")])
def test_a_bad_counterfactual_action_names_the_node(value, fragment):
    scm = cp.graphs.load("confounded")
    with pytest.raises(ValueError, match="node 'x': do value") as info:
        scm.counterfactual(evidence={"x": 1.0}, do={"x": value})
    assert fragment in str(info.value)
    with pytest.raises(ValueError, match="node 'y': condition value"):
        scm.counterfactual(evidence={"y": value}, do={"x": 0.0})
