"""`mloncall deploy`, `mloncall rollout ...` and `mloncall rollback` (runbook 1)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from mloncall.cli.support import audited_change, audited_unit_of_work, installation, open_installation
from mloncall.core import clock, console
from mloncall.core.errors import CheckFailed
from mloncall.core.names import parse_pairs
from mloncall.core.outcome import Outcome
from mloncall.rollout.models import RolloutState
from mloncall.rollout.prechecks import stopped_error
from mloncall.rollout.render import outcome_label, print_acceptance
from mloncall.stores.context import Context

app = typer.Typer()
rollout_app = typer.Typer(
    help="Watch and steer a model's rollout: status, pause, resume, promote, abort.", no_args_is_help=True
)
app.add_typer(rollout_app, name="rollout")

JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")
REASON = typer.Option("", "--reason", help="Why: kept in the rollout history.")


@app.command()
def deploy(
    ref: str = typer.Argument(..., help="NAME:VERSION (or NAME@ALIAS) to deploy."),
    strategy: str = typer.Option("canary", help="canary (stepwise, analysed) or direct."),
    steps: str = typer.Option("10,25,50,100", help="Canary weights in percent, ending at 100."),
    step_duration: str = typer.Option(
        "30s", help="How long each step runs before it is judged (30s, 2m...)."
    ),
    min_requests: int = typer.Option(50, help="Canary requests a step needs before it can be judged."),
    threshold: list[str] = typer.Option(
        [], "--threshold", help="Override an analysis threshold: NAME=VALUE."
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the rollout to its end, then check acceptance."),
    timeout: str = typer.Option("30m", help="With --wait: give up waiting after this long."),
    json_out: bool = JSON,
) -> None:
    """Verify, smoke-test and roll out a version: canary steps judged against stable, or directly.

    A failed analysis aborts at once (traffic back to stable); an inconclusive one pauses for a human.
    Exit codes: 0 promoted (and accepted, with --wait); 1 pre-check, analysis or acceptance failed, or
    paused; 4 another rollout of the model is in progress; 5 the version's files are not intact.
    """
    from mloncall.rollout import service
    from mloncall.rollout.schemas import RolloutOut

    spec = service.DeploySpec(
        strategy=strategy,
        steps=service.parse_steps(steps),
        step_duration_s=service.step_seconds(step_duration),
        min_requests=min_requests,
        thresholds=parse_pairs(threshold, option="--threshold", example="max_disagreement=0.2"),
    )
    ctx = open_installation()
    with audited_unit_of_work(ctx, action="rollout.deploy", target=ref) as (session, detail):
        r = service.deploy(session=session, store=ctx.store, ref=ref, spec=spec, actor=console.actor())
        detail.update(rollout=r.id, strategy=r.strategy, state=r.state)
        out = RolloutOut.model_validate(r)
    if not json_out:
        _print_prechecks(out.prechecks)
        console.out.print(
            f"rollout #{out.id}: {out.model} v{out.from_version or '-'} → v{out.to_version} "
            f"[bold]{out.state}[/] ({out.reason})"
        )
    if out.state == RolloutState.ABORTED:
        if json_out:
            console.print_json(out.model_dump(mode="json"))
        raise stopped_error(f"deployment of {ref} stopped: {out.reason}", out.prechecks)
    if not wait:
        if json_out:
            console.print_json(out.model_dump(mode="json"))
        return
    final = _follow(ctx, out.id, service.step_seconds(timeout, what="timeout"), json_out)
    if json_out:
        console.print_json(final)
    if final["rollout"]["state"] != RolloutState.PROMOTED:
        raise CheckFailed(
            f"rollout #{out.id} ended {final['rollout']['state']}: {final['rollout']['reason']}"
        )
    if final.get("acceptance", {}).get("outcome") == "failed":
        raise CheckFailed(f"rollout #{out.id} promoted but acceptance failed")


def _follow(ctx: Context, rollout_id: int, timeout_s: float, quiet: bool) -> dict[str, Any]:
    """Drive and show the rollout until it ends or pauses, then wait for traffic and check acceptance."""
    from mloncall.rollout import service
    from mloncall.rollout.models import Rollout
    from mloncall.rollout.scheduler import evaluate_once
    from mloncall.rollout.schemas import RolloutOut

    deadline = time.monotonic() + timeout_s
    live = Live(console=console.err, transient=True, refresh_per_second=4) if not quiet else None
    if live:
        live.start()
    try:
        while True:
            evaluate_once(ctx, rollout_id, actor=console.actor())
            with ctx.db.session() as session:
                r = session.get(Rollout, rollout_id)
                assert r is not None
                state, snapshot = r.state, RolloutOut.model_validate(r)
                analysis = (
                    service.analyse(session=session, store=ctx.store, rollout=r, now=clock.now())
                    if state == RolloutState.RUNNING
                    else None
                )
            if live:
                live.update(_status_table(snapshot, analysis.counts if analysis else None))
            if state != RolloutState.RUNNING or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        result: dict[str, Any] = {"rollout": snapshot.model_dump(mode="json")}
        if not quiet:
            for e in snapshot.events[1:]:
                console.out.print(
                    f"  {e.at:%H:%M:%S} {e.from_state} → {e.to_state} at {e.weight:.0%}: {e.reason}"
                )
        if state == RolloutState.PROMOTED:
            result["acceptance"] = _acceptance_after(ctx, rollout_id, deadline, live, quiet)
        elif not quiet:
            console.out.print(f"rollout #{rollout_id} [bold]{state}[/]: {snapshot.reason}")
        return result
    finally:
        if live:
            live.stop()


def _acceptance_after(
    ctx: Context, rollout_id: int, deadline: float, live: Live | None, quiet: bool
) -> dict[str, Any]:
    from mloncall.rollout.scheduler import acceptance_when_ready

    acceptance = acceptance_when_ready(
        ctx, rollout_id, timeout=max(0.0, deadline - time.monotonic()), on_wait=live.update if live else None
    )
    if not quiet:
        print_acceptance(acceptance)
    return acceptance


def _print_prechecks(prechecks: list[dict[str, Any]]) -> None:
    rows = [[c["name"], outcome_label(c["outcome"]), c["reason"]] for c in prechecks]
    console.out.print(console.table("pre-checks", ["check", "result", "reason"], rows))


def _status_table(r: Any, counts: dict[str, int] | None) -> Table:
    steps = " → ".join(f"[bold]{s}%[/]" if i == r.step_index else f"{s}%" for i, s in enumerate(r.steps))
    t = Table(
        title=f"rollout #{r.id} {r.model} v{r.from_version} → v{r.to_version}: {r.state}",
        title_justify="left",
    )
    t.add_column("steps")
    t.add_column("canary requests this step")
    t.add_column("last analysis")
    last = r.analyses[-1]["outcome"] if r.analyses else "-"
    t.add_row(steps, str(counts["canary"]) if counts else "-", last)
    return t


def _steer(name: str, action: str, reason: str, json_out: bool) -> None:
    from mloncall.rollout import service
    from mloncall.rollout.schemas import RolloutOut

    with audited_change(f"rollout.{action}", name) as (session, _ctx, detail):
        r = service.get_active_or_raise(session=session, name=name)
        fn = {"pause": service.pause, "resume": service.resume, "promote": service.promote}.get(action)
        if fn is not None:
            fn(session=session, rollout=r, actor=console.actor(), reason=reason or f"{action}d by hand")
        else:
            service.abort(
                session=session, rollout=r, actor=console.actor(), reason=reason or "aborted by hand"
            )
        detail.update(rollout=r.id, state=r.state, reason=reason)
        out = RolloutOut.model_validate(r)
    if json_out:
        console.print_json(out.model_dump(mode="json"))
    else:
        console.out.print(f"rollout #{out.id} of {name} v{out.to_version}: {out.state} ({out.reason})")


#: The hand-steering commands: each acts on the model's active rollout through `_steer`.
_STEERING = (
    ("pause", "Hold the canary at its current weight."),
    ("resume", "Continue a paused rollout (its current step is judged again on fresh traffic)."),
    ("promote", "Make the canary production now, skipping the remaining steps."),
    ("abort", "Send all traffic back to the stable version at once."),
)


def _steering_command(action: str, doc: str) -> Callable[..., None]:
    def command(
        name: str = typer.Argument(..., help="Model name."), reason: str = REASON, json_out: bool = JSON
    ) -> None:
        _steer(name, action, reason, json_out)

    command.__name__ = command.__qualname__ = action
    command.__doc__ = doc
    return command


for _action, _doc in _STEERING:
    rollout_app.command(name=_action)(_steering_command(_action, _doc))


@rollout_app.command()
def status(name: str = typer.Argument(..., help="Model name."), json_out: bool = JSON) -> None:
    """The model's newest rollout, the live routing and, while running, the current step's analysis."""
    from mloncall.rollout import service
    from mloncall.rollout.schemas import RolloutOut
    from mloncall.serving import service as routing

    with installation() as ctx, ctx.db.session() as session:
        r = service.latest(session=session, name=name)
        view = routing.effective(session=session, name=name).to_dict()
        analysis = None
        if r is not None and r.state == RolloutState.RUNNING:
            analysis = service.analyse(session=session, store=ctx.store, rollout=r, now=clock.now()).to_dict()
        out = RolloutOut.model_validate(r) if r is not None else None
    data = {"rollout": out.model_dump(mode="json") if out else None, "routing": view, "analysis": analysis}
    if json_out:
        console.print_json(data)
        return
    console.out.print(
        f"routing: stable v{view['stable_version']}"
        + (
            f", canary v{view['canary_version']} at {view['canary_weight']:.0%}"
            if view["canary_version"]
            else ""
        )
    )
    if out is None:
        console.out.print(f"{name} has no rollouts yet")
        return
    console.out.print(_status_table(out, analysis["counts"] if analysis else None))
    console.out.print(f"state {out.state}: {out.reason}")
    if analysis:
        rows = [[c["name"], outcome_label(c["outcome"]), c["reason"]] for c in analysis["checks"]]
        console.out.print(console.table("current step", ["check", "result", "evidence"], rows))
    if out.acceptance:
        print_acceptance(out.acceptance)


@rollout_app.command("history")
def history_cmd(name: str = typer.Argument(..., help="Model name."), json_out: bool = JSON) -> None:
    """Every rollout of the model with every transition, actor and reason."""
    from mloncall.rollout import service
    from mloncall.rollout.schemas import RolloutOut

    with installation() as ctx, ctx.db.session() as session:
        rollouts = [RolloutOut.model_validate(r) for r in service.history(session=session, name=name)]
    if json_out:
        console.print_json([r.model_dump(mode="json") for r in rollouts])
        return
    rows = []
    for r in rollouts:
        for e in r.events:
            rows.append(
                [
                    f"#{r.id}",
                    r.strategy,
                    f"v{r.from_version or '-'}→v{r.to_version}",
                    f"{e.at:%Y-%m-%d %H:%M:%S}",
                    f"{e.from_state or '-'} → {e.to_state}",
                    f"{e.weight:.0%}",
                    e.actor,
                    e.reason,
                ]
            )
    console.out.print(
        console.table(
            f"{name}: rollout history",
            ["rollout", "kind", "versions", "at", "transition", "canary", "by", "reason"],
            rows,
            drop_first=("kind", "by", "canary"),
        )
    )


@rollout_app.command("acceptance")
def acceptance_cmd(name: str = typer.Argument(..., help="Model name."), json_out: bool = JSON) -> None:
    """Check runbook 1's acceptance criteria again for the newest promoted rollout, from live data."""
    from mloncall.rollout.acceptance import check_acceptance, latest_promoted_or_raise

    with installation() as ctx, ctx.db.session() as session:
        r = latest_promoted_or_raise(session=session, name=name)
        _, verdict = check_acceptance(session=session, store=ctx.store, rollout=r, now=clock.now())
        acceptance = dict(r.acceptance or {})
    if json_out:
        console.print_json(acceptance)
    else:
        print_acceptance(acceptance)
    if verdict is Outcome.FAILED:
        raise CheckFailed(f"acceptance failed for {name}")


@app.command()
def rollback(
    name: str = typer.Argument(..., help="Model name."),
    reason: str = REASON,
    json_out: bool = JSON,
) -> None:
    """Production back to `previous` at once, after verifying and smoke-testing it."""
    from mloncall.rollout import service
    from mloncall.rollout.schemas import RolloutOut

    with audited_change("rollout.rollback", name) as (session, ctx, detail):
        r = service.rollback(
            session=session, store=ctx.store, name=name, actor=console.actor(), reason=reason
        )
        detail.update(rollout=r.id, from_version=r.from_version, to_version=r.to_version)
        out = RolloutOut.model_validate(r)
    if json_out:
        console.print_json(out.model_dump(mode="json"))
    else:
        console.out.print(
            f"rolled back {name}: production v{out.from_version} → v{out.to_version} ({out.reason})"
        )
