"""`mloncall init` and `mloncall server`: create an installation and run its server."""

from __future__ import annotations

import typer

from mloncall.cli.gc import DEFAULT_GRACE, find_leftovers, leftover_note
from mloncall.core import console
from mloncall.core.config import Settings
from mloncall.core.durations import parse_duration, parse_seconds
from mloncall.core.errors import InvalidInput
from mloncall.serving.ray_config import (
    RayAutoscaling,
    RayServeOptions,
    autoscaling_for,
    fixed_replicas,
    parse_address,
)
from mloncall.stores.context import Context
from mloncall.stores.db import safe_url

app = typer.Typer()


@app.command()
def init(json_out: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Create or upgrade the metadata database and the artifact store; create the admin token once.

    The admin token is printed only the first time: it is stored as a digest and cannot be shown again
    (create more with `mloncall tokens create`).
    """
    ctx = Context.from_settings()
    ctx.init()
    from mloncall.access import service as access

    with ctx.db.session() as session:
        token = access.bootstrap_admin(session=session)
    leftovers = len(find_leftovers(ctx, older_than=parse_duration(DEFAULT_GRACE)))
    result = {
        "home": str(ctx.settings.home),
        "database": safe_url(ctx.settings.db_url),
        "artifacts": ctx.settings.artifacts,
        "admin_token": token,
        "orphaned_artifact_folders": leftovers,
    }
    if json_out:
        console.print_json(result)
        return
    console.out.print(f"[green]ready[/]  database  {result['database']}")
    console.out.print(f"       artifacts {result['artifacts']}")
    if token:
        console.out.print(f"\nadmin token (shown once, keep it safe): [bold]{token}[/]")
    else:
        console.out.print("admin token already created; make another with `mloncall tokens create NAME`")
    if leftovers:
        console.out.print(f"\n[yellow]{leftover_note(leftovers)}[/]")


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on (1-65535)."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes."),
    max_workers: int | None = typer.Option(
        None,
        min=1,
        max=64,
        help="Most workers `mloncall scale` may run (default: --workers, or [scaling] max_workers).",
    ),
    backend: str = typer.Option(
        "local", help="local (inference in this server's workers) or ray (on a Ray cluster)."
    ),
    ray_address: str | None = typer.Option(None, help="With --backend ray: the head's host:port."),
    ray_http_host: str = typer.Option("127.0.0.1", help="With ray: where Serve's proxies listen."),
    ray_http_port: int = typer.Option(8000, min=1, max=65535, help="With ray: the Serve proxies' port."),
    target_p99: str | None = typer.Option(
        None, help="With ray: the p99 latency objective (e.g. 50ms) the autoscaling is derived from."
    ),
    replica_capacity: float | None = typer.Option(
        None, help="With --target-p99: requests/s one replica sustains (measure it with a load test)."
    ),
    min_replicas: int = typer.Option(1, help="With ray: the fewest replicas (never zero)."),
    max_replicas: int | None = typer.Option(
        None, help="With ray: the most replicas (default 4 with --target-p99, else --min-replicas)."
    ),
    upscale_delay: str = typer.Option(
        "10s", help="With --target-p99: how long a need lasts before scaling up."
    ),
    replica_cpus: float = typer.Option(1.0, min=0.01, help="With ray: CPUs Ray reserves per replica."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With ray: print the deployment plan and stop."),
    json_out: bool = typer.Option(False, "--json", help="With --dry-run: print the plan as JSON."),
    max_body_bytes: int | None = typer.Option(
        None, min=1, help="Largest inference request body (413 past it); [serving] max_body_bytes."
    ),
    max_rows: int | None = typer.Option(
        None,
        min=1,
        help="Rows per inference request unless routing says otherwise; [serving] default_max_rows.",
    ),
    max_inflight: int | None = typer.Option(
        None, min=1, help="Inference requests a worker holds at once (503 + Retry-After past it)."
    ),
    request_timeout: str | None = typer.Option(
        None, help="An inference request not answered within this gets 504 (e.g. 10s, 500ms)."
    ),
) -> None:
    """Run the control-plane API (and the inference server) until stopped with Ctrl-C or SIGTERM.

    With `--backend ray --ray-address HOST:PORT` the inference routes are deployed to the Ray cluster as a
    Serve application (deleted again when this stops), and this process serves the control plane.
    """
    if backend not in ("local", "ray"):
        raise InvalidInput(f"--backend {backend!r}: use local or ray")
    if backend == "local":
        if ray_address is not None or dry_run:
            raise InvalidInput("--ray-address and --dry-run go with --backend ray")
        limits = _limits(max_body_bytes, max_rows, max_inflight, request_timeout)
        _serve_locally(host=host, port=port, workers=workers, max_workers=max_workers, limits=limits)
        return
    if ray_address is None:
        raise InvalidInput(
            "--backend ray needs --ray-address HOST:PORT (the head's, from `ray start --head`)"
        )
    if workers != 1:
        raise InvalidInput("--workers is for the local backend; on ray the replicas scale (--max-replicas)")
    parse_address(ray_address)
    if target_p99 is None and replica_capacity is not None:
        target_p99 = _slo_target()
    scaling = _scaling(target_p99, replica_capacity, min_replicas, max_replicas, upscale_delay)
    options = RayServeOptions(
        address=ray_address, http_host=ray_http_host, http_port=ray_http_port, replica_cpus=replica_cpus
    )
    _serve_on_ray(host=host, port=port, options=options, scaling=scaling, dry_run=dry_run, json_out=json_out)


def _serve_locally(
    *, host: str, port: int, workers: int, max_workers: int | None, limits: dict[str, str]
) -> None:
    """The control plane and the inference routes in this machine's uvicorn workers."""
    from mloncall.api.server import run
    from mloncall.scaling.workers import configured_max_workers

    most = max_workers if max_workers is not None else configured_max_workers(Settings.load())
    run(host=host, port=port, workers=workers, on_open=_report_leftovers, serving=limits, max_workers=most)


def _serve_on_ray(
    *, host: str, port: int, options: RayServeOptions, scaling: RayAutoscaling, dry_run: bool, json_out: bool
) -> None:
    """The inference routes as a Serve application on the Ray cluster, the control plane here; with
    `dry_run`, only the deployment plan printed."""
    if dry_run and json_out:
        url = f"http://{options.http_host}:{options.http_port}"
        console.print_json({"address": options.address, "url": url, **scaling.to_dict()})
        return
    if dry_run:
        _print_scaling(scaling)
        return
    from mloncall.api.server import run_on_ray

    def ready(url: str) -> None:
        console.out.print(
            f"[green]serving[/] on Ray at {url} (OIP /v2, /predict); control plane on {host}:{port}"
        )

    run_on_ray(
        host=host,
        port=port,
        options=options,
        scaling=scaling,
        on_open=_report_leftovers,
        on_connected=lambda: _print_scaling(scaling),
        on_ready=ready,
    )


def _limits(
    max_body_bytes: int | None, max_rows: int | None, max_inflight: int | None, request_timeout: str | None
) -> dict[str, str]:
    """The `[serving]` limits given on the command line, as the workers read them from the environment."""
    limits: dict[str, str] = {}
    for key, value in (
        ("max_body_bytes", max_body_bytes),
        ("default_max_rows", max_rows),
        ("max_inflight", max_inflight),
    ):
        if value is not None:
            limits[key] = str(value)
    if request_timeout is not None:
        limits["request_timeout_seconds"] = str(parse_duration(request_timeout).total_seconds())
    return limits


def _slo_target() -> str | None:
    """The tightest p99 objective of the models' SLOs (`[slo.MODEL]` or the API): one Serve application
    serves every model, so it scales for the most demanding one. None when no model has an SLO."""
    from mloncall.cli.support import installation
    from mloncall.core.errors import MloncallError
    from mloncall.scaling import service as slos

    found = list(slos.configured(Settings.load()).values())
    try:
        with installation() as ctx, ctx.db.session() as s:
            found = slos.list_objectives(session=s, settings=ctx.settings)
    except MloncallError:
        pass  # no installation yet: the toml file's SLOs are all there are
    if not found:
        return None
    tightest = min(found, key=lambda o: o.latency_p99_ms)
    console.err.print(
        f"autoscaling for the SLO of {tightest.model}: p99 ≤ {tightest.latency_p99_ms:g} ms (the tightest)",
        highlight=False,
    )
    return f"{tightest.latency_p99_ms:g}ms"


def _scaling(
    target_p99: str | None,
    capacity: float | None,
    min_replicas: int,
    max_replicas: int | None,
    upscale_delay: str,
) -> RayAutoscaling:
    if target_p99 is None:
        if capacity is not None:
            raise InvalidInput(
                "--replica-capacity goes with --target-p99, or with an SLO (`mloncall slo set MODEL ...`)"
            )
        if max_replicas is not None and max_replicas != min_replicas:
            raise InvalidInput("autoscaling between --min-replicas and --max-replicas needs --target-p99")
        return fixed_replicas(min_replicas)
    if capacity is None:
        raise InvalidInput("--target-p99 needs --replica-capacity: the requests/s one replica sustains")
    return autoscaling_for(
        target_p99_seconds=parse_seconds(target_p99, what="--target-p99"),
        replica_capacity_rps=capacity,
        min_replicas=min_replicas,
        max_replicas=4 if max_replicas is None else max_replicas,
        upscale_delay_seconds=parse_seconds(upscale_delay, allow_zero=True, what="--upscale-delay"),
    )


def _print_scaling(scaling: RayAutoscaling) -> None:
    plan = scaling.to_dict()
    rows = [
        (key, plan[key], scaling.reasons.get(key, ""))
        for key in plan
        if key not in ("reasons", "autoscaling")
    ]
    title = "Ray Serve autoscaling" if plan["autoscaling"] else "Ray Serve replicas (fixed)"
    console.out.print(console.table(title, ["setting", "value", "why"], rows))


def _report_leftovers(ctx: Context) -> None:
    count = len(find_leftovers(ctx, older_than=parse_duration(DEFAULT_GRACE)))
    if count:
        console.err.print(f"[yellow]warning:[/] {leftover_note(count)}", highlight=False)
