"""The one duration grammar: whole numbers with a unit, `500ms`, `30s`, `5m`, `1h30m`, `2d`, `1w`, or `0`.

Every CLI option, rule file, configuration key and API field that takes a length of time reads it here, so
`1h30m` means the same in `deploy --step-duration` as in an alert rule's `for:`. It is Prometheus's grammar,
so a rule's durations export unchanged; a number without a unit is refused in text (is `15` seconds or
minutes?) and taken as seconds only where it arrives as a number (JSON, Python).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from mloncall.core.errors import InvalidInput

_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_FORMAT_UNITS = (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
HINT = "use a number with a unit (ms, s, m, h, d, w), e.g. 30s, 15m or 1h30m"


def parse_duration(
    value: Any, *, allow_zero: bool = False, maximum: dt.timedelta | None = None, what: str = "duration"
) -> dt.timedelta:
    """`value` as a timedelta; InvalidInput naming the value and the grammar otherwise.

    A number (int or float, not text) is seconds. Zero is refused unless `allow_zero`; a value above
    `maximum` is refused with both figures.
    """
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or value is None:
        raise InvalidInput(f"bad {what} {value!r}: {HINT}")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip(), what=what)
    else:
        raise InvalidInput(f"bad {what} {value!r}: {HINT}")
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise InvalidInput(f"bad {what} {value!r}: it cannot be negative")
    if seconds == 0 and not allow_zero:
        raise InvalidInput(f"bad {what} {value!r}: it must be longer than 0")
    if maximum is not None and seconds > maximum.total_seconds():
        raise InvalidInput(f"bad {what} {value!r}: at most {format_duration(maximum)}")
    try:
        return dt.timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidInput(f"bad {what} {value!r}: too long") from None


def parse_seconds(value: Any, **kwargs: Any) -> float:
    """`parse_duration` in seconds, for settings kept as a float."""
    return parse_duration(value, **kwargs).total_seconds()


def _parse_text(text: str, *, what: str) -> float:
    if text == "0":
        return 0.0
    if _NUMBER.match(text):
        raise InvalidInput(f"bad {what} {text!r}: add a unit, e.g. {text}s or {text}m")
    pos, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise InvalidInput(f"bad {what} {text!r}: {HINT}")
    return seconds


_UNITS = ("ms", "s", "m", "h", "d", "w")


def duration_pattern(
    *, maximum: dt.timedelta | None = None, minimum: dt.timedelta | None = None, allow_zero: bool = False
) -> str:
    """A regular expression for the OpenAPI document: spellings of this grammar `parse_duration` accepts.

    Without a maximum, one to four parts (`1h30m`) of up to six digits each, at least one part not zero.
    With a maximum, one part of a unit whose every number up to the digit count stays under it (`90m`,
    `9999s` for at most a day): fewer spellings than the grammar, each of them accepted. With a minimum,
    only units at least that long.
    """
    zero = "0|" if allow_zero else ""
    if maximum is None:
        part = r"\d{1,6}(?:ms|s|m|h|d|w)"
        nonzero = r"0{0,5}[1-9]\d{0,5}(?:ms|s|m|h|d|w)"
        return f"^(?:{zero}(?:{part}){{0,3}}{nonzero}(?:{part}){{0,3}})$"
    limit = maximum.total_seconds()
    floor = minimum.total_seconds() if minimum is not None else 0.0
    forms = []
    for unit in _UNITS:
        size = _UNIT_SECONDS[unit]
        if size < floor:
            continue
        digits = 0
        while (10 ** (digits + 1) - 1) * size <= limit and digits < 6:
            digits += 1
        if digits:
            forms.append(f"[1-9]\\d{{0,{digits - 1}}}{unit}")
    return f"^(?:{zero}{'|'.join(forms)})$"


def format_duration(delta: dt.timedelta) -> str:
    """The shortest spelling in the grammar (`1h30m`, `15m`, `0s`; milliseconds below a second)."""
    total = delta.total_seconds()
    if 0 < abs(total) < 1:
        return f"{round(total * 1000)}ms"
    seconds = int(total)
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _FORMAT_UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _validate(value: Any) -> dt.timedelta:
    try:
        return parse_duration(value, allow_zero=True)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


#: A pydantic field in the grammar (serialised back in it), for API bodies, rule files and settings.
Duration = Annotated[
    dt.timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
