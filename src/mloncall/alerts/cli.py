"""`mloncall alerts ...` (list, show, ack, resolve, close, silence, rules) and `mloncall monitor run|prometheus-rules`.

Changes are audited with the actor `cli:<user>`; errors are raised as `MloncallError` for the root command to
turn into one line and an exit code. Notifications a change queues are sent before the command returns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mloncall.alerts import notify, promrules, rules, service
from mloncall.alerts.channels import channels_from_settings
from mloncall.alerts.models import Alert
from mloncall.alerts.schemas import AlertDetail, AlertOut, GroupOut, RuleSetOut, SilenceOut
from mloncall.cli.support import audited_unit_of_work
from mloncall.core import clock, console
from mloncall.core.durations import format_duration, parse_duration
from mloncall.core.errors import InvalidInput
from mloncall.core.outcome import Outcome
from mloncall.stores.context import Context

app = typer.Typer(
    help="Alerts: list, show, acknowledge, resolve, silence; the alert rules.", no_args_is_help=True
)
rules_app = typer.Typer(help="The alert rules: load a YAML file, show the active set.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
#: Mounted as `mloncall monitor` (or its commands added to the monitoring domain's `monitor` group).
monitor_app = typer.Typer(help="Evaluate the alert rules; write Prometheus rules.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

_STATE_STYLE = {
    "firing": "bold red",
    "pending": "yellow",
    "resolved": "green",
    "inactive": "dim",
    "closed": "blue",
}


@contextmanager
def _context() -> Iterator[Context]:
    ctx = Context.from_settings()
    try:
        ctx.db.migrate()
        yield ctx
    finally:
        ctx.close()


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _ago(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    seconds = int((clock.now() - value).total_seconds())
    return f"{format_duration(dt.timedelta(seconds=max(seconds, 0)))} ago"


def _state(alert: AlertOut) -> str:
    text = f"[{_STATE_STYLE.get(alert.state, '')}]{alert.state}[/]"
    if alert.acknowledged and alert.state in ("pending", "firing"):
        text += " (acked)"
    if alert.silenced_by is not None:
        text += f" [dim](silenced #{alert.silenced_by})[/]"
    return text


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _send(ctx: Context) -> None:
    """Send what the command queued; a misconfigured channel is reported, not fatal to the change made."""
    try:
        results = notify.send_pending(ctx)
    except InvalidInput as exc:
        console.err.print(f"[yellow]notifications not sent:[/] {exc.message}")
        return
    for r in results:
        if r.status == "failed":
            failed = ", ".join(k for k, v in r.channels.items() if v == "failed")
            console.err.print(f"[yellow]alert #{r.alert_id}: {r.event} notification failed on {failed}[/]")


def _alert_out(session: Any, alert: Alert, silences: Any = None) -> AlertOut:
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
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Alerts, newest first."""
    with _context() as ctx, ctx.db.session() as session:
        found = service.list_alerts(session=session, state=state, model=model, rule=rule, limit=limit)
        silences = service.active_silences(session=session)
        alerts = [_alert_out(session, a, silences) for a in found]
    if as_json:
        console.print_json([a.model_dump(mode="json") for a in alerts])
        return
    if not alerts:
        console.out.print("no alerts" + (f" in state {state}" if state else "") + ": all quiet")
        return
    rows = [
        [
            a.id,
            _state(a),
            a.severity,
            a.rule,
            a.model or "-",
            a.runbook or "-",
            _value(a.value),
            _ago(a.fired_at or a.active_since),
            a.group_id or "-",
            a.source,
        ]
        for a in alerts
    ]
    console.out.print(
        console.table(
            "alerts",
            ["id", "state", "severity", "rule", "model", "runbook", "value", "since", "group", "source"],
            rows,
        )
    )


@app.command("show")
def show(
    alert_id: Annotated[int, typer.Argument(help="The alert's id.")], as_json: JsonOption = False
) -> None:
    """An alert with its evidence, its history and who was told."""
    with _context() as ctx, ctx.db.session() as session:
        alert = service.get_alert_or_raise(session=session, alert_id=alert_id)
        silence = service.silenced_by(session=session, alert=alert)
        detail = AlertDetail.from_alert(alert, silenced_by=silence.id if silence else None)
    if as_json:
        console.print_json(detail.model_dump(mode="json"))
        return
    d = detail
    console.out.print(
        f"[bold]alert #{d.id}[/]  {_state(d)}  {d.severity}  rule [bold]{d.rule}[/]"
        f"{f'  model [bold]{d.model}[/]' if d.model else ''}  runbook {d.runbook or '-'}  source {d.source}"
    )
    for key in ("summary", "description"):
        if d.annotations.get(key):
            console.out.print(f"  {d.annotations[key]}")
    facts = [
        ["value", _value(d.value)],
        ["labels", ", ".join(f"{k}={v}" for k, v in sorted(d.labels.items()))],
        ["group", d.group or "-"],
        ["active since", _when(d.active_since)],
        ["fired at", _when(d.fired_at)],
        ["resolved at", _when(d.resolved_at)],
        ["re-opened", f"{d.reopen_count} time(s)"],
        ["acknowledged", f"{d.acknowledged_by} at {_when(d.acknowledged_at)}" if d.acknowledged else "-"],
        ["last evaluated", _when(d.last_evaluated_at)],
        ["fingerprint", d.fingerprint[:24] + ("…" if len(d.fingerprint) > 24 else "")],
    ]
    if d.state == "closed":
        facts += [
            ["closed", f"by {d.closed_by} at {_when(d.closed_at)}"],
            ["root cause", d.root_cause or "-"],
            ["action", d.action or "-"],
        ]
    if d.resolution_note:
        facts.append(["note", d.resolution_note])
    facts_table = Table(show_header=False, box=None, padding=(0, 2))
    for label, value in facts:
        facts_table.add_row(f"[dim]{label}[/]", str(value))
    console.out.print(facts_table)
    check = d.last_check
    if check:
        console.out.print(
            f"latest check: {check.get('outcome')}  {check.get('reason', '')}\n"
            f"  evidence: {', '.join(f'{k}={v}' for k, v in (check.get('evidence') or {}).items())[:600]}"
        )
    console.out.print(
        console.table(
            "history",
            ["at", "event", "from", "to", "by", "reason"],
            [
                [
                    _when(e.at),
                    e.kind + (f" (silenced #{e.silence_id})" if e.silence_id else ""),
                    e.from_state or "-",
                    e.to_state,
                    e.actor,
                    e.reason[:160],
                ]
                for e in d.history
            ],
        )
    )
    rows: list[list[Any]] = []
    for n in d.notifications:
        if not n.deliveries:
            rows.append([n.event, "-", "-", n.status, _when(n.finished_at or n.created_at), n.error or ""])
        for a in n.deliveries:
            rows.append([n.event, a.channel, a.attempt, a.status, _when(a.at), (a.error or "")[:120]])
    if rows:
        console.out.print(
            console.table("notifications", ["event", "channel", "attempt", "status", "at", "error"], rows)
        )
    else:
        console.out.print("notifications: none")


@app.command("ack")
def ack(
    alert_id: Annotated[int, typer.Argument(help="The alert's id.")],
    reason: Annotated[str, typer.Option(help="Why, or what you are doing about it.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Acknowledge an alert: you are on it."""
    with (
        _context() as ctx,
        audited_unit_of_work(ctx, action="alerts.ack", target=f"alert:{alert_id}") as unit,
    ):
        session, detail = unit
        alert, transition = service.acknowledge(
            session=session, alert_id=alert_id, actor=console.actor(), reason=reason
        )
        detail.update(changed=transition is not None)
        out = _alert_out(session, alert)
    if as_json:
        console.print_json(out.model_dump(mode="json"))
        return
    if transition is None:
        console.out.print(f"alert #{alert_id} was already acknowledged by {out.acknowledged_by}")
    else:
        console.out.print(f"acknowledged alert #{alert_id} ({out.rule}, {out.state})")


@app.command("resolve")
def resolve(
    alert_id: Annotated[int, typer.Argument(help="The alert's id.")],
    note: Annotated[str, typer.Option("--note", help="Why it is resolved (required).")],
    as_json: JsonOption = False,
) -> None:
    """Resolve an alert by hand. If its condition still holds, the next evaluation re-opens it."""
    with _context() as ctx:
        with audited_unit_of_work(ctx, action="alerts.resolve", target=f"alert:{alert_id}") as unit:
            session, detail = unit
            detail.update(note=note)
            alert, _ = service.resolve(session=session, alert_id=alert_id, note=note, actor=console.actor())
            out = _alert_out(session, alert)
        _send(ctx)
    if as_json:
        console.print_json(out.model_dump(mode="json"))
        return
    console.out.print(f"resolved alert #{alert_id} ({out.rule})")


@app.command("close")
def close(
    alert_id: Annotated[int, typer.Argument(help="The alert's id.")],
    root_cause: Annotated[str, typer.Option("--root-cause", help="What caused it.")],
    action: Annotated[
        str, typer.Option("--action", help="What was done (rollback, retrain, fix upstream, ...).")
    ],
    note: Annotated[str, typer.Option("--note", help="Anything else worth keeping.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Close an investigated alert with its root cause and the action taken."""
    with _context() as ctx:
        with audited_unit_of_work(ctx, action="alerts.close", target=f"alert:{alert_id}") as unit:
            session, detail = unit
            detail.update(root_cause=root_cause, action=action)
            alert = service.close(
                session=session,
                alert_id=alert_id,
                root_cause=root_cause,
                action=action,
                note=note,
                actor=console.actor(),
            )
            out = _alert_out(session, alert)
        _send(ctx)
    if as_json:
        console.print_json(out.model_dump(mode="json"))
        return
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
    with (
        _context() as ctx,
        audited_unit_of_work(ctx, action="alerts.silence", target="silences") as unit,
    ):
        session, detail = unit
        detail.update(matchers=matcher, duration=duration)
        created = service.create_silence(
            session=session, matchers=matcher, duration=length, comment=comment, actor=console.actor()
        )
        detail.update(silence_id=created.id)
        out = SilenceOut.model_validate(created)
    if as_json:
        console.print_json(out.model_dump(mode="json"))
        return
    console.out.print(
        f"silence #{out.id}: {', '.join(out.matchers)} until {_when(out.ends_at)} UTC"
        f" (end it early with `mloncall alerts expire {out.id}`)"
    )


@app.command("silences")
def silences(
    show_all: Annotated[bool, typer.Option("--all", help="Also expired silences.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Silences in force (and, with --all, the expired ones)."""
    with _context() as ctx, ctx.db.session() as session:
        found = [
            SilenceOut.model_validate(s)
            for s in service.list_silences(session=session, include_expired=show_all)
        ]
    if as_json:
        console.print_json([s.model_dump(mode="json") for s in found])
        return
    if not found:
        console.out.print("no silences" + ("" if show_all else " in force"))
        return
    rows = [
        [
            s.id,
            ", ".join(s.matchers),
            s.status,
            _when(s.starts_at),
            _when(s.ends_at),
            s.created_by,
            s.comment[:60],
        ]
        for s in found
    ]
    console.out.print(
        console.table("silences", ["id", "matchers", "status", "starts", "ends", "by", "comment"], rows)
    )


@app.command("expire")
def expire(
    silence_id: Annotated[int, typer.Argument(help="The silence's id.")], as_json: JsonOption = False
) -> None:
    """End a silence now."""
    with (
        _context() as ctx,
        audited_unit_of_work(ctx, action="alerts.silence.expire", target=f"silence:{silence_id}") as unit,
    ):
        session, _ = unit
        out = SilenceOut.model_validate(
            service.expire_silence(session=session, silence_id=silence_id, actor=console.actor())
        )
    if as_json:
        console.print_json(out.model_dump(mode="json"))
        return
    console.out.print(f"silence #{silence_id} expired at {_when(out.ends_at)} UTC")


@app.command("groups")
def groups(
    show_all: Annotated[bool, typer.Option("--all", help="Also groups without an open alert.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Alert groups: alerts of one model and runbook (or one Alertmanager group) together."""
    with _context() as ctx, ctx.db.session() as session:
        found = [
            GroupOut.model_validate(g)
            for g, _ in service.list_groups(session=session, include_quiet=show_all)
        ]
    if as_json:
        console.print_json([g.model_dump(mode="json") for g in found])
        return
    if not found:
        console.out.print("no alert groups" + ("" if show_all else " with open alerts"))
        return
    rows = [
        [g.id, g.key, g.state, g.open_alerts, ", ".join(f"#{i}" for i in g.alerts[-10:]), _ago(g.updated_at)]
        for g in found
    ]
    console.out.print(
        console.table("alert groups", ["id", "key", "state", "open", "alerts", "updated"], rows)
    )


@app.command("channels")
def channels(as_json: JsonOption = False) -> None:
    """The notification channels configured in `[alerts]` of mloncall.toml (no secrets shown)."""
    with _context() as ctx:
        found = channels_from_settings(ctx.settings)
    if as_json:
        console.print_json([c.to_dict() for c in found])
        return
    if not found:
        console.out.print("no notification channels: add [[alerts.channels]] tables to mloncall.toml")
        return
    rows = [
        [
            c.name,
            c.type,
            c.describe(),
            ", ".join(c.events),
            ", ".join(c.severities or ["all"]),
            c.max_attempts,
        ]
        for c in found
    ]
    console.out.print(
        console.table("channels", ["name", "type", "target", "events", "severities", "attempts"], rows)
    )


# --- rules -----------------------------------------------------------------------------------------------


def _print_rules(out: RuleSetOut) -> None:
    loaded = f"loaded {_when(out.loaded_at)} by {out.loaded_by}" if out.loaded_at else "built in"
    console.out.print(
        f"rule set v{out.version} from {out.origin} ({loaded}), sha256 {out.sha256[:12]}…, "
        f"group by {', '.join(out.group_by)}, hold time {out.hold_time}"
    )
    rows = [
        [
            r["name"],
            r["model"],
            r["monitor"],
            ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-",
            r["window"],
            r["for"],
            r["severity"],
            r["runbook"],
        ]
        for r in out.rules
    ]
    console.out.print(
        console.table(
            "rules", ["name", "model", "monitor", "params", "window", "for", "severity", "runbook"], rows
        )
    )


@rules_app.command("load")
def rules_load(
    file: Annotated[Path, typer.Argument(help="A rules YAML file.", exists=False)],
    as_json: JsonOption = False,
) -> None:
    """Validate a rules file and make it active; any error refuses the whole file and keeps the active rules."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"rules file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read rules file {file}: {exc}") from None
    with (
        _context() as ctx,
        audited_unit_of_work(ctx, action="alerts.rules.load", target=f"rules:{file.name}") as unit,
    ):
        session, detail = unit
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
    with _context() as ctx, ctx.db.session() as session:
        active = service.active_rules(session=session)
        sources = service.list_rule_sets(session=session)
        text = sources[0].source if sources else rules.default_rules_text()
        out = RuleSetOut.model_validate(active)
    if as_yaml:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    if as_json:
        console.print_json(out.model_dump(mode="json"))
        return
    _print_rules(out)


# --- monitor ---------------------------------------------------------------------------------------------


@monitor_app.command("run")
def monitor_run(
    as_json: JsonOption = False,
    no_notify: Annotated[
        bool, typer.Option("--no-notify", help="Queue notifications but do not send them now.")
    ] = False,
) -> None:
    """Evaluate every alert rule once on every model it covers; print the checks and the alert transitions."""
    with _context() as ctx:
        evaluation = service.evaluate(ctx=ctx, actor=console.actor())
        sent = [] if no_notify else notify.send_pending(ctx)
    if as_json:
        console.print_json({**evaluation.to_dict(), "notifications": [s.to_dict() for s in sent]})
        return
    if not evaluation.checks:
        console.out.print(
            f"rule set v{evaluation.rule_set_version}: nothing to evaluate (no rules, or no served models)"
        )
    else:
        rows = [
            [c.rule, c.model, c.monitor, console.outcome_text(c.check.outcome), c.check.reason[:100]]
            for c in evaluation.checks
        ]
        console.out.print(
            console.table(
                f"checks (rule set v{evaluation.rule_set_version})",
                ["rule", "model", "monitor", "outcome", "reason"],
                rows,
            )
        )
    if evaluation.transitions:
        rows = [
            [
                f"#{t.alert_id}",
                t.rule,
                t.model or "-",
                f"{t.from_state or 'new'} → {t.to_state}",
                (t.notify or "-") + (f" (silenced #{t.silenced_by})" if t.silenced_by else ""),
                t.reason[:100],
            ]
            for t in evaluation.transitions
        ]
        console.out.print(
            console.table("transitions", ["alert", "rule", "model", "change", "notify", "reason"], rows)
        )
    else:
        console.out.print("no alert changed state")
    failed = [c for c in evaluation.checks if c.check.outcome is Outcome.ERROR]
    if failed:
        console.err.print(f"[yellow]{len(failed)} check(s) could not be evaluated (outcome error)[/]")
    for s in sent:
        if s.status == "failed":
            console.err.print(f"[yellow]alert #{s.alert_id}: {s.event} notification failed[/]")


@monitor_app.command("prometheus-rules")
def prometheus_rules(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    job: Annotated[str, typer.Option(help="The Prometheus job that scrapes mloncall.")] = "mloncall",
    max_error_rate: Annotated[float, typer.Option(help="Share of 5xx answers that alerts.")] = 0.01,
    max_p99_ms: Annotated[float, typer.Option(help="p99 latency in ms that alerts.")] = 250.0,
) -> None:
    """Write a Prometheus alerting rules file for mloncall's /metrics (check it with `promtool check rules`)."""
    if not 0 < max_error_rate < 1:
        raise InvalidInput(f"--max-error-rate must be between 0 and 1, not {max_error_rate}")
    if max_p99_ms <= 0:
        raise InvalidInput(f"--max-p99-ms must be positive, not {max_p99_ms}")
    text = promrules.prometheus_rules(
        job=job, max_error_rate=max_error_rate, max_p99_seconds=max_p99_ms / 1000
    )
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
    console.err.print(f"wrote {output}: check it with `promtool check rules {output}`")
