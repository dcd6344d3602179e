"""Upstream checks on real sources: files, S3 on a moto server, SQL on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import uuid
from pathlib import Path

import boto3
import pandas as pd
import pytest
import sqlalchemy as sa

from mloncall.core import clock
from mloncall.data.iris import iris_frame
from mloncall.pipelines.quality_models import QuarantinedFile, SourceObservation
from mloncall.pipelines.upstream import (
    CorruptSource,
    SourceCheckFailed,
    SourceMissing,
    SourceSpec,
    TransientSourceError,
    check_source,
    parse_spec,
)
from mloncall.stores.context import Context
from tests.access.servers import moto_server
from tests.conftest import free_port


def _spec(**fields: object) -> SourceSpec:
    return parse_spec({"name": "iris-drop", "kind": "file", **fields})


def _write_parts(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    frame = iris_frame()
    frame.iloc[:75].to_csv(folder / "part-1.csv", index=False)
    frame.iloc[75:].to_parquet(folder / "part-2.parquet", index=False)


def _observations(ctx: Context) -> list[tuple[str, int | None]]:
    with ctx.db.session() as s:
        return [
            (o.status, o.rows) for o in s.scalars(sa.select(SourceObservation).order_by(SourceObservation.id))
        ]


def test_a_good_glob_is_read_and_its_observation_recorded(ctx: Context, tmp_path: Path) -> None:
    _write_parts(tmp_path / "in")
    report = check_source(ctx, _spec(path=str(tmp_path / "in" / "part-*"), fresh_within="1h"))
    assert report.ok and len(report.frame) == 150
    assert [Path(loc).name for loc, _ in report.frames] == ["part-1.csv", "part-2.parquet"]
    assert _observations(ctx) == [("ok", 150)]


def test_nothing_matching_is_a_missing_source(ctx: Context, tmp_path: Path) -> None:
    with pytest.raises(SourceMissing, match="nothing matches"):
        check_source(ctx, _spec(path=str(tmp_path / "none-*.csv")))
    assert _observations(ctx) == [("missing", None)]


def test_an_empty_and_a_truncated_file_are_moved_aside_and_the_run_goes_on(
    ctx: Context, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    _write_parts(folder)
    (folder / "part-0.csv").write_bytes(b"")
    whole = (folder / "part-2.parquet").read_bytes()
    (folder / "part-3.parquet").write_bytes(whole[: len(whole) // 2])
    report = check_source(ctx, _spec(path=str(folder / "part-*")), run_id="run-1")
    assert len(report.frame) == 150
    reasons = {Path(q["location"]).name: q["reason"] for q in report.quarantined}
    assert "is empty" in reasons["part-0.csv"]
    assert "not a readable Parquet file" in reasons["part-3.parquet"]
    assert not (folder / "part-0.csv").exists() and not (folder / "part-3.parquet").exists()
    with ctx.db.session() as s:
        rows = s.scalars(sa.select(QuarantinedFile).order_by(QuarantinedFile.id)).all()
        assert [(Path(r.location).name, r.run_id) for r in rows] == [
            ("part-0.csv", "run-1"),
            ("part-3.parquet", "run-1"),
        ]
        assert ctx.store.read_verified(rows[1].key, rows[1].sha256) == whole[: len(whole) // 2]


def test_a_corrupted_file_fails_the_run_when_the_policy_says_so(ctx: Context, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _write_parts(folder)
    (folder / "part-0.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(CorruptSource, match=r"part-0\.parquet is corrupted"):
        check_source(ctx, _spec(path=str(folder / "part-*"), on_corrupt="fail"))
    assert not (folder / "part-0.parquet").exists()  # moved aside all the same
    assert _observations(ctx)[-1][0] == "corrupt"


def test_only_corrupted_files_leave_nothing_to_read(ctx: Context, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"")
    with pytest.raises(CorruptSource, match="no readable file is left"):
        check_source(ctx, _spec(path=str(tmp_path / "*.csv")))


def test_a_late_source_by_mtime_and_by_timestamp_column(ctx: Context, tmp_path: Path) -> None:
    _write_parts(tmp_path / "in")
    old = (clock.now() - dt.timedelta(hours=5)).timestamp()
    for p in (tmp_path / "in").iterdir():
        os.utime(p, (old, old))
    report = check_source(ctx, _spec(path=str(tmp_path / "in" / "*"), fresh_within="1h"))
    assert not report.ok and "late: its newest data is" in report.problems[0]
    with pytest.raises(SourceCheckFailed, match="SLA 3600s"):
        report.require_ok()
    frame = iris_frame().assign(at=(clock.now() - dt.timedelta(minutes=10)).isoformat())
    frame.to_csv(tmp_path / "stamped.csv", index=False)
    stamped = _spec(path=str(tmp_path / "stamped.csv"), fresh_within="30m", timestamp_column="at")
    assert check_source(ctx, stamped).ok
    assert not check_source(ctx, stamped, now=clock.now() + dt.timedelta(hours=1)).ok
    assert [s for s, _ in _observations(ctx)] == ["stale", "ok", "stale"]


def test_a_drop_in_rows_against_history_is_flagged(ctx: Context, tmp_path: Path) -> None:
    path = tmp_path / "daily.csv"
    spec = _spec(path=str(path))
    for _ in range(3):
        iris_frame().to_csv(path, index=False)
        assert check_source(ctx, spec).ok
    iris_frame().iloc[:20].to_csv(path, index=False)
    report = check_source(ctx, spec)
    assert any("row count 20 dropped below 50% of its median 150" in p for p in report.problems)
    iris_frame().pipe(lambda f: pd.concat([f] * 5)).to_csv(path, index=False)
    assert any("row count 750 jumped above 3x" in p for p in check_source(ctx, spec).problems)


def test_s3_prefix_with_a_truncated_object_then_the_endpoint_gone(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with moto_server() as (endpoint, proc):
        s3 = boto3.client("s3", endpoint_url=endpoint)
        bucket = f"src-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        _write_parts(tmp_path)
        s3.put_object(Bucket=bucket, Key="drop/part-1.csv", Body=(tmp_path / "part-1.csv").read_bytes())
        whole = (tmp_path / "part-2.parquet").read_bytes()
        s3.put_object(Bucket=bucket, Key="drop/part-2.parquet", Body=whole[:-20])
        spec = parse_spec(
            {
                "name": "s3-drop",
                "kind": "s3",
                "path": f"s3://{bucket}/drop/",
                "endpoint_url": endpoint,
                "timeout": "2s",
            }
        )
        report = check_source(ctx, spec)
        assert len(report.frame) == 75
        assert [q["location"] for q in report.quarantined] == [f"s3://{bucket}/drop/part-2.parquet"]
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert keys == ["drop/part-1.csv"]
        with pytest.raises(SourceMissing):
            check_source(ctx, spec.model_copy(update={"path": "s3://no-such-bucket-here/x/"}))
        proc.terminate()
        proc.wait(timeout=10)
        with pytest.raises(TransientSourceError, match="cannot be reached"):
            check_source(ctx, spec)
    assert _observations(ctx)[-1][0] == "unreachable"


def test_sql_sources(ctx: Context, tmp_path: Path) -> None:
    db = tmp_path / "upstream.db"
    with sqlite3.connect(db) as conn:
        iris_frame().to_sql("flowers", conn, index=False)
    spec = parse_spec(
        {"name": "sql-iris", "kind": "sql", "url": f"sqlite:///{db}", "query": "SELECT * FROM flowers"}
    )
    assert len(check_source(ctx, spec).frame) == 150
    with pytest.raises(SourceMissing, match="no such table"):
        check_source(ctx, spec.model_copy(update={"query": "SELECT * FROM weeds"}))
    refused = spec.model_copy(update={"url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"})
    with pytest.raises(TransientSourceError, match="cannot be reached"):
        check_source(ctx, refused)
