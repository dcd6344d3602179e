"""`mloncall server`: the control plane and the inference data plane in one uvicorn process group."""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Callable
from typing import Any

from mloncall.core.errors import Conflict, InvalidInput
from mloncall.stores.context import Context


def app_factory() -> Any:
    """Build the ASGI app in each worker from the environment (uvicorn calls this with factory=True).

    The inference routes (/v2, /predict, /metrics) are a lean ASGI app; every other path falls through to
    the control-plane FastAPI app, whose lifespan runs the background jobs.
    """
    from mloncall.api.app import create_app
    from mloncall.serving.app import create_inference_app

    ctx = Context.from_settings()
    return create_inference_app(ctx, fallback=create_app(ctx, background=True), owns_context=True)


def run(*, host: str, port: int, workers: int, on_open: Callable[[Context], None] | None = None) -> None:
    """Migrate an existing installation once, then serve with uvloop and httptools (the plain asyncio loop
    delays multi-worker replies). `on_open` reports on the opened installation first (leftovers for gc)."""
    import uvicorn

    check_port_free(host, port)
    ctx = Context.from_settings()
    ctx.open()  # an existing installation only: `mloncall init` creates one
    if on_open is not None:
        on_open(ctx)
    if workers > 1:
        metrics_dir = ctx.settings.home / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    ctx.close()
    try:
        _serve(uvicorn, host=host, port=port, workers=workers)
    finally:
        if workers > 1:
            shutil.rmtree(ctx.settings.home / "prometheus", ignore_errors=True)


def check_port_free(host: str, port: int) -> None:
    """Conflict (exit 4) when the address is taken, said before anything starts rather than after."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Conflict(
                    f"{host}:{port} is already in use: stop what listens there or pick --port"
                ) from None
            raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _serve(uvicorn: Any, *, host: str, port: int, workers: int) -> None:
    from mloncall.api.connections import ServerLimits

    limits = ServerLimits.from_settings()  # a bad value is refused here, before a worker starts
    uvicorn.run(
        "mloncall.api.server:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="mloncall.api.connections:GuardedHttpToolsProtocol",
        timeout_keep_alive=limits.keep_alive_timeout,
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
