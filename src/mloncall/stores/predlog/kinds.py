"""The prediction log's kinds, layout and the counters every reader shares (see `mloncall.stores.predlog`)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time

import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger("mloncall.stores.predlog")

# --- kinds -----------------------------------------------------------------------------------------------

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
#: Requests refused by input validation (missing or unknown feature, out of range under "reject", ...):
#: ts, model, reason, field. The data-quality monitors read them (runbook 6).
REJECTIONS = "rejections"
KINDS = (PREDICTIONS, FEEDBACK, REJECTIONS)
#: The predictions' column marking the rows of a synthetic request (a load test's, sent with the
#: `x-mloncall-synthetic: 1` header). Files written before it existed lack it: their rows are not synthetic.
SYNTHETIC = "synthetic"

HOUR_US = 3_600_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9.-]+")
TS_TYPE = pa.timestamp("us", tz="UTC")
PARTITION_PATTERN = re.compile(r"date=\d{4}-\d{2}-\d{2}/hour=\d{2}")
FOOTER_CACHE_SIZE = 200_000
#: The bounds of a read with no window (`read_log`): before and after any logged row.
OPEN_SINCE = -(1 << 62)
OPEN_UNTIL = 1 << 62

#: Metrics of the log readers; the server merges this registry into `/metrics`.
METRICS = CollectorRegistry(auto_describe=True)
FILES_SKIPPED = Counter(
    "mloncall_monitor_log_files_skipped",
    "Log files skipped by monitors because they could not be read (truncated or corrupt)",
    ["kind"],
    registry=METRICS,
)


def to_us(when: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float rounding)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime given where UTC is required")
    return (when - EPOCH) // dt.timedelta(microseconds=1)


def from_us(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=int(us))


def add_range(ranges: list[tuple[int, int]], lo: int, hi: int) -> None:
    """Append [lo, hi) (microseconds) to the ranges to read, joined to the last one where it ends at `lo`,
    so that adjacent stretches of the log are read in one scan."""
    if ranges and ranges[-1][1] == lo:
        ranges[-1] = (ranges[-1][0], hi)
    else:
        ranges.append((lo, hi))


def partition(hour: int) -> str:
    """`date=YYYY-MM-DD/hour=HH` of an hour counted from the epoch."""
    t = time.gmtime(hour * 3600)
    return f"date={t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}/hour={t.tm_hour:02d}"
