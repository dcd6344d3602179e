"""`mloncall server`: the control plane and the inference data plane in one uvicorn process group."""

from __future__ import annotations

import os
import shutil
from typing import Any

from mloncall.context import Context


def app_factory() -> Any:
    """Build the ASGI app in each worker from the environment (uvicorn calls this with factory=True)."""
    ctx = Context.from_settings()
    from mloncall.api import create_app

    return create_app(ctx)


def run(*, host: str, port: int, workers: int) -> None:
    """Migrate once, then serve with uvloop and httptools (the plain asyncio loop delays multi-worker replies)."""
    import uvicorn

    ctx = Context.from_settings()
    ctx.init()
    if workers > 1:
        metrics_dir = ctx.settings.home / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    ctx.close()
    uvicorn.run(
        "mloncall.server:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
