"""Runbook 6's batch half: a named pipeline's source is checked as a batch, beside the live checks: a late
source, a corrupted file (set aside with its reason) and a share of bad rows each fail the step, with why;
and the same through the runbook engine (`mloncall runbook run data-quality MODEL -p pipeline=NAME`), where
what the batch step found confirms the issue."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from mloncall.cli.main import run as cli
from mloncall.registry import service as registry
from mloncall.runbooks.batch import batch
from mloncall.runbooks.catalog import get_runbook
from mloncall.stores.context import Context
from mloncall.training import service as training
from tests.pipelines.conftest import MODEL, PIPELINE, drop, source_dir
from tests.pipelines.conftest import batch as rows


@dataclass
class Params:
    """The two things the batch step reads of its run: the installation and the parameters."""

    ctx: Context
    params: dict[str, Any] = field(default_factory=dict)


def _check(ctx: Context) -> Any:
    params = get_runbook("data-quality").parse_params({"pipeline": PIPELINE}, ["iris-classifier"])
    return batch(Params(ctx, params))  # type: ignore[arg-type]


def test_fresh_clean_source_passes_and_no_pipeline_means_live_checks_only(pctx: Context) -> None:
    drop(pctx, rows(40))
    found = _check(pctx)
    assert found.passed, found.reason
    params = get_runbook("data-quality").parse_params({}, ["iris-classifier"])
    assert "live checks only" in batch(Params(pctx, params)).reason  # type: ignore[arg-type]


def test_late_corrupted_and_out_of_range_batches_fail_with_the_reason(pctx: Context) -> None:
    path = drop(pctx, rows(40))
    old = time.time() - 3 * 86400
    os.utime(path, (old, old))
    late = _check(pctx)
    assert not late.passed and "late" in late.reason

    path.unlink()
    frame = rows(40)
    frame.loc[:5, "petal_length"] = 99.0
    drop(pctx, frame)
    (source_dir(pctx) / "batch-2.csv").write_bytes(b"")
    bad = _check(pctx)
    assert not bad.passed
    assert "batch-2.csv set aside" in bad.reason and "fail the schema's checks" in bad.reason
    assert bad.evidence["bad_share"] == 6 / 40


def _runbook(capsys: pytest.CaptureFixture[str], pipeline: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = cli(["runbook", "run", "data-quality", MODEL, "-p", f"pipeline={pipeline}", "-p", "settle=1s",
                "--yes", "--json"])  # fmt: skip
    return code, json.loads(capsys.readouterr().out)


def test_the_engine_runs_the_batch_step_of_the_pipeline_named_with_p(
    pctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLONCALL_HOME", str(pctx.settings.home))
    training.train(ctx=pctx, name=MODEL, created_by="dana")
    with pctx.db.session() as s:
        registry.set_alias(session=s, name=MODEL, alias="production", version=1, actor="dana")

    # a clean, fresh batch and no live traffic: the batch step passes, nothing confirms an issue
    clean = drop(pctx, rows(40))
    code, run = _runbook(capsys, PIPELINE)
    steps = {s["name"]: s for s in run["steps"]}
    assert code == 1 and run["params"]["pipeline"] == PIPELINE
    assert steps["batch"]["state"] == "successful"
    assert steps["batch"]["reason"] == f"batch source {PIPELINE}: fresh, readable, 0.0% bad rows"
    assert steps["batch"]["evidence"]["files"] == [str(clean)]
    assert (steps["confirm"]["state"], run["state"]) == ("failed", "stopped")
    assert steps["confirm"]["reason"].startswith("not confirmed")

    # out-of-range rows and an empty file beside them: the batch step fails, not stopping the run, and
    # what it found confirms the issue
    frame = rows(40)
    frame.loc[:5, "petal_length"] = 99.0
    drop(pctx, frame)
    empty = source_dir(pctx) / "batch-2.csv"
    empty.write_bytes(b"")
    code, run = _runbook(capsys, PIPELINE)
    steps = {s["name"]: s for s in run["steps"]}
    assert code == 1
    found = steps["batch"]
    assert found["state"] == "failed" and found["reason"].startswith(f"batch source {PIPELINE}: ")
    assert f"{empty} set aside: data file {empty} is empty" in found["reason"]
    assert "15.0% of its 40 rows fail the schema's checks (max 5%)" in found["reason"]
    assert found["evidence"]["bad_share"] == 6 / 40 and found["evidence"]["failures"]["bad_rows"] == 6
    (aside,) = found["evidence"]["quarantined"]
    assert aside["location"] == str(empty) and not empty.exists() and pctx.store.exists(aside["key"])
    assert steps["confirm"]["state"] == "successful"
    assert steps["confirm"]["reason"] == "confirmed in the batch source: " + "; ".join(
        found["evidence"]["problems"]
    )
    # the live traffic is clean: the run stops at the workaround, saying where the trouble is and what repairs it
    assert steps["workaround"]["state"] == "failed"
    assert "the problems are in the batch source" in steps["workaround"]["reason"]
    assert "mloncall runbook run pipeline-failure" in steps["workaround"]["reason"]

    # a pipeline nobody declared stops the run at its first step, naming the ones there are
    code, run = _runbook(capsys, "nope")
    assert code == 1 and run["state"] == "stopped"
    assert f"no pipeline 'nope': declared pipelines are {PIPELINE}" in run["steps"][0]["reason"]
    assert {s["state"] for s in run["steps"][1:]} == {"pending"}
