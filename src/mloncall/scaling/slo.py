"""A model's service level objectives and the multi-window, multi-burn-rate alerts that guard them.

An SLO is a latency objective (p99 at most so many ms: 1% of the requests may be slower), an error rate, an
availability (answered without a server error or a timeout) and the window the budget is counted over. They
come from `[slo.MODEL]` in `mloncall.toml` or from the API (which wins):

```toml
[slo.iris]
latency_p99 = "50ms"
error_rate = 0.001
availability = 0.999
window = "30d"
```

The alerts follow the Google SRE workbook (chapter "Alerting on SLOs"): a page when the budget burns 14.4
times too fast over 1h and 5m, or 6 times over 6h and 30m; a ticket at 1 time over 3d and 6h. Those windows
are for a 30-day SLO; a shorter SLO window scales them in proportion, so a 6h SLO pages on 30s and 2.5s.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from mloncall.core.durations import format_duration, parse_duration
from mloncall.core.errors import InvalidInput
from mloncall.core.names import check_name
from mloncall.core.records import Record

DEFAULT_WINDOW = dt.timedelta(days=30)
MAX_WINDOW = dt.timedelta(days=366)
_KEYS = {"latency_p99", "error_rate", "availability", "window"}
#: The latency objective is a p99: 1% of the requests may be slower than it.
LATENCY_BUDGET = 0.01
_WORKBOOK_WINDOW = dt.timedelta(days=30)


@dataclass(frozen=True)
class Objectives(Record):
    """What one model promises: p99 latency, error rate, availability, over a window."""

    model: str
    latency_p99_ms: float
    error_rate: float
    availability: float
    window: dt.timedelta
    source: str = "config"

    @property
    def errors_budget(self) -> float:
        """The share of requests that may fail or time out: the tighter of the error rate and availability."""
        return min(self.error_rate, 1.0 - self.availability)


@dataclass(frozen=True)
class BurnWindow(Record):
    """One alert of the workbook's table: burn `factor` times too fast over both windows."""

    name: str
    factor: float
    long: dt.timedelta
    short: dt.timedelta
    severity: str


#: The workbook's table for a 30-day SLO: (name, factor, long window, short window, severity).
_WORKBOOK = (
    ("page-fast", 14.4, dt.timedelta(hours=1), dt.timedelta(minutes=5), "critical"),
    ("page-slow", 6.0, dt.timedelta(hours=6), dt.timedelta(minutes=30), "critical"),
    ("ticket", 1.0, dt.timedelta(days=3), dt.timedelta(hours=6), "warning"),
)


def burn_windows(window: dt.timedelta) -> list[BurnWindow]:
    """The workbook's alert windows scaled from its 30 days to `window` (whole milliseconds, at least 1s)."""
    scale = window / _WORKBOOK_WINDOW
    out = []
    for name, factor, long, short, severity in _WORKBOOK:
        out.append(BurnWindow(name, factor, _scaled(long, scale), _scaled(short, scale, floor=0.5), severity))
    return out


def _scaled(delta: dt.timedelta, scale: float, floor: float = 1.0) -> dt.timedelta:
    return dt.timedelta(milliseconds=max(floor * 1000, round(delta.total_seconds() * scale * 1000)))


def check_objectives(
    *, model: str, latency_p99: Any, error_rate: Any, availability: Any, window: Any, source: str
) -> Objectives:
    """Objectives from their spelled values; InvalidInput names every impossible one (and a model name the
    registry could not hold, which the prediction log's keys could not either)."""
    check_name(model, "model name")
    problems: list[str] = []
    latency = _duration(latency_p99, "latency_p99", problems)
    rate = _share(error_rate, "error_rate", problems)
    avail = _share(availability, "availability", problems)
    length = _duration(window, "window", problems)
    if latency is not None and latency.total_seconds() <= 0:
        problems.append(
            f"latency_p99 {latency_p99!r}: a p99 of 0 cannot be met; give it a length (e.g. 50ms)"
        )
    if rate is not None and not 0 < rate < 1:
        problems.append(
            f"error_rate {error_rate!r}: must be above 0 and below 1 (0 leaves no error budget, 1 promises nothing)"
        )
    if avail is not None and not 0 < avail < 1:
        problems.append(
            f"availability {availability!r}: must be above 0 and below 1 (1 leaves no budget: no release "
            "or restart could ever be made; e.g. 0.999)"
        )
    if length is not None and length < dt.timedelta(minutes=1):
        problems.append(f"window {window!r}: at least 1m, so the burn-rate windows can be measured")
    if length is not None and length > MAX_WINDOW:
        problems.append(f"window {window!r}: at most {format_duration(MAX_WINDOW)}")
    if problems:
        raise InvalidInput(f"impossible SLO for {model}: " + "; ".join(problems), details=problems)
    assert latency is not None and rate is not None and avail is not None and length is not None
    return Objectives(model, latency.total_seconds() * 1000.0, rate, avail, length, source)


def _duration(value: Any, name: str, problems: list[str]) -> dt.timedelta | None:
    try:
        return parse_duration(value, allow_zero=True, what=name)
    except InvalidInput as exc:
        problems.append(exc.message)
        return None


def _share(value: Any, name: str, problems: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        problems.append(f"{name} {value!r}: must be a number between 0 and 1")
        return None
    try:
        share = float(value)
    except ValueError:
        problems.append(f"{name} {value!r}: must be a number between 0 and 1")
        return None
    if not math.isfinite(share):
        problems.append(f"{name} {value!r}: must be a finite number")
        return None
    return share


def from_config(model: str, table: dict[str, Any]) -> Objectives:
    """`[slo.MODEL]` of the toml file; unknown keys are refused with their names."""
    unknown = set(table) - _KEYS
    if unknown:
        raise InvalidInput(f"[slo.{model}] has unknown key(s): {', '.join(sorted(unknown))}")
    if "latency_p99" not in table:
        raise InvalidInput(f'[slo.{model}] needs latency_p99 (e.g. latency_p99 = "50ms")')
    return check_objectives(
        model=model,
        latency_p99=table["latency_p99"],
        error_rate=table.get("error_rate", 0.001),
        availability=table.get("availability", 0.999),
        window=table.get("window", format_duration(DEFAULT_WINDOW)),
        source="config",
    )
