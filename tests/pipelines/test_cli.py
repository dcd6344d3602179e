"""`mloncall pipeline ...` end to end in-process: list, show, add (a bad declaration is refused with its
place), run, status with its consumers (the models training on the dataset's versions, the monitors
comparing against the served one), logs, and a re-run that must say --from-failed."""

from __future__ import annotations

import json

import pytest

from mloncall.cli.main import run as cli
from mloncall.stores.context import Context
from tests.pipelines.conftest import MODEL, PIPELINE, batch, drop, source_dir, trained_on


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


def test_status_shows_which_model_versions_train_on_and_monitors_compare_against_which_version(
    home: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    status = _json(capsys, "pipeline", "status", PIPELINE)
    assert status["consumers"] == [] and status["newest_version"] is None  # type: ignore[index]
    assert cli(["pipeline", "status", PIPELINE]) == 0
    assert "no model trains on iris yet" in capsys.readouterr().out

    drop(home, batch(30, seed=1))
    assert cli(["pipeline", "run", PIPELINE]) == 0
    served = trained_on(home, "iris:1", alias="production")
    drop(home, batch(30, seed=2), "batch-2.csv")
    assert cli(["pipeline", "run", PIPELINE]) == 0
    candidate = trained_on(home, "iris:2")
    status = _json(capsys, "pipeline", "status", PIPELINE)
    assert status["newest_version"] == "iris:2"  # type: ignore[index]
    assert status["consumers"] == [  # type: ignore[index]
        {"model": MODEL, "version": candidate, "trains_on": "iris:2", "aliases": [], "monitored": False},
        {
            "model": MODEL,
            "version": served,
            "trains_on": "iris:1",
            "aliases": ["production"],
            "monitored": True,
        },
    ]
    assert status["blocked_models"] == []  # type: ignore[index]

    for path in source_dir(home).glob("*.csv"):
        path.unlink()  # the upstream stopped delivering: the next run fails, its consumers are blocked
    assert cli(["pipeline", "run", PIPELINE]) == 1
    status = _json(capsys, "pipeline", "status", PIPELINE)
    assert status["health"]["blocked"] is True and status["blocked_models"] == [MODEL]  # type: ignore[index]
    assert len(status["consumers"]) == 2  # type: ignore[index]
    assert cli(["pipeline", "status", PIPELINE]) == 0
    table = capsys.readouterr().out
    assert "downstream" in table and "blocked" in table and "production" in table and "iris:1" in table
