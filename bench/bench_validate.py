"""Row validation and quarantine: 1,000,000 rows x 5 columns (four features and the label) with 1% bad cells
(NaN, ±inf, text, out of range, empty, unknown labels), validated and the bad rows written as the quarantine
table's Parquet files.

Anchor: pandera's lazy validation of the same frame against the same schema (`checks.pandera_schema`), its
failure cases turned into the same bad rows and written the same way, in the same run. Target: at least 5x
faster than pandera lazy, with exactly the same (row, column, check) triples (checked here too).
Run: .venv/bin/python bench/bench_validate.py [ROWS]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow

from mloncall.pipelines import quarantine_table
from mloncall.pipelines.checks import CheckResult, pandera_schema, validate_frame

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
CLASSES = ["setosa", "versicolor", "virginica"]
SCHEMA = {
    "features": [{"name": f, "min": 0.0, "max": 10.0} for f in FEATURES],
    "target": {"name": "species", "classes": CLASSES},
    "range_margin": 0.0,
}
BAD_SHARE = 0.01
REPEATS = 5


def make_frame(rows: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for name in FEATURES:
        values = rng.uniform(0.0, 10.0, rows)
        bad = rng.random(rows) < BAD_SHARE
        kinds = rng.integers(0, 4, rows)
        values[bad & (kinds == 0)] = np.nan
        values[bad & (kinds == 1)] = np.inf
        values[bad & (kinds == 2)] = -np.inf
        values[bad & (kinds == 3)] = 42.0
        data[name] = values
    labels = np.array(CLASSES, dtype=object)[rng.integers(0, 3, rows)]
    bad = rng.random(rows) < BAD_SHARE
    labels[bad & (rng.random(rows) < 0.5)] = "daisy"
    labels[bad & (labels != "daisy")] = None
    data["species"] = pd.array(labels, dtype="str")
    return pd.DataFrame(data)


def ours(frame: pd.DataFrame) -> tuple[CheckResult, int]:
    result = validate_frame(frame, SCHEMA)
    rows = quarantine_table.bad_rows_table(frame, result, source_file="bench.parquet")
    cells = quarantine_table.failures_table(result, source_file="bench.parquet")
    size = len(quarantine_table.parquet_bytes(rows)) + len(quarantine_table.parquet_bytes(cells))
    return result, size


def anchor(frame: pd.DataFrame) -> tuple[set[tuple[int, str, str]], int]:
    try:
        pandera_schema(SCHEMA).validate(frame, lazy=True)
        cases = pd.DataFrame(columns=["index", "column", "check", "failure_case"])
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    rows = np.unique(cases["index"].dropna().to_numpy(dtype=np.int64))
    bad = frame.iloc[rows].copy()
    bad["_row"] = rows
    cells = cases[["index", "column", "check", "failure_case"]].astype(str)
    size = len(quarantine_table.parquet_bytes(pyarrow.Table.from_pandas(bad)))
    size += len(quarantine_table.parquet_bytes(pyarrow.Table.from_pandas(cells)))
    triples = {
        (int(i), str(c), str(k))
        for i, c, k in zip(cases["index"], cases["column"], cases["check"], strict=True)
    }
    return triples, size


def best_of(*fns: Callable[[], object]) -> list[float]:
    """The best time of each, run in turns so that a burst of load on the machine hits both alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(REPEATS):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [min(t) for t in times]


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    frame = make_frame(rows)
    result, _ = ours(frame)
    triples, _ = anchor(frame)
    same = result.triples() == triples
    print(
        f"{rows:,} rows x {frame.shape[1]} columns, {result.bad_cells:,} bad cells in {result.bad_rows:,} rows"
    )
    print(f"same (row, column, check) triples as pandera lazy: {same} ({len(triples):,})")
    fast, slow = best_of(lambda: ours(frame), lambda: anchor(frame))
    print(f"validate_frame + quarantine tables: {fast * 1000:8.1f} ms (best of {REPEATS})")
    print(f"pandera lazy + the same tables:     {slow * 1000:8.1f} ms (best of {REPEATS})")
    print(f"ratio: {slow / fast:.1f}x faster (target: at least 5x; load average {os.getloadavg()[0]:.1f})")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
