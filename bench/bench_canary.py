"""Canary analysis over a 1-hour rollout window: from the summaries (today's path) against the raw rows (the
path it replaced), on the same data, side by side as a ratio.

The traffic is written as the server writes it: one Parquet file per worker per second (one worker), through
the writer's own `prediction_table` schema, at RATE predictions/s for 1 h 7 min 30 s; 10% of it is routed to
the canary (v2, shadow-scored by v1), 0.5% of the requests fail with a 500; 70% of the predictions get a
label after an exponential delay (mean 60 s), one feedback file per second of arrival. Then the background
pass runs as the server's would (compaction of the closed hour, summaries, label indexes) and the canary is
analysed at `now` with the rollout's window (the last hour: the stable side) and a 5-minute step (the canary
side):

- the anchor, the raw-rows path: every prediction and feedback row since the rollout began read into memory
  (`read_log`) and filtered, error rates, exact p99 (`numpy.percentile`), disagreement, class counts and
  paired accuracy computed on the rows, as `rollout.analysis` did before it read the summaries;
- ours: `rollout.analysis.analyse_canary` on `monitoring.served.served_window` (closed minutes and hours from
  their summaries and label indexes, the open minute and the window's edges from the log).

Each runs in its own process (its own peak memory): once cold (new process, nothing cached), then three more
times (the analysis repeats every few seconds during a step). The figures of both are printed side by side:
counts exact, p99 within the sketch's 1%.

Run: .venv/bin/python bench/bench_canary.py [--rate 1000]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mloncall.core.config import Settings
from mloncall.data import iris
from mloncall.stores.context import Context

START = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)
NOW = START + dt.timedelta(hours=1, minutes=7, seconds=30)
ROLLOUT_SINCE = NOW - dt.timedelta(hours=1)
STEP_SINCE = NOW - dt.timedelta(minutes=5)
MODEL = "bench"
CLASSES = ["setosa", "versicolor", "virginica"]
SEED = 20260504
ROOT = Path(__file__).resolve().parent


# --- generation ------------------------------------------------------------------------------------------


def _schema() -> pa.Schema:
    from mloncall.stores.predlog.writer import _Rows, prediction_table

    rows = _Rows()
    rows.ids, rows.X, rows.labels = ["x"], [[0.0] * 4], ["setosa"]
    rows.probabilities, rows.flags, rows.shadow_label = [[0.3, 0.3, 0.4]], [[]], [None]
    rows.requests = [(1, 0.0, 1, "stable", 1.0, None, None, 200, None)]
    return prediction_table(MODEL, tuple(iris.FEATURES), rows).schema


def _second(
    rng: np.random.Generator, rate: int, t: float, schema: pa.Schema
) -> tuple[pa.Table, dict[str, Any]]:
    """One second of traffic as one file's table, and the truth of its answered ids."""
    n = rate
    frame = iris.iris_like_samples(n, seed=int(rng.integers(1 << 30)))
    truth = frame[iris.TARGET].astype(str).to_numpy()
    canary = rng.random(n) < 0.10
    failed = rng.random(n) < 0.005
    predicted = truth.copy()
    wrong = rng.random(n) < np.where(canary, 0.08, 0.05)
    predicted[wrong] = np.roll(truth, 1)[wrong]
    shadow = np.where(rng.random(n) < 0.95, truth, np.roll(truth, 2))
    ids = np.char.add(f"{int(t)}-", np.arange(n).astype(str))
    cols = {
        "id": pa.array(ids, pa.string()),
        "ts": pa.array(np.round((t + np.arange(n) / n) * 1e6).astype(np.int64)).cast(
            pa.timestamp("us", tz="UTC")
        ),
        **{
            f"f_{f}": pa.array(np.where(failed, np.nan, frame[f].to_numpy(np.float64))) for f in iris.FEATURES
        },
        "label": pa.array(np.where(failed, None, predicted).tolist(), pa.string()),
        "probabilities": pa.array([None if f else [0.2, 0.3, 0.5] for f in failed], pa.list_(pa.float32())),
        "latency_ms": pa.array(rng.lognormal(np.where(canary, 0.5, 0.4), 0.35, n)),
        "flags": pa.array([[]] * n, pa.list_(pa.string())),
        "model": pa.array([MODEL] * n, pa.string()),
        "version": pa.array(np.where(canary, 2, 1).astype(np.int32)),
        "route": pa.array(np.where(canary, "canary", "stable"), pa.string()),
        "shadow_version": pa.array(np.where(canary & ~failed, 1, None).tolist(), pa.int32()),
        "shadow_label": pa.array(np.where(canary & ~failed, shadow, None).tolist(), pa.string()),
        "request_id": pa.nulls(n, pa.string()),
        "status": pa.array(np.where(failed, 500, 200).astype(np.int16)),
        "error": pa.array(np.where(failed, "model failed", None).tolist(), pa.string()),
    }
    table = pa.table({f.name: cols[f.name] for f in schema}, schema=schema)
    answered = ~failed & (rng.random(n) < 0.7)
    arrive = t + np.arange(n) / n + rng.exponential(60.0, n)
    return table, {"ids": ids[answered], "truth": truth[answered], "arrive": arrive[answered]}


def write_traffic(root: Path, rate: int) -> tuple[int, int]:
    """The traffic from START to NOW, one prediction file per second and one feedback file per second of
    arrival (labels arriving before NOW)."""
    from mloncall.stores.predlog import partition

    rng = np.random.default_rng(SEED)
    schema = _schema()
    seconds = int((NOW - START).total_seconds())
    labels: list[dict[str, Any]] = []
    for s in range(seconds):
        t = START.timestamp() + s
        table, truth = _second(rng, rate, t, schema)
        folder = root / "predictions" / f"model={MODEL}" / partition(int(t // 3600))
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"bench-w1-{s:08d}.parquet", compression="zstd")
        labels.append(truth)
    ids = np.concatenate([x["ids"] for x in labels])
    truth = np.concatenate([x["truth"] for x in labels])
    arrive = np.concatenate([x["arrive"] for x in labels])
    keep = arrive < NOW.timestamp()
    ids, truth, arrive = ids[keep], truth[keep], arrive[keep]
    order = np.argsort(arrive, kind="stable")
    sec = np.floor(arrive[order]).astype(np.int64)
    files = 0
    for part in np.split(order, np.flatnonzero(np.diff(sec)) + 1):
        first = float(arrive[part[0]])
        folder = root / "feedback" / f"model={MODEL}" / partition(int(first // 3600))
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "prediction_id": pa.array(ids[part], pa.string()),
                "label": pa.array(truth[part], pa.string()),
                "ts": pa.array(np.round(arrive[part] * 1e6).astype(np.int64)).cast(
                    pa.timestamp("us", tz="UTC")
                ),
                "model": pa.array([MODEL] * part.size, pa.string()),
            }
        )
        pq.write_table(table, folder / f"bench-fb-{int(first):010d}.parquet", compression="zstd")
        files += 1
    return seconds, files


# --- the two paths -----------------------------------------------------------------------------------------


def raw_rows(ctx: Context) -> dict[str, Any]:
    """The anchor: every row since the rollout began in memory, the figures computed on the rows."""
    from mloncall.monitoring.stats import ROUTED, Truth, latencies_ms, server_errors
    from mloncall.stores.predlog import FEEDBACK, PREDICTIONS, read_log

    preds = read_log(ctx.store, PREDICTIONS, MODEL, since=ROLLOUT_SINCE)
    feedback = read_log(ctx.store, FEEDBACK, MODEL, since=ROLLOUT_SINCE)
    assert preds is not None
    truth = Truth(feedback)

    def side(since: dt.datetime, version: int) -> pa.Table:
        ts = preds.column("ts")
        mask = pc.and_(
            pc.and_(pc.greater_equal(ts, pa.scalar(since, ts.type)), pc.less(ts, pa.scalar(NOW, ts.type))),
            pc.and_(
                pc.equal(preds.column("version"), version), pc.is_in(preds.column("route"), pa.array(ROUTED))
            ),
        )
        return preds.filter(mask)

    canary, stable = side(STEP_SINCE, 2), side(ROLLOUT_SINCE, 1)
    shadowed = canary.filter(
        pc.and_(pc.is_valid(canary.column("label")), pc.is_valid(canary.column("shadow_label")))
    )
    labels = truth.of(shadowed.column("id"))
    paired = shadowed.filter(pc.is_valid(labels))
    y = labels.filter(pc.is_valid(labels))

    def right(column: str) -> int:
        return int(pc.sum(pc.cast(pc.equal(paired.column(column), y), pa.int64())).as_py() or 0)

    def classes(t: pa.Table) -> list[int]:
        return [_count(t, c) for c in CLASSES]

    return {
        "requests": [canary.num_rows, stable.num_rows],
        "error_rate": [server_errors(canary) / canary.num_rows, server_errors(stable) / stable.num_rows],
        "p99_ms": [float(np.percentile(latencies_ms(t), 99)) for t in (canary, stable)],
        "disagreement": int(pc.sum(pc.cast(pc.not_equal(shadowed.column("label"), shadowed.column("shadow_label")), pa.int64())).as_py()) / shadowed.num_rows,
        "class_mix": [classes(canary), classes(stable)],
        "paired_accuracy": [right("label") / paired.num_rows, right("shadow_label") / paired.num_rows, paired.num_rows],
    }  # fmt: skip


def _count(t: pa.Table, value: str) -> int:
    return int(pc.sum(pc.cast(pc.equal(t.column("label"), value), pa.int64())).as_py() or 0)


def summaries(ctx: Context) -> dict[str, Any]:
    """Ours: the rollout's own analysis on the summaries' path."""
    from mloncall.monitoring.served import served_window
    from mloncall.rollout.analysis import Thresholds, analyse_canary

    def served(since: dt.datetime, until: dt.datetime) -> Any:
        return served_window(ctx.store, MODEL, since, until, now=NOW, versions={})

    step = served(STEP_SINCE, NOW)  # as `rollout.service.analyse` composes them
    analysis = analyse_canary(
        step=step, rollout=served(ROLLOUT_SINCE, STEP_SINCE).then(step), stable=1, canary=2, classes=CLASSES,
        min_requests=100, thresholds=Thresholds(),
    )  # fmt: skip
    ev = {c.name: c.evidence for c in analysis.checks}
    parts = ev["traffic"]["logs"]["rollout"]["parts"]
    return {
        "requests": [analysis.counts["canary"], analysis.counts["stable"]],
        "error_rate": [ev["error rate"]["candidate"], ev["error rate"]["baseline"]],
        "p99_ms": [ev["p99 latency"]["candidate_ms"], ev["p99 latency"]["baseline_ms"]],
        "disagreement": ev["disagreement"]["rate"],
        "class_mix": [list(ev["class mix"]["candidate"].values()), list(ev["class mix"]["baseline"].values())],
        "paired_accuracy": [ev["accuracy"]["candidate"], ev["accuracy"]["baseline"], ev["accuracy"]["labels"]],
        "outcome": analysis.outcome.label,
        "read": {
            k: sum(p[k] if k != "files_read" else p[k]["predictions"] for p in parts)
            for k in ("summaries_read", "raw_minutes", "files_read")
        },
    }  # fmt: skip


def child(path: str, home: str) -> dict[str, Any]:
    """One path in this process: cold once, then three more times; seconds and peak memory."""
    ctx = Context.from_settings(Settings.load(env={"MLONCALL_HOME": home}))
    run = {"raw": raw_rows, "summaries": summaries}[path]
    seconds = []
    for _ in range(4):
        t = time.perf_counter()
        figures = run(ctx)
        seconds.append(time.perf_counter() - t)
    peak = next(
        int(x.split()[1]) / 1024
        for x in Path("/proc/self/status").read_text().splitlines()
        if x.startswith("VmHWM:")
    )
    ctx.close()
    return {"cold_s": seconds[0], "warm_s": sorted(seconds[1:])[1], "peak_mb": peak, "figures": figures}


def in_child(path: str, home: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", path, home],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    args = sys.argv[1:]
    if args and args[0] == "--child":
        print(json.dumps(child(args[1], args[2])))
        return 0
    rate = int(args[args.index("--rate") + 1]) if "--rate" in args else 1000
    tmp = Path(tempfile.mkdtemp(prefix="mloncall-bench-canary-"))
    try:
        return run(tmp, rate)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, rate: int) -> int:
    from mloncall.monitoring import jobs
    from mloncall.training import service as training

    home = str(tmp / "home")
    ctx = Context.from_settings(Settings.load(env={"MLONCALL_HOME": home}))
    ctx.init()
    training.train(ctx=ctx, name=MODEL, created_by="bench")
    t = time.perf_counter()
    files, feedback_files = write_traffic(Path(ctx.store.base), rate)
    print(
        f"traffic: {files * rate:,} predictions at {rate:,}/s in {files:,} files (one per second), 10% on the "
        f"canary, {feedback_files:,} feedback files; written in {time.perf_counter() - t:.0f} s"
    )
    t = time.perf_counter()
    report = jobs.run_pass(ctx, now=NOW)
    print(
        f"background pass (compaction of the closed hour, summaries, label indexes): {time.perf_counter() - t:.0f} s, "
        f"{report.summaries_written:,} summaries, {report.label_indexes} label indexes"
    )
    ctx.close()
    raw, ours = in_child("raw", home), in_child("summaries", home)
    print(
        f"canary analysis at {NOW:%H:%M:%S}: stable side {ROLLOUT_SINCE:%H:%M:%S}-, canary side {STEP_SINCE:%H:%M:%S}-"
    )
    print(f"  {'':34}{'raw rows (anchor)':>20}{'summaries (ours)':>20}{'ratio':>10}")
    for key, label in (
        ("cold_s", "first analysis, new process (s)"),
        ("warm_s", "repeated analysis, median (s)"),
        ("peak_mb", "peak memory (MB)"),
    ):
        print(f"  {label:34}{raw[key]:>20.3f}{ours[key]:>20.3f}{raw[key] / ours[key]:>9.1f}x")
    print(f"  read by ours (rollout window): {ours['figures']['read']}, verdict {ours['figures']['outcome']}")
    print("  figures (canary, stable):")
    for key in ("requests", "error_rate", "p99_ms", "disagreement", "class_mix", "paired_accuracy"):
        a, b = raw["figures"][key], ours["figures"][key]
        print(f"    {key:16} raw {a}   ours {b}")
    errors = [
        abs(o - r) / r for r, o in zip(raw["figures"]["p99_ms"], ours["figures"]["p99_ms"], strict=True)
    ]
    print(f"  p99 relative error of the sketch: {max(errors):.4%} (bound 1%)")
    same = all(raw["figures"][k] == ours["figures"][k] for k in ("requests", "class_mix"))
    same = same and np.allclose(
        raw["figures"]["error_rate"], ours["figures"]["error_rate"], rtol=0, atol=1e-12
    )
    same = same and np.allclose(
        raw["figures"]["paired_accuracy"], ours["figures"]["paired_accuracy"], rtol=0, atol=1e-12
    )
    same = same and abs(raw["figures"]["disagreement"] - ours["figures"]["disagreement"]) < 1e-12
    print(f"  counts, rates and accuracies equal: {same}")
    return 0 if same and max(errors) <= 0.01 else 1


if __name__ == "__main__":
    raise SystemExit(main())
