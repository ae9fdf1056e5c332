"""Reading data columns: a DataFrame or a dict of array-likes becomes tensors plus a description.

Columns come as users have them: bool, int, float, pandas ``category``
(of strings or ints), object columns of strings, and pandas' nullable
``boolean`` / ``Int64`` / ``Float64``. Each becomes a 1-d tensor (label
columns become integer codes, as floats) and a :class:`Column` that says its
``kind`` ("continuous", "binary" or "categorical"), its ``labels`` and, for a
continuous column, its ``centre`` and ``spread``. Missing or infinite values,
complex numbers and columns that are not 1-d are errors naming the column.

>>> import pandas as pd
>>> df = pd.DataFrame({"g": pd.Categorical(["b", "a", "b"], categories=["b", "a"]),
...                    "x": [1.0, 2.0, 4.0], "t": [True, False, True]})
>>> columns = read_columns(df)
>>> [(c.name, c.kind, c.labels) for c in columns.values()]
[('g', 'binary', ('b', 'a')), ('x', 'continuous', None), ('t', 'binary', (False, True))]
>>> columns["g"].values
tensor([0., 1., 0.])
>>> read_columns(df, labels={"g": ("a", "b")})["g"].values
tensor([1., 0., 1.])
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import torch

KINDS = ("continuous", "binary", "categorical")
MAX_CATEGORIES = 20  # an integer column with values in 0..19 is categorical codes


class Column:
    """One data column: its tensor ``values`` and what kind of variable it holds.

    ``labels`` is a tuple of state labels for label columns (bool, category,
    strings, or codes read against a node's labels), else ``None``.
    ``values`` holds the data, or the codes into ``labels``.

    >>> c = Column("k", torch.tensor([0.0, 2.0, 1.0]), source="int64", integer=True)
    >>> c.kind, c.cardinality, c.levels
    ('categorical', 3, (0, 1, 2))
    """

    def __init__(self, name, values, labels=None, source="", integer=False):
        self.name = name
        self.values = values
        self.labels = tuple(labels) if labels is not None else None
        self.source = source  # the dtype the user gave, for messages
        self.integer = integer  # an integer dtype (ints in 0..19 are categorical codes)

    def __repr__(self):
        return f"Column({self.name!r}, kind={self.kind!r}, labels={self.labels!r}, source={self.source!r})"

    @cached_property
    def _distinct(self):
        values = self.values.detach()
        return torch.unique(values.cpu()) if values.numel() else values.cpu()

    @cached_property
    def codes(self):
        """True when every value is a whole number >= 0 (usable as a category code)."""
        if self.labels is not None:
            return True
        distinct = self._distinct.double()
        return bool((distinct == torch.round(distinct)).all() and (distinct >= 0).all())

    @cached_property
    def cardinality(self):
        """The number of states of a code column (at least 2), else ``None``."""
        if self.labels is not None:
            return max(len(self.labels), 2)
        if not self.codes:
            return None
        return max(int(self._distinct.max()) + 1 if self._distinct.numel() else 0, 2)

    @cached_property
    def kind(self):
        """"binary", "categorical" or "continuous"."""
        if self.labels is not None:
            return "binary" if len(self.labels) <= 2 else "categorical"
        if bool(((self._distinct == 0) | (self._distinct == 1)).all()):
            return "binary"
        if self.integer and self.codes and self.cardinality <= MAX_CATEGORIES:
            return "categorical"
        return "continuous"

    @property
    def discrete(self):
        return self.kind != "continuous"

    @property
    def levels(self):
        """The labels of a discrete column's states (its codes when it has no labels)."""
        if self.labels is not None:
            return self.labels
        return tuple(range(self.cardinality)) if self.cardinality else ()

    @cached_property
    def centre(self):
        """The mean of a continuous column (``None`` for a discrete one)."""
        return float(self.values.double().mean()) if self.kind == "continuous" and self.values.numel() else None

    @cached_property
    def spread(self):
        """The standard deviation of a continuous column (1.0 when it is constant; ``None`` if discrete)."""
        if self.kind != "continuous":
            return None
        spread = float(self.values.double().std()) if self.values.numel() > 1 else 1.0
        return spread if spread > 0 else 1.0

    def describe(self):
        """A phrase for messages: ``'a binary column'``, ``'a continuous column (dtype float64)'``."""
        if self.labels is not None:
            return f"a {self.kind} column with labels {list(self.labels)}"
        if self.kind == "binary":
            return "a binary column"
        if self.kind == "categorical":
            return f"an integer column with values in 0..{self.cardinality - 1}"
        return f"a continuous column (dtype {self.source})"


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------


def read_columns(data, labels=None, scalars=False):
    """Read a DataFrame or a dict of columns: dict name -> :class:`Column`.

    Parameters
    ----------
    data : pandas.DataFrame or dict of array-likes / tensors
    labels : dict name -> tuple, optional
        Labels to encode a column by (a node's labels): its values become
        indices into them. Unknown values are an error.
    scalars : bool
        Also accept 0-d values (one assignment, as ``log_prob`` takes).

    Raises
    ------
    TypeError for ``data`` that is not a table or a column of unsupported
    values; ValueError naming the column for missing or infinite values,
    a shape that is not 1-d, or values not among its labels.

    >>> read_columns({"s": ["lo", "hi", "lo"]})["s"].labels
    ('hi', 'lo')
    """
    labels = labels or {}
    return {name: read_column(name, value, labels.get(name), scalars) for name, value in _raw_columns(data)}


def _raw_columns(data):
    """(name, column) pairs; DataFrame columns stay pandas Series (their dtype says what they hold)."""
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # a pandas DataFrame
        return [(str(name), data[name]) for name in data.columns]
    if not hasattr(data, "items"):
        raise TypeError(f"data must be a dict of columns or a pandas DataFrame, got {type(data).__name__}")
    return [(str(name), value) for name, value in data.items()]


def read_column(name, value, labels=None, scalars=False):
    """Read one column (see :func:`read_columns`).

    >>> read_column("t", [True, False]).values
    tensor([1., 0.])
    >>> read_column("x", [1.0, float("nan")])
    Traceback (most recent call last):
    ...
    ValueError: data column 'x': 1 missing value (NaN), first at row 1; drop or impute them before fitting
    """
    if value is None:
        raise ValueError(f"data column '{name}': got None; expected a 1-d column (one value per row)")
    if isinstance(value, torch.Tensor):
        column = _from_tensor(name, value)
    else:
        column = _from_array(name, value)
    dims = column.values.dim()
    if dims != 1 and not (scalars and dims == 0):
        raise ValueError(
            f"data column '{name}': expected a 1-d column (one value per row), got shape "
            f"{tuple(column.values.shape)} (dtype {column.source})"
        )
    if labels is not None:
        column = _encode_by(column, tuple(labels))
    return column


def _from_tensor(name, value):
    source = str(value.dtype).replace("torch.", "")
    if value.is_complex():
        raise TypeError(f"data column '{name}': expected real numbers, got complex values (dtype {source})")
    if value.dtype == torch.bool:
        return Column(name, value.to(torch.get_default_dtype()), labels=(False, True), source=source)
    if not value.is_floating_point():
        return Column(name, value.to(torch.get_default_dtype()), source=source, integer=True)
    # Checking a GPU tensor would stop the device at every step of a fit; fit
    # reads its data once, on the device it was given, before it starts.
    if value.device.type == "cpu" and not bool(torch.isfinite(value).all()):
        _check_finite(name, value.detach().double().numpy())
    return Column(name, value, source=source)


def _from_array(name, value):
    """A numpy array, pandas Series, list, or number -> Column."""
    series = _pandas_series(value)
    if series is not None:
        return _from_series(name, series)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"data column '{name}': expected numbers, strings or booleans, got "
                        f"{type(value).__name__} ({err})") from err
    return _from_numpy(name, array)


def _from_numpy(name, array, source=None):
    source = source or str(array.dtype)
    kind = array.dtype.kind
    if kind == "b":
        return Column(name, _tensor(array), labels=(False, True), source=source)
    if kind in "iu":
        return Column(name, _tensor(array), source=source, integer=True)
    if kind == "f":
        _check_missing(name, np.isnan(array), "NaN")
        _check_finite(name, array)
        return Column(name, _tensor(array), source=source)
    if kind == "c":
        raise TypeError(f"data column '{name}': expected real numbers, got complex values (dtype {source})")
    if kind in "OUS":
        return _from_objects(name, array, source)
    raise TypeError(
        f"data column '{name}': expected numbers, strings, booleans or categories, got dtype {source}"
    )


def _from_objects(name, array, source):
    """Strings (labels = their sorted unique values), or Python numbers stored as objects."""
    if array.ndim != 1:
        raise ValueError(f"data column '{name}': expected a 1-d column (one value per row), got shape "
                         f"{array.shape} (dtype {source})")
    items = array.tolist()
    _check_missing(name, np.array([_is_missing(v) for v in items], dtype=bool), "None/NaN/NA")
    if all(isinstance(v, (str, bytes)) for v in items):
        labels = tuple(sorted(set(items)))
        index = {label: code for code, label in enumerate(labels)}
        codes = np.array([index[v] for v in items], dtype=np.int64)
        return Column(name, _tensor(codes), labels=labels, source=source)
    if all(isinstance(v, (bool, np.bool_)) for v in items):
        return _from_numpy(name, np.array(items, dtype=bool), source)
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, complex) for v in items):
        return _from_numpy(name, np.array(items), source)
    odd = next(v for v in items if not isinstance(v, (str, bytes, bool, int, float, np.number)))
    raise TypeError(
        f"data column '{name}': expected numbers, strings or booleans, got a value of type "
        f"{type(odd).__name__} ({odd!r}) in a column of dtype {source}"
    )


def _pandas_series(value):
    """``value`` as a pandas Series when it is one (or a pandas Categorical), else None."""
    try:
        import pandas as pd
    except ImportError:
        return None
    if isinstance(value, pd.Categorical):
        return pd.Series(value)
    if isinstance(value, (pd.Series, pd.Index)):
        return pd.Series(value)
    return None


def _from_series(name, series):
    import pandas as pd

    source = str(series.dtype)
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        _check_missing(name, codes < 0, "NaN")
        labels = tuple(series.cat.categories.tolist())
        return Column(name, _tensor(codes.astype(np.int64)), labels=labels, source=source)
    if isinstance(series.dtype, pd.api.extensions.ExtensionDtype) or series.dtype == object:
        missing = series.isna().to_numpy()
        _check_missing(name, missing, "NA" if series.dtype != object else "None/NaN/NA")
        if isinstance(series.dtype, pd.BooleanDtype):
            return _from_numpy(name, series.to_numpy(dtype=bool), source)
        if pd.api.types.is_integer_dtype(series.dtype):
            return _from_numpy(name, series.to_numpy(dtype=np.int64), source)
        if pd.api.types.is_float_dtype(series.dtype):
            return _from_numpy(name, series.to_numpy(dtype=np.float64), source)
        return _from_objects(name, series.to_numpy(dtype=object), source)
    return _from_numpy(name, series.to_numpy(), source)


def _tensor(array):
    # A copy in the default dtype: DataFrame columns can be read-only views.
    return torch.tensor(array, dtype=torch.get_default_dtype())


def _is_missing(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    try:
        import pandas as pd
    except ImportError:
        return False
    return value is pd.NA or value is pd.NaT


def _check_missing(name, missing, what):
    count = int(missing.sum())
    if count:
        first = int(np.flatnonzero(missing)[0])
        raise ValueError(
            f"data column '{name}': {count} missing value{'s' if count > 1 else ''} ({what}), "
            f"first at row {first}; drop or impute them before fitting"
        )


def _check_finite(name, array):
    bad = ~np.isfinite(array)
    count = int(bad.sum())
    if count:
        nan = np.isnan(array)
        if nan.any():
            _check_missing(name, nan, "NaN")
        first = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(
            f"data column '{name}': {count} infinite value{'s' if count > 1 else ''}, first at row {first}; "
            "expected finite numbers"
        )


# ---------------------------------------------------------------------------
# encoding by a node's labels
# ---------------------------------------------------------------------------


def _encode_by(column, labels):
    """The column's values as codes into ``labels`` (a node's labels, chosen when it was built)."""
    if column.labels is None:
        return _check_codes(column, labels)
    if column.labels == labels:
        return Column(column.name, column.values, labels, column.source)
    index = {label: code for code, label in enumerate(labels)}
    unknown = [label for label in column.labels if label not in index]
    if unknown:
        present = set(column.values.long().unique().tolist()) if column.values.numel() else set()
        unknown = [label for code, label in enumerate(column.labels) if label not in index and code in present]
    if unknown:
        raise ValueError(
            f"data column '{column.name}': values {unknown} are not among the node's labels {list(labels)}"
        )
    mapping = torch.tensor([index.get(label, -1) for label in column.labels], dtype=torch.long)
    codes = mapping[column.values.long().cpu()].to(device=column.values.device, dtype=column.values.dtype)
    return Column(column.name, codes, labels, column.source)


def _check_codes(column, labels):
    """A numeric column for a labelled node: its labels when every value is one (numeric labels), else codes.

    Codes are whole numbers in 0..len(labels)-1.
    """
    values = column.values
    by_label = _numeric_labels(values, labels)
    if by_label is not None:
        return Column(column.name, by_label, labels, column.source)
    # Only on the CPU: the lowered model checks its data at every step, and on
    # a GPU each check would wait for the device.
    if values.numel() and values.device.type == "cpu":
        low, high = (float(v) for v in torch.aminmax(values))
        if not (low >= 0 and high < len(labels) and torch.equal(values, torch.round(values))):
            raise ValueError(
                f"data column '{column.name}': expected the node's labels {list(labels)} or their codes "
                f"0..{len(labels) - 1}, got numbers in {low:g}..{high:g}"
            )
    return Column(column.name, values, labels, column.source)


def _numeric_labels(values, labels):
    """Codes of ``values`` read as numeric labels (``(10, 5, 1)``), or None when some value is not one."""
    if not all(isinstance(label, (int, float)) and not isinstance(label, bool) for label in labels):
        return None
    if tuple(labels) == tuple(range(len(labels))):
        return None  # labels that are their own codes
    index = {float(label): code for code, label in enumerate(labels)}
    distinct = torch.unique(values.detach().cpu()).tolist() if values.numel() else []
    if not all(value in index for value in distinct):
        return None
    lookup = torch.tensor([index[value] for value in distinct], dtype=values.dtype)
    positions = torch.searchsorted(torch.tensor(distinct, dtype=values.dtype), values.detach().cpu())
    return lookup[positions].to(values.device)
