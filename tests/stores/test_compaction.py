"""Compaction of the prediction log: atomic, idempotent, crash-safe; readers never see a row twice."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from mloncall.stores.context import Context
from mloncall.stores.predlog import (
    PREDICTIONS,
    FeedbackBatch,
    PredictionLog,
    clear_cache,
    read_log,
    read_window,
)
from mloncall.stores.predlog import compact as compaction

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
FEATURES = ("a", "b")


def write_hours(
    ctx: Context, *, hours: int = 3, per_second: int = 3, every: int = 60, writers: int = 2
) -> set[str]:
    """`hours` of traffic from several writers, one file per writer per flush; returns every id."""
    ids: set[str] = set()
    logs = [PredictionLog(ctx.store, writer_id=f"w{w}") for w in range(writers)]
    rng = np.random.default_rng(1)
    t0 = START.timestamp()
    for second in range(0, hours * 3600, every):
        for w, log in enumerate(logs):
            chunk = [f"{w}-{second}-{k}" for k in range(per_second)]
            ids.update(chunk)
            log.record(
                ts=t0 + second + w * 0.1, model="m", version=1, route="stable", features=FEATURES,
                X=rng.normal(size=(per_second, 2)), ids=chunk, labels=["x"] * per_second,
                probabilities=np.full((per_second, 1), 1.0, np.float32), latency_ms=1.0, flags=None,
                shadow_version=None, shadow_labels=None, request_id=None,
            )  # fmt: skip
            log.flush()
    return ids


def all_ids(ctx: Context) -> list[str]:
    clear_cache()
    table = read_log(ctx.store, PREDICTIONS, "m")
    return [] if table is None else table.column("id").to_pylist()


def folders(ctx: Context) -> dict[str, list[str]]:
    return compaction.hour_folders(ctx.store, PREDICTIONS, "m")


def test_compaction_merges_each_closed_hour_sorted_and_keeps_every_row(ctx: Context) -> None:
    ids = write_hours(ctx)
    before = sum(len(v) for v in folders(ctx).values())
    report = compaction.compact(ctx.store, now=START + dt.timedelta(hours=3, minutes=10), kinds=[PREDICTIONS])
    assert report.compacted == 3
    after = folders(ctx)
    assert before == 3 * 60 * 2
    for keys in after.values():
        assert sorted(os.path.basename(k) for k in keys) == [
            "compacted@000001.parquet",
            "manifest@compaction.json",
        ]
    got = all_ids(ctx)
    assert len(got) == len(ids) and set(got) == ids
    ts = read_window(
        ctx.store,
        kind=PREDICTIONS,
        model="m",
        since=START,
        until=START + dt.timedelta(hours=1),
        columns=["ts"],
    ).table
    assert ts is not None
    values = pc.cast(ts.column("ts"), "int64").to_numpy()
    assert (np.diff(values) >= 0).all()
    # idempotent: a second run changes nothing
    again = compaction.compact(ctx.store, now=START + dt.timedelta(hours=3, minutes=10), kinds=[PREDICTIONS])
    assert again.compacted == 0
    assert sorted(all_ids(ctx)) == sorted(ids)


def test_open_hour_is_left_alone_and_a_late_file_joins_the_next_generation(ctx: Context) -> None:
    ids = write_hours(ctx, hours=2)
    compaction.compact(ctx.store, now=START + dt.timedelta(hours=1, minutes=30), kinds=[PREDICTIONS])
    states = {
        f: any(k.endswith("manifest@compaction.json") for k in keys) for f, keys in folders(ctx).items()
    }
    assert sorted(states.values()) == [False, True]
    # a writer flushes late into the compacted hour: read before the next compaction, then merged into it
    late = PredictionLog(ctx.store, writer_id="late")
    late.record(
        ts=START.timestamp() + 10, model="m", version=1, route="stable", features=FEATURES,
        X=np.zeros((1, 2)), ids=["late-1"], labels=["x"], probabilities=np.ones((1, 1), np.float32),
        latency_ms=1.0, flags=None, shadow_version=None, shadow_labels=None, request_id=None,
    )  # fmt: skip
    late.flush()
    assert sorted(all_ids(ctx)) == sorted(ids | {"late-1"})
    compaction.compact(ctx.store, now=START + dt.timedelta(hours=3), kinds=[PREDICTIONS])
    first = [k for f, keys in folders(ctx).items() if f.endswith("hour=09") for k in keys]
    assert sorted(os.path.basename(k) for k in first) == [
        "compacted@000002.parquet",
        "manifest@compaction.json",
    ]
    assert sorted(all_ids(ctx)) == sorted(ids | {"late-1"})


def test_a_corrupt_file_in_an_hour_being_compacted_is_skipped_reported_and_kept(ctx: Context) -> None:
    ids = write_hours(ctx, hours=1)
    keys = sorted(next(iter(folders(ctx).values())))
    victim = keys[5]
    data = ctx.store.get_bytes(victim)
    ctx.store.put_bytes(victim, data[: len(data) // 2])
    lost = set(all_ids(ctx))  # the reader skips the bad file already
    report = compaction.compact(ctx.store, now=START + dt.timedelta(hours=2), kinds=[PREDICTIONS])
    out = report.to_dict()
    assert out["hours_compacted"] == 1
    assert [s["file"] for s in out["skipped_files"]] == [os.path.basename(victim)]
    assert out["skipped_files"][0]["reason"]
    assert ctx.store.exists(victim)  # kept for whoever wants to recover it, hidden from readers
    got = all_ids(ctx)
    assert len(got) == len(set(got)) == len(ids) - 3
    assert set(got) == lost
    stats = {s.kind: s for s in compaction.log_stats(ctx.store)}
    assert stats[PREDICTIONS].skipped_files == 1


def test_skewed_timestamps_land_in_their_own_hours_and_survive_compaction(ctx: Context) -> None:
    log = PredictionLog(ctx.store, writer_id="skew")
    now = START + dt.timedelta(hours=1)
    for i, when in enumerate([now - dt.timedelta(days=400), now + dt.timedelta(days=2), now]):
        log.record(
            ts=when.timestamp(), model="m", version=1, route="stable", features=FEATURES,
            X=np.zeros((1, 2)), ids=[f"skew-{i}"], labels=["x"], probabilities=np.ones((1, 1), np.float32),
            latency_ms=1.0, flags=None, shadow_version=None, shadow_labels=None, request_id=None,
        )  # fmt: skip
    log.flush()
    report = compaction.compact(ctx.store, now=now + dt.timedelta(minutes=10), kinds=[PREDICTIONS])
    assert report.compacted == 1  # the far past hour; the future and the open hour stay raw
    assert sorted(all_ids(ctx)) == ["skew-0", "skew-1", "skew-2"]
    gone = compaction.expire(ctx.store, now=now, keep=dt.timedelta(days=30), kinds=[PREDICTIONS])
    assert len(gone) == 1
    assert sorted(all_ids(ctx)) == ["skew-1", "skew-2"]


CRASH = textwrap.dedent(
    """
    import datetime as dt, os, signal, sys
    from mloncall.stores.artifacts import ArtifactStore
    from mloncall.stores.predlog import compact as compaction

    store = ArtifactStore(sys.argv[1])
    after = int(sys.argv[2])
    writes = [0]
    real_put, real_delete = store.put_bytes, store.delete

    def counted(fn):
        def wrapper(*args, **kwargs):
            writes[0] += 1
            if writes[0] > after:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return wrapper

    store.put_bytes = counted(real_put)
    store.delete = counted(real_delete)
    compaction.compact(store, now=dt.datetime(2026, 3, 2, 12, 10, tzinfo=dt.UTC), kinds=["predictions"])
    """
)


@pytest.mark.parametrize("after", [0, 1, 2, 5, 40, 130])
def test_compaction_killed_mid_run_then_rerun_loses_and_doubles_nothing(
    ctx: Context, tmp_path: Path, after: int
) -> None:
    ids = write_hours(ctx, hours=3, every=120)
    script = tmp_path / "crash.py"
    script.write_text(CRASH)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    done = subprocess.run(
        [sys.executable, str(script), ctx.store.root, str(after)], env=env, capture_output=True, check=False
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-500:]
    got = all_ids(ctx)  # after the crash: every row once
    assert len(got) == len(ids) and set(got) == ids
    compaction.compact(ctx.store, now=START + dt.timedelta(hours=3, minutes=10), kinds=[PREDICTIONS])
    got = all_ids(ctx)
    assert len(got) == len(ids) and set(got) == ids
    for keys in folders(ctx).values():
        assert sorted(os.path.basename(k) for k in keys) == [
            "compacted@000001.parquet",
            "manifest@compaction.json",
        ]


def test_feedback_and_stats(ctx: Context) -> None:
    write_hours(ctx, hours=2)
    fb = PredictionLog(ctx.store, writer_id="fb")
    fb.record_feedback(FeedbackBatch(ts=START.timestamp() + 100, model="m", ids=["0-0-0"], labels=["x"]))
    fb.flush()
    compaction.compact(ctx.store, now=START + dt.timedelta(hours=3))
    stats = {(s.kind, s.model): s.to_dict() for s in compaction.log_stats(ctx.store)}
    p = stats[(PREDICTIONS, "m")]
    assert p["files"] == 2 and p["raw_files"] == 0 and p["rows"] == 2 * 60 * 2 * 3
    assert p["oldest_hour"] == "2026-03-02T09:00Z" and p["newest_hour"] == "2026-03-02T10:00Z"
    assert stats[("feedback", "m")]["rows"] == 1
