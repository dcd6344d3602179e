"""uvicorn with two workers in a subprocess: multiprocess /metrics; SIGTERM under load loses nothing."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mloncall.registry.models import ModelVersion
from mloncall.stores.context import Context
from mloncall.stores.predlog import read_log
from tests.serving.conftest import FEATURES, ROW, start_uvicorn

BODY = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [ROW[f] for f in FEATURES]}]
}


def test_sigterm_under_load_loses_no_logged_prediction(
    sctx: Context, iris_v1: ModelVersion, tmp_path: Path, server_procs: list[subprocess.Popen[bytes]]
) -> None:
    prom = tmp_path / "prometheus"
    prom.mkdir()
    # A long flush interval: whatever is served after the last timed flush must be written by the shutdown.
    proc, url = start_uvicorn(
        sctx, 2, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(prom), MLONCALL_SERVING_LOG_FLUSH_SECONDS="30"
    )
    server_procs.append(proc)
    ok_ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def fire() -> None:
        while not stop.is_set():
            try:  # a new connection every 20 requests, so both workers get some
                with httpx.Client(base_url=url, timeout=10) as client:
                    for _ in range(20):
                        if stop.is_set():
                            break
                        r = client.post("/v2/models/iris/infer", json=BODY)
                        if r.status_code == 200:
                            with lock:
                                ok_ids.extend(r.json()["parameters"]["prediction_ids"].split(","))
                        else:
                            errors.append(f"{r.status_code} {r.text}")
            except httpx.HTTPError:  # the server is going away: keep knocking until the test stops us
                time.sleep(0.005)

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(ok_ids) < 1500 or len({p.name for p in prom.glob("counter_*.db")}) < 2:
        assert time.monotonic() < deadline and not errors, (len(ok_ids), errors[:3])
        time.sleep(0.02)

    served_before = len(ok_ids)
    time.sleep(1.5)  # each worker publishes what it counted once a second (the scraped one, at the scrape)
    text = httpx.get(f"{url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ok_total = sum(
        s.value for s in families["mloncall_requests"].samples
        if s.name == "mloncall_requests_total" and s.labels["status"] == "200"
    )  # fmt: skip
    assert ok_total >= served_before
    assert "mloncall_request_latency_seconds" in families and "mloncall_traffic_weight" in families

    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    stop.set()
    for t in threads:
        t.join()
    table = read_log(sctx.store, "predictions", "iris")
    assert table is not None
    logged = table.column("id").to_pylist()
    missing = set(ok_ids) - set(logged)
    print(
        f"SIGTERM under load: {len(ok_ids)} answered 200, {len(logged)} logged, exit code {proc.returncode}"
    )
    assert errors == []
    assert not missing, f"{len(missing)} answered predictions are not in the log"
    assert len(logged) == len(set(logged))
    assert (
        len({k.rsplit("/", 1)[1].rsplit("-", 1)[0] for k in sctx.store.list("predictions")}) == 2
    )  # 2 writers
