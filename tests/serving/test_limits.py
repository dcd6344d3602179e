"""A worker's hard limits over real HTTP: requests in flight (a quick 503 with Retry-After), the per-request
timeout (504), the body size (413) and the row count (400), each set through the `[serving]` settings."""

from __future__ import annotations

import socket
import time

import httpx
import orjson

from mloncall.registry.models import ModelVersion
from mloncall.serving.app import create_inference_app
from mloncall.serving.config import ServingConfig
from mloncall.stores.context import Context
from mloncall.stores.predlog import read_log
from tests.serving.conftest import FEATURES, ROW, ThreadServer, fast_config

INFER = "/v2/models/iris/infer"


def oip(rows: int = 1) -> bytes:
    data = [ROW[f] for f in FEATURES] * rows
    return orjson.dumps({"inputs": [{"name": "input", "shape": [rows, 4], "datatype": "FP32", "data": data}]})


def half_sent(port: int, body: bytes) -> socket.socket:
    """A request whose headers and first half of the body are sent: its handler waits for the rest."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock


def answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and whole response of a raw request."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head[9:12]), rest


def test_requests_past_max_inflight_get_a_quick_503_with_retry_after(
    sctx: Context, iris_v1: ModelVersion
) -> None:
    config = fast_config(max_inflight=2, request_timeout_seconds=30.0, retry_after_seconds=2)
    with ThreadServer(create_inference_app(sctx, config=config)) as srv:
        body = oip()
        waiting = [half_sent(srv.port, body) for _ in range(2)]
        time.sleep(0.3)  # both handlers are waiting for the rest of their bodies
        with httpx.Client(base_url=srv.url, timeout=5) as client:
            started = time.monotonic()
            refused = client.post(INFER, content=body)
            took = time.monotonic() - started
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "2"
            assert "limit of 2 requests at once" in refused.json()["error"]
            assert took < 2.0  # answered at once, not queued behind the two (never a timing assertion's 30 s)
            for sock in waiting:  # the two held requests finish normally
                sock.sendall(body[len(body) // 2 :])
                status, text = answer(sock)
                sock.close()
                assert status == 200, text
            assert client.post(INFER, content=body).status_code == 200  # room again
            metrics = client.get("/metrics").text
        assert 'mloncall_requests_total{model="(unknown)",route="",status="503",version=""} 1.0' in metrics


def test_a_request_not_answered_within_the_timeout_gets_504_and_is_logged_as_an_error(
    sctx: Context, iris_v1: ModelVersion
) -> None:
    config = fast_config(request_timeout_seconds=0.5)
    app = create_inference_app(sctx, config=config)
    with ThreadServer(app) as srv:
        sock = half_sent(srv.port, oip())  # the body never completes
        status, text = answer(sock)
        sock.close()
        assert status == 504, text
        assert orjson.loads(text) == {"error": "not answered within 0.5 s"}
        with httpx.Client(base_url=srv.url, timeout=5) as client:
            assert client.post(INFER, content=oip()).status_code == 200  # the worker serves on
    app.prediction_log.flush()
    table = read_log(sctx.store, "predictions", "iris")
    assert table is not None
    statuses = sorted(table.column("status").to_pylist())
    assert statuses == [200]  # the timed-out request never reached a version: counted, not a prediction row


def test_body_size_and_row_limits_come_from_the_serving_settings(
    sctx: Context, iris_v1: ModelVersion
) -> None:
    config = ServingConfig.from_settings(
        sctx.settings, {"MLONCALL_SERVING_MAX_BODY_BYTES": "400", "MLONCALL_SERVING_DEFAULT_MAX_ROWS": "2"}
    )
    assert (config.max_body_bytes, config.default_max_rows) == (400, 2)
    with (
        ThreadServer(create_inference_app(sctx, config=config)) as srv,
        httpx.Client(base_url=srv.url) as client,
    ):
        assert client.post(INFER, content=oip(2)).status_code == 200
        too_many = client.post(INFER, content=oip(3))
        assert too_many.status_code == 400 and "more than the limit of 2 rows" in too_many.json()["error"]
        too_big = client.post(INFER, content=oip(30))  # past 400 bytes
        assert too_big.status_code == 413 and "over the 400-byte limit" in too_big.json()["error"]
