"""Results as plain data: ``to_dict()`` (JSON-ready) and ``to_frame()`` (pandas) helpers.

>>> import torch
>>> plain({"a": torch.tensor([1.0, 2.0]), "b": frozenset({"y", "x"}), "c": torch.tensor(3.0)})
{'a': [1.0, 2.0], 'b': ['x', 'y'], 'c': 3.0}
"""

from __future__ import annotations

import math
import numbers

import torch


def plain(value):
    """``value`` as JSON-ready data: tensors to numbers/lists, sets to sorted lists, NaN to None."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return plain(value.item() if value.dim() == 0 else value.tolist())
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((plain(item) for item in value), key=str)
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return None if math.isnan(value) else float(value)
    return str(value)


def pandas():
    """The pandas module, or an ImportError that says how to get it."""
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError("to_frame() needs pandas: pip install pandas") from err
    return pd


def frame(rows, columns=None):
    """A DataFrame of ``rows`` (dicts), with ``columns`` in that order."""
    return pandas().DataFrame(list(rows), columns=columns)
