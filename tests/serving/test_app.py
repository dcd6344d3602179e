"""The inference app over HTTP (TestClient): OIP routes, /predict, feedback, metrics, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pyarrow.compute as pc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from mloncall.registry.models import ModelVersion
from mloncall.serving import service as routing
from mloncall.serving.app import InferenceApp, create_inference_app
from mloncall.stores.context import Context
from mloncall.stores.predlog import read_log
from tests.serving.conftest import FEATURES, ROW, alter_onnx, fast_config, register_iris

VALUES = [ROW[f] for f in FEATURES]
INFER = "/v2/models/iris/infer"


def oip(rows: list[list[float]] | None = None, **extra: Any) -> dict[str, Any]:
    rows = rows or [VALUES]
    flat = [v for r in rows for v in r]
    return {"inputs": [{"name": "input", "shape": [len(rows), 4], "datatype": "FP32", "data": flat}], **extra}


@pytest.fixture
def app(sctx: Context, iris_v1: ModelVersion) -> InferenceApp:
    return create_inference_app(sctx, config=fast_config(max_body_bytes=256 * 1024))


@pytest.fixture
def client(app: InferenceApp) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and body["error"]
    return str(body["error"])


def route_now(app: InferenceApp, ctx: Context, change: Any) -> None:
    """Change the routing in the database and apply it (what the poller does within a second)."""
    with ctx.db.session() as s:
        change(s)
    app.router.refresh()  # the poller may have applied it already


def metric_samples(client: TestClient) -> dict[str, list[Any]]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


# --- Open Inference Protocol ---------------------------------------------------------------------------


def test_server_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2").json()["name"] == "mloncall"
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"] and meta["features"] == FEATURES
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["routing"]["source"] == "production alias" and meta["routing"]["stable_version"] == 1
    assert client.get("/v2/models/iris/versions/1").json()["versions"] == ["1"]
    assert client.get("/v2/models/iris/ready").json()["ready"] is True
    assert client.get("/v2/models/iris/versions/1/ready").json()["ready"] is True


def test_infer_one_matrix_tensor(client: TestClient) -> None:
    rows = [VALUES, [6.7, 3.0, 5.2, 2.3]]
    response = client.post(INFER, json=oip(rows, id="req-1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "1", "req-1")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [2],
        "data": ["setosa", "virginica"],
    }
    probs = np.asarray(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert len(body["parameters"]["prediction_ids"].split(",")) == 2


def test_infer_one_tensor_per_feature_and_chosen_outputs(client: TestClient) -> None:
    inputs = [{"name": f, "shape": [1, 1], "datatype": "FP64", "data": [[ROW[f]]]} for f in FEATURES]
    body = client.post(INFER, json={"inputs": inputs, "outputs": [{"name": "label"}]}).json()
    assert [o["name"] for o in body["outputs"]] == ["label"] and body["outputs"][0]["data"] == ["setosa"]


def test_explicit_version_bypasses_routing(app: InferenceApp, client: TestClient, sctx: Context) -> None:
    register_iris(sctx, C=0.05)
    body = client.post("/v2/models/iris/versions/2/infer", json=oip()).json()
    assert body["model_version"] == "2"
    assert client.post(INFER, json=oip()).json()["model_version"] == "1"
    app.prediction_log.flush()
    table = read_log(sctx.store, "predictions", "iris")
    assert table is not None and sorted(table.column("route").to_pylist()) == ["explicit", "stable"]


@pytest.mark.parametrize(
    ("kwargs", "status", "match"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "malformed JSON"),
        ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "empty"),
        ({"content": b"[1, 2]"}, 400, "must be a JSON object"),
        (
            {"content": b"inputs=1", "headers": {"content-type": "application/x-www-form-urlencoded"}},
            415,
            "content type",
        ),
        ({"content": b"{}", "headers": {"content-type": "text/plain"}}, 415, "content type"),
        ({"content": b"{" + b" " * 270_000 + b"}"}, 413, "over the 262144-byte limit"),
        ({"content": iter([b"{", b" " * 140_000, b" " * 140_000, b"}"])}, 413, "over the 262144-byte limit"),
        ({"json": {"inputs": "x"}}, 400, "non-empty list"),
        ({"json": {}}, 400, "non-empty list"),
        ({"json": oip(id=5)}, 400, "'id' must be a string"),
        (
            {
                "json": {
                    "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": VALUES[:3]}]
                }
            },
            400,
            "should be",
        ),
        (
            {
                "json": {
                    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 4]}]
                }
            },
            400,
            "INT32",
        ),
        (
            {"json": {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": VALUES}]}},
            400,
            "needs 8",
        ),
        (
            {
                "json": {
                    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, "a", 2, 3]}]
                }
            },
            400,
            "row 0, feature 'sepal_width'",
        ),
        ({"json": oip(outputs=[{"name": "nope"}])}, 400, "unknown output"),
        ({"json": oip([VALUES] * 1001)}, 400, "more than the limit of 1000"),
        ({"content": b'{"inputs": [], "x": NaN}'}, 400, "malformed JSON"),
        ({"content": b"{}", "headers": {"inference-header-content-length": "99"}}, 400, "does not fit"),
    ],
)
def test_bad_infer_requests(client: TestClient, kwargs: dict[str, Any], status: int, match: str) -> None:
    assert match in error_of(client.post(INFER, **kwargs), status)


def test_unknown_models_versions_routes_and_methods(client: TestClient) -> None:
    assert "unknown model 'nope'" in error_of(client.post("/v2/models/nope/infer", json=oip()), 404)
    assert "no version 7" in error_of(client.post("/v2/models/iris/versions/7/infer", json=oip()), 404)
    assert "positive integers" in error_of(client.get("/v2/models/iris/versions/abc"), 404)
    error_of(client.get("/v2/models/nope"), 404)
    error_of(client.get("/v2/models/nope/ready"), 404)
    error_of(client.get("/v2/models/iris/versions/7/ready"), 404)
    error_of(client.get("/v2/elsewhere"), 404)
    error_of(client.get("/v2x"), 404)
    error_of(client.get("/nothing"), 404)
    response = client.get(INFER)
    assert "use POST" in error_of(response, 405) and response.headers["allow"] == "POST"


def test_model_without_production_is_not_ready(client: TestClient, sctx: Context, app: InferenceApp) -> None:
    register_iris(sctx, name="draft")
    app.router.refresh()
    assert "not served" in error_of(client.post("/v2/models/draft/infer", json=oip()), 503)
    assert client.post("/v2/models/draft/versions/1/infer", json=oip()).status_code == 200


# --- altered artifacts ---------------------------------------------------------------------------------


def test_altered_version_is_not_ready_and_never_served(
    app: InferenceApp, client: TestClient, sctx: Context
) -> None:
    v2 = register_iris(sctx, C=0.05)
    alter_onnx(sctx, v2)
    reason = error_of(client.get("/v2/models/iris/versions/2/ready"), 503)
    assert "altered" in reason and "model.onnx" in reason
    assert "altered" in error_of(client.post("/v2/models/iris/versions/2/infer", json=oip()), 503)
    route_now(
        app, sctx, lambda s: routing.set_canary(session=s, name="iris", version=2, weight=1.0, actor="t")
    )
    for _ in range(20):
        assert client.post(INFER, json=oip()).json()["model_version"] == "1"
    meta = client.get("/v2/models/iris").json()
    assert meta["routing"]["canary_version"] is None and "altered" in meta["routing"]["problems"][0]
    route_now(app, sctx, lambda s: routing.set_stable(session=s, name="iris", version=2, actor="t"))
    assert client.post(INFER, json=oip()).json()["model_version"] == "1"  # keeps serving what it had
    assert "still serving version 1" in client.get("/v2/models/iris").json()["routing"]["problems"][0]


def test_altered_stable_at_startup_makes_the_model_not_ready(sctx: Context, iris_v1: ModelVersion) -> None:
    alter_onnx(sctx, iris_v1)
    with TestClient(create_inference_app(sctx, config=fast_config())) as c:
        assert "altered" in error_of(c.post(INFER, json=oip()), 503)
        assert "altered" in error_of(c.get("/v2/models/iris/ready"), 503)
        assert "altered" in error_of(c.get("/v2/health/ready"), 503)
        assert c.get("/v2/health/live").status_code == 200


# --- /predict ------------------------------------------------------------------------------------------


def test_predict_for_humans(client: TestClient) -> None:
    response = client.post(
        "/predict", json={"instances": [ROW, {**ROW, "petal_length": 5.0, "petal_width": 1.8}]}
    )
    body = response.json()
    assert response.status_code == 200 and (body["model"], body["version"]) == ("iris", 1)
    first = body["predictions"][0]
    assert first["label"] == "setosa" and first["flags"] == [] and len(first["id"]) == 36
    assert set(first["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert client.post("/predict", json={"model": "iris", "instances": [ROW]}).status_code == 200


@pytest.mark.parametrize(
    ("payload", "status", "match"),
    [
        ({"model": "nope", "instances": [ROW]}, 404, "unknown model"),
        ({"model": 3, "instances": [ROW]}, 400, "'model' must be a string"),
        ({"rows": [ROW]}, 400, "no 'instances'"),
        ({"instances": [{**ROW, "petal_width": "wide"}]}, 400, "instances[0].petal_width: expected a number"),
        ({"instances": [ROW, {"sepal_length": 5.0}]}, 400, "instances[1]: missing feature 'sepal_width'"),
        ({"instances": [{**ROW, "extra": 1}]}, 400, "unknown feature 'extra'"),
        ({"instances": [ROW] * 1001}, 400, "limit of 1000"),
        ([ROW], 400, "must be a JSON object"),
    ],
)
def test_bad_predict_requests(client: TestClient, payload: Any, status: int, match: str) -> None:
    assert match in error_of(client.post("/predict", json=payload), status)


def test_out_of_range_flagged_or_rejected_by_policy(
    app: InferenceApp, client: TestClient, sctx: Context
) -> None:
    odd = {**ROW, "sepal_length": 12.0}
    body = client.post("/predict", json={"instances": [ROW, odd]}).json()
    assert [p["flags"] for p in body["predictions"]] == [[], ["out_of_range:sepal_length"]]
    oip_body = client.post(INFER, json=oip([VALUES, [12.0, 3.5, 1.4, 0.2]])).json()
    assert oip_body["parameters"]["flags"] == '[[],["out_of_range:sepal_length"]]'
    route_now(
        app,
        sctx,
        lambda s: routing.set_options(session=s, name="iris", actor="t", out_of_range_policy="reject"),
    )
    message = error_of(client.post("/predict", json={"instances": [ROW, odd]}), 400)
    assert (
        "instances[1], feature 'sepal_length': value 12 is outside the training range [4.3, 7.9]" in message
    )
    assert "row 1, feature 'sepal_length'" in error_of(
        client.post(INFER, json=oip([VALUES, [12.0, 3.5, 1.4, 0.2]])), 400
    )
    app.prediction_log.flush()
    table = read_log(sctx.store, "predictions", "iris")
    assert table is not None
    served = table.filter(pc.equal(table.column("status"), 200))
    assert served.column("flags").to_pylist() == [[], ["out_of_range:sepal_length"]] * 2
    refused = table.filter(pc.equal(table.column("status"), 400)).to_pylist()
    assert len(refused) == 2 and all("outside the training range" in r["error"] for r in refused)
    assert all(r["label"] is None and r["f_sepal_length"] is None and r["version"] == 1 for r in refused)
    samples = metric_samples(client)
    oor = {s.labels["feature"]: s.value for s in samples["mloncall_out_of_range_total"]}
    assert oor == {"sepal_length": 2.0}
    rejected = [
        s for s in samples["mloncall_validation_failures_total"] if s.labels["reason"] == "out_of_range"
    ]
    assert rejected[0].value == 2.0


# --- routing -------------------------------------------------------------------------------------------


def test_canary_weight_is_honoured_and_shadow_scored(
    app: InferenceApp, client: TestClient, sctx: Context, iris_v2: ModelVersion
) -> None:
    route_now(
        app, sctx, lambda s: routing.set_canary(session=s, name="iris", version=2, weight=0.3, actor="t")
    )
    n = 400
    versions = [client.post("/predict", json={"instances": [ROW]}).json()["version"] for _ in range(n)]
    share = versions.count(2) / n
    print(f"canary share {share:.3f} at weight 0.3 over {n} requests")
    assert 0.2 < share < 0.4  # sd 0.023: a 4-sigma band
    app.prediction_log.flush()
    table = read_log(sctx.store, "predictions", "iris")
    assert table is not None
    rows = table.to_pylist()
    canary = [r for r in rows if r["route"] == "canary"]
    stable = [r for r in rows if r["route"] == "stable"]
    assert len(canary) == versions.count(2) and all(r["version"] == 2 for r in canary)
    assert all(r["shadow_version"] == 1 and r["shadow_label"] == "setosa" for r in canary)
    assert all(r["shadow_version"] is None and r["shadow_label"] is None for r in stable)
    route_now(app, sctx, lambda s: routing.set_weight(session=s, name="iris", weight=0.0, actor="t"))
    assert {client.post(INFER, json=oip()).json()["model_version"] for _ in range(30)} == {"1"}
    weights = {s.labels["version"]: s.value for s in metric_samples(client)["mloncall_traffic_weight"]}
    assert weights == {"1": 1.0, "2": 0.0}


def test_sticky_key_keeps_a_caller_on_one_version(
    app: InferenceApp, client: TestClient, sctx: Context, iris_v2: ModelVersion
) -> None:
    def change(s: Any) -> None:
        routing.set_canary(session=s, name="iris", version=2, weight=0.5, actor="t")
        routing.set_options(session=s, name="iris", actor="t", sticky_key="X-User")

    route_now(app, sctx, change)
    seen: dict[str, set[str]] = {}
    for user in range(40):
        for _ in range(4):
            body = client.post(INFER, json=oip(), headers={"x-user": f"user-{user}"}).json()
            seen.setdefault(f"user-{user}", set()).add(body["model_version"])
        by_field = client.post("/predict", json={"instances": [ROW], "X-User": f"user-{user}"}).json()
        seen[f"user-{user}"].add(str(by_field["version"]))
    assert all(len(v) == 1 for v in seen.values())
    assert {next(iter(v)) for v in seen.values()} == {"1", "2"}


# --- feedback, metrics, log ----------------------------------------------------------------------------


def test_feedback_is_recorded(app: InferenceApp, client: TestClient, sctx: Context) -> None:
    ids = [p["id"] for p in client.post("/predict", json={"instances": [ROW, ROW]}).json()["predictions"]]
    response = client.post(
        "/v2/models/iris/feedback", json={"labels": [{"id": i, "label": "setosa"} for i in ids]}
    )
    assert response.json() == {"model": "iris", "recorded": 2}
    assert "unknown label 'rose'" in error_of(
        client.post("/v2/models/iris/feedback", json={"labels": [{"id": ids[0], "label": "rose"}]}), 400
    )
    error_of(client.post("/v2/models/iris/feedback", json={"labels": []}), 400)
    error_of(client.post("/v2/models/iris/feedback", json={"labels": [{"id": 1, "label": "setosa"}]}), 400)
    error_of(client.post("/v2/models/iris/feedback", content=b"nope"), 400)
    error_of(client.post("/v2/models/nope/feedback", json={"labels": [{"id": "a", "label": "setosa"}]}), 404)
    app.prediction_log.flush()
    table = read_log(sctx.store, "feedback", "iris")
    assert table is not None and table.column("prediction_id").to_pylist() == ids
    assert table.column("label").to_pylist() == ["setosa", "setosa"]


def test_metrics_parse_and_count(client: TestClient) -> None:
    for _ in range(3):
        client.post(INFER, json=oip())
    client.post(INFER, json={"inputs": "bad"})
    client.post(INFER, content=b"{", headers={"content-type": "application/json"})
    client.post("/v2/models/ghost/infer", json=oip())
    samples = metric_samples(client)
    requests = {
        (s.labels["version"], s.labels["route"], s.labels["status"]): s.value
        for s in samples["mloncall_requests_total"]
    }
    assert requests[("1", "stable", "200")] == 3 and requests[("1", "stable", "400")] == 1
    assert requests[("", "", "400")] == 1 and requests[("", "", "404")] == 1
    assert all(s.labels["model"] in ("iris", "(unknown)") for s in samples["mloncall_requests_total"])
    count = [s for s in samples["mloncall_request_latency_seconds_count"] if s.labels["route"] == "stable"]
    assert count[0].value == 3
    assert {s.labels["class"]: s.value for s in samples["mloncall_predictions_total"]} == {"setosa": 3.0}
    reasons = {s.labels["reason"] for s in samples["mloncall_validation_failures_total"]}
    assert reasons == {"wrong_shape", "malformed_json"}
    assert {s.labels["version"]: s.value for s in samples["mloncall_traffic_weight"]} == {"1": 1.0}


def test_every_served_prediction_is_logged_by_shutdown(sctx: Context, iris_v1: ModelVersion) -> None:
    app = create_inference_app(sctx, config=fast_config(log_flush_seconds=3600, log_flush_rows=10**9))
    served: list[str] = []
    with TestClient(app) as c:
        for i in range(50):
            body = c.post(INFER, json=oip([VALUES] * (1 + i % 3), id=f"r{i}")).json()
            served += body["parameters"]["prediction_ids"].split(",")
        assert app.prediction_log.pending_rows == len(served)
    table = read_log(sctx.store, "predictions", "iris")
    assert table is not None and sorted(table.column("id").to_pylist()) == sorted(served)
    names = set(table.column_names)
    assert {f"f_{f}" for f in FEATURES} | {
        "id",
        "ts",
        "model",
        "version",
        "route",
        "label",
        "probabilities",
    } <= names
    assert {"latency_ms", "flags", "shadow_version", "shadow_label", "request_id"} <= names
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    assert table.column("request_id").to_pylist()[0] == "r0"
    assert table.column("f_sepal_length").to_pylist()[0] == 5.1


# --- mounting beside the control plane -----------------------------------------------------------------


def test_fallback_app_gets_other_paths_and_its_lifespan(sctx: Context, iris_v1: ModelVersion) -> None:
    events: list[str] = []

    async def ping(request: Any) -> PlainTextResponse:
        return PlainTextResponse("pong")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        events.append("start")
        yield
        events.append("stop")

    api = Starlette(routes=[Route("/api/ping", ping)], lifespan=lifespan)
    with TestClient(create_inference_app(sctx, config=fast_config(), fallback=api)) as c:
        assert c.get("/api/ping").text == "pong"
        assert c.post(INFER, json=oip()).status_code == 200
        assert events == ["start"]
    assert events == ["start", "stop"]


def test_mounted_under_a_prefix(sctx: Context, iris_v1: ModelVersion) -> None:
    from contextlib import asynccontextmanager

    from starlette.routing import Mount

    inference = create_inference_app(sctx, config=fast_config())

    @asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        async with inference.lifespan():
            yield

    outer = Starlette(routes=[Mount("/serve", app=inference)], lifespan=lifespan)
    with TestClient(outer) as c:
        body = c.post("/serve/v2/models/iris/infer", json=oip()).json()
        assert body["outputs"][0]["data"] == ["setosa"]
        assert c.get("/serve/v2/health/ready").json() == {"ready": True}
    assert inference.prediction_log.rows_written == 1


def test_a_model_failure_is_a_logged_500(
    app: InferenceApp, client: TestClient, sctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    stable = app.router.routes["iris"].stable
    assert stable is not None

    def broken(outputs: Any, feed: Any, options: Any = None) -> Any:
        raise RuntimeError("onnx exploded")

    monkeypatch.setattr(stable, "_run", broken)
    assert error_of(client.post(INFER, json=oip()), 500) == "internal error"  # the text is the log's
    app.prediction_log.flush()
    table = read_log(sctx.store, "predictions", "iris")
    assert table is not None
    row = table.to_pylist()[0]
    assert (row["status"], row["version"], row["route"], row["label"]) == (500, 1, "stable", None)
    assert "onnx exploded" in row["error"]
    samples = metric_samples(client)["mloncall_requests_total"]
    assert [s.labels["status"] for s in samples] == ["500"]


def test_refused_requests_are_kept_in_the_rejections_log(
    app: InferenceApp, client: TestClient, sctx: Context
) -> None:
    """Runbook 6 needs to see bad client data: each refusal is logged with its reason and field."""
    missing = {k: v for k, v in ROW.items() if k != "petal_width"}
    assert client.post("/predict", json={"model": "iris", "instances": [missing]}).status_code == 400
    unknown = {**ROW, "colour": 1.0}
    assert client.post("/predict", json={"model": "iris", "instances": [unknown]}).status_code == 400
    assert client.post("/predict", json={"model": "iris", "instances": [ROW]}).status_code == 200
    app.prediction_log.flush()
    table = read_log(sctx.store, "rejections", "iris")
    assert table is not None
    rows = sorted(zip(table.column("reason").to_pylist(), table.column("field").to_pylist(), strict=True))
    assert rows == [("missing_feature", "petal_width"), ("unknown_feature", "colour")]


def test_metrics_count_log_files_the_monitors_skipped(
    app: InferenceApp, client: TestClient, sctx: Context
) -> None:
    """A truncated Parquet log is skipped by the monitors, reported, and counted on /metrics."""
    import datetime as dt

    from mloncall.monitoring.service import run_monitor

    assert client.post("/predict", json={"model": "iris", "instances": [ROW]}).status_code == 200
    app.prediction_log.flush()
    key = next(k for k in sctx.store.list("predictions/model=iris") if k.endswith(".parquet"))
    sctx.store.put_bytes(key.replace(".parquet", "-broken.parquet"), sctx.store.get_bytes(key)[:50])
    check = run_monitor(ctx=sctx, kind="error_rate", model="iris", window=dt.timedelta(hours=1), params={})
    assert check.evidence["skipped_files"], check.evidence
    text = client.get("/metrics").text
    skipped = [
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "mloncall_monitor_log_files_skipped_total"
    ]
    assert skipped and sum(skipped) >= 1


# --- ids past the database's integers ------------------------------------------------------------------


@pytest.mark.parametrize("version", [str(2**63), "99999999999999999999999", str(2**31)])
def test_a_version_too_large_is_404_never_500(client: TestClient, version: str) -> None:
    base = f"/v2/models/iris/versions/{version}"
    assert "no version" in error_of(client.get(f"{base}/ready"), 404)
    assert "no version" in error_of(client.get(base), 404)
    assert "no version" in error_of(client.post(f"{base}/infer", json=oip()), 404)


def test_anonymous_503s_carry_no_path_no_hash_and_no_stack_text(
    sctx: Context, iris_v1: ModelVersion, caplog: pytest.LogCaptureFixture
) -> None:
    onnx = next(f for f in iris_v1.files if f.name == "model.onnx")
    alter_onnx(sctx, iris_v1)
    leaks = [str(sctx.settings.home), sctx.store.root, onnx.key, onnx.sha256[:12], "Traceback", "sha256"]
    with TestClient(create_inference_app(sctx, config=fast_config())) as c:
        answers = [
            c.post("/predict", json={"instances": [ROW]}),
            c.post(INFER, json=oip()),
            c.get("/v2/health/ready"),
            c.get("/v2/models/iris/ready"),
            c.get("/v2/models/iris/versions/1/ready"),
        ]
    for response in answers:
        text = error_of(response, 503)
        assert "model.onnx is altered" in text, text
        assert not [leak for leak in leaks if leak in text], text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert onnx.sha256[:12] in logged  # the detail is the log's


# --- every refusal in the rejections log -----------------------------------------------------------------


def _rejections(app: InferenceApp, sctx: Context, model: str = "iris") -> list[tuple[str, str | None]]:
    app.prediction_log.flush()
    table = read_log(sctx.store, "rejections", model)
    assert table is not None
    return list(zip(table.column("reason").to_pylist(), table.column("field").to_pylist(), strict=True))


def test_every_refused_inference_request_is_in_the_rejections_log_with_its_field(
    app: InferenceApp, client: TestClient, sctx: Context
) -> None:
    json_type = {"Content-Type": "application/json"}
    refused = [
        client.post(INFER, content=b'{"inputs": [', headers=json_type),
        client.post(INFER, content=b"x" * (300 * 1024), headers=json_type),
        client.post(INFER, content=b"{}", headers={"Content-Type": "text/csv"}),
        client.post(INFER, json={"inputs": {"name": "input"}}),
        client.post(INFER, json=oip(rows=[VALUES] * 1001)),
        client.post(INFER, json=oip(rows=[[5.1, "x", 1.4, 0.2]])),
        client.post("/predict", json={"model": "iris", "instances": [{**ROW, "sepal_width": "wide"}]}),
        client.post("/predict", json={"model": "iris", "instances": "rows"}),
    ]
    assert [r.status_code for r in refused] == [400, 413, 415, 400, 400, 400, 400, 400]
    logged = _rejections(app, sctx)
    assert sorted(logged) == sorted(
        [
            ("malformed_json", "body"),
            ("body_too_large", "body"),
            ("wrong_content_type", "body"),
            ("wrong_shape", "inputs"),
            ("too_many_rows", "input"),
            ("wrong_type", "sepal_width"),
            ("wrong_type", "sepal_width"),
            ("wrong_shape", "instances"),
        ]
    ), logged


def test_oip_input_names_are_strict_and_control_characters_are_escaped(
    app: InferenceApp, client: TestClient, sctx: Context
) -> None:
    body = oip()
    body["inputs"][0]["name"] = "nope"
    assert "unknown input 'nope'" in error_of(client.post(INFER, json=body), 400)
    twice = {"inputs": [oip()["inputs"][0], oip()["inputs"][0]]}
    assert "'input' is given twice" in error_of(client.post(INFER, json=twice), 400)
    sneaky = "in\u202eput"
    body["inputs"][0]["name"] = sneaky
    message = error_of(client.post(INFER, json=body), 400)
    assert "\u202e" not in message and "\\u202e" in message
    instance = {**ROW, f"colour{sneaky}": 1.0}
    message = error_of(client.post("/predict", json={"model": "iris", "instances": [instance]}), 400)
    assert "\u202e" not in message and "\\u202e" in message
    fields = [field or "" for _, field in _rejections(app, sctx)]
    assert all("\u202e" not in f for f in fields) and any("\\u202e" in f for f in fields)


def test_a_synthetic_request_is_logged_as_synthetic_and_a_normal_one_is_not(
    app: InferenceApp, client: TestClient, sctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`x-mloncall-synthetic: 1` marks every row a request logs, its failure too; without it (or with
    another value) the rows are real traffic."""
    load = {"x-mloncall-synthetic": "1"}
    assert client.post(INFER, json=oip([VALUES, VALUES], id="load-oip"), headers=load).status_code == 200
    predict = {"model": "iris", "instances": [ROW]}
    assert (
        client.post("/predict", json=predict, headers={**load, "x-request-id": "load-predict"}).status_code
        == 200
    )
    assert client.post(INFER, json=oip(id="real-oip")).status_code == 200
    assert client.post("/predict", json=predict, headers={"x-request-id": "real-predict"}).status_code == 200
    other = {"x-mloncall-synthetic": "0", "x-request-id": "real-zero"}
    assert client.post("/predict", json=predict, headers=other).status_code == 200
    stable = app.router.routes["iris"].stable
    assert stable is not None

    def broken(outputs: Any, feed: Any, options: Any = None) -> Any:
        raise RuntimeError("onnx exploded")

    monkeypatch.setattr(stable, "_run", broken)
    assert (
        client.post(
            INFER, json=oip(id="load-failed"), headers={**load, "x-request-id": "load-failed"}
        ).status_code
        == 500
    )
    assert client.post(INFER, json=oip(), headers={"x-request-id": "real-failed"}).status_code == 500
    app.prediction_log.flush()
    table = read_log(sctx.store, "predictions", "iris")
    assert table is not None
    marks = sorted(
        zip(table.column("request_id").to_pylist(), table.column("synthetic").to_pylist(), strict=True)
    )
    assert marks == [
        ("load-failed", True),
        ("load-oip", True),
        ("load-oip", True),
        ("load-predict", True),
        ("real-failed", False),
        ("real-oip", False),
        ("real-predict", False),
        ("real-zero", False),
    ]
