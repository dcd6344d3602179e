"""Records write their fields the one way the API and `--json` show them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mloncall.core.records import Record


@dataclass
class _Inner(Record):
    at: dt.datetime


@dataclass
class _Outer(Record):
    name: str
    for_: dt.timedelta
    inner: _Inner | None
    labels: dict[str, str]
    day: dt.date | None = None


def test_fields_in_order_with_values_made_plain() -> None:
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    out = _Outer(name="x", for_=dt.timedelta(minutes=5), inner=_Inner(at=at), labels={"a": "b"})
    d = out.to_dict()
    assert list(d) == ["name", "for", "inner", "labels", "day"]
    assert d == {
        "name": "x",
        "for": "5m",
        "inner": {"at": "2026-01-02T03:04:05+00:00"},
        "labels": {"a": "b"},
        "day": None,
    }


def test_a_subclass_rewrites_keys_in_place() -> None:
    @dataclass
    class Named(_Inner):
        def to_dict(self) -> dict[str, Any]:
            return {**super().to_dict(), "at": "now", "extra": 1}

    assert Named(at=dt.datetime(2026, 1, 1)).to_dict() == {"at": "now", "extra": 1}
