"""Datasets: read data files, infer and enforce a schema, hash, profile, and register content-hashed versions.

A dataset version is a Parquet snapshot in the artifact store with its sha256, the schema it was validated
against and the reference profile later monitoring compares live data with. Validation reports every bad
cell at once (column, row, reason), and nothing is registered from data that fails it.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import math
import random
import re
import struct
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session, selectinload

from mloncall.core import clock
from mloncall.core.errors import Conflict, IntegrityError, InvalidInput, NotFound
from mloncall.core.names import check_name
from mloncall.data.models import Dataset, DatasetVersion
from mloncall.data.schemas import DatasetSchema, FeatureSpec
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.db import Database

#: At most this many failures are kept (all are counted); the message shows the first SUMMARY_FAILURES.
MAX_FAILURES = 1000
SUMMARY_FAILURES = 5
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)
HISTOGRAM_BINS = 10
HASH_FORMAT = b"mloncall-dataset-v1\n"

_PARQUET_MAGIC = b"PAR1"
_PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}
_SNIFF_BYTES = 64 * 1024
_NAN_WORDS = {"nan", "+nan", "-nan"}
_HASH_CHUNK = 1 << 18


# --- failures --------------------------------------------------------------------------------------------


@dataclass
class Failure:
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
        return {
            "column": self.column,
            "row": self.row,
            "reason": self.reason,
            "value": self.value,
            "message": str(self),
        }


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


# --- reading files ---------------------------------------------------------------------------------------


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (every cell as text) or Parquet file as a frame; InvalidInput names the file and the problem."""
    p = Path(path)
    if not p.exists():
        raise InvalidInput(f"data file {p} does not exist")
    if not p.is_file():
        raise InvalidInput(f"data file {p} is not a regular file")
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise InvalidInput(f"data file {p} cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise InvalidInput(f"data file {p} is empty")
    if head[:4] == _PARQUET_MAGIC or p.suffix.lower() in _PARQUET_SUFFIXES:
        df = _read_parquet(p)
    else:
        df = _read_csv(p, head, complete=size <= len(head))
    if len(df) == 0:
        columns = ", ".join(map(str, df.columns))
        raise InvalidInput(f"data file {p} has no data rows (only the header: {columns})")
    return df


def _read_parquet(p: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(p, engine="pyarrow")
    except Exception as exc:
        raise InvalidInput(
            f"data file {p} is not a readable Parquet file (corrupt or truncated?): {_first_line(exc)}"
        ) from None
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()  # a stored index becomes a visible column rather than silently vanishing
    return df


def _read_csv(p: Path, head: bytes, *, complete: bool) -> pd.DataFrame:
    if b"\x00" in head:
        raise InvalidInput(f"data file {p} is not a CSV text file: it contains binary data (NUL bytes)")
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=complete)
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"data file {p} is not UTF-8 text (undecodable byte at offset {exc.start}); is it a CSV file?"
        ) from None
    header = next(csv.reader(io.StringIO(text)), [])
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InvalidInput(
            f"data file {p}: column(s) {', '.join(map(repr, dupes))} appear more than once in the header"
        )
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise InvalidInput(f"data file {p} has no header row (it holds only blank lines)") from None
    except pd.errors.ParserError as exc:
        message = _first_line(exc)
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
        if m:
            message = f"line {m[2]} has {m[3]} fields but the header has {m[1]}"
        raise InvalidInput(f"data file {p} is not a well-formed CSV file: {message}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"data file {p} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if not isinstance(df.index, pd.RangeIndex):
        # pandas turns surplus leading fields into an index when the first data row is longer than the header
        raise InvalidInput(
            f"data file {p} is not a well-formed CSV file: data row 1 has more fields than the header "
            f"({len(df.columns)} columns); is a header name missing or is there a trailing separator?"
        )
    return df


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text.removeprefix("Error tokenizing data. C error: ")


# --- schema and validation -------------------------------------------------------------------------------


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
    bounds = {f.name: b for f in spec.features if (b := _bounds(f, range_margin)) is not None}
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
        values = _to_float(raw)
        typed[name] = pd.Series(values, index=frame.index)
        text = raw.notna().to_numpy() & np.isnan(values)
        if text.any():
            text_cells[name] = text
    if spec.target is not None and spec.target.name in frame.columns:
        labels = frame[spec.target.name]
        if not pd.api.types.is_string_dtype(labels.dtype) or labels.dtype == object:
            typed[spec.target.name] = labels.astype("str")
    return typed, text_cells


def _to_float(raw: pd.Series) -> np.ndarray:
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


def _bounds(feature: FeatureSpec, margin: float | None) -> tuple[float, float] | None:
    """[min - margin*span, max + margin*span]; a constant feature gets a margin relative to its magnitude."""
    if margin is None or feature.min is None or feature.max is None:
        return None
    span = feature.max - feature.min
    pad = margin * (span if span > 0 else max(abs(feature.min), 1.0))
    return feature.min - pad, feature.max + pad


def _finite(s: pd.Series) -> pd.Series:
    return pd.Series(np.isfinite(s.to_numpy(dtype=np.float64)), index=s.index)


def _pandera_schema(spec: DatasetSchema, bounds: dict[str, tuple[float, float]]) -> pa.DataFrameSchema:
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


# --- hashing and profiling -------------------------------------------------------------------------------


def content_hash(df: pd.DataFrame, *, schema: dict[str, Any]) -> str:
    """sha256 of a validated frame's content in a canonical encoding that does not depend on library versions.

    Encoding: a format tag, the row count, then per schema column its name (length-prefixed UTF-8) and kind;
    features as float64 little-endian (-0.0 folded into 0.0), the target as every label's UTF-8 byte length
    (uint64 little-endian) followed by all label bytes. Row order matters.
    """
    spec = DatasetSchema.parse(schema)
    _require_columns(df, spec)
    digest = hashlib.sha256(HASH_FORMAT)
    digest.update(struct.pack("<Q", len(df)))
    for name in spec.feature_names:
        _hash_name(digest, name, b"f")
        values = np.ascontiguousarray(df[name].to_numpy(dtype=np.float64) + 0.0, dtype="<f8")
        digest.update(values.tobytes())
    if spec.target is not None:
        _hash_name(digest, spec.target.name, b"s")
        _hash_labels(digest, df[spec.target.name])
    return digest.hexdigest()


def _hash_name(digest: Any, name: str, kind: bytes) -> None:
    encoded = name.encode("utf-8")
    digest.update(struct.pack("<Q", len(encoded)) + encoded + kind)


def _hash_labels(digest: Any, labels: pd.Series) -> None:
    codes, uniques = pd.factorize(labels, use_na_sentinel=True)
    if (codes < 0).any():
        raise InvalidInput("cannot hash labels with missing values: validate the data first")
    encoded = [str(u).encode("utf-8") for u in uniques]
    lengths = np.array([len(e) for e in encoded], dtype="<u8")
    digest.update(np.ascontiguousarray(lengths[codes]).tobytes())
    width = int(lengths.max()) if len(encoded) else 0
    if width == 0:
        return
    table = np.zeros((len(encoded), width), dtype=np.uint8)
    for i, e in enumerate(encoded):
        table[i, : len(e)] = np.frombuffer(e, dtype=np.uint8)
    keep = np.arange(width) < lengths[:, None]
    for start in range(0, len(codes), _HASH_CHUNK):  # bounded memory: a chunk of rows at a time
        chunk = codes[start : start + _HASH_CHUNK]
        digest.update(table[chunk][keep[chunk]].tobytes())


def _require_columns(df: pd.DataFrame, spec: DatasetSchema) -> None:
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise InvalidInput(f"the data has no column(s) {', '.join(map(repr, missing))}: validate it first")


def profile(df: pd.DataFrame, *, schema: dict[str, Any]) -> dict[str, Any]:
    """The reference profile of validated data: per-feature moments, 101 quantiles and a 10-bin histogram,
    class balance, row count (plain JSON values)."""
    spec = DatasetSchema.parse(schema)
    _require_columns(df, spec)
    n = len(df)
    if n == 0:
        raise InvalidInput("cannot profile a dataset with no rows")
    x = df[spec.feature_names].to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        raise InvalidInput("cannot profile data with missing or non-finite values: validate it first")
    means = x.mean(axis=0)
    stds = x.std(axis=0, ddof=1) if n > 1 else np.zeros(x.shape[1])
    quantiles = np.quantile(x, QUANTILE_LEVELS, axis=0)
    features: dict[str, Any] = {}
    for j, name in enumerate(spec.feature_names):
        counts, edges = np.histogram(x[:, j], bins=HISTOGRAM_BINS)
        features[name] = {
            "count": n,
            "mean": float(means[j]),
            "std": float(stds[j]),
            "min": float(quantiles[0, j]),
            "max": float(quantiles[-1, j]),
            "quantiles": quantiles[:, j].tolist(),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        }
    result: dict[str, Any] = {
        "row_count": n,
        "quantile_levels": [round(float(q), 2) for q in QUANTILE_LEVELS],
        "features": features,
    }
    if spec.target is not None:
        observed = df[spec.target.name].astype("str").value_counts()
        classes = sorted(set(spec.target.classes or []) | {str(c) for c in observed.index})
        counts_by_class = {c: int(observed.get(c, 0)) for c in classes}
        result["class_balance"] = {
            "counts": counts_by_class,
            "shares": {c: counts_by_class[c] / n for c in classes},
        }
    return result


# --- reading the catalogue -------------------------------------------------------------------------------


def get_dataset(*, session: Session, name: str) -> Dataset | None:
    """The dataset called name, or None."""
    return session.scalars(sa.select(Dataset).where(Dataset.name == name)).one_or_none()


def get_dataset_or_raise(*, session: Session, name: str) -> Dataset:
    """The dataset called name; NotFound names it otherwise."""
    dataset = get_dataset(session=session, name=name)
    if dataset is None:
        raise NotFound(f"dataset {name!r} does not exist")
    return dataset


def list_datasets(*, session: Session) -> Sequence[Dataset]:
    """Every dataset with its versions, by name."""
    stmt = (
        sa.select(Dataset)
        .options(selectinload(Dataset.versions).selectinload(DatasetVersion.dataset))
        .order_by(Dataset.name)
    )
    return session.scalars(stmt).all()


def get_version_or_raise(*, session: Session, name: str, version: int) -> DatasetVersion:
    """One version of a dataset; NotFound says whether the dataset or the version is missing."""
    dataset = get_dataset_or_raise(session=session, name=name)
    dv = session.scalars(
        sa.select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.version == version
        )
    ).one_or_none()
    if dv is None:
        known = [v.version for v in dataset.versions]
        which = f"its versions are {', '.join(map(str, known))}" if known else "it has no versions"
        raise NotFound(f"dataset {name!r} has no version {version} ({which})")
    return dv


def get_version_by_id_or_raise(*, session: Session, dataset_version_id: int) -> DatasetVersion:
    """A dataset version by its id (as models and parents record it)."""
    dv = session.get(DatasetVersion, dataset_version_id)
    if dv is None:
        raise NotFound(f"dataset version id {dataset_version_id} does not exist")
    return dv


def parse_ref(ref: str) -> tuple[str, int | None]:
    """`NAME`, `NAME:latest` (None: the newest) or `NAME:VERSION` as (name, version)."""
    text = (ref or "").strip()
    if "@" in text:
        raise InvalidInput(
            f"invalid dataset reference {text!r}: datasets have no aliases; use NAME or NAME:VERSION"
        )
    name, sep, version = text.partition(":")
    check_name(name, "dataset name")
    if not sep or version == "latest":
        return name, None
    number = version.removeprefix("v")
    if not number.isdigit() or int(number) < 1:
        raise InvalidInput(f"invalid dataset reference {text!r}: the version must be a positive integer")
    return name, int(number)


def resolve(*, session: Session, ref: str) -> DatasetVersion:
    """The version a reference names: `NAME` (the latest) or `NAME:VERSION`."""
    name, version = parse_ref(ref)
    if version is not None:
        return get_version_or_raise(session=session, name=name, version=version)
    dataset = get_dataset_or_raise(session=session, name=name)
    if not dataset.versions:
        raise NotFound(f"dataset {name!r} has no versions")
    return dataset.versions[-1]


def ref_of(dataset_version: DatasetVersion) -> str:
    """`NAME:VERSION` of a version whose dataset is loaded."""
    return f"{dataset_version.dataset.name}:{dataset_version.version}"


# --- registering -----------------------------------------------------------------------------------------


def register(
    *,
    db: Database,
    store: ArtifactStore,
    name: str,
    df: pd.DataFrame,
    schema: dict[str, Any],
    source: str,
    created_by: str,
    parents: list[int] | None = None,
) -> DatasetVersion:
    """Register df as the next version of dataset `name`, or return the version that already has its content.

    df is validated against the schema (types, nulls, columns, labels; ranges are the caller's policy) so
    nothing bad is stored. The Parquet snapshot is written atomically first and the row inserted last in
    its own unit of work; a failure removes the snapshot, and racing registrations get distinct numbers.
    """
    check_name(name, "dataset name")
    spec = DatasetSchema.parse(schema)
    parent_ids = _check_parent_ids(parents)
    clean = validate(df, schema=schema, source=source, range_margin=None)
    digest = content_hash(clean, schema=schema)
    with db.session() as session:
        existing = _version_with_hash(session=session, name=name, digest=digest)
        if existing is not None:
            return existing
        _require_parents(session=session, parent_ids=parent_ids)
    reference = profile(clean, schema=schema)
    buffer = io.BytesIO()
    clean.to_parquet(buffer, engine="pyarrow", index=False, compression="zstd")
    # A fresh suffix per attempt: a racing registration of the same content never overwrites or deletes ours.
    key = f"datasets/{name}/{digest[:16]}-{uuid.uuid4().hex[:8]}.parquet"
    stored = store.put_bytes(key, buffer.getvalue())
    try:
        dv, created = _insert_version(
            db=db,
            values={
                "content_hash": digest,
                "row_count": len(clean),
                "key": stored.key,
                "sha256": stored.sha256,
                "size": stored.size,
                "target": spec.target.name if spec.target is not None else None,
                "schema": spec.model_dump(mode="json"),
                "profile": reference,
                "source": source,
                "parents": parent_ids,
                "created_by": created_by,
            },
            name=name,
        )
    except BaseException:
        store.delete(key)
        raise
    if not created:
        store.delete(key)
    return dv


def _check_parent_ids(parents: list[int] | None) -> list[int]:
    ids = list(parents or [])
    bad = [p for p in ids if isinstance(p, bool) or not isinstance(p, int)]
    if bad:
        raise InvalidInput(f"dataset parents must be dataset version ids (integers), got {bad!r}")
    return list(dict.fromkeys(ids))


def _require_parents(*, session: Session, parent_ids: list[int]) -> None:
    if not parent_ids:
        return
    found = set(session.scalars(sa.select(DatasetVersion.id).where(DatasetVersion.id.in_(parent_ids))))
    missing = [p for p in parent_ids if p not in found]
    if missing:
        raise NotFound(f"parent dataset version id(s) {', '.join(map(str, missing))} do not exist")


def _version_with_hash(*, session: Session, name: str, digest: str) -> DatasetVersion | None:
    stmt = (
        sa.select(DatasetVersion)
        .join(Dataset)
        .where(Dataset.name == name, DatasetVersion.content_hash == digest)
        .options(selectinload(DatasetVersion.dataset))
    )
    return session.scalars(stmt).one_or_none()


def _insert_version(*, db: Database, values: dict[str, Any], name: str) -> tuple[DatasetVersion, bool]:
    """Insert the next version in its own unit of work; (existing, False) if the content won a race first."""
    attempts = 20
    for attempt in range(attempts):
        try:
            with db.session() as session:
                existing = _version_with_hash(session=session, name=name, digest=values["content_hash"])
                if existing is not None:
                    return existing, False
                dataset = get_dataset(session=session, name=name)
                if dataset is None:
                    dataset = Dataset(name=name, created_at=clock.now(), created_by=values["created_by"])
                    session.add(dataset)
                    session.flush()
                latest = session.scalar(
                    sa.select(sa.func.max(DatasetVersion.version)).where(
                        DatasetVersion.dataset_id == dataset.id
                    )
                )
                dv = DatasetVersion(
                    dataset_id=dataset.id, version=(latest or 0) + 1, created_at=clock.now(), **values
                )
                session.add(dv)
                session.flush()
                session.refresh(dv, ["dataset"])
                return dv, True
        except SAIntegrityError as exc:
            # Another registration took this number, this content or the dataset name first: look again.
            if attempt == attempts - 1:
                raise Conflict(
                    f"could not allocate a version number for dataset {name!r}: {exc.orig}"
                ) from None
            time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    raise AssertionError("unreachable")


def read(*, store: ArtifactStore, dataset_version: DatasetVersion) -> pd.DataFrame:
    """The version's rows from its snapshot, after checking the bytes against the recorded sha256."""
    data = store.read_verified(dataset_version.key, dataset_version.sha256)
    try:
        df = pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    except Exception as exc:
        raise IntegrityError(
            f"dataset snapshot {store.url(dataset_version.key)} cannot be parsed: {_first_line(exc)}",
            details={"file": dataset_version.key},
        ) from None
    spec = DatasetSchema.parse(dataset_version.schema)
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise IntegrityError(
            f"dataset snapshot {store.url(dataset_version.key)} lacks column(s) {', '.join(missing)}",
            details={"file": dataset_version.key},
        )
    out = df[spec.columns].copy()
    for name in spec.feature_names:
        out[name] = out[name].astype(np.float64)
    if spec.target is not None:
        out[spec.target.name] = out[spec.target.name].astype("str")
    return out
