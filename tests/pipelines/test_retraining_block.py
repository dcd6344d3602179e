"""The retraining runbook (`mloncall runbook run retraining MODEL`, through the engine) refuses to start while
the pipeline feeding the production version's dataset is failed or stale, with the reason; its first step
stops the run before anything is retrained. Once the pipeline is repaired it goes past that step."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from mloncall.cli.main import run as cli
from mloncall.core import clock
from mloncall.pipelines import service
from mloncall.registry import service as registry
from mloncall.stores.context import Context
from tests.helpers import new_samples_csv
from tests.pipelines.conftest import MODEL, PIPELINE, batch, drop, source_dir, trained_on


def _retraining(capsys: pytest.CaptureFixture[str], data: Path) -> tuple[int, dict[str, Any]]:
    """The runbook at a terminal nobody answers: were the block missing, it would wait at the retrain step
    (exit 2) rather than retrain and deploy."""
    capsys.readouterr()
    code = cli(["runbook", "run", "retraining", MODEL, "-p", f"data={data}", "--json"])
    return code, json.loads(capsys.readouterr().out)


def _steps(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in record["steps"]}


def _versions(ctx: Context) -> list[int]:
    with ctx.db.session() as s:
        return [v.version for v in registry.get_model_or_raise(session=s, name=MODEL).versions]


def test_retraining_runbook_refuses_while_the_feeding_pipeline_is_failed_or_stale(
    pctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("MLONCALL_HOME", str(pctx.settings.home))
    first = drop(pctx, batch(30, seed=1))
    assert service.run_read(pctx, service.run(pctx, PIPELINE, actor="cron")).state == "succeeded"
    trained_on(pctx, "iris:1", alias="production")
    new_rows = new_samples_csv(tmp_path)

    # failed: the upstream's file is gone, the latest run failed at extract
    first.unlink()
    failed = service.run(pctx, PIPELINE, actor="cron")
    code, record = _retraining(capsys, new_rows)
    assert code == 1 and record["state"] == "stopped"
    validate = _steps(record)["validate"]
    assert validate["state"] == "failed"
    assert validate["reason"].startswith(f"retraining {MODEL} is blocked: pipeline {PIPELINE} run #{failed}")
    assert "failed at stage extract (missing_source)" in validate["reason"]
    assert "runbook run pipeline-failure --param pipeline=NAME" in validate["reason"]
    assert len(validate["evidence"]["details"]["blocked"]) == 1
    assert {s["name"]: s["state"] for s in record["steps"][1:]} == {
        "retrain": "pending", "evaluate": "pending", "version": "pending", "deploy": "pending",
        "monitor": "pending",
    }  # fmt: skip
    assert _versions(pctx) == [1]  # nothing retrained

    # stale: the run succeeds, but the newest data it saw is three days old against a 1d SLA
    late = drop(pctx, batch(30, seed=1))
    three_days_ago = (clock.now() - dt.timedelta(days=3)).timestamp()
    os.utime(late, (three_days_ago, three_days_ago))
    assert service.run_read(pctx, service.run(pctx, PIPELINE, actor="cron")).state == "succeeded"
    code, record = _retraining(capsys, new_rows)
    assert code == 1 and record["state"] == "stopped"
    reason = _steps(record)["validate"]["reason"]
    assert (
        f"retraining {MODEL} is blocked: pipeline {PIPELINE}: the newest source data its runs saw" in reason
    )
    assert "past its freshness SLA of 1d" in reason
    assert _versions(pctx) == [1]

    # repaired: fresh data run through the pipeline; the new rows validate and the retrain step is next
    os.utime(late, None)
    assert service.run_read(pctx, service.run(pctx, PIPELINE, actor="cron")).state == "succeeded"
    assert len(list(source_dir(pctx).glob("*.csv"))) == 1
    code, record = _retraining(capsys, new_rows)
    assert code == 2 and record["state"] == "waiting", record["reason"]
    steps = _steps(record)
    assert steps["validate"]["state"] == "successful", steps["validate"]["reason"]
    assert steps["retrain"]["state"] == "waiting" and _versions(pctx) == [1]
