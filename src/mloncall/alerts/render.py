"""What the alert commands print: the alerts, one alert with its history and who was told, silences, groups,
channels, the rule set and an evaluation pass."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from mloncall.alerts.channels import Channel
from mloncall.alerts.evaluation import Evaluation
from mloncall.alerts.notify import DispatchResult
from mloncall.alerts.schemas import AlertDetail, AlertOut, GroupOut, RuleSetOut, SilenceOut
from mloncall.alerts.states import OPEN_STATES, AlertState, NotificationStatus
from mloncall.core import clock, console
from mloncall.core.durations import format_duration
from mloncall.core.outcome import Outcome

_STATE_STYLE: dict[str, str] = {
    AlertState.FIRING: "bold red",
    AlertState.PENDING: "yellow",
    AlertState.RESOLVED: "green",
    AlertState.INACTIVE: "dim",
    AlertState.CLOSED: "blue",
}


def when(value: dt.datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def ago(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    seconds = int((clock.now() - value).total_seconds())
    return f"{format_duration(dt.timedelta(seconds=max(seconds, 0)))} ago"


def state_text(alert: AlertOut) -> str:
    text = f"[{_STATE_STYLE.get(alert.state, '')}]{alert.state}[/]"
    if alert.acknowledged and alert.state in OPEN_STATES:
        text += " (acked)"
    if alert.silenced_by is not None:
        text += f" [dim](silenced #{alert.silenced_by})[/]"
    return text


def value_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def alerts_table(alerts: Sequence[AlertOut]) -> Table:
    rows = [
        [
            a.id,
            state_text(a),
            a.severity,
            a.rule,
            a.model or "-",
            a.runbook or "-",
            value_text(a.value),
            ago(a.fired_at or a.active_since),
            a.group_id or "-",
            a.source,
        ]
        for a in alerts
    ]
    return console.table(
        "alerts",
        ["id", "state", "severity", "rule", "model", "runbook", "value", "since", "group", "source"],
        rows,
        drop_first=("source", "group", "runbook", "value"),
    )


def _facts(d: AlertDetail) -> Table:
    facts = [
        ["value", value_text(d.value)],
        ["labels", ", ".join(f"{k}={v}" for k, v in sorted(d.labels.items()))],
        ["group", d.group or "-"],
        ["active since", when(d.active_since)],
        ["fired at", when(d.fired_at)],
        ["resolved at", when(d.resolved_at)],
        ["re-opened", f"{d.reopen_count} time(s)"],
        ["acknowledged", f"{d.acknowledged_by} at {when(d.acknowledged_at)}" if d.acknowledged else "-"],
        ["last evaluated", when(d.last_evaluated_at)],
        ["fingerprint", d.fingerprint[:24] + ("…" if len(d.fingerprint) > 24 else "")],
    ]
    if d.state == AlertState.CLOSED:
        facts += [
            ["closed", f"by {d.closed_by} at {when(d.closed_at)}"],
            ["root cause", d.root_cause or "-"],
            ["action", d.action or "-"],
        ]
    if d.resolution_note:
        facts.append(["note", d.resolution_note])
    table = Table(show_header=False, box=None, padding=(0, 2))
    for label, value in facts:
        table.add_row(f"[dim]{label}[/]", str(value))
    return table


def _history(d: AlertDetail) -> Table:
    rows = [
        [
            when(e.at),
            e.kind + (f" (silenced #{e.silence_id})" if e.silence_id else ""),
            e.from_state or "-",
            e.to_state,
            e.actor,
            e.reason[:160],
        ]
        for e in d.history
    ]
    return console.table("history", ["at", "event", "from", "to", "by", "reason"], rows)


def _notification_rows(d: AlertDetail) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for n in d.notifications:
        if not n.deliveries:
            rows.append([n.event, "-", "-", n.status, when(n.finished_at or n.created_at), n.error or ""])
        for a in n.deliveries:
            rows.append([n.event, a.channel, a.attempt, a.status, when(a.at), (a.error or "")[:120]])
    return rows


def _print_checks(d: AlertDetail) -> None:
    """The latest read-only checks of the alert's runbook (`auto_run: checks`), one line each."""
    found = [e for e in d.history if e.kind == "checks"]
    if not found:
        return
    ev = found[-1].evidence
    console.out.print(f"runbook checks: {ev.get('outcome')}  {found[-1].reason[:200]}")
    for c in ev.get("checks") or []:
        if c.get("state") != "skipped":
            console.out.print(f"  {c.get('step')}: {c.get('state')}  {str(c.get('reason', ''))[:160]}")
    if ev.get("command"):
        console.out.print(f"  evidence: [bold]{ev['command']}[/]")


def print_alert(d: AlertDetail) -> None:
    """One alert: its headline, facts, latest check, history and every notification."""
    console.out.print(
        f"[bold]alert #{d.id}[/]  {state_text(d)}  {d.severity}  rule [bold]{d.rule}[/]"
        f"{f'  model [bold]{d.model}[/]' if d.model else ''}  runbook {d.runbook or '-'}  source {d.source}"
    )
    for key in ("summary", "description"):
        if d.annotations.get(key):
            console.out.print(f"  {d.annotations[key]}")
    if d.runbook and d.state != "closed":
        console.out.print(f"  runbook: [bold]mloncall runbook run {d.runbook} --alert {d.id}[/]")
    console.out.print(_facts(d))
    check = d.last_check
    if check:
        console.out.print(
            f"latest check: {check.get('outcome')}  {check.get('reason', '')}\n"
            f"  evidence: {', '.join(f'{k}={v}' for k, v in (check.get('evidence') or {}).items())[:600]}"
        )
    _print_checks(d)
    console.out.print(_history(d))
    rows = _notification_rows(d)
    if rows:
        console.out.print(
            console.table("notifications", ["event", "channel", "attempt", "status", "at", "error"], rows)
        )
    else:
        console.out.print("notifications: none")


def silences_table(silences: Sequence[SilenceOut]) -> Table:
    rows = [
        [
            s.id,
            ", ".join(s.matchers),
            s.status,
            when(s.starts_at),
            when(s.ends_at),
            s.created_by,
            s.comment[:60],
        ]
        for s in silences
    ]
    return console.table("silences", ["id", "matchers", "status", "starts", "ends", "by", "comment"], rows)


def groups_table(groups: Sequence[GroupOut]) -> Table:
    rows = [
        [g.id, g.key, g.state, g.open_alerts, ", ".join(f"#{i}" for i in g.alerts[-10:]), ago(g.updated_at)]
        for g in groups
    ]
    return console.table("alert groups", ["id", "key", "state", "open", "alerts", "updated"], rows)


def channels_table(channels: Sequence[Channel]) -> Table:
    rows = [
        [
            c.name,
            c.type,
            c.describe(),
            ", ".join(c.events),
            ", ".join(c.severities or ["all"]),
            c.max_attempts,
        ]
        for c in channels
    ]
    return console.table("channels", ["name", "type", "target", "events", "severities", "attempts"], rows)


def print_rules(out: RuleSetOut) -> None:
    loaded = f"loaded {when(out.loaded_at)} by {out.loaded_by}" if out.loaded_at else "built in"
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


def _checks_table(evaluation: Evaluation) -> Table:
    rows = [
        [c.rule, c.model, c.monitor, console.outcome_text(c.check.outcome), c.check.reason[:100]]
        for c in evaluation.checks
    ]
    return console.table(
        f"checks (rule set v{evaluation.rule_set_version})",
        ["rule", "model", "monitor", "outcome", "reason"],
        rows,
    )


def _transitions_table(evaluation: Evaluation) -> Table:
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
    return console.table("transitions", ["alert", "rule", "model", "change", "notify", "reason"], rows)


def print_evaluation(evaluation: Evaluation, sent: Sequence[DispatchResult]) -> None:
    """The checks of one pass, the alerts it changed, and what could not be evaluated or told."""
    if not evaluation.checks:
        console.out.print(
            f"rule set v{evaluation.rule_set_version}: nothing to evaluate (no rules, or no served models)"
        )
    else:
        console.out.print(_checks_table(evaluation))
    if evaluation.transitions:
        console.out.print(_transitions_table(evaluation))
    else:
        console.out.print("no alert changed state")
    failed = [c for c in evaluation.checks if c.check.outcome is Outcome.ERROR]
    if failed:
        console.err.print(f"[yellow]{len(failed)} check(s) could not be evaluated (outcome error)[/]")
    for s in sent:
        if s.status == NotificationStatus.FAILED:
            console.err.print(f"[yellow]alert #{s.alert_id}: {s.event} notification failed[/]")
