"""Records: dataclasses that turn themselves into JSON-ready dicts, field by field, the one way we write them.

A record's `to_dict` lists every field under its own name (a trailing underscore, which only dodges a Python
keyword as in `for_`, is dropped) in declaration order. Values are written as the API and the CLI's `--json`
show them: times in ISO 8601, lengths of time in the duration grammar (`5m`), anything with a `to_dict` of
its own (a check, a transition) by that, and everything else as it is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, ClassVar

from mloncall.core.durations import format_duration


def plain(value: Any) -> Any:
    """One field's value as a record writes it."""
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, dt.date):  # also datetimes
        return value.isoformat()
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return value


class Record:
    """Mixin for a dataclass whose `to_dict` is its fields; a subclass adds or rewrites keys on top."""

    # Declared so that mypy sees every subclass as the dataclass it is.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_dict(self) -> dict[str, Any]:
        return {f.name.removesuffix("_"): plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
