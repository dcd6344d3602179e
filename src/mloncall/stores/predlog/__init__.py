"""The prediction log: its kinds, the writer serving uses and the one reader everyone else uses.

**Kinds.** Three append-only logs share one layout, `<kind>/model=<m>/date=YYYY-MM-DD/hour=HH/*.parquet`:
`predictions` (id, ts, model, version, route, f_<feature>... (float64), label, probabilities
(list<float32>, the version's class order), latency_ms, flags (list<string>), shadow_version, shadow_label,
request_id, status (200), error (null), synthetic (true for a request sent with `x-mloncall-synthetic: 1`, a
load test's; absent from files written before it, whose rows are not synthetic)), `feedback` (prediction_id, label, ts, model) and `rejections`
(ts, model, reason, field). A request that reached a version and then failed (its input did not fit that
version's signature, or the model raised) is one prediction row with its status and error, no features and
no label, so error rates compare per version.

**Writer.** `PredictionLog` buffers rows in memory; each flush writes one file per (model, hour) to
`<kind>/model=<m>/<partition>/<writer-id>-<seq>.parquet` through the artifact store, so a file appears whole
or not at all. Each worker is its own writer, so no lock is shared between processes. A background thread
flushes every `flush_seconds` or as soon as `flush_rows` rows wait; `close()` flushes the rest, so a
graceful shutdown loses nothing that was served.

**Compaction** (`stores.predlog.compact`): each closed hour's files merged into one sorted file under a
manifest, the commit point readers trust; retention by age; per-model statistics.

**Reader.** `read_window` (and `read_log`, `count_rows` over the same scan) reads only what a window needs:
the hour partitions it overlaps, the files whose footer `ts` range overlaps it (footers are cached by key:
files are immutable once written), and only the requested columns. A file that cannot be read (truncated,
corrupt, vanished) is skipped, listed with the reason in the result, and counted in
`mloncall_monitor_log_files_skipped_total`; it never stops a reader. `synthetic=False` leaves out the rows of
synthetic requests (`synthetic_mask`): what the monitors of the inputs read, while latency, errors and
request counts keep them.
"""

from __future__ import annotations

from mloncall.stores.predlog.kinds import (
    FEEDBACK,
    FILES_SKIPPED,
    HOUR_US,
    KINDS,
    METRICS,
    PREDICTIONS,
    REJECTIONS,
    SYNTHETIC,
    add_range,
    from_us,
    partition,
    to_us,
)
from mloncall.stores.predlog.reader import (
    LogWindow,
    RowCount,
    clear_cache,
    count_rows,
    hour_prefixes,
    iter_window,
    read_log,
    read_window,
    synthetic_mask,
    ts_us,
)
from mloncall.stores.predlog.writer import (
    FeedbackBatch,
    PredictionLog,
    feedback_table,
    new_writer_id,
    prediction_table,
    rejection_table,
)

__all__ = [
    "FEEDBACK",
    "FILES_SKIPPED",
    "HOUR_US",
    "KINDS",
    "METRICS",
    "PREDICTIONS",
    "REJECTIONS",
    "SYNTHETIC",
    "FeedbackBatch",
    "LogWindow",
    "PredictionLog",
    "RowCount",
    "add_range",
    "clear_cache",
    "count_rows",
    "feedback_table",
    "from_us",
    "hour_prefixes",
    "iter_window",
    "new_writer_id",
    "partition",
    "prediction_table",
    "read_log",
    "read_window",
    "rejection_table",
    "synthetic_mask",
    "to_us",
    "ts_us",
]
