"""`mloncall server`: the control plane and the inference data plane in one uvicorn process group."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
from collections.abc import Callable
from typing import Any

from mloncall.core.errors import Conflict, InvalidInput
from mloncall.serving.ray_config import RayAutoscaling, RayServeOptions
from mloncall.stores.context import Context


def app_factory() -> Any:
    """Build the ASGI app in each worker from the environment (uvicorn calls this with factory=True).

    The inference routes (/v2, /predict, /metrics) are a lean ASGI app; every other path falls through to
    the control-plane FastAPI app, whose lifespan runs the background jobs unless another process holds
    their locks (a supervised server's supervisor does, so no worker shares its interpreter with them).
    """
    from mloncall.api.app import create_app
    from mloncall.serving.app import create_inference_app

    ctx = Context.from_settings()
    return create_inference_app(ctx, fallback=create_app(ctx, background=True), owns_context=True)


def control_plane_factory() -> Any:
    """The control-plane app alone, with its background jobs (the data plane runs elsewhere: on Ray)."""
    from mloncall.api.app import create_app

    return create_app(Context.from_settings(), background=True)


def run(
    *,
    host: str,
    port: int,
    workers: int,
    on_open: Callable[[Context], None] | None = None,
    serving: dict[str, str] | None = None,
    max_workers: int | None = None,
) -> None:
    """Migrate an existing installation once, then serve with uvloop and httptools (the plain asyncio loop
    delays multi-worker replies). `on_open` reports on the opened installation first (leftovers for gc).
    `serving` overrides `[serving]` settings (limits from the command line) in every worker.

    With `max_workers` above 1 (or several workers), uvicorn's process supervisor runs the workers even when
    there is one, so `mloncall scale` can add and remove them while it serves (`scaling.workers`)."""
    import uvicorn

    from mloncall.core.config import Settings
    from mloncall.scaling import workers as scaling_workers
    from mloncall.serving.config import ServingConfig

    if max_workers is not None and max_workers < workers:
        raise InvalidInput(f"--max-workers {max_workers} is below --workers {workers}")
    max_workers = max_workers or workers
    supervised = max_workers > 1
    for key, value in (serving or {}).items():
        os.environ[f"MLONCALL_SERVING_{key.upper()}"] = value  # the workers read their settings from here
    ServingConfig.from_settings(Settings.load())  # a bad limit is refused here, before a worker starts

    check_port_free(host, port)
    ctx = Context.from_settings()
    ctx.open()  # an existing installation only: `mloncall init` creates one
    if on_open is not None:
        on_open(ctx)
    if supervised:
        metrics_dir = ctx.settings.home / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    ctx.close()
    runtime = scaling_workers.write_runtime(
        ctx.settings.home,
        host=host,
        port=port,
        workers=workers,
        max_workers=max_workers,
        supervised=supervised,
    )
    try:
        with contextlib.ExitStack() as stack:
            if supervised:
                _run_jobs_here(stack)
            _serve(uvicorn, host=host, port=port, workers=workers, supervised=supervised)
    finally:
        scaling_workers.remove_runtime(runtime)
        if supervised:
            shutil.rmtree(ctx.settings.home / "prometheus", ignore_errors=True)


def run_on_ray(
    *,
    host: str,
    port: int,
    options: RayServeOptions,
    scaling: RayAutoscaling,
    on_open: Callable[[Context], None] | None = None,
    on_connected: Callable[[], None] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Deploy the inference app to the Ray cluster, then serve the control plane here until stopped; the
    Serve app is deleted when this returns. An unreachable cluster is refused before anything is deployed;
    `on_connected` runs once it answered, `on_ready` with the app's URL once every replica is ready."""
    import uvicorn

    from mloncall.serving.config import ServingConfig
    from mloncall.serving.ray_backend import RayDeployment, replica_env

    check_port_free(host, port)
    ctx = Context.from_settings()
    try:
        ctx.open()
        if on_open is not None:
            on_open(ctx)
        ServingConfig.from_settings(
            ctx.settings
        )  # a bad serving setting is refused here, not in each replica
        env = replica_env(ctx.settings)
    finally:
        ctx.close()
    deployment = RayDeployment(options=options, scaling=scaling, env=env)
    deployment.connect()
    if on_connected is not None:
        on_connected()
    try:
        # A SIGTERM while the replicas load must still delete what was deployed (uvicorn handles it later).
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            url = deployment.deploy()
        finally:
            signal.signal(signal.SIGTERM, previous)
        if on_ready is not None:
            on_ready(url)
        _serve(uvicorn, host=host, port=port, workers=1, target="mloncall.api.server:control_plane_factory")
    finally:
        deployment.undeploy()


def _run_jobs_here(stack: contextlib.ExitStack) -> None:
    """Run the background jobs in this process, the supervisor, until `stack` closes. It serves nothing: in a
    worker the jobs shared its interpreter lock with the inference requests, and each minute's summaries of
    a busy log held up that worker's requests."""
    from mloncall.api.app import background_jobs

    ctx = Context.from_settings()
    ctx.open()
    stack.callback(ctx.close)
    stack.enter_context(background_jobs(ctx))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


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


def _serve(
    uvicorn: Any,
    *,
    host: str,
    port: int,
    workers: int,
    supervised: bool = False,
    target: str = "mloncall.api.server:app_factory",
) -> None:
    from mloncall.api.connections import ServerLimits

    limits = ServerLimits.from_settings()  # a bad value is refused here, before a worker starts
    (_supervise if supervised and workers == 1 else uvicorn.run)(
        target,
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
        # The supervisor SIGKILLs a worker that does not answer its ping in time, losing the predictions it
        # had not yet written; uvicorn's 5 s was missed by workers starting on a saturated 2-core machine.
        timeout_worker_healthcheck=30,
    )


def _supervise(app: str, **options: Any) -> None:
    """`uvicorn.run` with its process supervisor for a single worker too (it runs one in-process otherwise)."""
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    config = Config(app, **options)
    Multiprocess(config, sockets=[config.bind_socket()]).run()
