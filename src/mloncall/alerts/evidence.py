"""What an alert keeps of a monitor's check: its headline number, its evidence as JSON every backend stores,
and text clipped to what a column holds."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from mloncall.core.outcome import Check

MAX_TEXT = 4000
#: Where a monitor's headline number sits in its evidence, by preference: what `{{ $value }}` shows.
VALUE_KEYS = ("value", "drifted_share", "error_rate", "accuracy", "ratio", "rate", "p99_ms", "score")


def clip(text: str | None, size: int = MAX_TEXT) -> str:
    """Text without NUL bytes, cut to `size` characters with an ellipsis."""
    text = (text or "").replace("\x00", "")
    return text if len(text) <= size else text[: size - 1] + "…"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        return None
    return float(value)


def _value_candidates(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """The evidence of the parts (or served versions) that decided the outcome, then the whole."""
    deciding = [str(d) for d in evidence.get("deciding") or []]
    candidates: list[dict[str, Any]] = []
    parts = evidence.get("parts")
    if isinstance(parts, dict):
        labels = [d for d in deciding if d in parts] or list(parts)
        candidates += [parts[label] for label in labels if isinstance(parts[label], dict)]
    versions = evidence.get("versions")
    if isinstance(versions, list):
        dicts = [v for v in versions if isinstance(v, dict)]
        chosen = [v for v in dicts if f"v{v.get('version')}" in deciding] or dicts
        candidates += chosen
    candidates.append(evidence)
    return candidates


def value_of(check: Check) -> float | None:
    """The check's headline number: `evidence["value"]`, else the first of VALUE_KEYS in the evidence of the
    part (or served version) that decided the outcome."""
    evidence = check.evidence if isinstance(check.evidence, dict) else {}
    direct = _number(evidence.get("value"))
    if direct is not None:
        return direct
    candidates = _value_candidates(evidence)
    for key in VALUE_KEYS:
        for candidate in candidates:
            found = _number(candidate.get(key))
            if found is not None:
                return found
    return None


def jsonable(value: Any) -> Any:
    """Evidence as JSON every backend stores: non-finite floats and odd types as strings, no NUL bytes."""
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    for attr in ("item", "tolist"):  # numpy scalars and arrays
        convert = getattr(value, attr, None)
        if callable(convert):
            try:
                return jsonable(convert())
            except (TypeError, ValueError):
                break
    return str(value)


def check_dict(check: Check) -> dict[str, Any]:
    """A check as the JSON an alert stores."""
    result: dict[str, Any] = jsonable(check.to_dict())
    return result
