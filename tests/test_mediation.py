"""Natural direct and indirect effects against closed forms in linear SCMs."""

import math

import pytest
import torch

import causalppl as cp


def test_single_mediator_matches_the_product_of_coefficients(one_thread_seeded):
    # x -> m -> y and x -> y: NDE = c, NIE = a b.
    a, b, c = 1.5, -2.0, 0.7
    scm = cp.SCM().add("x", "Normal(0, 1)").add("m", f"Normal({a}*x, 1)").add("y", f"Normal({b}*m + {c}*x, 1)")
    effect = cp.causal.mediation(scm, "x", "m", "y", n=4000)
    assert abs(effect.nde - c) < 1e-4 and abs(effect.nie - a * b) < 1e-4  # shared noise: exact per row
    assert abs(effect.total - (c + a * b)) < 1e-4
    assert abs(effect.proportion_mediated - a * b / (c + a * b)) < 1e-4
    assert effect.mediators == ("m",)
    assert "natural direct effect" in str(effect)


def test_two_mediators_parallel_and_in_series(one_thread_seeded):
    # x -> m1 -> y, x -> m2 -> y, m1 -> m2, x -> y
    scm = (cp.SCM().add("x", "Bernoulli(0.5)").add("m1", "Normal(2*x, 1)")
           .add("m2", "Normal(-x + 0.5*m1, 1)").add("y", "Normal(3*m1 + 4*m2 + x, 1)"))
    effect = cp.causal.mediation(scm, "x", ["m1", "m2"], "y", n=2000)
    # through m1 directly: 2*3; through m2: -1*4; through m1 -> m2: 2*0.5*4
    assert abs(effect.nie - (6 - 4 + 4)) < 1e-4
    assert abs(effect.nde - 1.0) < 1e-4
    # holding only m2 fixed, m1's path to y counts as direct
    only_m2 = cp.causal.mediation(scm, "x", "m2", "y", n=2000)
    assert abs(only_m2.nde - (1 + 6)) < 1e-4 and abs(only_m2.nie - (-4 + 4)) < 1e-4


def test_interaction_separates_the_two_indirect_effects(one_thread_seeded):
    # y = x m + m + x, m = a x + N: NDE = 1 + E[M(0)] = 1, NIE = 2a, pure NIE = a
    n = 20000
    scm = cp.SCM().add("x", "Normal(0, 1)").add("m", "Normal(1.5*x, 1)").add("y", "Normal(x*m + m + x, 0.1)")
    effect = cp.causal.mediation(scm, "x", "m", "y", n=n)
    assert abs(effect.nde - 1.0) < 5 * effect.stderr["nde"] + 1e-6
    assert abs(effect.nie - 3.0) < 1e-3
    assert abs(effect.nie_pure - 1.5) < 1e-3
    assert effect.stderr["nde"] < 3 / math.sqrt(n)


def test_mediation_on_a_learned_scm(one_thread_seeded):
    truth = cp.SCM().add("x", "Normal(0, 1)").add("m", "Normal(2*x, 1)").add("y", "Normal(m + 0.5*x, 1)")
    data = truth.sample(4000)
    learned = cp.SCM.from_graph([("x", "m"), ("m", "y"), ("x", "y")], data)
    learned.fit(data, progress=False)
    effect = cp.causal.mediation(learned, "x", "m", "y", n=2000)
    assert abs(effect.nde - 0.5) < 0.1 and abs(effect.nie - 2.0) < 0.15


def test_mediation_checks_its_arguments():
    scm = cp.SCM().add("x", "Normal(0, 1)").add("y", "Normal(x, 1)")
    with pytest.raises(KeyError, match="'m' is not a node"):
        cp.causal.mediation(scm, "x", "m", "y")
    with pytest.raises(ValueError, match="also the treatment"):
        cp.causal.mediation(scm, "x", "x", "y")
    chain = cp.SCM().add("x", "Normal(0, 1)").add("m", "Normal(x, 1)").add("y", "Normal(m, 1)")
    with pytest.raises(ValueError, match="without condition"):
        cp.causal.mediation(chain.condition(y=1.0), "x", "m", "y")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mediation_on_cuda(one_thread_seeded):
    scm = cp.SCM().add("x", "Normal(0, 1)").add("m", "Normal(2*x, 1)").add("y", "Normal(3*m + x, 1)")
    with torch.device("cuda"):
        effect = cp.causal.mediation(scm, "x", "m", "y", n=1000)
    assert abs(effect.nde - 1) < 1e-3 and abs(effect.nie - 6) < 1e-3
