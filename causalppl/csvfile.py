"""Reading a CSV file of observations for the command line: pandas, with errors that name the culprit.

Booleans (``True``/``False``), numbers and strings (labels) are read as pandas
reads them; :func:`causalppl.graph.columns.read_columns` then checks each
column (missing and infinite values are reported with the column and row).
Errors name the file and say what was wrong: not UTF-8, an empty or
duplicated header name, a row with more values than the header, a missing
value.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "d.csv")
>>> _ = open(path, "w").write("t,x,g\\nTrue,1.5,a\\nFalse,2,b\\n")
>>> frame = read_csv(path)
>>> frame["t"].dtype.kind, frame["x"].dtype.kind, frame["g"].tolist()
('b', 'f', ['a', 'b'])
"""

from __future__ import annotations

import csv
import io
from pathlib import Path


class CSVError(ValueError):
    """A CSV file that cannot be read as a table of observations."""


def read_csv(path):
    """A pandas DataFrame of the CSV file at ``path``; :class:`CSVError` naming the file otherwise."""
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError("reading CSV files needs pandas: pip install pandas") from err
    from causalppl.graph.columns import read_columns

    path = Path(path)
    if path.is_dir():
        raise CSVError(f"cannot read {path}: it is a folder, not a CSV file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CSVError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CSVError(f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                       "save the file as UTF-8") from None
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        raise CSVError(f"{path}: the file is empty (expected a header line of column names)")
    names = [name.strip() for name in header]
    for index, name in enumerate(names):
        if not name:
            raise CSVError(f"{path}: column {index + 1} of the header has no name")
        if names.index(name) != index:
            raise CSVError(f"{path}: column '{name}' appears twice in the header (columns {names.index(name) + 1} "
                           f"and {index + 1})")
    for line, row in enumerate(rows, start=2):
        if len(row) > len(names):
            raise CSVError(f"{path}: line {line} has {len(row)} values but the header names {len(names)} columns")
    try:
        frame = pd.read_csv(io.StringIO(text), skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise CSVError(f"{path}: not a valid CSV table: {' '.join(str(err).split())}") from None
    frame.columns = names
    if frame.empty:
        raise CSVError(f"{path}: no data rows")
    for name in names:
        _check_mixed(path, name, frame[name])
    try:
        read_columns(frame)  # the checks fit would make, now, with the file's name
    except (ValueError, TypeError) as err:
        raise CSVError(f"{path}: {err}") from None
    return frame


def _is_number(text):
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _check_mixed(path, name, column):
    """A text column in which some values are numbers: a typo, most likely (``1, 2, abc``)."""
    if column.dtype.kind in "biufc":
        return
    values = [v for v in column.tolist() if isinstance(v, str)]
    numbers = [v for v in values if _is_number(v)]
    if numbers and len(numbers) < len(values):
        row = next(i for i, v in enumerate(column.tolist()) if isinstance(v, str) and not _is_number(v))
        raise CSVError(f"{path}: column '{name}' has a value that is not a number ({column.iloc[row]!r} at "
                       f"line {row + 2}) among numbers")
