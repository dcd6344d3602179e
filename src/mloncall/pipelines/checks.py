"""Row checks of a pipeline's validate stage: the dataset's schema plus declared checks, run column by column
in numpy, giving the same failing (row, column, check) triples as pandera's lazy validation of that schema.

The checks, by name (what `CheckResult.failures` says in its `check` column):

- `column_in_dataframe`, `column_in_schema`: a schema column is missing, a column is not in the schema
  (column-level: `row` is missing);
- `not_nullable`: an empty cell where the column may not have one (features, the target, `not_null`);
- `number`: a feature cell that is not a number (text, a boolean); `finite`: NaN written out, or ±inf;
- `in_range`: a feature outside the range it was inferred with, widened by `range_margin` of its span;
- `known_class`: a target label that is not one of the schema's classes;
- declared per column: `range` (`min`/`max`, inclusive), `allowed` (one of the values), `field_uniqueness`
  (`unique`: every occurrence of a repeated value), `pattern` (the whole string matches a regex).

`pandera_schema` builds the pandera schema of the same checks (the reference the tests and the benchmark
compare with); `validate_frame` is the fast path a pipeline runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mloncall.core.errors import InvalidInput
from mloncall.data.schemas import DatasetSchema
from mloncall.data.validation import feature_bounds, to_float

#: The columns of `CheckResult.failures`.
FAILURE_COLUMNS = ["row", "column", "check", "value"]
MISSING_COLUMN = "column_in_dataframe"
UNEXPECTED_COLUMN = "column_in_schema"

#: A check: the column and, when already parsed, its values as float64; True where the cell passes.
Mask = Callable[[pd.Series, np.ndarray | None], np.ndarray]


class ColumnChecks(BaseModel):
    """The checks declared for one column, beside what the dataset's schema already says of it."""

    model_config = ConfigDict(extra="forbid")

    not_null: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = Field(default=None, min_length=1)
    unique: bool = False
    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern {value!r} is not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class CheckedSchema(BaseModel):
    """A dataset's schema with the checks a pipeline declares: its dict form is the dataset schema's with
    `checks` (column name to ColumnChecks), `range_margin` (None: inferred ranges not checked) and `strict`
    (columns outside the schema and the checks are failures) beside `features` and `target`."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetSchema
    checks: dict[str, ColumnChecks] = Field(default_factory=dict)
    range_margin: float | None = Field(default=0.25, ge=0, allow_inf_nan=False)
    strict: bool = True

    @property
    def columns(self) -> list[str]:
        """Every column checked: the dataset's, then the ones only checks name, in declaration order."""
        own = self.dataset.columns
        return own + [c for c in self.checks if c not in own]

    def to_dict(self) -> dict[str, Any]:
        """The dict form `parse` reads: the dataset schema's keys with `checks`, `range_margin`, `strict`."""
        return {
            **self.dataset.model_dump(mode="json"),
            "checks": {k: v.model_dump(mode="json", exclude_defaults=True) for k, v in self.checks.items()},
            "range_margin": self.range_margin,
            "strict": self.strict,
        }

    @classmethod
    def parse(cls, schema: Any) -> CheckedSchema:
        """A CheckedSchema from itself, a DatasetSchema, or the dict form; InvalidInput says what is wrong."""
        if isinstance(schema, CheckedSchema):
            return schema
        if isinstance(schema, DatasetSchema):
            return cls(dataset=schema)
        if not isinstance(schema, dict):
            raise InvalidInput(f"a schema is a mapping, got {type(schema).__name__}")
        body = dict(schema)
        own = {k: body.pop(k) for k in ("checks", "range_margin", "strict") if k in body}
        try:
            return cls.model_validate({"dataset": DatasetSchema.parse(body), **own})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'schema'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(f"invalid checks: {problems}") from None


@dataclass
class CheckResult:
    """What validate_frame found: `valid` is True for each row (by position) no row-level check failed;
    `failures` has one line per failing cell (`row` 0-based) and per column-level problem (`row` <NA>)."""

    rows: int
    valid: np.ndarray
    failures: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return len(self.failures) == 0

    @property
    def bad_rows(self) -> int:
        return int(self.rows - np.count_nonzero(self.valid))

    @property
    def bad_cells(self) -> int:
        return int(self.failures["row"].notna().sum())

    @property
    def column_problems(self) -> pd.DataFrame:
        """The column-level failures (a missing or unexpected column)."""
        return self.failures[self.failures["row"].isna()].reset_index(drop=True)

    @property
    def share_bad(self) -> float:
        return self.bad_rows / self.rows if self.rows else 0.0

    def triples(self) -> set[tuple[int | None, str, str]]:
        """The failures as (row or None, column, check)."""
        rows = [None if pd.isna(r) else int(r) for r in self.failures["row"]]
        return set(zip(rows, self.failures["column"], self.failures["check"], strict=True))

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "bad_rows": self.bad_rows,
            "bad_cells": self.bad_cells,
            "share_bad": self.share_bad,
            "counts": dict(self.counts),
            "column_problems": self.column_problems[["column", "check"]].to_dict("records"),
        }


# --- the checks, one function each, shared by both paths ---------------------------------------------------


def _number(s: pd.Series, v: np.ndarray | None) -> np.ndarray:
    return ~np.isnan(to_float(s) if v is None else v)


def _finite(s: pd.Series, v: np.ndarray | None) -> np.ndarray:
    return ~np.isinf(to_float(s) if v is None else v)


def _between(lo: float | None, hi: float | None) -> Mask:
    low = -np.inf if lo is None else lo
    high = np.inf if hi is None else hi

    def inside(s: pd.Series, parsed: np.ndarray | None) -> np.ndarray:
        v = to_float(s) if parsed is None else parsed
        with np.errstate(invalid="ignore"):
            return ~np.isfinite(v) | ((v >= low) & (v <= high))

    return inside


def _one_of(values: list[Any], *, as_text: bool) -> Mask:
    def member(s: pd.Series, _: np.ndarray | None) -> np.ndarray:
        return np.asarray((s.astype("str") if as_text else s).isin(values).to_numpy(dtype=bool))

    return member


def _matches(pattern: str) -> Mask:
    """The whole cell matches; a cell that is not a string does not. Arrow's RE2 where it takes the pattern,
    Python's re otherwise (back-references, look-arounds)."""
    compiled = re.compile(pattern)

    def match(s: pd.Series, _: np.ndarray | None) -> np.ndarray:
        if not (pd.api.types.is_string_dtype(s.dtype) or s.dtype == object):
            return np.zeros(len(s), dtype=bool)
        try:
            arr = pyarrow.array(s, from_pandas=True)
            if pyarrow.types.is_string(arr.type) or pyarrow.types.is_large_string(arr.type):
                hit = pc.match_substring_regex(arr, f"^(?:{pattern})$")
                return np.asarray(hit.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, pyarrow.ArrowNotImplementedError):
            pass
        return np.asarray(s.astype(object).str.fullmatch(compiled).fillna(False).to_numpy(dtype=bool))

    return match


@dataclass(frozen=True)
class _Column:
    name: str
    nullable: bool
    unique: bool
    checks: tuple[tuple[str, Mask], ...]
    numeric: bool = False  # some check reads the cells as numbers


def _plan(schema: CheckedSchema) -> list[_Column]:
    """Every checked column with its checks in order: the dataset's own first, then the declared ones."""
    spec = schema.dataset
    features = {f.name: f for f in spec.features}
    plan: list[_Column] = []
    for name in schema.columns:
        declared = schema.checks.get(name, ColumnChecks())
        checks: list[tuple[str, Mask]] = []
        own = name in features or (spec.target is not None and name == spec.target.name)
        if name in features:
            checks += [("number", _number), ("finite", _finite)]
            if (bounds := feature_bounds(features[name], schema.range_margin)) is not None:
                checks.append(("in_range", _between(*bounds)))
        elif spec.target is not None and name == spec.target.name and spec.target.classes is not None:
            checks.append(("known_class", _one_of(list(spec.target.classes), as_text=True)))
        if declared.min is not None or declared.max is not None:
            checks.append(("range", _between(declared.min, declared.max)))
        if declared.allowed is not None:
            checks.append(("allowed", _one_of(list(declared.allowed), as_text=False)))
        if declared.pattern is not None:
            checks.append(("pattern", _matches(declared.pattern)))
        nullable = not (own or declared.not_null)
        numeric = name in features or declared.min is not None or declared.max is not None
        plan.append(_Column(name, nullable, declared.unique, tuple(checks), numeric))
    return plan


def pandera_schema(schema: Any) -> pa.DataFrameSchema:
    """The pandera schema of the same checks (lazy validation of it is what validate_frame agrees with)."""
    columns: dict[str, pa.Column] = {}
    for col in _plan(CheckedSchema.parse(schema)):
        checks = [
            pa.Check(lambda s, fn=fn: pd.Series(fn(s, None), index=s.index), name=name)
            for name, fn in col.checks
        ]
        columns[col.name] = pa.Column(None, nullable=col.nullable, unique=col.unique, checks=checks)
    return pa.DataFrameSchema(columns, strict=CheckedSchema.parse(schema).strict)


def pandera_triples(frame: pd.DataFrame, schema: Any) -> set[tuple[int | None, str, str]]:
    """(row or None, column, check) of every failure pandera's lazy validation reports, rows by position."""
    data = frame.reset_index(drop=True)
    try:
        pandera_schema(schema).validate(data, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return set()
    found: set[tuple[int | None, str, str]] = set()
    for column, check, index, case in zip(
        cases["column"], cases["check"], cases["index"], cases["failure_case"], strict=True
    ):
        if check in (MISSING_COLUMN, UNEXPECTED_COLUMN):
            found.add((None, str(case), str(check)))
        else:
            found.add((None if pd.isna(index) else int(index), str(column), str(check)))
    return found


# --- the fast path -------------------------------------------------------------------------------------------


def validate_frame(frame: pd.DataFrame, schema: Any) -> CheckResult:
    """Run every check on every row at once (numpy over whole columns, no loop over rows)."""
    checked = CheckedSchema.parse(schema)
    data = frame.reset_index(drop=True)
    names = [str(c) for c in data.columns]
    n = len(data)
    plan = _plan(checked)
    expected = {c.name for c in plan}
    parts: list[tuple[np.ndarray, str, str, np.ndarray]] = []
    problems: list[tuple[str, str]] = [(c.name, MISSING_COLUMN) for c in plan if c.name not in names]
    if checked.strict:
        problems += [(c, UNEXPECTED_COLUMN) for c in dict.fromkeys(names) if c not in expected]
    invalid = np.zeros(n, dtype=bool)
    for col in plan:
        if col.name not in names:
            continue
        raw = data[col.name]
        null = np.asarray(raw.isna().to_numpy(dtype=bool))
        if not col.nullable and null.any():
            parts.append((np.flatnonzero(null), col.name, "not_nullable", raw))
        if col.unique:
            dup = np.asarray(raw.duplicated(keep=False).to_numpy(dtype=bool)) & ~null  # empty cells repeat
            if dup.any():
                parts.append((np.flatnonzero(dup), col.name, "field_uniqueness", raw))
        values = to_float(raw) if col.numeric else None
        for name, fn in col.checks:
            bad = ~fn(raw, values) & ~null
            if bad.any():
                parts.append((np.flatnonzero(bad), col.name, name, raw))
    for rows, *_ in parts:
        invalid[rows] = True
    failures = _failures(parts, problems, order={c.name: i for i, c in enumerate(plan)})
    counts = failures.groupby("check", sort=True).size().astype(int).to_dict() if len(failures) else {}
    return CheckResult(
        rows=n, valid=~invalid, failures=failures, counts={str(k): v for k, v in counts.items()}
    )


def _failures(
    parts: list[tuple[np.ndarray, str, str, pd.Series]],
    problems: list[tuple[str, str]],
    *,
    order: dict[str, int],
) -> pd.DataFrame:
    """One frame of column problems first, then cells by row and schema column order (`column` and `check`
    categorical, `value` text)."""
    counts = [len(p[0]) for p in parts]
    columns = list(dict.fromkeys([p[0] for p in problems] + [p[1] for p in parts]))
    checks = list(dict.fromkeys([p[1] for p in problems] + [p[2] for p in parts]))
    rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    position = np.repeat(np.array([order.get(p[1], len(order)) for p in parts], dtype=np.int64), counts)
    sort = np.lexsort((position, rows))
    column_codes = np.repeat(np.array([columns.index(p[1]) for p in parts], dtype=np.int64), counts)[sort]
    check_codes = np.repeat(np.array([checks.index(p[2]) for p in parts], dtype=np.int64), counts)[sort]
    texts = [_text(p[3], p[0]) for p in parts]
    values = (
        pyarrow.concat_arrays(texts).take(pyarrow.array(sort))
        if texts
        else pyarrow.array([], pyarrow.string())
    )
    head = len(problems)
    value = pyarrow.concat_arrays([pyarrow.nulls(head, pyarrow.string()), values])
    row = pd.array(np.concatenate([np.zeros(head, dtype=np.int64), rows[sort]]), dtype="Int64")
    row[:head] = pd.NA
    column_codes = np.concatenate([[columns.index(p[0]) for p in problems], column_codes]).astype(np.int64)
    check_codes = np.concatenate([[checks.index(p[1]) for p in problems], check_codes]).astype(np.int64)
    return pd.DataFrame(
        {
            "row": row,
            "column": pd.Categorical.from_codes(column_codes, categories=columns),
            "check": pd.Categorical.from_codes(check_codes, categories=checks),
            "value": value.to_pandas(),
        }
    )


def _text(raw: pd.Series, rows: np.ndarray) -> pyarrow.Array:
    """The cells at rows as text (null for an empty cell), as the quarantine table stores them."""
    picked = raw.iloc[rows]
    null = np.asarray(picked.isna().to_numpy(dtype=bool))
    try:
        arr = pyarrow.array(picked, from_pandas=True)
        text = pc.cast(arr, pyarrow.string())
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, pyarrow.ArrowNotImplementedError):
        objects = picked.astype("str").to_numpy(dtype=object)
        objects[null] = None
        return pyarrow.array(objects, type=pyarrow.string())
    return pc.if_else(pyarrow.array(null), pyarrow.nulls(len(text), pyarrow.string()), text)
