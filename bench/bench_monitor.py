"""Monitoring that keeps up: a synthetic day at 1,000 predictions/s, evaluated incrementally vs today's path.

The day is written as the server writes it: one Parquet file per worker per second (one worker), through
the writer's own `prediction_table` schema, at `predictions/model=bench/date=.../hour=HH/<writer>-<seq>.parquet`;
each prediction gets a label with probability 0.7, after an exponential delay (mean 45 minutes, capped at 6
hours), written one feedback file per second of arrival. Files are written without fsync (the server's
writer syncs each one; that is write cost, not evaluation cost).

Printed side by side, in one run:
- compaction: files before and after;
- the default rule set over a 24-hour window, cold (new process: footers, references, summaries uncached)
  from compacted logs and summaries; target <= 10 s;
- the steady-state evaluation of the default rule set (its own windows) after one more minute of traffic
  and the background pass; target <= 1 s;
- peak memory (ru_maxrss of the evaluating process); target <= 500 MB;
- the 1-hour window: every monitor of the rule set on the last hour, today's path (`mode="exact"`, on the raw
  per-second files, before compaction) against the incremental one, and Evidently's DataDriftPreset on the
  same rows (its own virtualenv under bench/.envs, as bench_drift.py); target >= 50x Evidently;
- approximation errors of the incremental statistics against the exact ones.

Run: .venv/bin/python bench/bench_monitor.py [--hours 24] [--raw-hours 2] [--skip-evidently]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
from bench_canary import _schema  # the prediction writer's schema

from mloncall.core.config import Settings
from mloncall.data import iris
from mloncall.stores.context import Context

RATE = 1000
DAY = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
MODEL = "bench"
LABELLED = 0.7
DELAY_MEAN_S = 2700.0
DELAY_MAX_S = 6 * 3600.0
SEED = 20260301
ROOT = Path(__file__).resolve().parent
RULES: dict[str, tuple[str, dict[str, Any], dt.timedelta]] = {
    "feature-drift": ("drift", {"drift_share": 0.5}, dt.timedelta(hours=1)),
    "accuracy-drop": ("accuracy", {"tolerance": 0.05, "min_labels": 50}, dt.timedelta(hours=6)),
    "high-error-rate": ("error_rate", {"max_error_rate": 0.01}, dt.timedelta(minutes=5)),
    "high-p99-latency": ("latency", {"max_p99_ms": 250}, dt.timedelta(minutes=5)),
    "volume-drop": ("volume", {"min_ratio": 0.5}, dt.timedelta(minutes=30)),
    "out-of-range-inputs": ("out_of_range", {"max_rate": 0.1}, dt.timedelta(minutes=30)),
    "missing-features": ("missing_features", {"max_rate": 0.01}, dt.timedelta(minutes=30)),
}


# --- generation ------------------------------------------------------------------------------------------


def _uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uuid4-shaped ids (36 characters), vectorised."""
    hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    raw = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    chars = hexdigits[raw]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, [i for i in range(36) if i not in (8, 13, 18, 23)]] = chars
    return out.view("S36").ravel()


def hour_rows(hour: int) -> dict[str, np.ndarray]:
    """The predictions of one hour of the day (deterministic): ids, ts, features, predicted and true class."""
    rng = np.random.default_rng(SEED + hour)
    n = 3600 * RATE
    frame = iris.iris_like_samples(n, seed=SEED + hour)
    truth = frame[iris.TARGET].astype(str).to_numpy()
    predicted = truth.copy()
    wrong = rng.random(n) < 0.05
    predicted[wrong] = np.roll(truth, 1)[wrong]
    ts = DAY.timestamp() + hour * 3600 + np.arange(n) / RATE
    return {
        "ids": _uuids(rng, n), "ts": ts, "X": frame[list(iris.FEATURES)].to_numpy(np.float64),
        "predicted": predicted, "truth": truth, "latency": rng.lognormal(0.4, 0.35, n),
        "labelled": rng.random(n) < LABELLED, "delay": np.minimum(rng.exponential(DELAY_MEAN_S, n), DELAY_MAX_S),
    }  # fmt: skip


def write_prediction_hour(args: tuple[str, int, int]) -> int:
    """One hour as per-second files of the writer's schema (`seconds` = 1; 60: one file per minute)."""
    root, hour, seconds = args
    from mloncall.stores.predlog import partition

    schema = _schema()
    d = hour_rows(hour)
    folder = Path(root) / "predictions" / f"model={MODEL}" / partition(int(d["ts"][0] // 3600))
    folder.mkdir(parents=True, exist_ok=True)
    n = RATE * seconds
    probs = pa.array([[0.2, 0.3, 0.5]] * n, pa.list_(pa.float32()))
    flags = pa.array([[]] * n, pa.list_(pa.string()))
    const = {
        "model": pa.array([MODEL] * n, pa.string()), "version": pa.array(np.ones(n, np.int32)),
        "route": pa.array(["stable"] * n, pa.string()), "shadow_version": pa.nulls(n, pa.int32()),
        "shadow_label": pa.nulls(n, pa.string()), "request_id": pa.nulls(n, pa.string()),
        "status": pa.array(np.full(n, 200, np.int16)), "error": pa.nulls(n, pa.string()),
    }  # fmt: skip
    for s in range(3600 // seconds):
        sl = slice(s * n, (s + 1) * n)
        cols = {
            "id": pa.array(d["ids"][sl]).cast(pa.string()),
            "ts": pa.array(np.round(d["ts"][sl] * 1e6).astype(np.int64)).cast(pa.timestamp("us", tz="UTC")),
            **{f"f_{f}": pa.array(d["X"][sl, j]) for j, f in enumerate(iris.FEATURES)},
            "label": pa.array(d["predicted"][sl], pa.string()),
            "probabilities": probs, "latency_ms": pa.array(d["latency"][sl]), "flags": flags, **const,
        }  # fmt: skip
        table = pa.table({f.name: cols[f.name] for f in schema}, schema=schema)
        pq.write_table(
            table, folder / f"bench-w1-{hour * 3600 + s * seconds:08d}.parquet", compression="zstd"
        )
    return 3600 // seconds


def write_feedback_hour(args: tuple[str, int, float]) -> int:
    """The labels of one hour's predictions, one file per minute of arrival (arrivals up to `until`)."""
    root, hour, until = args
    from mloncall.stores.predlog import partition

    d = hour_rows(hour)
    arrive = d["ts"] + d["delay"]
    pick = np.flatnonzero(d["labelled"] & (arrive < until))
    order = pick[np.argsort(arrive[pick], kind="stable")]
    minutes = np.floor(arrive[order] / 60).astype(np.int64)
    cuts = np.flatnonzero(np.diff(minutes)) + 1
    files = 0
    for part in np.split(order, cuts):
        if part.size == 0:
            continue
        first = float(arrive[part[0]])
        folder = Path(root) / "feedback" / f"model={MODEL}" / partition(int(first // 3600))
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "prediction_id": pa.array(d["ids"][part]).cast(pa.string()),
                "label": pa.array(d["truth"][part], pa.string()),
                "ts": pa.array(np.round(arrive[part] * 1e6).astype(np.int64)).cast(
                    pa.timestamp("us", tz="UTC")
                ),
                "model": pa.array([MODEL] * part.size, pa.string()),
            }
        )
        pq.write_table(
            table, folder / f"bench-fb{hour:02d}-{int(first // 60):08d}.parquet", compression="zstd"
        )
        files += 1
    return files


# --- evaluation in a child process (its own ru_maxrss) --------------------------------------------------


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate(home: str, now: str, mode: str, windows: str) -> dict[str, Any]:
    """Run every rule of the default set once; seconds per rule, outcomes and evidence."""
    from mloncall.monitoring import service

    ctx = Context.from_settings(Settings.load(env={"MLONCALL_HOME": home}))
    at = dt.datetime.fromisoformat(now)
    out: dict[str, Any] = {"seconds": {}, "outcomes": {}, "evidence": {}}
    start = time.perf_counter()
    for name, (kind, params, window) in RULES.items():
        w = {"24h": dt.timedelta(hours=24), "1h": dt.timedelta(hours=1), "rules": window}[windows]
        t = time.perf_counter()
        check = service.run_monitor(
            ctx=ctx, kind=kind, model=MODEL, window=w, params=params, now=at, mode=mode
        )
        out["seconds"][name] = time.perf_counter() - t
        out.setdefault("rss", {})[name] = peak_mb()
        out["outcomes"][name] = check.outcome.label
        out["evidence"][name] = check.evidence
    out["total"] = time.perf_counter() - start
    out["maxrss_mb"] = peak_mb()
    ctx.close()
    return out


def in_child(home: str, now: dt.datetime, mode: str, windows: str, repeat: int = 1) -> dict[str, Any]:
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); import bench_monitor as b; "
        "rs = [b.evaluate(*sys.argv[1:5]) for _ in range(int(sys.argv[5]))]; "
        "print(json.dumps({'runs': rs}, default=str))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, home, now.isoformat(), mode, windows, str(repeat)],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def count_files(root: Path, kind: str) -> int:
    return sum(1 for _ in (root / kind).rglob("*.parquet"))


def main() -> int:
    args = sys.argv[1:]
    hours = int(args[args.index("--hours") + 1]) if "--hours" in args else 24
    raw_hours = int(args[args.index("--raw-hours") + 1]) if "--raw-hours" in args else 2
    skip_evidently = "--skip-evidently" in args
    tmp = Path(tempfile.mkdtemp(prefix="mloncall-bench-monitor-"))
    try:
        return run(tmp, hours, raw_hours, skip_evidently)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, hours: int, raw_hours: int, skip_evidently: bool) -> int:
    from mloncall.monitoring import jobs
    from mloncall.monitoring.incremental import closed_minute
    from mloncall.training import service as training

    home = str(tmp / "home")
    ctx = Context.from_settings(Settings.load(env={"MLONCALL_HOME": home}))
    ctx.init()
    training.train(ctx=ctx, name=MODEL, created_by="bench")
    root = Path(ctx.store.base)
    now = DAY + dt.timedelta(hours=hours, minutes=7, seconds=30)
    t = time.perf_counter()
    workers = max(1, min(2, os.cpu_count() or 1))
    with ProcessPoolExecutor(workers) as pool:
        jobs_ = [(str(root), h, 1 if h >= hours - raw_hours else 60) for h in range(hours)]
        list(pool.map(write_prediction_hour, jobs_))
        # labels up to the last closed minute (what the background pass has applied when the rules run)
        labels_until = float(closed_minute(now) * 60)
        fb = sum(pool.map(write_feedback_hour, [(str(root), h, labels_until) for h in range(hours)]))
    written_s = time.perf_counter() - t
    before = {k: count_files(root, k) for k in ("predictions", "feedback")}
    print(
        f"day: {hours} h at {RATE:,} predictions/s = {hours * 3600 * RATE:,} predictions in {before['predictions']:,} "
        f"files (the last {raw_hours} h one file per second as the server writes them, the hours before one file "
        f"per minute, to keep generation short), {fb:,} feedback files (one per minute of arrival; "
        f"{LABELLED:.0%} labelled, delay mean {DELAY_MEAN_S / 60:.0f} min); written in {written_s:.0f} s"
    )
    last_hour_end = now  # the 1-hour window: the last hour up to now
    # today's path on the last hour, on the raw per-second files (before any compaction or summary)
    exact_1h = in_child(home, last_hour_end, "exact", "1h")["runs"][0]
    print("  rss after each rule, today's path 1h:", {k: round(v) for k, v in exact_1h["rss"].items()})
    t = time.perf_counter()
    report = jobs.run_pass(ctx, now=now)
    pass_s = time.perf_counter() - t
    after = {k: count_files(root, k) for k in ("predictions", "feedback")}
    print(
        f"background pass (summaries of {hours * 60:,} minutes and {hours} hours, label indexes, compaction): "
        f"{pass_s:.0f} s, {report.summaries_written:,} summaries, {report.label_indexes} label indexes"
    )
    print(
        f"compaction: prediction files {before['predictions']:,} -> {after['predictions']:,}, "
        f"feedback files {before['feedback']:,} -> {after['feedback']:,}"
    )
    inc_1h = in_child(home, last_hour_end, "incremental", "1h")["runs"][0]
    cold = in_child(home, now, "auto", "24h")["runs"][0]
    print("  rss after each rule, cold 24h:", {k: round(v) for k, v in cold["rss"].items()})
    steady = steady_state(ctx, root, home, now)
    print_figures(exact_1h, inc_1h, cold, steady)
    print_errors(exact_1h, inc_1h)
    if skip_evidently:
        print("Evidently DataDriftPreset: skipped (--skip-evidently)")
    else:
        evidently(ctx, hours, inc_1h, exact_1h)
    ctx.close()
    return 0


def steady_state(ctx: Context, root: Path, home: str, now: dt.datetime) -> dict[str, Any]:
    """One more minute of traffic (60 files), the background pass, then the rule set at its own windows."""
    from mloncall.monitoring import jobs

    extra = root / "predictions" / f"model={MODEL}"
    src = sorted((extra).rglob("compacted@*.parquet"))[-1]
    table = pq.read_table(src).slice(0, 60 * RATE)
    later = now + dt.timedelta(minutes=1)
    old_ts = pa.compute.cast(table.column("ts"), pa.int64())
    shift = int((later - dt.timedelta(seconds=90)).timestamp() * 1e6) - int(pa.compute.min(old_ts).as_py())
    ts = pa.compute.add(old_ts, shift)
    table = table.set_column(table.schema.get_field_index("ts"), "ts", ts.cast(pa.timestamp("us", tz="UTC")))
    from mloncall.stores.predlog import partition

    first = int(pa.compute.min(ts).as_py() // 1_000_000)
    folder = extra / partition(first // 3600)
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(60):
        pq.write_table(table.slice(s * RATE, RATE), folder / f"bench-w1-x{s:04d}.parquet")
    t = time.perf_counter()
    jobs.run_pass(ctx, now=later, compact=False)
    pass_s = time.perf_counter() - t
    runs = in_child(home, later, "auto", "rules", repeat=3)["runs"]
    return {"pass_s": pass_s, "runs": runs}


def print_figures(
    exact_1h: dict[str, Any], inc_1h: dict[str, Any], cold: dict[str, Any], steady: dict[str, Any]
) -> None:
    warm = sorted(r["total"] for r in steady["runs"][1:])
    warm_s = warm[len(warm) // 2]
    print("\nthe default rule set                         seconds   peak MB       target")
    print(
        f"  24 h window, cold (summaries)            {cold['total']:9.2f}   {cold['maxrss_mb']:11.0f}   <= 10 s, <= 500 MB"
    )
    print(
        f"  own windows, steady state (every 60 s)   {warm_s:9.2f}   {steady['runs'][0]['maxrss_mb']:11.0f}   <= 1 s"
    )
    print(
        f"    (first evaluation in a new process: {steady['runs'][0]['total']:.2f} s; background pass for the minute: {steady['pass_s']:.2f} s)"
    )
    print(
        f"  1 h window, today's path (raw files)     {exact_1h['total']:9.2f}   {exact_1h['maxrss_mb']:11.0f}"
    )
    print(f"  1 h window, incremental                  {inc_1h['total']:9.2f}   {inc_1h['maxrss_mb']:11.0f}")
    print(f"  speed-up on the 1 h window: {exact_1h['total'] / inc_1h['total']:.0f}x")
    print("\n  per rule (s):              today 1h   incr 1h   cold 24h   steady")
    for name in RULES:
        print(
            f"    {name:22s} {exact_1h['seconds'][name]:9.3f} {inc_1h['seconds'][name]:9.3f} "
            f"{cold['seconds'][name]:10.3f} {steady['runs'][-1]['seconds'][name]:8.3f}   "
            f"{exact_1h['outcomes'][name]}/{inc_1h['outcomes'][name]}"
        )


def print_errors(exact: dict[str, Any], fast: dict[str, Any]) -> None:
    """Incremental statistics against the exact ones on the same hour."""
    print("\napproximation errors on the 1 h window (incremental - exact), with the stated bounds:")
    ev, fv = exact["evidence"]["feature-drift"], fast["evidence"]["feature-drift"]
    for e, f in zip(ev["versions"][0]["features"], fv["versions"][0]["features"], strict=True):
        b = f.get("bounds", {})
        print(
            f"  {e['feature']:13s} psi {abs(f['psi'] - e['psi']):.1e}  ks {abs(f['ks'] - e['ks']):.1e} "
            f"(bound {b.get('ks', 0):.1e})  wasserstein {abs(f['wasserstein'] - e['wasserstein']):.1e} "
            f"(bound {b.get('wasserstein', 0):.1e})  ks_p {e['ks_p']:.3g}/{f['ks_p']:.3g}"
        )
    el = exact["evidence"]["high-p99-latency"]["parts"]["v1"]
    fl = fast["evidence"]["high-p99-latency"]["parts"]["v1"]
    rel = {q: abs(fl[q] - el[q]) / el[q] for q in ("p50_ms", "p95_ms", "p99_ms")}
    print(
        "  latency " + ", ".join(f"{q} {v:.2%}" for q, v in rel.items()) + " (bound 1% of the rank's value)"
    )
    ea = exact["evidence"]["accuracy-drop"]["parts"].get("v1", {})
    fa = fast["evidence"]["accuracy-drop"]["parts"].get("v1", {})
    same = all(ea.get(k) == fa.get(k) for k in ("predictions", "labelled", "accuracy", "per_class"))
    print(
        f"  accuracy: predictions {fa.get('predictions')}, labelled {fa.get('labelled')}, identical counts: {same}"
    )
    for name in ("out-of-range-inputs", "missing-features", "high-error-rate"):
        e = exact["evidence"][name]["parts"]["v1"]
        f = fast["evidence"][name]["parts"]["v1"]
        keys = [k for k in ("count", "total", "rows", "errors") if k in e]
        print(f"  {name}: identical {', '.join(keys)}: {all(e[k] == f[k] for k in keys)}")


def evidently(ctx: Context, hours: int, fast: dict[str, Any], exact: dict[str, Any]) -> None:
    """DataDriftPreset on the last hour's rows against the same reference (bench_drift's environment)."""
    sys.path.insert(0, str(ROOT))
    import bench_drift

    from mloncall.monitoring.reference import reference_for, versions_of

    info = versions_of(ctx=ctx, model=MODEL)[1]
    ref = reference_for(store=ctx.store, info=info)
    d = hour_rows(hours - 1)
    reference = np.column_stack([ref.features[f].values for f in iris.FEATURES])
    result = bench_drift.evidently_anchor(reference, d["X"])
    if isinstance(result, str):
        print(f"Evidently DataDriftPreset: skipped: {result}")
        return
    ev_s = float(result["seconds"])
    ours = fast["seconds"]["feature-drift"]
    print(
        f"\nEvidently {result['version']} DataDriftPreset on the same hour ({d['X'].shape[0]:,} rows x 4 features, "
        f"150-row reference): {ev_s:.1f} s; our drift rule on that hour: {ours:.3f} s incremental, "
        f"{exact['seconds']['feature-drift']:.2f} s today's path; ratio {ev_s / ours:.0f}x (target >= 50x: "
        f"{'met' if ev_s / ours >= 50 else 'NOT met'})"
    )


if __name__ == "__main__":
    sys.exit(main())
