"""Quarantine end to end: bad rows set aside whole, released into a new dataset version once they pass the
checks again (through the service, the CLI and HTTP), or dropped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from mloncall.access import service as access
from mloncall.api.app import create_app
from mloncall.cli import main
from mloncall.core.errors import CheckFailed, Conflict
from mloncall.core.outcome import Outcome
from mloncall.data import service as data_service
from mloncall.data.iris import iris_frame
from mloncall.data.validation import infer_schema
from mloncall.pipelines import quarantine
from mloncall.pipelines.checks import validate_frame
from mloncall.stores.context import Context


@pytest.fixture
def drop(ctx: Context) -> tuple[pd.DataFrame, dict[str, object]]:
    """Iris as a CSV delivers it (text cells) with five bad rows, its schema, and `iris:1` registered."""
    clean = iris_frame()
    schema = {**infer_schema(clean, target="species"), "range_margin": 0.0}
    data_service.register(
        db=ctx.db, store=ctx.store, name="iris", df=clean, schema=schema, source="test", created_by="test"
    )
    frame = clean.astype(str)
    frame.loc[3, "sepal_length"] = "abc"  # text: refused for good
    frame.loc[10, "petal_width"] = "9.5"  # out of range
    frame.loc[20, "petal_length"] = "11"  # out of range
    frame.loc[30, "species"] = "daisy"  # unknown class: refused for good
    frame.loc[40, "sepal_width"] = None  # empty
    return frame, schema


def _set_aside(ctx: Context, frame: pd.DataFrame, schema: dict[str, object]) -> quarantine.QuarantineBatch:
    result = validate_frame(frame, schema)
    return quarantine.quarantine_rows(
        ctx, pipeline="iris-ingest", run_id="run-1", source_file="drop/iris.csv", frame=frame,
        result=result, schema=schema, dataset="iris",
    )  # fmt: skip


def test_bad_rows_are_kept_whole_with_their_failures(
    ctx: Context, drop: tuple[pd.DataFrame, dict[str, object]]
) -> None:
    frame, schema = drop
    batch = _set_aside(ctx, frame, schema)
    assert (batch.rows, batch.cells, batch.source_rows, batch.state) == (5, 5, 150, "held")
    with ctx.db.session() as session:
        row = quarantine.get_batch(session=session, batch_id=batch.id or 0)
        rows, cells = quarantine.read_rows(ctx, row), quarantine.read_failures(ctx, row)
    assert rows["_row"].tolist() == [3, 10, 20, 30, 40]
    assert rows.loc[0, "sepal_length"] == "abc" and set(rows["_source_file"]) == {"drop/iris.csv"}
    assert list(rows.loc[1, "_failed"]) == ["in_range(petal_width)"]
    listed = cells[["row", "column", "check", "value"]].astype(object)
    assert listed.where(listed.notna(), None).values.tolist() == [
        [3, "sepal_length", "number", "abc"],
        [10, "petal_width", "in_range", "9.5"],
        [20, "petal_length", "in_range", "11"],
        [30, "species", "known_class", "daisy"],
        [40, "sepal_width", "not_nullable", None],
    ]
    assert ctx.store.list("quarantine/rows/iris-ingest") == sorted([batch.rows_key, batch.failures_key])  # type: ignore[type-var]


def test_the_share_set_aside_is_a_check_with_a_threshold(
    drop: tuple[pd.DataFrame, dict[str, object]],
) -> None:
    frame, schema = drop
    result = validate_frame(frame, schema)
    assert quarantine.share_check(result, max_share=0.01).outcome is Outcome.FAILED
    assert quarantine.share_check(result, max_share=0.05).outcome is Outcome.SUCCESSFUL
    with pytest.raises(CheckFailed, match=r"5 of 150 rows \(3\.3%\) failed their checks: above 1\.0%"):
        quarantine.require_share(result, max_share=0.01)
    good = validate_frame(iris_frame(), schema)
    assert (
        quarantine.quarantine_rows(
            Context.__new__(Context),
            pipeline="p",
            run_id="r",
            source_file="f",
            frame=iris_frame(),
            result=good,
        ).id
        is None
    )  # nothing to set aside: no file, no row


def test_release_revalidates_appends_what_passes_and_keeps_what_does_not(
    ctx: Context, drop: tuple[pd.DataFrame, dict[str, object]]
) -> None:
    frame, schema = drop
    batch = _set_aside(ctx, frame, schema)
    with pytest.raises(CheckFailed, match="none of the 5 rows of quarantine batch 1 pass"):
        quarantine.release(ctx, batch_id=1)
    relaxed = {**schema, "range_margin": 5.0}
    done = quarantine.release(ctx, batch_id=1, schema=relaxed)
    assert (done.released, done.refused, done.dataset_version) == (2, 3, "iris:2")
    with ctx.db.session() as session:
        v2 = data_service.resolve(session=session, ref="iris:2")
        v1 = data_service.resolve(session=session, ref="iris:1")
        assert v2.row_count == 152 and v2.parents == [v1.id]
        assert "quarantine batch 1: 2 rows released onto iris:1" in v2.source
        row = quarantine.get_batch(session=session, batch_id=1)
        assert (row.state, row.rows, row.released_rows) == ("held", 3, 2)
        kept = quarantine.read_rows(ctx, row)
        assert [e.to_state for e in row.events] == ["held", "held"]
    assert kept["_row"].tolist() == [3, 30, 40]  # still named by their place in the source file
    assert not ctx.store.exists(batch.rows_key or "")  # the old files went with the move
    tail = data_service.read(store=ctx.store, dataset_version=v2).iloc[-2:]
    assert tail["petal_width"].tolist() == [9.5, float(iris_frame().loc[20, "petal_width"])]
    with pytest.raises(CheckFailed, match="none of the 3 rows"):
        quarantine.release(ctx, batch_id=1, schema=relaxed)
    dropped = quarantine.drop(ctx, batch_id=1, reason="bad sensor")
    assert dropped.state == "dropped" and ctx.store.list("quarantine/rows") == []
    with pytest.raises(Conflict, match="quarantine batch 1 is dropped: it cannot become released"):
        quarantine.release(ctx, batch_id=1, schema=relaxed)


def test_the_commands(
    ctx: Context,
    drop: tuple[pd.DataFrame, dict[str, object]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    frame, schema = drop
    _set_aside(ctx, frame, schema)
    monkeypatch.setenv("MLONCALL_HOME", str(ctx.settings.home))

    def cli(*argv: str) -> tuple[int, str, str]:
        code = main.run(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, _ = cli("quarantine", "list", "--json")
    assert code == 0 and [(b["id"], b["rows"], b["state"]) for b in json.loads(out)] == [(1, 5, "held")]
    code, out, _ = cli("quarantine", "list")
    assert code == 0 and "iris-ingest" in out and "held" in out
    shown = json.loads(cli("quarantine", "show", "1", "--json")[1])
    assert shown["failures"][0] == {
        "row": 3, "column": "sepal_length", "check": "number", "value": "abc", "source_file": "drop/iris.csv",
    }  # fmt: skip
    code, _, err = cli("quarantine", "release", "1", "--yes")
    assert code == 1 and "none of the 5 rows" in err
    checks = tmp_path / "checks.yaml"
    checks.write_text(yaml.safe_dump({**schema, "range_margin": 5.0}))
    code, out, err = cli("quarantine", "release", "1", "--checks", str(checks), "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["dataset_version"] == "iris:2"
    assert cli("quarantine", "show", "99")[0] == 3
    code, out, _ = cli("quarantine", "drop", "1", "--yes", "--reason", "bad sensor")
    assert code == 0 and "dropped quarantine batch 1 (3 rows)" in out
    records = json.loads(cli("audit", "--json", "--action", "quarantine")[1])
    assert {(r["action"], r["outcome"]) for r in records} >= {
        ("quarantine.release", "success"), ("quarantine.release", "error:check_failed"), ("quarantine.drop", "success"),
    }  # fmt: skip


@pytest.fixture
def http(ctx: Context) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    tokens = {}
    with ctx.db.session() as session:
        for role in ("viewer", "engineer"):
            access.create_principal(session=session, name=f"{role}-1", role=role)
            _, secret = access.create_token(session=session, principal_name=f"{role}-1")
            tokens[role] = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield client, tokens


def test_the_routes(
    ctx: Context,
    drop: tuple[pd.DataFrame, dict[str, object]],
    http: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    frame, schema = drop
    _set_aside(ctx, frame, schema)
    client, tokens = http
    listed = client.get("/api/v1/quarantine", headers=tokens["viewer"])
    assert listed.status_code == 200 and listed.json()[0]["rows"] == 5
    shown = client.get("/api/v1/quarantine/1?cells=2", headers=tokens["viewer"]).json()
    assert [f["check"] for f in shown["failures"]] == ["number", "in_range"]
    assert client.post("/api/v1/quarantine/1/release", json={}, headers=tokens["viewer"]).status_code == 403
    assert client.post("/api/v1/quarantine/1/release", json={}, headers=tokens["engineer"]).status_code == 422
    body = {"checks": {**schema, "range_margin": 5.0}}
    done = client.post("/api/v1/quarantine/1/release", json=body, headers=tokens["engineer"])
    assert done.status_code == 200 and done.json()["released"] == 2
    assert (
        client.post("/api/v1/quarantine/1/drop", json={"reason": 3}, headers=tokens["engineer"]).status_code
        == 400
    )
    assert (
        client.post("/api/v1/quarantine/1/drop", json={}, headers=tokens["engineer"]).json()["state"]
        == "dropped"
    )
    assert client.get("/api/v1/quarantine/9", headers=tokens["viewer"]).status_code == 404
    assert np.isclose(listed.json()[0]["share"], 5 / 150)
