"""The registered transform functions a pipeline's transform stage names: unit conversion, deduplication,
imputation, feature derivation and label normalisation. Each takes a frame and its declared arguments and
returns a new frame; a row it cannot transform raises `RowError` naming the row, so the stage's failure
lists the offending rows. `register` adds a team's own function under a name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mloncall.core.errors import InvalidInput

TransformFn = Callable[..., pd.DataFrame]
TRANSFORMS: dict[str, TransformFn] = {}

#: Length units a `convert_units` step knows, in metres.
UNITS = {"mm": 0.001, "cm": 0.01, "m": 1.0, "in": 0.0254}


class RowError(ValueError):
    """Some rows cannot be transformed: their 0-based positions and what is wrong with each."""

    def __init__(self, message: str, rows: dict[int, str]) -> None:
        super().__init__(message)
        self.rows = rows


def register(name: str) -> Callable[[TransformFn], TransformFn]:
    def wrap(fn: TransformFn) -> TransformFn:
        TRANSFORMS[name] = fn
        return fn

    return wrap


def apply(frame: pd.DataFrame, fn: str, args: dict[str, Any]) -> pd.DataFrame:
    """Run one named transform. A declaration it cannot take (an argument unknown or left out, a column not
    in the data, a bad value such as an unknown unit) is InvalidInput naming it: no row is to blame."""
    function = TRANSFORMS[fn]
    try:
        inspect.signature(function).bind(frame, **args)
    except TypeError as exc:
        takes = ", ".join(list(inspect.signature(function).parameters)[1:])
        raise InvalidInput(f"transform {fn}: {exc}; it takes {takes}") from None
    return function(frame, **args)


def _columns(frame: pd.DataFrame, columns: Any, fn: str) -> list[str]:
    names = [columns] if isinstance(columns, str) else list(columns or [])
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise InvalidInput(f"transform {fn}: column(s) {', '.join(missing)} not in the data")
    return names


def _numbers(frame: pd.DataFrame, column: str, fn: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        rows = {int(i): f"{column}={frame[column].iloc[i]!r} is not a number" for i in np.flatnonzero(bad)}
        raise RowError(f"transform {fn}: {len(rows)} row(s) of {column} are not numbers", rows)
    return values.astype(np.float64)


@register("convert_units")
def convert_units(frame: pd.DataFrame, *, columns: Any, source: str, to: str) -> pd.DataFrame:
    """Lengths in unit `source` converted to unit `to` (mm, cm, m, in)."""
    for unit in (source, to):
        if unit not in UNITS:
            raise InvalidInput(f"transform convert_units: unknown unit {unit!r}; known: {', '.join(UNITS)}")
    out = frame.copy()
    for column in _columns(frame, columns, "convert_units"):
        out[column] = _numbers(frame, column, "convert_units") * (UNITS[source] / UNITS[to])
    return out


@register("deduplicate")
def deduplicate(frame: pd.DataFrame, *, columns: Any = None) -> pd.DataFrame:
    """Rows that repeat an earlier row (on `columns`, default all) dropped, the first kept."""
    subset = _columns(frame, columns, "deduplicate") if columns else None
    return frame.drop_duplicates(subset=subset, keep="first").reset_index(drop=True)


@register("impute")
def impute(frame: pd.DataFrame, *, columns: Any, strategy: str = "median") -> pd.DataFrame:
    """Empty cells of numeric columns filled with the column's median or mean."""
    if strategy not in ("median", "mean"):
        raise InvalidInput(f"transform impute: strategy must be median or mean, got {strategy!r}")
    out = frame.copy()
    for column in _columns(frame, columns, "impute"):
        values = _numbers(frame, column, "impute")
        fill = values.median() if strategy == "median" else values.mean()
        out[column] = values.fillna(fill)
    return out


@register("derive_ratio")
def derive_ratio(frame: pd.DataFrame, *, name: str, numerator: str, denominator: str) -> pd.DataFrame:
    """A derived feature: numerator / denominator; a zero denominator is an offending row."""
    _columns(frame, [numerator, denominator], "derive_ratio")
    top = _numbers(frame, numerator, "derive_ratio")
    bottom = _numbers(frame, denominator, "derive_ratio")
    zero = bottom == 0
    if zero.any():
        rows = {int(i): f"{denominator} is 0" for i in np.flatnonzero(zero)}
        raise RowError(f"transform derive_ratio: {len(rows)} row(s) divide by zero", rows)
    return frame.assign(**{name: top / bottom})


@register("normalize_labels")
def normalize_labels(
    frame: pd.DataFrame, *, column: str, known: Any, aliases: dict[str, str] | None = None
) -> pd.DataFrame:
    """Labels mapped through `aliases` (surrounding space ignored); a label neither known nor an alias is an
    offending row."""
    _columns(frame, column, "normalize_labels")
    allowed = {str(k) for k in known}
    table = {str(k).strip(): str(v) for k, v in (aliases or {}).items()}
    raw = frame[column].astype("str").str.strip()
    mapped = raw.map(lambda v: table.get(v, v))
    bad = ~mapped.isin(allowed)
    if bad.any():
        rows = {int(i): f"{column}={raw.iloc[i]!r} is no known label" for i in np.flatnonzero(bad)}
        labels = sorted(set(raw[bad]))
        raise RowError(
            f"transform normalize_labels: {len(rows)} row(s) have unknown labels {', '.join(map(repr, labels))}",
            rows,
        )
    return frame.assign(**{column: mapped.astype("str")})
