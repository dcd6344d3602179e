"""Schema diff: an incoming frame's columns against the column profiles of the last good run.

`profile_columns` describes each column (its kind, null share, quantiles of a number, the common values of a
text) in plain JSON, stored with a good run. `diff_columns` names what changed: columns added, removed,
renamed (a removed and an added column with similar names and matching values) and kinds changed (a
number column that now holds text), with an error message per change and a table for the run's report.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mloncall.core.errors import InvalidInput
from mloncall.core.records import Record
from mloncall.data.validation import to_float

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
TOP_VALUES = 20
#: A rename needs names at least this alike (difflib ratio of the normalised names) ...
NAME_SIMILARITY = 0.5
#: ... and values at least this alike (1 is the same profile), or values this alike whatever the names.
PROFILE_MATCH = 0.7
PROFILE_ONLY_MATCH = 0.95
EXAMPLES = 3


class SchemaMismatch(InvalidInput):
    """The incoming columns differ from the last good run's; `diff` says how."""

    def __init__(self, source: str, diff: SchemaDiff) -> None:
        self.diff = diff
        problems = diff.messages()
        super().__init__(
            f"{source}: the columns differ from the last good run: " + "; ".join(problems),
            details=diff.to_dict(),
        )


def _kind(series: pd.Series) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    present = series.dropna()
    if len(present) and not np.isnan(to_float(present)).any():
        return "number"  # numbers read as text (a CSV column with spaces): still numbers
    return "text"


def profile_column(series: pd.Series) -> dict[str, Any]:
    """One column's profile: kind, dtype, rows, null share, and quantiles or common values."""
    n = len(series)
    kind = _kind(series)
    out: dict[str, Any] = {
        "kind": kind,
        "dtype": str(series.dtype),
        "rows": n,
        "null_share": float(series.isna().mean()) if n else 0.0,
    }
    if kind == "number":
        values = to_float(series)
        finite = values[np.isfinite(values)]
        if len(finite):
            out["quantiles"] = [float(q) for q in np.quantile(finite, QUANTILES)]
            out["mean"], out["std"] = float(finite.mean()), float(finite.std())
    elif kind in ("text", "boolean"):
        counts = series.dropna().astype("str").value_counts()
        out["distinct"] = len(counts)
        top = counts.head(TOP_VALUES)
        out["top"] = {str(k): int(v) for k, v in top.items()}
    return out


def profile_columns(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Every column's profile, by name, in the frame's order."""
    return {str(c): profile_column(frame[c]) for c in frame.columns}


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


def name_similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, _normal(a), _normal(b)).ratio()


def profile_match(old: dict[str, Any], new: dict[str, Any]) -> float:
    """How alike two columns' values are: 1 for the same profile, 0 for different kinds."""
    if old.get("kind") != new.get("kind"):
        return 0.0
    if old["kind"] == "number":
        if "quantiles" not in old or "quantiles" not in new:
            return 0.0
        q_old, q_new = np.asarray(old["quantiles"]), np.asarray(new["quantiles"])
        scale = max(float(old.get("std", 0.0)), float(q_old[-1] - q_old[0]), 1e-12)
        return float(max(0.0, 1.0 - np.abs(q_new - q_old).mean() / scale))
    if old["kind"] in ("text", "boolean"):
        a, b = set(old.get("top", {})), set(new.get("top", {}))
        return len(a & b) / len(a | b) if a | b else 1.0
    return 1.0


@dataclass
class Rename(Record):
    old: str
    new: str
    name_similarity: float
    profile_match: float


@dataclass
class TypeChange(Record):
    column: str
    old: str
    new: str
    examples: list[str] = field(default_factory=list)


@dataclass
class SchemaDiff(Record):
    """What changed between the last good run's columns and the incoming ones."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[Rename] = field(default_factory=list)
    type_changes: list[TypeChange] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.added or self.removed or self.renamed or self.type_changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "renamed": [r.to_dict() for r in self.renamed],
            "type_changes": [t.to_dict() for t in self.type_changes],
            "messages": self.messages(),
        }

    def messages(self) -> list[str]:
        """One sentence per change, naming the columns."""
        out = [
            f"column {r.old!r} was renamed to {r.new!r} (names {r.name_similarity:.0%} alike, "
            f"values {r.profile_match:.0%} alike)"
            for r in self.renamed
        ]
        out += [f"column {c!r} is missing (it was in the last good run)" for c in self.removed]
        out += [f"column {c!r} is new (it was not in the last good run)" for c in self.added]
        for t in self.type_changes:
            seen = f", e.g. {', '.join(repr(e) for e in t.examples)}" if t.examples else ""
            out.append(f"column {t.column!r} changed type from {t.old} to {t.new}{seen}")
        return out

    def rows(self) -> list[tuple[str, str, str]]:
        """(change, column, detail) lines for the run report's table."""
        out = [("renamed", f"{r.old} → {r.new}", f"values {r.profile_match:.0%} alike") for r in self.renamed]
        out += [("removed", c, "") for c in self.removed]
        out += [("added", c, "") for c in self.added]
        out += [("type", t.column, f"{t.old} → {t.new}") for t in self.type_changes]
        return out

    def render(self) -> str:
        """The diff as Markdown, for the run's report."""
        if self.ok:
            return "The columns are those of the last good run."
        lines = ["| change | column | detail |", "| --- | --- | --- |"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in self.rows()]
        return "\n".join(lines)

    def raise_if_changed(self, source: str) -> None:
        if not self.ok:
            raise SchemaMismatch(source, self)


def diff_columns(
    frame: pd.DataFrame | dict[str, dict[str, Any]], last_good: dict[str, dict[str, Any]]
) -> SchemaDiff:
    """The diff of frame's columns (a frame, or its profiles) against the last good run's profiles."""
    incoming = profile_columns(frame) if isinstance(frame, pd.DataFrame) else frame
    removed = [c for c in last_good if c not in incoming]
    added = [c for c in incoming if c not in last_good]
    renamed = _renames(removed, added, last_good=last_good, incoming=incoming)
    for r in renamed:
        removed.remove(r.old)
        added.remove(r.new)
    changes: list[TypeChange] = []
    for name in (c for c in incoming if c in last_good):
        old, new = last_good[name]["kind"], incoming[name]["kind"]
        if old != new:
            examples = _examples(frame[name]) if isinstance(frame, pd.DataFrame) and old == "number" else []
            changes.append(TypeChange(name, old, new, examples))
    return SchemaDiff(added=added, removed=removed, renamed=renamed, type_changes=changes)


def _renames(
    removed: list[str], added: list[str], *, last_good: dict[str, Any], incoming: dict[str, Any]
) -> list[Rename]:
    """Pairs of a removed and an added column alike in name and values, best first, each column once."""
    candidates: list[Rename] = []
    for old in removed:
        for new in added:
            names = name_similarity(old, new)
            values = profile_match(last_good[old], incoming[new])
            if (names >= NAME_SIMILARITY and values >= PROFILE_MATCH) or values >= PROFILE_ONLY_MATCH:
                candidates.append(Rename(old, new, round(names, 3), round(values, 3)))
    candidates.sort(key=lambda r: r.profile_match + r.name_similarity, reverse=True)
    chosen: list[Rename] = []
    for r in candidates:
        if all(r.old != c.old and r.new != c.new for c in chosen):
            chosen.append(r)
    return chosen


def _examples(series: pd.Series) -> list[str]:
    """A few cells of a column that are not numbers."""
    present = series.dropna()
    bad = present[np.isnan(to_float(present))]
    return [str(v) for v in bad.head(EXAMPLES)]
