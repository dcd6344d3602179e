"""Serving fixtures: iris versions registered through the registry, the routing table, live servers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mloncall.registry import service as registry
from mloncall.registry.models import ModelVersion
from mloncall.registry.service import NewVersion
from mloncall.serving import models as serving_models
from mloncall.serving.config import ServingConfig
from mloncall.stores.context import Context
from mloncall.stores.db import Base
from tests.conftest import free_port

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
ROOT = Path(__file__).resolve().parents[2]


def iris() -> tuple[np.ndarray, np.ndarray, list[str]]:
    data = load_iris()
    classes = [str(c) for c in data.target_names]
    return data.data, np.asarray(classes)[data.target], classes


def signature_of(X: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """The signature dict training stores with a version."""
    feats = []
    for j, name in enumerate(FEATURES):
        col = X[:, j]
        qs = {str(q): float(np.quantile(col, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}
        feats.append(
            {
                "name": name,
                "dtype": "float64",
                "min": float(col.min()),
                "max": float(col.max()),
                "quantiles": qs,
            }
        )
    return {"features": feats, "classes": classes, "target": "species"}


def register_iris(ctx: Context, name: str = "iris", C: float = 1.0) -> ModelVersion:
    """Fit a logistic regression on iris and register it as the next version of `name`."""
    X, y, classes = iris()
    est = LogisticRegression(C=C, max_iter=1000).fit(X, y)
    new = NewVersion(
        name=name,
        algorithm="logistic_regression",
        feature_names=list(FEATURES),
        class_labels=classes,
        signature=signature_of(X, classes),
        metrics={"accuracy": float((est.predict(X) == y).mean())},
        params={"C": C},
        lineage={},
        created_by="test",
    )
    return registry.register_version(db=ctx.db, store=ctx.store, estimator=est, X_val=X[::5], new=new)


def set_production(ctx: Context, name: str, version: int) -> None:
    with ctx.db.session() as session:
        registry.set_alias(session=session, name=name, alias="production", version=version, actor="test")


def create_routing_table(ctx: Context) -> None:
    """The routing table, until the lead's migration adds it."""
    assert serving_models.Routing.__tablename__ in Base.metadata.tables
    Base.metadata.create_all(ctx.db.engine)


def fast_config(**overrides: Any) -> ServingConfig:
    values: dict[str, Any] = {"refresh_seconds": 0.1, "log_flush_seconds": 0.2, "retry_failed_seconds": 30.0}
    values.update(overrides)
    return ServingConfig(**values)


@pytest.fixture
def sctx(ctx: Context) -> Context:
    """An installation with the routing table."""
    create_routing_table(ctx)
    return ctx


@pytest.fixture
def iris_v1(sctx: Context) -> ModelVersion:
    """iris:1, in production."""
    mv = register_iris(sctx)
    set_production(sctx, "iris", mv.version)
    return mv


@pytest.fixture
def iris_v2(sctx: Context, iris_v1: ModelVersion) -> ModelVersion:
    """iris:2, registered (a different C, so its probabilities differ), not routed."""
    return register_iris(sctx, C=0.05)


def alter_onnx(ctx: Context, mv: ModelVersion) -> None:
    """Flip bytes of the version's ONNX file in the store (same size, different checksum)."""
    key = next(f.key for f in mv.files if f.name == registry.ONNX_FILE)
    data = bytearray(ctx.store.get_bytes(key))
    data[-20:] = bytes(b ^ 0xFF for b in data[-20:])
    ctx.store.put_bytes(key, bytes(data))


class ThreadServer:
    """A real uvicorn server on a free localhost port, in a thread of the test process."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="on", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def server_env(ctx: Context, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLONCALL_", "PROMETHEUS_"))}
    env.update(
        MLONCALL_HOME=str(ctx.settings.home),
        MLONCALL_DB_URL=ctx.settings.db_url,
        MLONCALL_ARTIFACTS=ctx.settings.artifacts,
        PYTHONPATH=str(ROOT / "src"),
    )
    env.update(extra)
    return env


def start_uvicorn(ctx: Context, workers: int, cwd: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """`uvicorn --factory mloncall.serving.app:app_from_env` in a subprocess, returned once it answers."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", "mloncall.serving.app:app_from_env",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=server_env(ctx, **env), cwd=cwd, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("uvicorn did not become ready")


@pytest.fixture
def server_procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Subprocesses a test starts; killed if the test leaves them running."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
