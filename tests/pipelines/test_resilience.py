"""A run killed with SIGKILL mid-stage, re-run afterwards from the stage it died in; and an S3 source whose
endpoint goes away (the moto server stopped): retried with backoff, then failed with a clear reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import pytest

from mloncall.data import service as data_service
from mloncall.pipelines import history, records, service
from mloncall.stores.context import Context
from tests.access.servers import moto_server
from tests.pipelines import slow
from tests.pipelines.conftest import PIPELINE, batch, declaration, drop, latest, redeclare, stage_of

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _stage_state(ctx: Context, stage: str) -> str | None:
    with ctx.db.session() as s:
        run = records.latest_run(session=s, pipeline=PIPELINE)
        return None if run is None else records.stage_of(run, stage).state


def test_kill_9_mid_stage_then_rerun_from_that_stage(pctx: Context) -> None:
    assert slow.wait_while_flagged  # registered here too: the re-run runs in this process
    flag = pctx.settings.home / "hold"
    flag.write_text("")
    data = declaration(pctx)
    stage_of(data, "transform")["steps"].append({"fn": "wait_while_flagged", "flag": str(flag)})
    redeclare(pctx, data)
    drop(pctx, batch(40))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), ROOT])}
    child = subprocess.Popen([sys.executable, "-m", "tests.pipelines.slow", str(pctx.settings.home)], env=env)
    try:
        deadline = time.monotonic() + 120
        while _stage_state(pctx, "transform") != "running":
            assert child.poll() is None and time.monotonic() < deadline, "the run never reached transform"
            time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    killed = latest(pctx)  # reading it finds the dead process: interrupted at transform
    assert killed.state == "interrupted" and killed.failed_stage == "transform"
    assert [s.state for s in killed.stages] == ["succeeded", "succeeded", "interrupted", "skipped"]
    with pctx.db.session() as s:
        assert all(d.name != "iris" for d in data_service.list_datasets(session=s))
    assert not pctx.store.list("datasets")  # no half-written snapshot anywhere

    flag.unlink()
    rerun = service.run_read(pctx, service.rerun_from_failed(pctx, PIPELINE, actor="dana"))
    assert rerun.state == "succeeded" and rerun.parent_id == killed.id and rerun.from_stage == "transform"
    assert [s.state for s in rerun.stages] == ["reused", "reused", "succeeded", "succeeded"]
    with pctx.db.session() as s:
        assert len(data_service.get_dataset_or_raise(session=s, name="iris").versions) == 1


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(key, value)
    with moto_server() as (endpoint, proc):
        monkeypatch.setenv("MLONCALL_S3_ENDPOINT_URL", endpoint)
        yield endpoint, proc


def test_s3_source_reads_then_an_unreachable_endpoint_is_retried_and_fails_clearly(
    pctx: Context, s3: tuple[str, subprocess.Popen[bytes]]
) -> None:
    endpoint, proc = s3
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="landing")
    client.put_object(
        Bucket="landing", Key="iris/2026-12-02.csv", Body=batch(30).to_csv(index=False).encode()
    )
    data = declaration(pctx)
    stage_of(data, "extract")["source"] = {"s3": "s3://landing/iris/"}
    data["retries"] = {"attempts": 3, "backoff": "50ms"}
    redeclare(pctx, data)
    ok = service.run_read(pctx, service.run(pctx, PIPELINE, actor="cron"))
    assert ok.state == "succeeded", ok.error
    assert list(ok.stages[0].inputs) == ["s3://landing/iris/2026-12-02.csv"]
    with pctx.db.session() as s:  # freshness is judged on S3 too: by the object's LastModified
        (seen,) = [o for o in history.recent(session=s, source=PIPELINE, limit=5) if o.detail["run"] == ok.id]
        written = client.head_object(Bucket="landing", Key="iris/2026-12-02.csv")["LastModified"]
        assert seen.newest_at is not None and abs((seen.newest_at - written).total_seconds()) < 1

    proc.terminate()
    proc.wait(timeout=10)
    failed = service.run_read(pctx, service.run(pctx, PIPELINE, actor="cron"))
    assert failed.state == "failed" and failed.failed_stage == "extract"
    assert failed.stages[0].attempts == 3  # transient: retried with backoff, then given up
    assert "cannot be reached" in failed.error and "after 3 attempts" in failed.error
    assert failed.stages[0].log.count("transient") == 3
