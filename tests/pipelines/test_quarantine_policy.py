"""The validate stage's bad-row policy end to end through `mloncall pipeline run` on Dagster: with
`on_bad_rows: quarantine` the bad rows are set aside (one batch per source file, each row numbered in its
file) and the run loads the rest; above `max_quarantined_share` the run fails with nothing set aside. The
rows set aside are then listed, shown and released with `mloncall quarantine`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from mloncall.cli.main import run as cli
from mloncall.data import service as data_service
from mloncall.pipelines import spec, stages
from mloncall.stores.context import Context
from tests.pipelines.conftest import PIPELINE, batch, declaration, drop, latest, redeclare, stage_of


@pytest.fixture
def home(pctx: Context, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("MLONCALL_HOME", str(pctx.settings.home))
    monkeypatch.setenv("COLUMNS", "80")
    data = declaration(pctx)
    stage_of(data, "validate").update(on_bad_rows="quarantine", max_quarantined_share=0.05)
    data["schema"]["features"][0]["max"] = (
        7.5  # sepal_length: tighter than the data, so a release can widen it
    )
    redeclare(pctx, data)
    return pctx


def _json(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> Any:
    capsys.readouterr()
    assert cli([*args, "--json"]) == code
    return json.loads(capsys.readouterr().out)


def test_bad_rows_are_set_aside_the_run_loads_the_rest_and_a_release_adds_them(
    home: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    drop(home, _clean(30, 1), "batch-1.csv")
    bad = _clean(30, 2)
    bad.loc[7, "sepal_length"] = 7.9  # above the declared 7.5
    drop(home, bad, "batch-2.csv")

    assert cli(["pipeline", "run", PIPELINE]) == 0
    out = capsys.readouterr().out
    assert "succeeded" in out and all(len(line) <= 80 for line in out.splitlines())
    run = latest(home)
    validate = run.stages[1]
    assert (validate.rows_in, validate.rows_out) == (60, 59)
    assert validate.details["quarantine_share"]["outcome"] == "successful"
    with home.db.session() as s:
        assert data_service.resolve(session=s, ref="iris").row_count == 59

    listed = _json(capsys, "quarantine", "list", "--pipeline", PIPELINE)
    assert [(b["rows"], b["source_rows"], b["run_id"]) for b in listed] == [(1, 30, "1")]
    assert listed[0]["source_file"].endswith("batch-2.csv") and listed[0]["dataset"] == "iris"
    shown = _json(capsys, "quarantine", "show", str(listed[0]["id"]))
    assert [(f["row"], f["column"], f["check"], f["value"]) for f in shown["failures"]] == [
        (7, "sepal_length", "in_range", "7.9")
    ]

    # the checks they failed still refuse them; widened checks let them in as the next version
    assert cli(["quarantine", "release", str(listed[0]["id"]), "--yes"]) != 0
    wider = home.settings.home / "wider.yaml"
    schema = stages.row_schema(spec.get(home.settings, PIPELINE))
    schema["features"][0]["max"] = 10.0
    wider.write_text(yaml.safe_dump(schema))
    released = _json(capsys, "quarantine", "release", str(listed[0]["id"]), "--checks", str(wider), "--yes")
    assert (released["released"], released["refused"], released["dataset_version"]) == (1, 0, "iris:2")
    with home.db.session() as s:
        assert data_service.resolve(session=s, ref="iris").row_count == 60


def test_too_large_a_share_of_bad_rows_fails_the_run_and_sets_nothing_aside(
    home: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _clean(30, 3)
    bad.loc[[1, 2, 3], "sepal_length"] = 7.9  # 10% > 5%
    drop(home, bad)
    assert cli(["pipeline", "run", PIPELINE]) == 1
    out = capsys.readouterr().out
    assert "check_failure" in out and "quarantine-share" in out
    run = latest(home)
    assert (run.failed_stage, run.failure_class) == ("validate", "check_failure")
    assert [f["row"] for f in run.stages[1].details["failures"]] == [2, 3, 4]
    assert _json(capsys, "quarantine", "list") == []


def _clean(n: int, seed: int) -> Any:
    frame = batch(n, seed=seed)
    frame["sepal_length"] = frame["sepal_length"].clip(upper=7.4)
    return frame
