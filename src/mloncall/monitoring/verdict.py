"""How a monitor's per-version (or per-part) verdicts become one `Check`: the worst judged one wins.

A part that could not be judged (too few rows, no labels yet) is inconclusive; it only decides the outcome
when nothing else was judged, so a canary with a trickle of traffic does not hide the stable version's
verdict, and it is always named in the reason and the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mloncall.core.outcome import Check, Outcome, worst


@dataclass
class Part:
    """The verdict on one part of a window: a served version, or the requests refused before any version."""

    label: str
    outcome: Outcome
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


def combine(name: str, parts: list[Part], evidence: dict[str, Any], *, empty_reason: str) -> Check:
    """One Check from its parts: the worst judged outcome, the parts behind it named in the reason."""
    evidence = dict(evidence)
    evidence["parts"] = {
        p.label: {"outcome": p.outcome.label, "reason": p.reason, **p.evidence} for p in parts
    }
    if not parts:
        return Check(name, Outcome.INCONCLUSIVE, empty_reason, evidence)
    judged = [p for p in parts if p.outcome is not Outcome.INCONCLUSIVE]
    outcome = worst(p.outcome for p in judged) if judged else Outcome.INCONCLUSIVE
    deciding = [p for p in parts if p.outcome is outcome]
    evidence["deciding"] = [p.label for p in deciding]
    reason = "; ".join(f"{p.label}: {p.reason}" for p in deciding)
    others = [p for p in parts if p.outcome is Outcome.INCONCLUSIVE and outcome is not Outcome.INCONCLUSIVE]
    if others:
        reason += " (not judged: " + "; ".join(f"{p.label}: {p.reason}" for p in others) + ")"
    return Check(name, outcome, reason, evidence)


def by_version(table: pa.Table | None) -> list[tuple[int | None, pa.Table]]:
    """The rows of each served version (None: rows logged without a version), in version order."""
    if table is None or table.num_rows == 0:
        return []
    if "version" not in table.column_names:
        return [(None, table)]
    column = table.column("version")
    out: list[tuple[int | None, pa.Table]] = []
    for value in sorted(v for v in pc.unique(column).to_pylist() if v is not None):
        out.append((int(value), table.filter(pc.equal(column, value))))
    nulls = pc.is_null(column)
    if pc.any(nulls).as_py():
        out.append((None, table.filter(nulls)))
    return out


def version_label(version: int | None) -> str:
    return f"v{version}" if version is not None else "unversioned"
