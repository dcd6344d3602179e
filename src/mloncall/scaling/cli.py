"""`mloncall slo`, `mloncall loadtest` and `mloncall scale`: objectives, load, and the workers of a server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from mloncall.cli.support import JsonOption, audited_change, installation, limit_option
from mloncall.core import clock, console
from mloncall.core.durations import parse_duration, parse_seconds
from mloncall.core.errors import InvalidInput, MloncallError
from mloncall.scaling import autoscaler, jobs, loadtest, render, service, workers
from mloncall.scaling.slo import Objectives
from mloncall.stores.context import Context

ModelArg = Annotated[str, typer.Argument(help="The model's name.")]

slo_app = typer.Typer(
    help="Service level objectives per model, their error budget and burn rates.", no_args_is_help=True
)
app = typer.Typer()


@slo_app.command("set")
def slo_set(
    model: ModelArg,
    latency_p99: Annotated[str, typer.Option("--latency-p99", help="p99 latency objective, e.g. 50ms.")],
    error_rate: Annotated[float, typer.Option(help="Share of requests that may fail.")] = 0.001,
    availability: Annotated[
        float, typer.Option(help="Share answered without a server error or timeout.")
    ] = 0.999,
    window: Annotated[str, typer.Option(help="The window the budget is counted over.")] = "30d",
    as_json: JsonOption = False,
) -> None:
    """Set a model's SLO (it takes precedence over [slo.MODEL] in mloncall.toml)."""
    with audited_change("slo.set", f"model:{model}") as (session, _ctx, detail):
        found = service.set_objectives(
            session=session, model=model, latency_p99=latency_p99, error_rate=error_rate,
            availability=availability, window=window, actor=console.actor(),
        )  # fmt: skip
        detail.update(found.to_dict())
    if as_json:
        console.print_json(found.to_dict())
        return
    render.print_objectives([found])


@slo_app.command("list")
def slo_list(as_json: JsonOption = False) -> None:
    """Every model's SLO, from the API and from mloncall.toml."""
    with installation() as ctx, ctx.db.session() as session:
        rows = service.list_objectives(session=session, settings=ctx.settings)
    if as_json:
        console.print_json([o.to_dict() for o in rows])
        return
    render.print_objectives(rows)


@slo_app.command("delete")
def slo_delete(model: ModelArg) -> None:
    """Forget the SLO set through the API (the toml file's, if any, applies again)."""
    with audited_change("slo.delete", f"model:{model}") as (session, _ctx, _detail):
        service.delete_objectives(session=session, model=model)
    console.out.print(f"SLO of {model} deleted")


@slo_app.command("status")
def slo_status(model: ModelArg, as_json: JsonOption = False) -> None:
    """Objective, measured, error budget left and the burn rate of every alert window."""
    with installation() as ctx, ctx.db.session() as session:
        status = service.slo_status(ctx=ctx, session=session, model=model)
    if as_json:
        console.print_json(status)
        return
    render.print_status(status)


@app.command("loadtest")
def loadtest_command(
    url: Annotated[str, typer.Argument(help="An OIP infer URL, /predict, or a server's root with --model.")],
    rate: Annotated[float, typer.Option(help="Requests per second (the base rate of a spike).")] = 100.0,
    duration: Annotated[str, typer.Option(help="How long to send, e.g. 30s.")] = "10s",
    shape: Annotated[str, typer.Option(help="constant, steps or spike.")] = "constant",
    steps: Annotated[str | None, typer.Option(help="Rates of --shape steps, e.g. 100,200,400.")] = None,
    spike_rate: Annotated[float | None, typer.Option(help="The spike's rate (default 5x --rate).")] = None,
    spike_at: Annotated[str | None, typer.Option(help="When the spike starts (default a third in).")] = None,
    spike_for: Annotated[str | None, typer.Option(help="How long it lasts (default a third).")] = None,
    model: Annotated[str | None, typer.Option(help="The model (for /predict or a root URL).")] = None,
    body: Annotated[Path | None, typer.Option(help="A JSON file to send as each request's body.")] = None,
    connections: Annotated[int, typer.Option(min=1, max=1000, help="Keep-alive connections.")] = 20,
    timeout: Annotated[str, typer.Option(help="A request not answered within this is a timeout.")] = "5s",
    png: Annotated[Path | None, typer.Option(help="Write a PNG of latency over time here.")] = None,
    record: Annotated[
        bool, typer.Option("--record/--no-record", help="Keep the per-second measurements as SLO data.")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Open-loop load at a controlled rate, latency corrected for coordinated omission, judged against the SLO.

    Every request is sent with x-mloncall-synthetic: 1, so its rows count toward latency, errors and
    throughput but never toward drift, data quality or accuracy."""
    timeout_s = parse_seconds(timeout, what="--timeout", maximum=dt.timedelta(minutes=5))
    rates = [float(v) for v in steps.split(",")] if steps else []
    chosen = loadtest.make_shape(
        shape, rate=rate, duration_s=parse_seconds(duration, what="--duration"), steps=rates, spike_rate=spike_rate,
        spike_at_s=None if spike_at is None else parse_seconds(spike_at, allow_zero=True, what="--spike-at"),
        spike_for_s=None if spike_for is None else parse_seconds(spike_for, what="--spike-for"),
    )  # fmt: skip
    payload = _read_body(body)
    target = loadtest.target_of(url, model=model, body=payload)
    objectives, ctx = _objectives_of(target.model)
    try:
        report, samples = loadtest.run_load(
            target, chosen, connections=connections, timeout_s=timeout_s, slo=objectives
        )
        if record and ctx is not None:
            started = dt.datetime.fromisoformat(report.started_at)
            with ctx.db.session() as session:
                service.record_probes(
                    session=session,
                    model=target.model,
                    seconds=loadtest.per_second(samples, started, objectives),
                )
    finally:
        if ctx is not None:
            ctx.close()
    if png is not None:
        loadtest.write_png(png, samples, report)
    if as_json:
        console.print_json(report.to_dict())
    else:
        render.print_report(report.to_dict())
        if png is not None:
            console.err.print(f"wrote {png}", soft_wrap=True)  # a path stays whole to copy
    if report.sent and report.answered == 0:
        raise typer.Exit(1)


def _read_body(body: Path | None) -> bytes | None:
    if body is None:
        return None
    try:
        return body.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read --body {body}: {exc.strerror}") from None


def _objectives_of(model: str) -> tuple[Objectives | None, Context | None]:
    """The model's SLO and the open installation, or (None, None) when there is none to read."""
    ctx = Context.from_settings()
    try:
        if not ctx.db.initialised():
            ctx.close()
            return None, None
        ctx.open()
        with ctx.db.session() as session:
            return service.get_objectives(session=session, settings=ctx.settings, model=model), ctx
    except MloncallError:
        ctx.close()
        return None, None


class _ScaleGroup(TyperGroup):
    """`scale MODEL --workers N` is the group's default command; `scale auto|explain|cost MODEL` the others."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["to", *args]
        return super().parse_args(ctx, args)


scale_app = typer.Typer(
    cls=_ScaleGroup, no_args_is_help=True,
    help="Change a running server's workers (`scale MODEL --workers N`), autoscale, explain, cost.",
)  # fmt: skip


@scale_app.command("to", hidden=True)
def scale_to(
    model: ModelArg,
    workers_: Annotated[int, typer.Option("--workers", help="The number of workers to run.")],
    as_json: JsonOption = False,
) -> None:
    """Change the running server's inference workers without dropping a request."""
    with audited_change("scale.workers", f"model:{model}") as (session, ctx, detail):
        before = workers.current_workers(ctx.settings.home)
        change = workers.scale_to(ctx.settings.home, workers_)
        service.record_event(
            session=session, model=model, action="scale_out" if change.after > before else "scale_in",
            from_workers=change.before, to_workers=change.after, applied=True,
            reason=f"asked for {workers_} workers", evidence=change.to_dict(), actor=console.actor(),
        )  # fmt: skip
        detail.update(change.to_dict())
    if as_json:
        console.print_json(change.to_dict())
        return
    console.out.print(
        f"{model}: {change.before} -> {change.after} workers in {change.seconds:.1f}s "
        f"(started {change.started or '-'}, retired {change.retired or '-'}; maximum {change.max_workers})"
    )


@scale_app.command("auto")
def scale_auto(
    model: ModelArg,
    min_workers: Annotated[int, typer.Option("--min", help="Fewest workers.")] = 1,
    max_workers: Annotated[int, typer.Option("--max", help="Most workers.")] = 4,
    for_: Annotated[str, typer.Option("--for", help="How long to run, e.g. 10m.")] = "10m",
    interval: Annotated[str, typer.Option(help="Time between decisions.")] = "1s",
    up_delay: Annotated[str, typer.Option(help="How long pressure must hold before a scale-out.")] = "3s",
    down_delay: Annotated[str, typer.Option(help="How long calm must hold before a scale-in.")] = "30s",
    target_queued: Annotated[float, typer.Option(help="Queued requests per worker that is too many.")] = 2.0,
    as_json: JsonOption = False,
) -> None:
    """Adjust the workers between --min and --max from queued requests and p99; every decision recorded."""
    with installation() as ctx:
        with ctx.db.session() as session:
            objective = service.require_objectives(session=session, settings=ctx.settings, model=model)
        policy = autoscaler.Policy(
            min_workers, max_workers, objective.latency_p99_ms, target_queued,
            parse_duration(up_delay, allow_zero=True, what="--up-delay"),
            parse_duration(down_delay, allow_zero=True, what="--down-delay"),
        )  # fmt: skip
        decisions = autoscaler.run_autoscaler(
            ctx, model=model, policy=policy, duration=parse_duration(for_, what="--for"),
            interval=parse_duration(interval, what="--interval"), actor=console.actor(),
        )  # fmt: skip
    changes = [d for d in decisions if d.to_workers != d.from_workers]
    if as_json:
        console.print_json([d.to_dict() for d in decisions if d.action != "hold"])
        return
    console.out.print(f"{len(decisions)} decisions, {len(changes)} changes: `mloncall scale explain {model}`")


@scale_app.command("explain")
def scale_explain(
    model: ModelArg,
    limit: Annotated[int, limit_option("Most decisions to show.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Every recorded scaling decision of a model with the metric values behind it."""
    with installation() as ctx, ctx.db.session() as session:
        events = service.list_events(session=session, model=model, limit=limit)
        rows = [
            {"id": e.id, "at": e.at.isoformat(), "action": e.action, "from_workers": e.from_workers,
             "to_workers": e.to_workers, "applied": e.applied, "actor": e.actor, "reason": e.reason,
             "evidence": e.evidence, "due_at": e.due_at.isoformat() if e.due_at else None}
            for e in events
        ]  # fmt: skip
        if not as_json:
            render.print_events(model, events)
    if as_json:
        console.print_json(rows)


@scale_app.command("cost")
def scale_cost(
    model: ModelArg,
    since: Annotated[str, typer.Option(help="How far back, e.g. 1h.")] = "1h",
    as_json: JsonOption = False,
) -> None:
    """Replica-seconds and their cost at price_per_core_hour (the scaling table of the toml file) over --since."""
    now = clock.now()
    with installation() as ctx, ctx.db.session() as session:
        try:
            current = workers.current_workers(ctx.settings.home)
        except MloncallError:
            current = 1
        found = service.cost(
            session=session, settings=ctx.settings, model=model,
            since=now - parse_duration(since, what="--since"), until=now, workers=current,
        )  # fmt: skip
    if as_json:
        console.print_json(found.to_dict())
        return
    console.out.print(
        f"{model}: {found.replica_seconds:,.0f} replica-seconds over {since} = {found.cost:.6f} "
        f"at {found.price_per_core_hour:g} per core-hour ({found.workers_at_end} workers now)"
    )


@scale_app.command("cleanup")
def scale_cleanup(model: ModelArg, as_json: JsonOption = False) -> None:
    """Apply the model's scheduled scale-downs that are due, and check that each happened."""
    with installation() as ctx:
        done = jobs.apply_due_scale_downs(ctx, model=model, actor=console.actor())
    if as_json:
        console.print_json(done)
        return
    if not done:
        console.out.print(f"no scale-down of {model} is due")
    for d in done:
        state = "done" if d["ok"] else f"[red]failed[/]: {d.get('error')}"
        console.out.print(f"scheduled scale-down #{d['schedule_id']}: {state}")
