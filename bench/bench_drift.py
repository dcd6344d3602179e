"""Drift figures: a drift report over 1,000,000 rows x 4 numeric features against a 150,000-row reference.

Ours: `monitoring.drift.feature_drift` per feature (PSI, KS statistic and p-value, normalised Wasserstein,
histograms and the verdict), from sorted arrays; "cold" includes sorting the reference, "warm" reuses it as
the monitor does (the reference is cached per dataset version).
Anchor 1: plain per-feature scipy calls (ks_2samp + wasserstein_distance + a numpy PSI) on the same data.
Anchor 2: Evidently's DataDriftPreset on the same data, in its own virtual environment under bench/.envs/
(created here with `python3 -m venv` + pip; skipped with the reason printed when that fails).
Then the evaluation cost of the default rule set (every monitor kind) on one minute of logs at 1,000
predictions/s, written as real prediction-log Parquet files through stores.predlog.

Run: .venv/bin/python bench/bench_drift.py [--skip-evidently]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

from mloncall.core.config import Settings
from mloncall.data import iris
from mloncall.monitoring import service
from mloncall.monitoring.drift import DriftSettings, FeatureDrift, drift_features
from mloncall.monitoring.drift_stats import SortedSample, psi_from_counts
from mloncall.stores.context import Context
from mloncall.stores.predlog import FeedbackBatch, PredictionLog
from mloncall.training import service as training

N_REF = 150_000
N_CUR = 1_000_000
FEATURES = ("f0", "f1", "f2", "f3")
SEED = 20260301
ROOT = Path(__file__).resolve().parent
EVIDENTLY_ENV = ROOT / ".envs" / "evidently"
REPEATS = 3

EVIDENTLY_SCRIPT = r"""
import json, sys, time
import numpy as np
import pandas as pd
import evidently

data = np.load(sys.argv[1])
cols = ["f0", "f1", "f2", "f3"]
ref = pd.DataFrame(data["reference"], columns=cols)
cur = pd.DataFrame(data["current"], columns=cols)
try:
    from evidently import Report
    from evidently.presets import DataDriftPreset
    api = "evidently.Report + presets.DataDriftPreset"
    def run():
        return Report([DataDriftPreset()]).run(cur, ref)
except ImportError:
    try:
        from evidently.legacy.report import Report
        from evidently.legacy.metric_preset import DataDriftPreset
        api = "evidently.legacy Report + DataDriftPreset"
    except ImportError:
        from evidently.report import Report
        from evidently.metric_preset import DataDriftPreset
        api = "evidently.report Report + DataDriftPreset"
    def run():
        report = Report(metrics=[DataDriftPreset()])
        report.run(reference_data=ref, current_data=cur)
        return report
start = time.perf_counter()
run()
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "version": evidently.__version__, "api": api, "pandas": pd.__version__}))
"""


def make_data() -> tuple[np.ndarray, np.ndarray]:
    """Reference and current, 4 features: f0 unchanged, f1 mean shifted, f2 wider, f3 unchanged (skewed)."""
    rng = np.random.default_rng(SEED)
    ref = np.column_stack(
        [
            rng.normal(0.0, 1.0, N_REF),
            rng.normal(10.0, 2.0, N_REF),
            rng.normal(-3.0, 0.5, N_REF),
            rng.lognormal(0.0, 0.6, N_REF),
        ]
    )
    cur = np.column_stack(
        [
            rng.normal(0.0, 1.0, N_CUR),
            rng.normal(10.6, 2.0, N_CUR),
            rng.normal(-3.0, 0.75, N_CUR),
            rng.lognormal(0.0, 0.6, N_CUR),
        ]
    )
    return ref, cur


def numpy_psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI over reference deciles binned by np.histogram (the index over those counts is ours, a few sums)."""
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1))[1:-1])
    edges = np.concatenate(([-np.inf], inner, [np.inf]))
    return psi_from_counts(np.histogram(ref, edges)[0], np.histogram(cur, edges)[0], epsilon=eps)


def ours(
    ref: np.ndarray, cur: np.ndarray, cached: list[SortedSample] | None, workers: int
) -> tuple[float, list[FeatureDrift], list[SortedSample]]:
    """Seconds for every statistic of every feature (sorting each current column once inside)."""
    settings = DriftSettings()
    start = time.perf_counter()
    refs = cached if cached is not None else [SortedSample.of(ref[:, j]) for j in range(ref.shape[1])]
    pairs = [(FEATURES[j], refs[j], cur[:, j]) for j in range(cur.shape[1])]
    rows = drift_features(pairs, settings, workers=workers)
    return time.perf_counter() - start, rows, refs


def scipy_anchor(ref: np.ndarray, cur: np.ndarray) -> tuple[float, list[dict[str, float]]]:
    start = time.perf_counter()
    out = []
    for j in range(ref.shape[1]):
        a, b = ref[:, j], cur[:, j]
        ks = stats.ks_2samp(a, b)
        w = stats.wasserstein_distance(a, b)
        out.append(
            {
                "ks": float(ks.statistic),
                "ks_p": float(ks.pvalue),
                "wasserstein_norm": w / max(float(np.std(a)), 0.001),
                "psi": numpy_psi(a, b),
            }
        )
    return time.perf_counter() - start, out


def evidently_anchor(ref: np.ndarray, cur: np.ndarray) -> dict[str, object] | str:
    """Seconds for DataDriftPreset in its own environment, or the reason it could not run."""
    python = EVIDENTLY_ENV / "bin" / "python"
    if not python.exists():
        base = shutil.which("python3") or sys.executable
        print(f"creating {EVIDENTLY_ENV} and installing evidently (pandas<3) ...", flush=True)
        made = subprocess.run(
            [base, "-m", "venv", str(EVIDENTLY_ENV)], capture_output=True, text=True, check=False
        )
        if made.returncode != 0:
            return f"python3 -m venv failed: {made.stderr.strip()[-300:]}"
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "evidently", "pandas<3"],
            capture_output=True,
            text=True,
            check=False,
        )
        if pip.returncode != 0:
            shutil.rmtree(EVIDENTLY_ENV, ignore_errors=True)
            return f"pip install evidently failed: {pip.stderr.strip()[-300:]}"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(data, reference=ref, current=cur)
        script = Path(tmp) / "run_evidently.py"
        script.write_text(EVIDENTLY_SCRIPT)
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        done = subprocess.run(
            [str(python), str(script), str(data)], capture_output=True, text=True, env=env, check=False
        )
    if done.returncode != 0:
        return f"Evidently run failed: {done.stderr.strip()[-400:]}"
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def drift_figures(skip_evidently: bool) -> None:
    ref, cur = make_data()
    print(f"data: reference {N_REF:,} rows, current {N_CUR:,} rows x {len(FEATURES)} numeric features")
    threads = min(len(FEATURES), os.cpu_count() or 1)
    _, rows, refs = ours(ref, cur, None, 1)
    timings: dict[str, float] = {}
    for label, workers in (("1 thread", 1), (f"{threads} threads", threads)):
        timings[f"cold, {label}"] = statistics.median(
            ours(ref, cur, None, workers)[0] for _ in range(REPEATS)
        )
        timings[f"warm, {label}"] = statistics.median(
            ours(ref, cur, refs, workers)[0] for _ in range(REPEATS)
        )
    sc = [scipy_anchor(ref, cur) for _ in range(REPEATS)]
    scipy_s = statistics.median(t for t, _ in sc)
    expected = sc[0][1]
    worst = max(abs(getattr(r, key) - e[key]) for r, e in zip(rows, expected, strict=True) for key in e)
    print(
        "ours (PSI + KS + p-value + Wasserstein + histograms + verdict, every feature; warm = reference sorted "
        "once and cached, as the monitor does):"
    )
    for label, seconds in timings.items():
        print(f"  {label:22s} {seconds:.3f} s")
    for r in rows:
        print(
            f"  {r.feature}: method {r.method} drifted={r.drifted} psi={r.psi:.4f} ks={r.ks:.4f} "
            f"ks_p={r.ks_p:.3g} wasserstein_norm={r.wasserstein_norm:.4f}"
        )
    print(f"anchor 1, per-feature scipy ks_2samp + wasserstein_distance + numpy PSI: {scipy_s:.3f} s")
    print(f"  largest difference from the scipy values: {worst:.2e} (target <= 1e-9)")
    for label, seconds in timings.items():
        print(f"  ratio scipy / ours ({label}): {scipy_s / seconds:.1f}x")
    if skip_evidently:
        print("anchor 2, Evidently DataDriftPreset: skipped (--skip-evidently)")
        return
    ev = evidently_anchor(ref, cur)
    if isinstance(ev, str):
        print(f"anchor 2, Evidently DataDriftPreset: skipped: {ev}")
        return
    ev_s = float(ev["seconds"])  # type: ignore[arg-type]
    print(
        f"anchor 2, Evidently {ev['version']} DataDriftPreset ({ev['api']}, pandas {ev['pandas']}, one test per "
        f"feature): {ev_s:.2f} s"
    )
    for label, seconds in timings.items():
        ratio = ev_s / seconds
        print(
            f"  ratio Evidently / ours ({label}): {ratio:.0f}x (target >= 50x: {'met' if ratio >= 50 else 'NOT met'})"
        )


def write_minute_logs(
    ctx: Context, model: str, end: float, seconds: int, rate: int, seed: int
) -> tuple[list[str], list[str]]:
    """`seconds` seconds of traffic ending at `end`, one Parquet file per second (one worker flushing every
    second), through PredictionLog exactly as the serving plane writes it."""
    frame = iris.iris_like_samples(seconds * rate, seed=seed)
    X = frame[iris.FEATURES].to_numpy(np.float64)
    labels = frame[iris.TARGET].astype(str).to_numpy()
    probs = np.full((10, 3), 1 / 3, np.float32)
    log = PredictionLog(ctx.store, writer_id=f"bench-{seed}")
    ids: list[str] = []
    served: list[str] = []
    batch = 10  # ten rows per request
    for s in range(seconds):
        t0 = end - seconds + s
        for r in range(0, rate, batch):
            i = s * rate + r
            chunk = [f"{seed}-{k}" for k in range(i, i + batch)]
            ids.extend(chunk)
            served.extend(labels[i : i + batch].tolist())
            log.record(
                ts=t0 + r / rate, model=model, version=1, route="stable", features=tuple(iris.FEATURES),
                X=X[i : i + batch], ids=chunk, labels=labels[i : i + batch].tolist(), probabilities=probs,
                latency_ms=1.5, flags=None, shadow_version=None, shadow_labels=None, request_id=None,
            )  # fmt: skip
        log.flush()
    return ids, served


def rule_set_figures() -> None:
    import datetime as dt

    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context.from_settings(Settings.load(env={"MLONCALL_HOME": str(Path(tmp) / "home")}))
        ctx.init()
        training.train(ctx=ctx, name="bench", created_by="bench")
        end = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)
        start = time.perf_counter()
        write_minute_logs(ctx, "bench", end.timestamp() - 60, seconds=300, rate=1000, seed=1)  # history
        ids, labels = write_minute_logs(
            ctx, "bench", end.timestamp(), seconds=60, rate=1000, seed=2
        )  # the window
        log = PredictionLog(ctx.store, writer_id="bench-feedback")
        keep = int(len(ids) * 0.7)  # 70% of the window's predictions labelled (as predicted) by now
        log.record_feedback(
            FeedbackBatch(ts=end.timestamp() - 1, model="bench", ids=ids[:keep], labels=labels[:keep])
        )
        log.flush()
        files = len(ctx.store.list("predictions/model=bench"))
        print(
            f"\nrule set: one minute of logs at 1,000 predictions/s = 60,000 rows in 60 Parquet files "
            f"(plus 300,000 rows in 300 files of history; {files} files; written in {time.perf_counter() - start:.1f} s)"
        )
        params: dict[str, dict[str, object]] = {kind: {} for kind in service.MONITOR_KINDS}
        params["volume"] = {"min_history": "5m"}
        window = dt.timedelta(minutes=1)

        def evaluate() -> dict[str, float]:
            took = {}
            for kind in service.MONITOR_KINDS:
                t = time.perf_counter()
                check = service.run_monitor(
                    ctx=ctx, kind=kind, model="bench", window=window, params=params[kind], now=end
                )
                took[kind] = time.perf_counter() - t
                outcomes[kind] = check.outcome.label
            return took

        outcomes: dict[str, str] = {}
        cold = evaluate()
        warm_runs = [evaluate() for _ in range(REPEATS)]
        warm = {k: statistics.median(r[k] for r in warm_runs) for k in service.MONITOR_KINDS}
        print(
            "  per monitor (first evaluation, nothing cached / steady state, footers and reference cached):"
        )
        for kind in service.MONITOR_KINDS:
            print(
                f"    {kind:20s} {cold[kind] * 1000:7.1f} ms / {warm[kind] * 1000:7.1f} ms   ({outcomes[kind]})"
            )
        total_cold, total_warm = sum(cold.values()), sum(warm.values())
        print(
            f"  default rule set per minute of logs: {total_cold * 1000:.0f} ms first, {total_warm * 1000:.0f} ms "
            f"steady state = {total_warm / 60:.2%} of one core at 1,000 predictions/s"
        )
        ctx.close()


def main() -> int:
    drift_figures(skip_evidently="--skip-evidently" in sys.argv[1:])
    rule_set_figures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
