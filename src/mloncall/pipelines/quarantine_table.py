"""The quarantine table's two Parquet files, built from a frame and its CheckResult without a loop over rows.

`rows.parquet` holds every bad row whole (its own columns, so a release can re-validate it) with
`_row` (its 0-based position in the source), `_source_file` and `_failed` (the list of `check(column)` that failed).
`failures.parquet` holds one line per failing cell or column problem: row, column, check, value, source_file.
A column pyarrow cannot store as one type (text mixed with numbers) is stored as text, empty cells empty.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet as pq

from mloncall.pipelines.checks import CheckResult

ROW = "_row"
SOURCE = "_source_file"
FAILED = "_failed"
META_COLUMNS = (ROW, SOURCE, FAILED)


def bad_rows_table(frame: pd.DataFrame, result: CheckResult, *, source_file: str) -> pyarrow.Table:
    """The rows result found bad, whole, with where they came from and what failed."""
    data = frame.reset_index(drop=True)
    rows = np.flatnonzero(~result.valid)
    picked = data.iloc[rows]
    arrays: dict[str, pyarrow.Array] = {str(c): _arrow(picked[c]) for c in picked.columns}
    cells = result.failures[result.failures["row"].notna()]  # sorted by row: one run of cells per bad row
    cell_rows = cells["row"].to_numpy(dtype=np.int64)
    labels = _labels(cells["check"], cells["column"])
    offsets = np.append(np.searchsorted(cell_rows, rows, side="left"), len(cell_rows)).astype(np.int32)
    arrays[ROW] = pyarrow.array(rows, type=pyarrow.int64())
    arrays[SOURCE] = _constant(source_file, len(rows))
    arrays[FAILED] = pyarrow.ListArray.from_arrays(pyarrow.array(offsets), labels)
    return pyarrow.table(arrays)


def failures_table(result: CheckResult, *, source_file: str) -> pyarrow.Table:
    """Every failing cell and column problem, with the source file."""
    f = result.failures
    return pyarrow.table(
        {
            "row": pyarrow.array(f["row"], type=pyarrow.int64(), from_pandas=True),
            "column": _dictionary(f["column"]),
            "check": _dictionary(f["check"]),
            "value": pyarrow.array(f["value"], type=pyarrow.string(), from_pandas=True),
            "source_file": _constant(source_file, len(f)),
        }
    )


def _constant(text: str, n: int) -> pyarrow.Array:
    return pyarrow.DictionaryArray.from_arrays(
        pyarrow.array(np.zeros(n, dtype=np.int32)), pyarrow.array([text])
    )


def _dictionary(values: pd.Series) -> pyarrow.Array:
    """A categorical column as Arrow dictionary-encoded text (its codes are not copied into strings)."""
    cat = values.astype("category").cat
    codes = pyarrow.array(cat.codes.to_numpy(dtype=np.int32))
    return pyarrow.DictionaryArray.from_arrays(codes, pyarrow.array([str(c) for c in cat.categories]))


def _labels(checks: pd.Series, columns: pd.Series) -> pyarrow.Array:
    """`check(column)` per cell, built once per pair of categories and taken by code."""
    check_cat, column_cat = checks.astype("category").cat, columns.astype("category").cat
    width = max(len(column_cat.categories), 1)
    pairs = [f"{k}({c})" for k in check_cat.categories for c in column_cat.categories]
    codes = check_cat.codes.to_numpy(dtype=np.int64) * width + column_cat.codes.to_numpy(dtype=np.int64)
    return pyarrow.DictionaryArray.from_arrays(
        pyarrow.array(codes.astype(np.int32)), pyarrow.array(pairs, type=pyarrow.string())
    )


def parquet_bytes(table: pyarrow.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def read_table(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()


def data_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """A quarantined rows frame without its bookkeeping columns: the rows as they came."""
    return rows.drop(columns=[c for c in META_COLUMNS if c in rows.columns]).reset_index(drop=True)


def _arrow(column: pd.Series) -> pyarrow.Array:
    try:
        return pyarrow.array(column, from_pandas=True)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, pyarrow.ArrowNotImplementedError):
        text = column.astype("str").to_numpy(dtype=object)
        text[np.asarray(column.isna().to_numpy(dtype=bool))] = None
        return pyarrow.array(text, type=pyarrow.string())
