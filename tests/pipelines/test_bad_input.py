"""The issue's bad input, each through a real Dagster run: what fails, in which class, with which fix; and
that nothing half-done is ever visible as a dataset version."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mloncall.cli.main import run as cli
from mloncall.data import service as data_service
from mloncall.pipelines import service
from mloncall.pipelines.failures import fix_for
from mloncall.pipelines.schemas import RunRead
from mloncall.stores.artifacts import staged
from mloncall.stores.context import Context
from tests.pipelines.conftest import (
    PIPELINE,
    batch,
    declaration,
    drop,
    latest,
    redeclare,
    source_dir,
    stage_of,
)


def _run(ctx: Context) -> RunRead:
    return service.run_read(ctx, service.run(ctx, PIPELINE, actor="cron"))


def _no_dataset(ctx: Context) -> bool:
    with ctx.db.session() as s:
        return all(d.name != "iris" for d in data_service.list_datasets(session=s))


def test_missing_file_is_a_missing_source_and_the_cli_says_the_fix(
    pctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLONCALL_HOME", str(pctx.settings.home))
    assert cli(["pipeline", "run", PIPELINE]) == 1
    out = capsys.readouterr().out
    assert "missing_source" in out and "no file matches" in out and "fix to try" in out
    run = service.run_read(pctx, 1)
    assert [s.state for s in run.stages] == ["failed", "skipped", "skipped", "skipped"]
    assert run.stages[0].attempts == 1  # deterministic: not retried
    assert _no_dataset(pctx)


def test_empty_file_and_truncated_parquet_are_unreadable_sources(pctx: Context) -> None:
    empty = source_dir(pctx) / "batch-1.csv"
    empty.write_text("")
    run = _run(pctx)
    assert (run.failed_stage, run.failure_class) == ("extract", "unreadable_source")
    assert "is empty" in run.error
    empty.unlink()
    data = declaration(pctx)
    stage_of(data, "extract")["source"] = {"files": "sources/iris/*.parquet"}
    redeclare(pctx, data)
    buffer = io.BytesIO()
    batch(40).to_parquet(buffer, index=False)
    (source_dir(pctx) / "batch-1.parquet").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    run = _run(pctx)
    assert (run.failed_stage, run.failure_class) == ("extract", "unreadable_source")
    assert "truncated" in run.error and _no_dataset(pctx)


def test_renamed_column_and_changed_type_are_schema_mismatches_named_in_the_error(pctx: Context) -> None:
    drop(pctx, batch().rename(columns={"sepal_width": "sepal_wdth"}))
    run = _run(pctx)
    assert (run.failed_stage, run.failure_class) == ("validate", "schema_mismatch")
    assert run.stages[1].details["renamed"] == {"sepal_wdth": "sepal_width"}
    assert "'sepal_width' is missing and 'sepal_wdth' is new" in run.error
    frame = batch()
    frame["petal_length"] = ["long"] * len(frame)
    drop(pctx, frame)
    run = _run(pctx)
    assert run.failure_class == "schema_mismatch" and "'petal_length' changed type" in run.error
    assert _no_dataset(pctx)


def test_out_of_range_values_are_a_check_failure_with_each_cell(pctx: Context) -> None:
    frame = batch()
    frame.loc[4, "sepal_length"] = 42.0
    drop(pctx, frame)
    run = _run(pctx)
    assert (run.failed_stage, run.failure_class) == ("validate", "check_failure")
    failures = run.stages[1].details["failures"]
    assert [(f["row"], f["column"]) for f in failures] == [(5, "sepal_length")]


def test_transform_raising_on_some_rows_names_the_offending_rows(pctx: Context) -> None:
    frame = batch()
    frame.loc[[2, 9], "species"] = "tulip"
    drop(pctx, frame)
    run = _run(pctx)
    assert (run.failed_stage, run.failure_class) == ("transform", "transformation_error")
    rows = run.stages[2].details["rows"]
    assert [r["row"] for r in rows] == [3, 10] and rows[0]["values"]["species"] == "tulip"
    assert "'tulip'" in run.error and _no_dataset(pctx)


def test_upstream_changed_between_failure_and_rerun_is_refused_and_names_the_file(
    pctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = batch()
    frame.loc[0, "species"] = "tulip"
    path = drop(pctx, frame)
    assert _run(pctx).failed_stage == "transform"
    frame.loc[0, "species"] = "setosa"  # the upstream "fixes" its file in place
    drop(pctx, frame)
    monkeypatch.setenv("MLONCALL_HOME", str(pctx.settings.home))
    assert cli(["pipeline", "rerun", PIPELINE, "--from-failed"]) == 4
    err = capsys.readouterr().err
    assert str(path) in err.replace("\n", "") and "mloncall pipeline run iris-ingest" in err
    assert _no_dataset(pctx)
    assert _run(pctx).state == "succeeded"  # the full run it offers


def test_rerun_and_second_run_never_duplicate_a_version(pctx: Context) -> None:
    frame = batch()
    frame.loc[0, "species"] = "tulip"
    drop(pctx, frame)
    failed = _run(pctx)
    data = declaration(pctx)
    stage_of(data, "transform")["steps"][0]["aliases"]["tulip"] = "setosa"
    redeclare(pctx, data)
    first = service.run_read(pctx, service.rerun_from_failed(pctx, PIPELINE, actor="dana"))
    assert first.state == "succeeded" and [s.state for s in first.stages][:2] == ["reused", "reused"]
    again = _run(pctx)
    assert again.dataset_version_id == first.dataset_version_id
    with pctx.db.session() as s:
        assert len(data_service.get_dataset_or_raise(session=s, name="iris").versions) == 1
    with pytest.raises(Exception, match="only a failed or interrupted run"):
        service.rerun_from_failed(pctx, PIPELINE, actor="dana")
    assert failed.id < first.id < again.id


def test_kept_output_altered_after_failure_refuses_the_rerun(pctx: Context) -> None:
    frame = batch()
    frame.loc[0, "species"] = "tulip"
    drop(pctx, frame)
    failed = _run(pctx)
    key = failed.stages[1].output_hash and f"pipelines/{PIPELINE}/runs/{failed.id}/validate.parquet"
    pctx.store.put_bytes(str(key), b"not the validated rows")
    with pytest.raises(Exception, match="kept output of stage validate"):
        service.rerun_from_failed(pctx, PIPELINE, actor="dana")


def test_schema_mismatch_shows_the_diff_against_the_last_good_run(pctx: Context) -> None:
    drop(pctx, batch(40, seed=4))
    good = _run(pctx)
    assert good.state == "succeeded"
    drop(pctx, batch(40, seed=5).rename(columns={"petal_length": "len_petal"}))
    run = _run(pctx)
    diff = run.stages[1].details["schema_diff"]
    assert diff["against_run"] == good.id
    assert [(r["old"], r["new"]) for r in diff["renamed"]] == [("petal_length", "len_petal")]
    assert "against the last good run" in run.error


def test_destination_that_cannot_be_written_is_a_load_failure_rerun_from_the_load_stage(
    pctx: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    drop(pctx, batch(30))
    # where the new version's snapshot is written first, a file stands in the way of its folder
    blocker = Path(pctx.store.base) / staged("datasets/iris")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    monkeypatch.setenv("MLONCALL_HOME", str(pctx.settings.home))
    assert cli(["pipeline", "run", PIPELINE]) == 1
    out = capsys.readouterr().out
    assert "load_failure" in out and "could not write" in out and "fix to try" in out
    failed = latest(pctx)
    assert (failed.failed_stage, failed.failure_class) == ("load", "load_failure")
    assert [s.state for s in failed.stages] == ["succeeded", "succeeded", "succeeded", "failed"]
    assert failed.fix == fix_for("load_failure", pipeline=PIPELINE, stage="load")
    assert f"mloncall pipeline rerun {PIPELINE} --from-failed" in failed.fix
    assert failed.stages[3].details["fix"] == failed.fix and "could not write" in failed.stages[3].error
    assert _no_dataset(pctx) and not pctx.store.list("datasets")

    blocker.unlink()  # the store is writable again
    assert cli(["pipeline", "rerun", PIPELINE, "--from-failed", "--json"]) == 0
    rerun = json.loads(capsys.readouterr().out)
    assert (rerun["parent_id"], rerun["from_stage"], rerun["state"]) == (failed.id, "load", "succeeded")
    assert [s["state"] for s in rerun["stages"]] == ["reused", "reused", "reused", "succeeded"]
    with pctx.db.session() as s:
        (version,) = data_service.get_dataset_or_raise(session=s, name="iris").versions
        assert (version.id, version.row_count) == (rerun["dataset_version_id"], 30)
