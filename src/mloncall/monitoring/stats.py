"""Serving statistics over prediction-log rows, computed one way for every judge of live traffic.

The summaries (`monitoring.summary`), the label indexes (`monitoring.labels`) and the exact monitors
(`monitoring.performance`, `monitoring.quality`) call these, so the monitors and the canary analysis judge
the same traffic alike: which rows failed, which were routed, server errors, latency percentiles, true labels
(feedback joined to predictions by id, the newest label winning when one was sent twice), the Wilson interval
of an accuracy and the p-value of an accuracy drop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PERCENTILES = (50, 95, 99)
#: The routes of traffic the router split; an explicit `/versions/{v}` call (e.g. a smoke test) is "explicit".
ROUTED = ("stable", "canary")


# --- columns ---------------------------------------------------------------------------------------------


def float_column(table: pa.Table, name: str) -> np.ndarray:
    """A column as float64 with NaN for nulls; all NaN when the table lacks it."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    column = table.column(name)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        column = pc.cast(column, pa.float64(), safe=False)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _bools(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


def string_counts(table: pa.Table | None, name: str, *, where: np.ndarray | None = None) -> dict[str, int]:
    """How often each value of a string column occurs (nulls as '(none)'), optionally among masked rows."""
    if table is None or name not in table.column_names or table.num_rows == 0:
        return {}
    column = table.column(name)
    if where is not None:
        column = column.filter(pa.array(where))
    return value_counts(pc.fill_null(pc.cast(column, pa.string()), "(none)"))


def value_counts(values: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    """How often each value occurs."""
    if len(values) == 0:
        return {}
    counts = pc.value_counts(values)
    return {
        str(v): int(c) for v, c in zip(counts.field(0).to_pylist(), counts.field(1).to_pylist(), strict=True)
    }


def encode(values: pa.ChunkedArray | pa.Array, codes: dict[str, int]) -> np.ndarray:
    """Each string's code in `codes` (new names appended), -1 for nulls; one dictionary pass, no row loop."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) == 0:
        return np.empty(0, np.int16)
    encoded = pc.dictionary_encode(pc.cast(values, pa.string()))
    mapping = np.array(
        [codes.setdefault(str(name), len(codes)) for name in encoded.dictionary.to_pylist()] + [-1], np.int16
    )
    indices = np.asarray(pc.fill_null(encoded.indices, len(mapping) - 1).to_numpy(zero_copy_only=False))
    return mapping[indices]


# --- errors and latency ----------------------------------------------------------------------------------


def error_mask(table: pa.Table) -> np.ndarray:
    """True for rows of failed requests (a non-null `error`); all False when the log has no error column."""
    if "error" not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    return _bools(pc.is_valid(table.column("error")))


def routed_mask(table: pa.Table) -> np.ndarray:
    """True for requests the router sent (route stable or canary); all True for a log without routes."""
    if "route" not in table.column_names:
        return np.ones(table.num_rows, dtype=bool)
    return _bools(pc.fill_null(pc.is_in(table.column("route"), pa.array(ROUTED)), False))


def server_errors(table: pa.Table | None) -> int:
    """Server-side failures (status >= 500); a 4xx is the client's input, not the version's fault. A log
    without a status column counts every row with an error."""
    if table is None:
        return 0
    if "status" in table.column_names:
        return int(pc.sum(pc.greater_equal(table.column("status"), 500)).as_py() or 0)
    return int(np.count_nonzero(error_mask(table)))


def latencies_ms(table: pa.Table | None) -> np.ndarray:
    """The finite `latency_ms` of every logged row (failed requests included: they were served too)."""
    if table is None or table.num_rows == 0:
        return np.empty(0)
    lat = float_column(table, "latency_ms")
    return lat[np.isfinite(lat)]


def percentiles(values: np.ndarray, qs: tuple[int, ...] = PERCENTILES) -> dict[int, float]:
    """The given percentiles of a non-empty sample."""
    return {q: float(v) for q, v in zip(qs, np.percentile(values, qs), strict=True)}


# --- accuracy with late labels ---------------------------------------------------------------------------


class Truth:
    """The true label of every labelled prediction id, from the feedback log; the newest label wins."""

    def __init__(self, feedback: pa.Table | None) -> None:
        self.ids: pa.Array = pa.array([], pa.string())
        self.labels: pa.Array = pa.array([], pa.string())
        if feedback is None or feedback.num_rows == 0:
            return
        if not {"prediction_id", "label"} <= set(feedback.column_names):
            return
        rows = feedback.filter(pc.is_valid(feedback.column("label")))
        # Newest first, so a lookup meets the newest label of an id first; reversed before the stable sort
        # so that among equal timestamps (or with no ts at all) the row logged last wins.
        rows = rows.take(pa.array(np.arange(rows.num_rows - 1, -1, -1, dtype=np.int64)))
        if "ts" in rows.column_names:
            rows = rows.take(pc.sort_indices(rows, sort_keys=[("ts", "descending")]))
        self.ids = rows.column("prediction_id").combine_chunks()
        self.labels = rows.column("label").combine_chunks()

    def __len__(self) -> int:
        return len(self.ids)

    def of(self, ids: pa.ChunkedArray | pa.Array) -> pa.Array:
        """The true label of each id (null while unlabelled)."""
        if len(self.ids) == 0:
            return pa.nulls(len(ids), pa.string())
        index = pc.index_in(ids, value_set=self.ids)
        return pc.take(self.labels, index)


@dataclass(frozen=True)
class Accuracy:
    """Correct answers among the labelled ones."""

    labelled: int
    correct: int

    @property
    def value(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


def wilson_interval(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (defined for n = 0 as [0, 1])."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def drop_p_value(a_c: float, n_c: int, a_b: float, n_b: int) -> float:
    """One-sided two-proportion z-test p-value that the candidate's accuracy is lower than the baseline's."""
    from scipy.stats import norm

    pooled = (a_c * n_c + a_b * n_b) / (n_c + n_b)
    se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n_c + 1 / n_b))
    return float(norm.sf((a_b - a_c) / se))
