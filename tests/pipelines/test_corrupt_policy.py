"""A corrupted source file under `on_corrupt: quarantine`, through `mloncall pipeline run` on Dagster: it is
moved out of the source into the quarantine area with its reason and the run goes on with the other files;
the next run no longer sees it; with no readable file left the run fails as an unreadable source."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mloncall.access import service as access
from mloncall.api.app import create_app
from mloncall.cli.main import run as cli
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


@pytest.fixture
def home(pctx: Context, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("MLONCALL_HOME", str(pctx.settings.home))
    monkeypatch.setenv("COLUMNS", "80")
    data = declaration(pctx)
    stage_of(data, "extract")["source"]["on_corrupt"] = "quarantine"
    redeclare(pctx, data)
    return pctx


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    assert cli([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_corrupted_file_is_moved_aside_with_its_reason_and_the_run_goes_on(
    home: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    drop(home, batch(30), "batch-1.csv")
    empty = source_dir(home) / "batch-2.csv"
    empty.write_text("")
    assert cli(["pipeline", "run", PIPELINE]) == 0
    run = latest(home)
    extract = run.stages[0]
    assert run.state == "succeeded" and extract.rows_out == 30
    assert list(extract.inputs) == [str(source_dir(home) / "batch-1.csv")]
    assert not empty.exists()  # moved out of the source
    (moved,) = extract.details["quarantined_files"]
    assert moved["location"] == str(empty) and "is empty" in moved["reason"]

    files = _json(capsys, "quarantine", "files", "--pipeline", PIPELINE)
    assert [(f["location"], f["run_id"]) for f in files] == [(str(empty), str(run.id))]
    assert "is empty" in files[0]["reason"] and home.store.get_bytes(files[0]["key"]) == b""
    capsys.readouterr()
    assert cli(["quarantine", "files"]) == 0
    table = capsys.readouterr().out  # the reason wraps in 80 columns: its words, not its line, are there
    assert table.startswith("quarantined files") and "empty" in table and str(run.id) in table
    with home.db.session() as session:
        access.create_principal(session=session, name="vic", role="viewer")
        _, secret = access.create_token(session=session, principal_name="vic")
    with TestClient(create_app(home), raise_server_exceptions=False) as client:
        got = client.get("/api/v1/quarantine/files", headers={"Authorization": f"Bearer {secret}"})
        assert got.status_code == 200 and [f["id"] for f in got.json()] == [files[0]["id"]]
        assert client.get("/api/v1/quarantine/files").status_code == 401

    # the next run sees it gone: same inputs, nothing new set aside
    assert cli(["pipeline", "run", PIPELINE]) == 0
    again = latest(home)
    assert again.id != run.id and "quarantined_files" not in again.stages[0].details
    assert len(_json(capsys, "quarantine", "files")) == 1


def test_with_no_readable_file_left_the_run_fails_as_an_unreadable_source(
    home: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    (source_dir(home) / "batch-1.csv").write_text("")
    assert cli(["pipeline", "run", PIPELINE]) == 1
    run = latest(home)
    assert (run.failed_stage, run.failure_class) == ("extract", "unreadable_source")
    assert "no readable file is left" in run.error and "1 moved aside" in run.error
    assert len(_json(capsys, "quarantine", "files")) == 1
