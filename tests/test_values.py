"""Tests of causalppl.graph.values: the one checking layer for values entering a model.

Every error names the node (or data column), the value and what was expected.
"""

import math

import numpy as np
import pytest
import torch

import causalppl as cp
from causalppl.graph.columns import read_column
from causalppl.graph.values import check_column, check_support, check_value, describe_support, to_tensor

dist = cp.dist


# -- check_value: do / condition values ---------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (1.5, torch.tensor(1.5)),
    (2, torch.tensor(2.0)),
    (True, torch.tensor(1.0)),
    ([1, 2], torch.tensor([1.0, 2.0])),
    ([[1, 2], [3, 4]], torch.tensor([[1.0, 2.0], [3.0, 4.0]])),
    (np.float64(0.5), torch.tensor(0.5)),
    (np.array([1.0, 2.0]), torch.tensor([1.0, 2.0])),
    (torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0])),
])
def test_numbers_lists_arrays_and_tensors_are_accepted(value, expected):
    assert torch.equal(check_value("x", value, what="do"), expected)


@pytest.mark.parametrize("value, fragment", [
    (float("nan"), "do value nan is not a number (NaN)"),
    (float("inf"), "do value inf is infinite"),
    (-math.inf, "do value -inf is infinite"),
    ([1.0, float("nan")], "nan (at index 1)"),
    (torch.tensor([0.0, math.inf]), "inf (at index 1)"),
    (np.array([np.nan]), "is not a number (NaN)"),
])
def test_nan_and_infinity_are_refused_naming_the_node(value, fragment):
    with pytest.raises(ValueError, match="node 'x'") as info:
        check_value("x", value, what="do")
    assert fragment in str(info.value)
    assert "expected a finite number" in str(info.value)


@pytest.mark.parametrize("value, fragment", [
    (None, "do value None (None) is not a number"),
    ({}, "do value {} (dict) is not a number"),
    ({"a": 1}, "(dict) is not a number"),
    (object(), "(object) is not a number"),
    ("high", "has no labels, so 'high' cannot be translated"),
    (b"1", "has no labels"),
    (1 + 2j, "is complex"),
    (torch.tensor([1 + 1j]), "complex numbers"),
    (np.array([1 + 1j]), "complex numbers"),
    ([[1, 2], [3]], "ragged list"),
    ([1, [2, 3]], "ragged list"),
    ([1, None], "None (None) is not a number"),
])
def test_values_that_are_not_numbers_name_the_node_and_the_expectation(value, fragment):
    with pytest.raises(ValueError, match="node 'x'") as info:
        check_value("x", value, what="do")
    assert fragment in str(info.value)


def test_labels_become_codes_and_unknown_ones_are_listed():
    labels = ("lo", "mid", "hi")
    assert torch.equal(check_value("g", ["hi", "lo"], labels), torch.tensor([2.0, 0.0]))
    assert torch.equal(check_value("g", 1, labels), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"node 'g': unknown label 'top'; its labels are 'lo', 'mid', 'hi'"):
        check_value("g", "top", labels)
    with pytest.raises(ValueError, match=r"node 'g': 3 is neither one of its labels"):
        check_value("g", 3, labels)
    with pytest.raises(ValueError, match=r"node 'g': condition value 5.0 is not one of its codes 0..2"):
        check_value("g", torch.tensor([1.0, 5.0]), labels, what="condition")
    with pytest.raises(ValueError, match=r"node 'g'.*None.*one of its labels \('lo', 'mid', 'hi'\)"):
        check_value("g", None, labels)


def test_bool_tensors_become_floats():
    assert check_value("t", torch.tensor([True, False])).dtype == torch.get_default_dtype()


def test_to_tensor_does_not_check_finiteness():
    assert math.isnan(float(to_tensor("x", float("nan"))))


# -- check_support: observed values -----------------------------------------------------------


@pytest.mark.parametrize("fn, value, support", [
    (dist.Bernoulli(0.3), 2.0, "(0 or 1)"),
    (dist.Bernoulli(0.3), 0.5, "(0 or 1)"),
    (dist.Categorical(probs=torch.tensor([0.2, 0.3, 0.5])), 3.0, "(integers 0..2)"),
    (dist.Categorical(probs=torch.tensor([0.2, 0.3, 0.5])), -1.0, "(integers 0..2)"),
    (dist.Poisson(2.0), 1.5, "(integers >= 0)"),
    (dist.Poisson(2.0), -1.0, "(integers >= 0)"),
    (dist.Exponential(1.0), -1.0, "numbers >= 0"),
    (dist.LogNormal(0.0, 1.0), -2.0, "numbers > 0"),
    (dist.Uniform(0.0, 1.0), 2.0, "numbers in [0, 1]"),
    (dist.Beta(2.0, 2.0), 1.5, "numbers in [0, 1]"),
    (dist.Normal(0.0, 1.0), math.inf, "(finite real numbers)"),
    (dist.Normal(0.0, 1.0), -math.inf, "(finite real numbers)"),
    (dist.Delta(torch.tensor(1.0)), 2.0, "(only its value 1)"),
])
def test_out_of_support_observations_name_the_node_and_the_support(fn, value, support):
    with pytest.raises(ValueError, match="node 'v': observed value") as info:
        check_support("v", torch.tensor(value), fn)
    message = str(info.value)
    assert type(fn).__name__ in message and support in message, message


def test_in_support_observations_pass():
    check_support("v", torch.tensor([0.0, 1.0]), dist.Bernoulli(torch.tensor([0.2, 0.7])))
    check_support("v", torch.tensor(2.0), dist.Categorical(probs=torch.ones(3) / 3))
    check_support("v", torch.tensor(1.0), dist.Delta(torch.tensor(1.0)))
    check_support("v", torch.tensor([1.0, 5.0]), dist.Delta(torch.tensor([1.0, 2.0])))  # some row matches


def test_per_row_observations_name_the_row():
    with pytest.raises(ValueError, match=r"node 'v': observed value 2.0 \(row 2\)"):
        check_support("v", torch.tensor([0.0, 1.0, 2.0]), dist.Bernoulli(0.5))


def test_describe_support_of_a_batched_delta():
    assert "function of its parents" in describe_support(dist.Delta(torch.tensor([1.0, 2.0])))


# -- check_column: data columns for nodes -------------------------------------------------------


def test_strings_for_a_node_without_labels_are_refused_naming_the_column():
    column = read_column("x", ["a", "b"])
    with pytest.raises(ValueError, match="data column 'x': holds labels \\('a', 'b'\\) but node 'x' has no labels"):
        check_column("x", column, None)


def test_numeric_categories_for_a_node_without_labels_keep_their_numbers():
    pd = pytest.importorskip("pandas")
    column = read_column("k", pd.Series(pd.Categorical([10, 20, 10])))
    assert torch.equal(check_column("k", column, None), torch.tensor([10.0, 20.0, 10.0]))
    assert torch.equal(check_column("t", read_column("t", [True, False]), None), torch.tensor([1.0, 0.0]))


def test_a_support_that_moves_with_the_parents_refuses_only_evidence_no_draw_allows():
    fn = dist.Uniform(torch.zeros(3), torch.tensor([0.2, 0.6, 1.0]))
    check_support("y", torch.tensor(0.5), fn)  # inside for two draws of three
    with pytest.raises(ValueError, match=r"node 'y': observed value 2.0 is outside the support of its Uniform"):
        check_support("y", torch.tensor(2.0), fn)



def test_numpy_values_of_a_node_with_numeric_labels_are_labels():
    assert torch.equal(to_tensor("k", np.array([10, 5]), labels=(10, 5, 1)), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="node 'x' has no labels, so 'a' cannot be translated"):
        to_tensor("x", np.array(["a"]))
