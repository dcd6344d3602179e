"""`mloncall alerts ...` (list, show, ack, resolve, close, silence, rules) and `mloncall monitor run|prometheus-rules`.

Changes are audited with the actor `cli:<user>`; errors are raised as `MloncallError` for the root command to
turn into one line and an exit code. Notifications a change queues are sent before the command returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.table import Table
from sqlalchemy.orm import Session

from mloncall.alerts import notify, promrules, render, rules, service
from mloncall.alerts.channels import channels_from_settings
from mloncall.alerts.models import Alert, Silence
from mloncall.alerts.schemas import AlertDetail, AlertOut, GroupOut, RuleSetOut, SilenceOut
from mloncall.alerts.states import NotificationStatus
from mloncall.cli.support import (
    JsonOption,
    audited_change,
    id_argument,
    installation,
    limit_option,
    print_json_if_asked,
    report_sending,
)
from mloncall.core import console
from mloncall.core.durations import parse_duration
from mloncall.core.errors import InvalidInput
from mloncall.scaling import promslo
from mloncall.scaling import service as slo_service
from mloncall.stores.context import Context

app = typer.Typer(
    help="Alerts: list, show, acknowledge, resolve, silence; the alert rules.", no_args_is_help=True
)
rules_app = typer.Typer(help="The alert rules: load a YAML file, show the active set.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
#: Mounted as `mloncall monitor` (or its commands added to the monitoring domain's `monitor` group).
monitor_app = typer.Typer(help="Evaluate the alert rules; write Prometheus rules.", no_args_is_help=True)

AlertIdArgument = Annotated[int, id_argument("The alert's id.")]
#: A row of a listing the commands print (a response model, as the API answers).
Out = TypeVar("Out", bound=BaseModel)


def _failure(r: notify.DispatchResult) -> str | None:
    if r.status != NotificationStatus.FAILED:
        return None
    failed = ", ".join(k for k, v in r.channels.items() if v == NotificationStatus.FAILED)
    return f"alert #{r.alert_id}: {r.event} notification failed on {failed}"


def _send(ctx: Context) -> None:
    """Send what the command queued; a misconfigured channel is reported, not fatal to the change made."""
    report_sending(partial(notify.send_pending, ctx), what="notifications", failure=_failure)


@contextmanager
def _change(action: str, target: str, *, send: bool = False) -> Iterator[tuple[Session, dict[str, Any]]]:
    """One audited change to the installation; with `send`, the notifications it queued go out after it
    commits."""
    with audited_change(action, target, then=_send if send else None) as (session, _ctx, detail):
        yield session, detail


def _listing(
    found: Sequence[Out], as_json: bool, *, none: str, table: Callable[[Sequence[Out]], Table]
) -> None:
    """Print a listing: as JSON if asked, else as its table, or say that there is nothing to list."""
    if print_json_if_asked(found, as_json):
        return
    if not found:
        console.out.print(none)
        return
    console.out.print(table(found))


def _alert_out(session: Session, alert: Alert, silences: Sequence[Silence] | None = None) -> AlertOut:
    silence = service.silenced_by(session=session, alert=alert, silences=silences)
    return AlertOut.from_alert(alert, silenced_by=silence.id if silence else None)


# --- alerts ----------------------------------------------------------------------------------------------


@app.command("list")
def list_alerts(
    state: Annotated[
        str | None,
        typer.Option(help="pending, firing, resolved, inactive, closed, or open (pending+firing)."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model's alerts.")] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule's alerts.")] = None,
    limit: Annotated[int, limit_option("At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Alerts, newest first."""
    with installation() as ctx, ctx.db.session() as session:
        found = service.list_alerts(session=session, state=state, model=model, rule=rule, limit=limit)
        silences = service.active_silences(session=session)
        alerts = [_alert_out(session, a, silences) for a in found]
    none = "no alerts" + (f" in state {state}" if state else "") + ": all quiet"
    _listing(alerts, as_json, none=none, table=render.alerts_table)


@app.command("show")
def show(alert_id: AlertIdArgument, as_json: JsonOption = False) -> None:
    """An alert with its evidence, its history and who was told."""
    with installation() as ctx, ctx.db.session() as session:
        alert = service.get_alert_or_raise(session=session, alert_id=alert_id)
        silence = service.silenced_by(session=session, alert=alert)
        detail = AlertDetail.from_alert(alert, silenced_by=silence.id if silence else None)
    if not print_json_if_asked(detail, as_json):
        render.print_alert(detail)


@app.command("ack")
def ack(
    alert_id: AlertIdArgument,
    reason: Annotated[str, typer.Option(help="Why, or what you are doing about it.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Acknowledge an alert: you are on it."""
    with _change("alerts.ack", f"alert:{alert_id}") as (session, detail):
        alert, transition = service.acknowledge(
            session=session, alert_id=alert_id, actor=console.actor(), reason=reason
        )
        detail.update(changed=transition is not None)
        out = _alert_out(session, alert)
    if print_json_if_asked(out, as_json):
        return
    if transition is None:
        console.out.print(f"alert #{alert_id} was already acknowledged by {out.acknowledged_by}")
    else:
        console.out.print(f"acknowledged alert #{alert_id} ({out.rule}, {out.state})")


@app.command("resolve")
def resolve(
    alert_id: AlertIdArgument,
    note: Annotated[str, typer.Option("--note", help="Why it is resolved (required).")],
    as_json: JsonOption = False,
) -> None:
    """Resolve an alert by hand. If its condition still holds, the next evaluation re-opens it."""
    with _change("alerts.resolve", f"alert:{alert_id}", send=True) as (session, detail):
        detail.update(note=note)
        alert, _ = service.resolve(session=session, alert_id=alert_id, note=note, actor=console.actor())
        out = _alert_out(session, alert)
    if not print_json_if_asked(out, as_json):
        console.out.print(f"resolved alert #{alert_id} ({out.rule})")


@app.command("close")
def close(
    alert_id: AlertIdArgument,
    root_cause: Annotated[str, typer.Option("--root-cause", help="What caused it.")],
    action: Annotated[
        str, typer.Option("--action", help="What was done (rollback, retrain, fix upstream, ...).")
    ],
    note: Annotated[str, typer.Option("--note", help="Anything else worth keeping.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Close an investigated alert with its root cause and the action taken."""
    with _change("alerts.close", f"alert:{alert_id}", send=True) as (session, detail):
        detail.update(root_cause=root_cause, action=action)
        alert = service.close(
            session=session, alert_id=alert_id, root_cause=root_cause, action=action, note=note,
            actor=console.actor(),
        )  # fmt: skip
        out = _alert_out(session, alert)
    if not print_json_if_asked(out, as_json):
        console.out.print(f"closed alert #{alert_id} ({out.rule}): {root_cause} -> {action}")


@app.command("silence")
def silence(
    matcher: Annotated[
        list[str],
        typer.Option(
            "--matcher", "-m", help="NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX; repeat to narrow."
        ),
    ],
    duration: Annotated[str, typer.Option(help="How long, e.g. 30m, 2h, 1d.")],
    comment: Annotated[str, typer.Option(help="Why (required).")],
    as_json: JsonOption = False,
) -> None:
    """Mute notifications of matching alerts for a while; they still change state and keep their history."""
    length = parse_duration(duration, what="silence length")
    with _change("alerts.silence", "silences") as (session, detail):
        detail.update(matchers=matcher, duration=duration)
        created = service.create_silence(
            session=session, matchers=matcher, duration=length, comment=comment, actor=console.actor()
        )
        detail.update(silence_id=created.id)
        out = SilenceOut.model_validate(created)
    if not print_json_if_asked(out, as_json):
        console.out.print(
            f"silence #{out.id}: {', '.join(out.matchers)} until {render.when(out.ends_at)} UTC"
            f" (end it early with `mloncall alerts expire {out.id}`)"
        )


@app.command("silences")
def silences(
    show_all: Annotated[bool, typer.Option("--all", help="Also expired silences.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Silences in force (and, with --all, the expired ones)."""
    with installation() as ctx, ctx.db.session() as session:
        found = [
            SilenceOut.model_validate(s)
            for s in service.list_silences(session=session, include_expired=show_all)
        ]
    _listing(
        found, as_json, none="no silences" + ("" if show_all else " in force"), table=render.silences_table
    )


@app.command("expire")
def expire(silence_id: Annotated[int, id_argument("The silence's id.")], as_json: JsonOption = False) -> None:
    """End a silence now."""
    with _change("alerts.silence.expire", f"silence:{silence_id}") as (session, _):
        out = SilenceOut.model_validate(
            service.expire_silence(session=session, silence_id=silence_id, actor=console.actor())
        )
    if not print_json_if_asked(out, as_json):
        console.out.print(f"silence #{silence_id} expired at {render.when(out.ends_at)} UTC")


@app.command("groups")
def groups(
    show_all: Annotated[bool, typer.Option("--all", help="Also groups without an open alert.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Alert groups: alerts of one model and runbook (or one Alertmanager group) together."""
    with installation() as ctx, ctx.db.session() as session:
        found = [
            GroupOut.model_validate(g)
            for g, _ in service.list_groups(session=session, include_quiet=show_all)
        ]
    _listing(
        found,
        as_json,
        none="no alert groups" + ("" if show_all else " with open alerts"),
        table=render.groups_table,
    )


@app.command("channels")
def channels(as_json: JsonOption = False) -> None:
    """The notification channels configured in `[alerts]` of mloncall.toml (no secrets shown)."""
    with installation() as ctx:
        found = channels_from_settings(ctx.settings)
    if as_json:
        console.print_json([c.to_dict() for c in found])
        return
    if not found:
        console.out.print("no notification channels: add [[alerts.channels]] tables to mloncall.toml")
        return
    console.out.print(render.channels_table(found))


# --- rules -----------------------------------------------------------------------------------------------


def _slo_rules() -> list[dict[str, Any]]:
    """The burn-rate rules of every SLO, when there is an installation to read them from (none otherwise)."""
    ctx = Context.from_settings()
    try:
        if not ctx.db.initialised():
            return promslo.slo_rules(list(slo_service.configured(ctx.settings).values()))
        ctx.open()
        with ctx.db.session() as session:
            return promslo.slo_rules(slo_service.list_objectives(session=session, settings=ctx.settings))
    finally:
        ctx.close()


def _read_rules_file(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"rules file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read rules file {file}: {exc}") from None


@rules_app.command("load")
def rules_load(
    file: Annotated[Path, typer.Argument(help="A rules YAML file.", exists=False)],
    as_json: JsonOption = False,
) -> None:
    """Validate a rules file and make it active; any error refuses the whole file and keeps the active rules."""
    text = _read_rules_file(file)
    with _change("alerts.rules.load", f"rules:{file.name}") as (session, detail):
        active, changed = service.load_rules(
            session=session, text=text, origin=str(file), actor=console.actor()
        )
        detail.update(
            version=active.version, sha256=active.sha256, changed=changed, rules=len(active.rules.rules)
        )
        out = RuleSetOut.model_validate(active)
    if as_json:
        console.print_json({"changed": changed, **out.model_dump(mode="json")})
        return
    if changed:
        console.out.print(f"[green]loaded[/] {len(out.rules)} rules from {file} as rule set v{out.version}")
    else:
        console.out.print(f"{file} is the active rule set v{out.version} already: nothing changed")


@rules_app.command("show")
def rules_show(
    as_json: JsonOption = False,
    as_yaml: Annotated[bool, typer.Option("--yaml", help="Print the active rules file as loaded.")] = False,
) -> None:
    """The active rule set (the built-in defaults until a file is loaded)."""
    with installation() as ctx, ctx.db.session() as session:
        active = service.active_rules(session=session)
        sources = service.list_rule_sets(session=session)
        text = sources[0].source if sources else rules.default_rules_text()
        out = RuleSetOut.model_validate(active)
    if as_yaml:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    if not print_json_if_asked(out, as_json):
        render.print_rules(out)


# --- monitor ---------------------------------------------------------------------------------------------


@monitor_app.command("run")
def monitor_run(
    as_json: JsonOption = False,
    no_notify: Annotated[
        bool, typer.Option("--no-notify", help="Queue notifications but do not send them now.")
    ] = False,
) -> None:
    """Evaluate every alert rule once on every model it covers; print the checks and the alert transitions."""
    with installation() as ctx:
        evaluation = service.evaluate(ctx=ctx, actor=console.actor())
        sent = [] if no_notify else notify.send_pending(ctx)
    if as_json:
        console.print_json({**evaluation.to_dict(), "notifications": [s.to_dict() for s in sent]})
        return
    render.print_evaluation(evaluation, sent)


@monitor_app.command("prometheus-rules")
def prometheus_rules(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    job: Annotated[str, typer.Option(help="The Prometheus job that scrapes mloncall.")] = "mloncall",
    max_error_rate: Annotated[float, typer.Option(help="Share of 5xx answers that alerts.")] = 0.01,
    max_p99_ms: Annotated[float, typer.Option(help="p99 latency in ms that alerts.")] = 250.0,
    slo: Annotated[
        bool,
        typer.Option("--slo/--no-slo", help="Add the SLOs' burn-rate alerts (of an existing installation)."),
    ] = True,
) -> None:
    """Write a Prometheus alerting rules file for mloncall's /metrics (check it with `promtool check rules`)."""
    if not 0 < max_error_rate < 1:
        raise InvalidInput(f"--max-error-rate must be between 0 and 1, not {max_error_rate}")
    if max_p99_ms <= 0:
        raise InvalidInput(f"--max-p99-ms must be positive, not {max_p99_ms}")
    limits = promrules.Thresholds(job=job, max_error_rate=max_error_rate, max_p99_seconds=max_p99_ms / 1000)
    text = promrules.prometheus_rules(limits, slo_rules=_slo_rules() if slo else None)
    if output is None:
        typer.echo(text, nl=False)
        return
    tmp = output.with_name(output.name + ".tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc}") from None
    console.err.print(f"wrote {output}: check it with `promtool check rules {output}`", soft_wrap=True)
