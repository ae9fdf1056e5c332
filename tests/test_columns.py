"""Tests of causalppl.graph.columns: every column dtype users have, labels, and bad input."""

import numpy as np
import pytest
import torch

import causalppl as cp
from causalppl.graph.columns import Column, read_column, read_columns
from causalppl.graph.lower import table_to_tensors

pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def frame():
    return pd.DataFrame({
        "flag": [True, False, True, True],
        "small": np.array([0, 2, 1, 2], dtype=np.int64),
        "large": np.array([10, 250, 31, 7], dtype=np.int32),
        "negative": np.array([-1, 0, 1, 2]),
        "real": [0.5, 1.5, 2.5, 3.5],
        "zero_one": [0.0, 1.0, 1.0, 0.0],
        "whole": [0.0, 3.0, 12.0, 5.0],
        "segment": pd.Categorical(["loyal", "new", "new", "returning"], categories=["new", "returning", "loyal"]),
        "dose": pd.Categorical([5, 1, 5, 10], categories=[10, 5, 1]),
        "word": ["b", "a", "c", "a"],
        "text": pd.array(["x", "y", "y", "x"], dtype="string"),
        "maybe": pd.array([True, False, False, True], dtype="boolean"),
        "count": pd.array([3, 0, 1, 2], dtype="Int64"),
        "level": pd.array([0.25, 1.0, 2.0, 4.0], dtype="Float64"),
    })


EXPECTED = {  # name: (kind, labels, values)
    "flag": ("binary", (False, True), [1, 0, 1, 1]),
    "small": ("categorical", None, [0, 2, 1, 2]),
    "large": ("continuous", None, [10, 250, 31, 7]),
    "negative": ("continuous", None, [-1, 0, 1, 2]),
    "real": ("continuous", None, [0.5, 1.5, 2.5, 3.5]),
    "zero_one": ("binary", None, [0, 1, 1, 0]),
    "whole": ("continuous", None, [0, 3, 12, 5]),  # floats are never codes under auto
    "segment": ("categorical", ("new", "returning", "loyal"), [2, 0, 0, 1]),
    "dose": ("categorical", (10, 5, 1), [1, 2, 1, 0]),
    "word": ("categorical", ("a", "b", "c"), [1, 0, 2, 0]),
    "text": ("binary", ("x", "y"), [0, 1, 1, 0]),
    "maybe": ("binary", (False, True), [1, 0, 0, 1]),
    "count": ("categorical", None, [3, 0, 1, 2]),
    "level": ("continuous", None, [0.25, 1.0, 2.0, 4.0]),
}


def test_every_dtype_of_a_dataframe():
    columns = read_columns(frame())
    assert list(columns) == list(EXPECTED)
    for name, (kind, labels, values) in EXPECTED.items():
        column = columns[name]
        assert (column.kind, column.labels) == (kind, labels), name
        assert column.values.dtype == torch.get_default_dtype(), name
        assert column.values.tolist() == values, name
    assert columns["small"].cardinality == 3 and columns["count"].cardinality == 4
    assert columns["segment"].levels == ("new", "returning", "loyal")
    assert columns["dose"].labels[0] == 10 and type(columns["dose"].labels[0]) is int
    # Centre and spread of continuous columns only (population mean, sample sd).
    assert columns["real"].centre == pytest.approx(2.0)
    assert columns["real"].spread == pytest.approx(np.std([0.5, 1.5, 2.5, 3.5], ddof=1))
    assert columns["segment"].centre is None and columns["flag"].spread is None


def test_dict_of_tensors_lists_and_arrays():
    columns = read_columns({
        "t": torch.tensor([True, False]), "k": torch.tensor([0, 3]), "x": torch.tensor([0.5, 2.0], dtype=torch.float64),
        "s": ["hi", "lo"], "n": [1, 2.5], "a": np.array([1.0, 3.0]),
    })
    assert [columns[n].kind for n in "tkxsna"] == ["binary", "categorical", "continuous", "binary", "continuous",
                                                    "continuous"]
    assert columns["x"].values.dtype == torch.float64  # float tensors keep their dtype
    assert columns["s"].labels == ("hi", "lo") and columns["n"].values.tolist() == [1.0, 2.5]
    assert Column("c", torch.tensor([0.0, 25.0]), integer=True).kind == "continuous"  # too many levels


def test_table_to_tensors_reads_a_frame_for_lowering():
    tensors = table_to_tensors(frame())
    assert tensors["word"].tolist() == [1, 0, 2, 0]
    assert tensors["maybe"].tolist() == [1, 0, 0, 1]
    # One assignment (scalars), as log_prob takes, is still accepted.
    assert table_to_tensors({"x": 1.5, "t": True}) == {"x": torch.tensor(1.5), "t": torch.tensor(1.0)}


def test_labels_given_encode_the_column_by_them():
    segment = pd.Categorical(["loyal", "new"], categories=["loyal", "returning", "new"])
    labels = ("new", "returning", "loyal")
    assert read_column("segment", segment, labels).values.tolist() == [2, 0]
    assert read_column("segment", pd.Series(["new", "loyal"]), labels).values.tolist() == [0, 2]
    assert read_column("segment", torch.tensor([0, 2]), labels).values.tolist() == [0, 2]  # codes
    assert read_column("t", [False, True], (False, True)).values.tolist() == [0, 1]
    assert read_column("segment", segment, labels).labels == labels
    # Unused categories that are not labels are fine; used ones are not.
    unused = pd.Categorical(["new"], categories=["new", "vip"])
    assert read_column("segment", unused, labels).values.tolist() == [0]
    with pytest.raises(ValueError, match=r"data column 'segment': values \['vip'\] are not among the node's "
                                         r"labels \['new', 'returning', 'loyal'\]"):
        read_column("segment", ["new", "vip", "vip"], labels)
    with pytest.raises(ValueError, match=r"data column 'segment': expected the node's labels .* or their codes "
                                         r"0..2, got numbers in 0..3"):
        read_column("segment", torch.tensor([0, 3]), labels)


@pytest.mark.parametrize("column, what, count, first", [
    ([1.0, float("nan"), 2.0, float("nan")], "NaN", 2, 1),
    (["a", None, "b", None], "(None/NaN/)?NA", 2, 1),  # object dtype, or pandas 3's str dtype
    (pd.array([1, None, 3, 4], dtype="Int64"), "NA", 1, 1),
    (pd.array([True, None, None, False], dtype="boolean"), "NA", 2, 1),
    (pd.Categorical(["a", "b", None, "a"]), "NaN", 1, 2),
    (pd.Series([0.5, 1.0, 2.0, None]), "NaN", 1, 3),
    (torch.tensor([0.0, 1.0, 2.0, float("nan")]), "NaN", 1, 3),
])
def test_missing_values_name_the_column_count_and_first_row(column, what, count, first):
    plural = "s" if count > 1 else ""
    expected = (f"data column 'age': {count} missing value{plural} \\({what}\\), first at row {first}; "
                "drop or impute them before fitting")
    with pytest.raises(ValueError, match=expected):
        read_columns(pd.DataFrame({"age": column}) if not isinstance(column, torch.Tensor) else {"age": column})


def test_infinite_complex_shape_and_dtype_errors():
    with pytest.raises(ValueError, match="data column 'x': 2 infinite values, first at row 1; expected finite"):
        read_columns({"x": [0.0, float("inf"), -float("inf")]})
    with pytest.raises(ValueError, match="data column 'x': 1 infinite value, first at row 0"):
        read_columns({"x": torch.tensor([float("inf"), 1.0])})
    with pytest.raises(TypeError, match=r"data column 'z': expected real numbers, got complex values \(dtype "
                                        r"complex128\)"):
        read_columns(pd.DataFrame({"z": [1 + 2j, 3j]}))
    with pytest.raises(TypeError, match="data column 'z': expected real numbers, got complex values"):
        read_columns({"z": torch.tensor([1j])})
    with pytest.raises(ValueError, match=r"data column 'm': expected a 1-d column .*got shape \(3, 2\)"):
        read_columns({"m": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match=r"data column 'c': expected a 1-d column .*got shape \(\)"):
        read_columns({"c": 1.0})
    with pytest.raises(TypeError, match="data column 'when': expected numbers, .* got dtype datetime64"):
        read_columns(pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-01-02"])}))
    with pytest.raises(TypeError, match="data column 'o': expected numbers, strings or booleans, got a value of "
                                        "type dict"):
        read_columns({"o": ["a", {"b": 1}]})
    with pytest.raises(TypeError, match="data must be a dict of columns or a pandas DataFrame, got list"):
        read_columns([1, 2])


def test_lowered_model_encodes_string_data_by_the_node_labels():
    scm = cp.SCM().add("g", cp.causal.learn.CategoricalTable("g", [], 3, labels=("c", "a", "b")))
    trace = cp.trace(lambda: scm.model(data=pd.DataFrame({"g": ["a", "b", "c"]}))).get_trace()
    assert trace.nodes["g"]["value"].tolist() == [1, 2, 0]
    assert trace.nodes["g"]["value"].dtype == torch.get_default_dtype()
    with pytest.raises(ValueError, match=r"data column 'g': values \['d'\] are not among the node's labels"):
        scm.model(data={"g": ["a", "d"]})
    with pytest.raises(ValueError, match="data column 'g': expected a 1-d column"):
        scm.model(data={"g": 1})


def test_numeric_labels_are_read_as_labels_when_every_value_is_one():
    dose = ("10mg", "5mg")
    assert read_column("d", [1, 0], dose).values.tolist() == [1, 0]  # strings: numbers are codes
    labels = (10, 5, 1)
    assert read_column("d", np.array([5, 1, 10, 5]), labels).values.tolist() == [1, 2, 0, 1]
    assert read_column("d", torch.tensor([0, 2]), labels).values.tolist() == [0, 2]  # not all labels: codes
    scm = cp.SCM().add("d", cp.causal.learn.CategoricalTable("d", [], 3, labels=labels))
    trace = cp.trace(lambda: scm.model(data={"d": [1, 1, 10]})).get_trace()
    assert trace.nodes["d"]["value"].tolist() == [2, 2, 0]


def test_labels_given_to_add_encode_the_data_too():
    scm = cp.SCM().add("t", "Bernoulli(0.5)", labels=("no", "yes"))
    trace = cp.trace(lambda: scm.model(data=pd.DataFrame({"t": ["yes", "no", "yes"]}))).get_trace()
    assert trace.nodes["t"]["value"].tolist() == [1, 0, 1]


def test_a_column_that_is_none_is_named():
    with pytest.raises(ValueError, match="data column 'x': got None; expected a 1-d column"):
        read_column("x", None)
