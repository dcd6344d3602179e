"""Dataset validation: infer a schema from data and enforce one with pandera, reporting every bad cell at once.

A `Failure` is one problem (column, 1-based data row, reason, value); `DataValidationError` carries the first
MAX_FAILURES of them and counts them all, so a file with a thousand bad cells is described in one go.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.compute as pc

from mloncall.core.errors import InvalidInput
from mloncall.core.records import Record
from mloncall.data.schemas import DatasetSchema, FeatureSpec

if TYPE_CHECKING:
    import pandera.pandas as pa

#: At most this many failures are kept (all are counted); the message shows the first SUMMARY_FAILURES.
MAX_FAILURES = 1000
SUMMARY_FAILURES = 5

_NAN_WORDS = {"nan", "+nan", "-nan"}


@dataclass
class Failure(Record):
    """One problem in the data: which column and 1-based data row (header not counted), and why."""

    column: str | None
    row: int | None
    reason: str
    value: str | None = None

    def __str__(self) -> str:
        if self.row is not None and self.column is not None:
            return f"row {self.row} column {self.column!r}: {self.reason}"
        if self.row is not None:
            return f"row {self.row}: {self.reason}"
        return self.reason

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "message": str(self)}


class DataValidationError(InvalidInput):
    """Data failed validation; `failures` lists the first MAX_FAILURES problems, `total` counts them all."""

    def __init__(self, source: str, failures: Sequence[Failure], *, total: int | None = None) -> None:
        self.source = source
        self.failures = list(failures[:MAX_FAILURES])
        self.total = len(failures) if total is None else total
        shown = self.failures[:SUMMARY_FAILURES]
        more = self.total - len(shown)
        noun = "problem" if self.total == 1 else "problems"
        message = f"{source}: {self.total} {noun}: " + "; ".join(str(f) for f in shown)
        if more > 0:
            message += f"; and {more} more"
        super().__init__(message, details=[f.to_dict() for f in self.failures])


def infer_schema(df: pd.DataFrame, *, target: str, source: str = "data") -> dict[str, Any]:
    """The schema of df: every other column a float64 feature with min/max, the target with its classes."""
    columns = [str(c) for c in df.columns]
    if target not in columns:
        hint = difflib.get_close_matches(target, columns, n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise InvalidInput(
            f"{source}: the target column {target!r} is not in the data{did_you_mean}; "
            f"its columns are: {', '.join(columns) or '(none)'}"
        )
    features = list(dict.fromkeys(c for c in columns if c != target))
    if not features:
        raise InvalidInput(f"{source}: there are no feature columns besides the target {target!r}")
    provisional = {"features": [{"name": c} for c in features], "target": {"name": target}}
    clean = validate(df, schema=provisional, source=source, range_margin=None)
    x = clean[features].to_numpy(dtype=np.float64)
    lows, highs = x.min(axis=0), x.max(axis=0)
    return {
        "features": [
            {"name": name, "dtype": "float64", "min": float(lo), "max": float(hi)}
            for name, lo, hi in zip(features, lows, highs, strict=True)
        ],
        "target": {"name": target, "classes": sorted(str(c) for c in clean[target].unique())},
    }


def validate(
    df: pd.DataFrame, *, schema: dict[str, Any], source: str = "data", range_margin: float | None = 0.25
) -> pd.DataFrame:
    """A clean typed copy of df (float64 features, str target, schema column order), or DataValidationError
    listing every problem: columns missing, unexpected or renamed, text, empty cells, NaN/inf, values out of
    range, unknown labels, no rows."""
    spec = DatasetSchema.parse(schema)
    if range_margin is not None and not (math.isfinite(range_margin) and range_margin >= 0):
        raise InvalidInput(f"range margin must be a non-negative number or None, got {range_margin!r}")
    frame = df.reset_index(drop=True)
    frame.columns = pd.Index([str(c) for c in frame.columns], dtype=object)
    own: list[Failure] = []
    duplicated = frame.columns.duplicated()
    for name in dict.fromkeys(frame.columns[duplicated]):
        own.append(Failure(name, None, f"column {name!r} appears more than once"))
    frame = frame.loc[:, ~duplicated]
    if len(frame) == 0:
        own.append(Failure(None, None, "there are no data rows"))

    typed, text_cells = _coerce(frame, spec)
    bounds = {f.name: b for f in spec.features if (b := feature_bounds(f, range_margin)) is not None}
    import pandera.pandas as pa  # deferred: ~0.12 s at start-up, which every CLI call paid

    try:
        _pandera_schema(spec, bounds).validate(typed, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        listed, total = _describe(
            exc.failure_cases, frame=frame, spec=spec, text_cells=text_cells, bounds=bounds
        )
        raise DataValidationError(source, own + listed, total=len(own) + total) from None
    if own:
        raise DataValidationError(source, own)
    clean = typed[spec.columns].copy()
    if spec.target is not None:
        clean[spec.target.name] = clean[spec.target.name].astype("str")
    return clean


def _coerce(frame: pd.DataFrame, spec: DatasetSchema) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """frame with its feature columns as float64 (unparseable text becomes NaN), and where that text was."""
    typed = frame.copy()
    text_cells: dict[str, np.ndarray] = {}
    for name in spec.feature_names:
        if name not in frame.columns:
            continue
        raw = frame[name]
        values = to_float(raw)
        typed[name] = pd.Series(values, index=frame.index)
        text = raw.notna().to_numpy() & np.isnan(values)
        if text.any():
            text_cells[name] = text
    if spec.target is not None and spec.target.name in frame.columns:
        labels = frame[spec.target.name]
        if not pd.api.types.is_string_dtype(labels.dtype) or labels.dtype == object:
            typed[spec.target.name] = labels.astype("str")
    return typed, text_cells


def to_float(raw: pd.Series) -> np.ndarray:
    """A column as float64 values; cells that are not numbers become NaN (vectorised)."""
    dtype = raw.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return np.full(len(raw), np.nan)  # True/False are not measurements: reported as text
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return np.asarray(raw.to_numpy(dtype=np.float64, na_value=np.nan))
    # Arrow's parser is ~20x faster than to_numeric and rounds correctly, so a column of good numbers always
    # parses the same way (and hashes the same); it refuses the whole column on one bad cell, and only then
    # does to_numeric find which cells are bad.
    try:
        arr = pyarrow.array(raw, from_pandas=True)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, pyarrow.ArrowNotImplementedError):
        arr = None
    if arr is not None and (pyarrow.types.is_string(arr.type) or pyarrow.types.is_large_string(arr.type)):
        for candidate in (arr, pc.utf8_trim_whitespace(arr)):
            try:
                parsed_arrow = pc.cast(candidate, pyarrow.float64())
            except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError):
                continue
            return np.asarray(parsed_arrow.to_numpy(zero_copy_only=False), dtype=np.float64)
    try:
        parsed = pd.to_numeric(raw, errors="coerce")
    except (TypeError, ValueError):
        parsed = pd.to_numeric(raw.astype("str"), errors="coerce")
    if pd.api.types.is_bool_dtype(parsed.dtype):
        return np.full(len(raw), np.nan)
    return np.asarray(parsed.to_numpy(dtype=np.float64, na_value=np.nan))


def feature_bounds(feature: FeatureSpec, margin: float | None) -> tuple[float, float] | None:
    """[min - margin*span, max + margin*span]; a constant feature gets a margin relative to its magnitude."""
    if margin is None or feature.min is None or feature.max is None:
        return None
    span = feature.max - feature.min
    pad = margin * (span if span > 0 else max(abs(feature.min), 1.0))
    return feature.min - pad, feature.max + pad


def _finite(s: pd.Series) -> pd.Series:
    return pd.Series(np.isfinite(s.to_numpy(dtype=np.float64)), index=s.index)


def _pandera_schema(spec: DatasetSchema, bounds: dict[str, tuple[float, float]]) -> pa.DataFrameSchema:
    import pandera.pandas as pa

    columns: dict[str, pa.Column] = {}
    for f in spec.features:
        checks = [pa.Check(_finite, name="finite")]
        if f.name in bounds:
            lo, hi = bounds[f.name]
            # non-finite values are the finite check's to report, once
            checks.append(
                pa.Check(lambda s, lo=lo, hi=hi: ~np.isfinite(s) | ((s >= lo) & (s <= hi)), name="in_range")
            )
        columns[f.name] = pa.Column("float64", nullable=False, checks=checks)
    if spec.target is not None:
        target_checks = []
        if spec.target.classes is not None:
            target_checks.append(pa.Check.isin(spec.target.classes, name="known_class"))
        columns[spec.target.name] = pa.Column(None, nullable=False, checks=target_checks)
    return pa.DataFrameSchema(columns, strict=True)


def _describe(
    cases: pd.DataFrame,
    *,
    frame: pd.DataFrame,
    spec: DatasetSchema,
    text_cells: dict[str, np.ndarray],
    bounds: dict[str, tuple[float, float]],
) -> tuple[list[Failure], int]:
    """pandera's failure cases as Failures: column problems first, then cells by row and schema column order.

    Returns the first MAX_FAILURES and the total count; only those kept are formatted one by one.
    """
    checks = cases["check"].astype(str)
    missing = cases.loc[checks == "column_in_dataframe", "failure_case"].astype(str).tolist()
    extra = cases.loc[checks == "column_in_schema", "failure_case"].astype(str).tolist()
    failures = _column_failures(missing=missing, extra=extra)
    rows = pd.to_numeric(cases["index"], errors="coerce")
    other = cases[rows.isna() & ~checks.isin(["column_in_dataframe", "column_in_schema"])]
    failures += [Failure(_str_or_none(r.column), None, f"failed check {r.check}") for r in other.itertuples()]

    cells = cases[rows.notna()]
    total = len(failures) + len(cells)
    room = max(MAX_FAILURES - len(failures), 0)
    if room and len(cells):
        position = {name: i for i, name in enumerate(spec.columns)}
        cell_rows = rows[rows.notna()].to_numpy(dtype=np.int64)
        cell_cols = cells["column"].map(position).fillna(len(position)).to_numpy(dtype=np.int64)
        order = np.lexsort((cell_cols, cell_rows))[:room]
        cell_checks = cells["check"].astype(str).to_numpy()
        cell_names = cells["column"].astype(str).to_numpy()
        classes = spec.target.classes if spec.target is not None else None
        for i in order:
            failures.append(
                _cell_failure(
                    frame=frame,
                    column=str(cell_names[i]),
                    row=int(cell_rows[i]),
                    check=str(cell_checks[i]),
                    text_cells=text_cells,
                    bounds=bounds,
                    classes=classes,
                )
            )
    return failures, total


def _column_failures(*, missing: list[str], extra: list[str]) -> list[Failure]:
    failures = [Failure(name, None, f"column {name!r} is missing") for name in missing]
    unmatched = list(missing)
    for name in extra:
        hint = ""
        close = difflib.get_close_matches(name, unmatched, n=1, cutoff=0.6)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
            unmatched.remove(close[0])
        elif name.startswith("Unnamed: "):
            hint = " (a column without a header name)"
        elif ";" in name or "\t" in name:
            hint = " (is the file separated by ';' or tabs instead of commas?)"
        failures.append(Failure(name, None, f"column {name!r} is not expected{hint}"))
    return failures


def _cell_failure(
    *,
    frame: pd.DataFrame,
    column: str,
    row: int,
    check: str,
    text_cells: dict[str, np.ndarray],
    bounds: dict[str, tuple[float, float]],
    classes: list[str] | None,
) -> Failure:
    raw = frame[column].iloc[row] if column in frame.columns else None
    value = None if raw is None or _is_missing(raw) else str(raw)
    if check == "not_nullable":
        if column in text_cells and text_cells[column][row]:
            if str(value).strip().lower() in _NAN_WORDS:
                reason = f"{value!r} is not a finite number"
            else:
                reason = f"{value!r} is not a number"
        else:
            numeric = column in frame.columns and pd.api.types.is_float_dtype(frame[column].dtype)
            reason = "value is missing or NaN" if numeric else "value is missing (empty cell)"
    elif check == "finite":
        reason = f"{value!r} is not a finite number"
    elif check == "in_range" and column in bounds:
        lo, hi = bounds[column]
        reason = f"{_number(frame[column].iloc[row])} is outside the expected range [{lo:.6g}, {hi:.6g}]"
    elif check == "known_class" or check.startswith("isin("):
        known = ", ".join((classes or [])[:10]) + (", ..." if len(classes or []) > 10 else "")
        reason = f"{value!r} is not a known class (expected one of: {known})"
    else:
        reason = f"{value!r} failed check {check}"
    return Failure(column, row + 1, reason, value)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _number(value: Any) -> str:
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return repr(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None or _is_missing(value) else str(value)
