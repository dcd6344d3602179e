"""Datasets and training over HTTP, as a script or a dashboard would drive them."""

from __future__ import annotations

import io

import pandas as pd

from mloncall.data import iris as iris_data
from tests.api.conftest import Api


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def test_upload_dataset_train_and_retrain(api: Api) -> None:
    r = api.request(
        "POST",
        "/api/v1/datasets/flowers",
        role="operator",
        content=_csv(iris_data.iris_frame()),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["ref"] == "flowers:1" and r.json()["row_count"] == 150
    again = api.request(
        "POST",
        "/api/v1/datasets/flowers",
        role="operator",
        content=_csv(iris_data.iris_frame()),
        headers={"Content-Type": "text/csv"},
    )
    assert again.json()["ref"] == "flowers:1"  # identical content: the same version

    shown = api.request("GET", "/api/v1/datasets/flowers/versions/1", role="viewer").json()
    assert shown["schema"]["target"]["name"] == "species" and shown["profile"]["row_count"] == 150

    r = api.request(
        "POST", "/api/v1/models/flower-model/versions", role="operator", json={"dataset": "flowers:1"}
    )
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert v1["version"] == 1 and v1["metrics"]["accuracy"] > 0.9
    api.request("PUT", "/api/v1/models/flower-model/aliases/production", role="operator", json={"version": 1})

    buf = io.BytesIO()
    iris_data.iris_like_samples(60, seed=5).to_parquet(buf, index=False)
    r = api.request(
        "POST",
        "/api/v1/models/flower-model/retrain",
        role="operator",
        content=buf.getvalue(),
        headers={"Content-Type": "application/vnd.apache.parquet"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2 and r.json()["gate"]["verdict"] == "pass"

    actions = [(a["action"], a["outcome"]) for a in api.audit()]
    assert ("POST /api/v1/models/{name}/retrain", "success") in actions
    assert ("POST /api/v1/datasets/{name}", "success") in actions


def test_bad_uploads_are_4xx_with_the_cell_named(api: Api) -> None:
    bad = iris_data.iris_frame().astype({"petal_width": object})
    bad.loc[7, "petal_width"] = "wide"
    r = api.request(
        "POST", "/api/v1/datasets/d", role="operator", content=_csv(bad), headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "invalid_input" and "'wide' is not a number" in body["error"]
    assert any(d["column"] == "petal_width" and d["row"] == 8 for d in body["details"]), body["details"]
    r = api.request(
        "POST",
        "/api/v1/datasets/d",
        role="operator",
        content=b"{}",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
    r = api.request(
        "POST", "/api/v1/datasets/d", role="operator", content=b"", headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 400
    r = api.request(
        "POST",
        "/api/v1/datasets/d",
        role="viewer",
        content=_csv(iris_data.iris_frame()),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 403
    r = api.request("POST", "/api/v1/models/m/versions", role="operator", json={"algorithm": "xgboost"})
    assert r.status_code == 400 and "unknown algorithm" in r.json()["error"]
    r = api.request("POST", "/api/v1/models/m/versions", role="operator", json={"dataset": "nope:3"})
    assert r.status_code == 404
    r = api.request("POST", "/api/v1/models/m/versions", role="operator", json={"test_size": 2})
    assert r.status_code == 400
    r = api.request(
        "POST",
        "/api/v1/models/m/retrain",
        role="operator",
        content=_csv(iris_data.iris_frame()),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 404
    with api.ctx.db.session() as s:
        from mloncall.data import service

        assert list(service.list_datasets(session=s)) == []
