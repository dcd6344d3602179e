"""`mloncall pipeline ...` end to end in-process: list, show, add (a bad declaration is refused with its
place), run, status with its consumers, logs, and a re-run that must say --from-failed."""

from __future__ import annotations

import json

import pytest

from mloncall.cli.main import run as cli
from mloncall.stores.context import Context
from tests.pipelines.conftest import PIPELINE, batch, drop


@pytest.fixture
def home(pctx: Context, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("MLONCALL_HOME", str(pctx.settings.home))
    monkeypatch.setenv("COLUMNS", "80")
    return pctx


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    capsys.readouterr()
    assert cli([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_list_show_add_run_status_and_logs(home: Context, capsys: pytest.CaptureFixture[str]) -> None:
    listed = _json(capsys, "pipeline", "list")
    assert [p["name"] for p in listed] == [PIPELINE] and listed[0]["latest_run"] is None  # type: ignore[index]
    shown = _json(capsys, "pipeline", "show", PIPELINE)
    assert [s["kind"] for s in shown["stages"]] == ["extract", "validate", "transform", "load"]  # type: ignore[index]

    bad = home.settings.home / "bad.yaml"
    bad.write_text(
        "name: broken\ndataset: iris\nschema: {features: [{name: x}]}\nstages: [{name: load, kind: load}]\n"
    )
    assert cli(["pipeline", "add", str(bad)]) == 2
    assert "stages" in capsys.readouterr().err

    assert cli(["pipeline", "rerun", PIPELINE]) == 2
    assert "--from-failed" in capsys.readouterr().err

    drop(home, batch(30))
    assert cli(["pipeline", "run", PIPELINE]) == 0
    out = capsys.readouterr().out
    assert "succeeded" in out and all(len(line) <= 80 for line in out.splitlines())
    status = _json(capsys, "pipeline", "status", PIPELINE)
    assert status["newest_version"] == "iris:1" and status["health"]["blocked"] is False  # type: ignore[index]
    logs = _json(capsys, "pipeline", "logs", "1", "--stage", "extract")
    assert "rows, sha256" in logs[0]["log"]  # type: ignore[index]
    assert cli(["pipeline", "logs", "1", "--stage", "nope"]) == 2
    assert cli(["pipeline", "logs", "99"]) == 3
