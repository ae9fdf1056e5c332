"""Attribution against closed forms: arrow strength, intrinsic influence, anomalies, distribution change."""

import math

import pytest
import torch

import causalppl as cp


def chain():
    """A -> B with B = A + N_B, A and N_B ~ N(0, 1)."""
    return cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(a, 1)")


def test_arrow_strength_of_the_chain_is_the_parents_variance(one_thread_seeded):
    n, inner = 1000, 200
    strength = cp.causal.arrow_strength(chain(), "b", n=n, inner=inner)
    # Var_cut(B | a) - Var(B | a) = 2 - 1; each of the n inner variances has sd ~ 2 sqrt(2/inner)
    assert set(strength) == {"a"}
    assert abs(strength["a"] - 1.0) < 5 * 2 * math.sqrt(2 / inner) / math.sqrt(n) + 0.05
    assert cp.causal.arrow_strength(chain(), "a") == {}


def test_arrow_strength_scales_with_the_squared_coefficient(one_thread_seeded):
    scm = cp.SCM().add("a", "Normal(0, 1)").add("c", "Normal(0, 2)").add("b", "Normal(3*a - c, 0.5)")
    strength = cp.causal.arrow_strength(scm, "b")
    assert abs(strength["a"] - 9.0) < 0.5
    assert abs(strength["c"] - 4.0) < 0.3


def test_arrow_strength_by_kl_matches_the_gaussian_closed_form(one_thread_seeded):
    # KL(N(a, 1) || N(0, 2)) averaged over a ~ N(0, 1) is log(2) / 2.
    strength = cp.causal.arrow_strength(chain(), "b", measure="kl", n=400, inner=100)
    assert abs(strength["a"] - math.log(2) / 2) < 0.05
    with pytest.raises(ValueError, match="measure"):
        cp.causal.arrow_strength(chain(), "b", measure="entropy")


def test_intrinsic_influence_of_the_chain(one_thread_seeded):
    n = 20000
    influence = cp.causal.intrinsic_causal_influence(chain(), "b", n=n)
    assert list(influence) == ["a", "b"]
    tolerance = 5 * 2 / math.sqrt(n)  # a covariance of variance-2 quantities from n rows
    assert abs(influence["a"] - 1.0) < tolerance
    assert abs(influence["b"] - 1.0) < tolerance


def test_intrinsic_influence_in_a_linear_scm_is_path_coefficient_squared(one_thread_seeded):
    scm = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(2*a, 1)").add("c", "Normal(b - a, 0.5)")
    influence = cp.causal.intrinsic_causal_influence(scm, "c", n=40000)
    # c = (2 - 1) a + N_b + N_c: contributions 1, 1, 0.25; they sum to Var(c) = 2.25
    assert abs(influence["a"] - 1.0) < 0.08
    assert abs(influence["b"] - 1.0) < 0.08
    assert abs(influence["c"] - 0.25) < 0.05


def test_intrinsic_influence_on_a_learned_scm(one_thread_seeded):
    data = chain().sample(4000)
    learned = cp.SCM.from_graph([("a", "b")], data)
    learned.fit(data, progress=False)
    influence = cp.causal.intrinsic_causal_influence(learned, "b", n=20000)
    assert abs(influence["a"] - 1.0) < 0.15 and abs(influence["b"] - 1.0) < 0.15


def test_anomaly_attribution_names_the_root_cause(one_thread_seeded):
    scm = chain()
    rows = {"a": torch.tensor([0.0, 3.5]), "b": torch.tensor([3.5, 3.6])}
    shares = cp.causal.attribute_anomalies(scm, "b", rows, n=2000)
    assert shares["a"].shape == (2,)
    assert shares["b"][0] > 3 * shares["a"][0].abs()  # row 0: b's own noise was extreme
    assert shares["a"][1] > 3 * shares["b"][1].abs()  # row 1: a was extreme, b followed
    # The shares of a row sum to its anomaly score -log P(|B| >= |b|), B ~ N(0, 2).
    total = shares["a"] + shares["b"]
    tail = torch.erfc(torch.tensor([3.5, 3.6]) / 2)  # P(|N(0, 2)| >= b)
    assert torch.allclose(total, -torch.log(tail), atol=1.0)
    with pytest.raises(KeyError, match="missing: a"):
        cp.causal.attribute_anomalies(scm, "b", {"b": torch.tensor([1.0])})


def test_distribution_change_goes_to_the_changed_mechanism(one_thread_seeded):
    old = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(a, 1)").add("c", "Normal(b, 1)")
    new = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(a + 2, 1)").add("c", "Normal(b, 3)")
    change = cp.causal.distribution_change(old, new, "c")
    assert change["a"] == 0.0
    assert abs(change["b"] - 2.0) < 1e-4  # shared noise: the mean shift is exact
    assert abs(change["c"]) < 0.05
    spread = cp.causal.distribution_change(old, new, "c", measure="variance", n=40000)
    assert abs(spread["c"] - 8.0) < 0.4 and abs(spread["b"]) < 0.2


def test_distribution_change_between_two_fits(one_thread_seeded):
    before = cp.SCM().add("a", "Normal(0, 1)").add("b", "Normal(a, 1)").sample(3000)
    after = cp.SCM().add("a", "Normal(1, 1)").add("b", "Normal(a, 1)").sample(3000)
    old = cp.SCM.from_graph([("a", "b")], before)
    new = cp.SCM.from_graph([("a", "b")], after)
    old.fit(before, progress=False)
    new.fit(after, progress=False)
    change = cp.causal.distribution_change(old, new, "b")
    assert abs(change["a"] - 1.0) < 0.15 and abs(change["b"]) < 0.15


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_attribution_on_cuda(one_thread_seeded):
    with torch.device("cuda"):
        strength = cp.causal.arrow_strength(chain(), "b")
        influence = cp.causal.intrinsic_causal_influence(chain(), "b")
    assert abs(strength["a"] - 1) < 0.1 and abs(influence["a"] - 1) < 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_anomalies_and_distribution_change_on_cuda(one_thread_seeded):
    with torch.device("cuda"):
        shares = cp.causal.attribute_anomalies(chain(), "b", {"a": torch.tensor([3.5]), "b": torch.tensor([3.6])})
        moved = cp.SCM().add("a", "Normal(1, 1)").add("b", "Normal(a, 1)")
        change = cp.causal.distribution_change(chain(), moved, "b")
    assert shares["a"][0] > shares["b"][0] and abs(change["a"] - 1) < 1e-3


def test_anomaly_rows_may_be_one_row_of_numbers(one_thread_seeded):
    shares = cp.causal.attribute_anomalies(chain(), "b", {"a": 3.5, "b": 3.6}, n=500)
    assert shares["a"].shape == (1,) and shares["a"][0] > shares["b"][0]
