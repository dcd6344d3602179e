"""The scaling domain's logic: SLOs (the API's over the toml file's), what a model burned of its error budget
over a window (from load tests' client-side seconds and from the server's prediction log, the worse wins),
the burn-rate alert rules, and the record of scaling decisions and changes with the cost of the replicas."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.core import clock
from mloncall.core.config import Settings
from mloncall.core.durations import format_duration
from mloncall.core.errors import InvalidInput, NotFound
from mloncall.core.outcome import Check, Outcome
from mloncall.core.records import Record
from mloncall.monitoring.incremental import window_summary
from mloncall.scaling.models import ScalingEvent, SloProbe, SloRow
from mloncall.scaling.slo import LATENCY_BUDGET, Objectives, burn_windows, check_objectives, from_config
from mloncall.stores.context import Context

#: The monitor kind of the generated burn-rate rules (the alerts domain runs it through `burn_check`).
BURN_MONITOR = "slo_burn"
OBJECTIVE_KINDS = ("latency", "errors")


# --- objectives --------------------------------------------------------------------------------------------


def _row_objectives(row: SloRow) -> Objectives:
    return Objectives(
        row.model, row.latency_p99_ms, row.error_rate, row.availability,
        dt.timedelta(seconds=row.window_s), "api",
    )  # fmt: skip


def configured(settings: Settings) -> dict[str, Objectives]:
    """The `[slo.MODEL]` tables of the toml file, checked."""
    tables = settings.section("slo")
    out = {}
    for model, table in tables.items():
        if not isinstance(table, dict):
            raise InvalidInput(
                f"[slo] must hold one table per model ([slo.{model}]), not {model} = {table!r}"
            )
        out[model] = from_config(model, table)
    return out


def list_objectives(*, session: Session, settings: Settings) -> list[Objectives]:
    """Every model's SLO: the API's, then the toml file's for models the API did not set."""
    found = {row.model: _row_objectives(row) for row in session.scalars(sa.select(SloRow))}
    for model, objectives in configured(settings).items():
        found.setdefault(model, objectives)
    return [found[m] for m in sorted(found)]


def get_objectives(*, session: Session, settings: Settings, model: str) -> Objectives | None:
    """A model's SLO, the API's over the toml file's; None when it has none."""
    row = session.scalar(sa.select(SloRow).where(SloRow.model == model))
    if row is not None:
        return _row_objectives(row)
    table = settings.section("slo").get(model)
    return from_config(model, table) if isinstance(table, dict) else None


def require_objectives(*, session: Session, settings: Settings, model: str) -> Objectives:
    """A model's SLO; NotFound says how to set one."""
    found = get_objectives(session=session, settings=settings, model=model)
    if found is None:
        raise NotFound(
            f"model {model!r} has no SLO: set one with `mloncall slo set {model} --latency-p99 50ms` "
            f"or [slo.{model}] in mloncall.toml"
        )
    return found


def latency_and_error_objectives(*, session: Session, settings: Settings, model: str) -> tuple[float, float]:
    """The latency objective in seconds (a p99) and the error-rate objective of a model, for a serving
    backend to derive its autoscaling from; NotFound when the model has no SLO."""
    found = require_objectives(session=session, settings=settings, model=model)
    return found.latency_p99_ms / 1000.0, found.error_rate


def set_objectives(
    *,
    session: Session,
    model: str,
    latency_p99: Any,
    error_rate: Any,
    availability: Any,
    window: Any,
    actor: str,
) -> Objectives:
    """Set (or replace) a model's SLO; InvalidInput names every impossible objective."""
    checked = check_objectives(
        model=model, latency_p99=latency_p99, error_rate=error_rate, availability=availability,
        window=window, source="api",
    )  # fmt: skip
    row = session.scalar(sa.select(SloRow).where(SloRow.model == model))
    if row is None:
        row = SloRow(model=model)
        session.add(row)
    row.latency_p99_ms = checked.latency_p99_ms
    row.error_rate = checked.error_rate
    row.availability = checked.availability
    row.window_s = checked.window.total_seconds()
    row.updated_at = clock.now()
    row.updated_by = actor
    session.flush()
    return checked


def delete_objectives(*, session: Session, model: str) -> None:
    """Forget the SLO set through the API (the toml file's, if any, applies again)."""
    row = session.scalar(sa.select(SloRow).where(SloRow.model == model))
    if row is None:
        raise NotFound(f"model {model!r} has no SLO set through the API")
    session.delete(row)
    session.flush()


# --- client-side measurements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSecond:
    """One second of a load test against a model."""

    at: dt.datetime
    requests: int
    slow: int
    errors: int
    timeouts: int
    p99_ms: float | None


def record_probes(*, session: Session, model: str, seconds: Sequence[ProbeSecond]) -> int:
    """Keep a load test's per-second counts as measurements of the model's SLO; how many were kept."""
    for s in seconds:
        session.add(
            SloProbe(
                model=model, at=s.at, requests=s.requests, slow=s.slow, errors=s.errors,
                timeouts=s.timeouts, p99_ms=s.p99_ms,
            )
        )  # fmt: skip
    session.flush()
    return len(seconds)


# --- what the budget burned --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured(Record):
    """Requests over one window from one source, and how many of them missed each objective."""

    source: str
    requests: int
    slow: int
    failed: int

    def bad(self, objective: str) -> int:
        return self.slow if objective == "latency" else self.failed


def _from_probes(session: Session, model: str, since: dt.datetime, until: dt.datetime) -> Measured:
    total = session.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(SloProbe.requests), 0),
            sa.func.coalesce(sa.func.sum(SloProbe.slow), 0),
            sa.func.coalesce(sa.func.sum(SloProbe.errors + SloProbe.timeouts), 0),
        ).where(SloProbe.model == model, SloProbe.at >= since, SloProbe.at < until)
    ).one()
    return Measured("clients", int(total[0]), int(total[1]), int(total[2]))


def _from_log(
    ctx: Context, model: str, limit_ms: float, since: dt.datetime, until: dt.datetime, now: dt.datetime
) -> Measured:
    """The server's log over the window, from the summaries the monitors keep (closed minutes and hours) and
    the rows of the rest: requests, failed ones, and those slower than the objective (from the latency
    sketch, so a latency within 1% of the objective may count either way)."""
    found = window_summary(ctx.store, model, since, until, {}, now=now).summary.values()
    return Measured(
        "server",
        sum(v.rows for v in found),
        sum(v.latency.above(limit_ms) for v in found),
        sum(v.errors for v in found),
    )


def measure(
    *, ctx: Context, session: Session, objectives: Objectives, window: dt.timedelta, now: dt.datetime
) -> list[Measured]:
    """Both sources over [now - window, now): the clients' seconds and the server's log."""
    since = now - window
    return [
        _from_probes(session, objectives.model, since, now),
        _from_log(ctx, objectives.model, objectives.latency_p99_ms, since, now, now),
    ]


def budget_of(objectives: Objectives, objective: str) -> float:
    return LATENCY_BUDGET if objective == "latency" else objectives.errors_budget


def burn_rate(measured: Measured, objective: str, budget: float) -> float | None:
    """How many times faster than the budget allows the requests of one window missed an objective."""
    if measured.requests == 0:
        return None
    return (measured.bad(objective) / measured.requests) / budget


def _worst_burn(found: list[Measured], objective: str, budget: float) -> tuple[float | None, str | None]:
    rates = [(burn_rate(m, objective, budget), m.source) for m in found]
    known = [(r, s) for r, s in rates if r is not None]
    return max(known) if known else (None, None)


def burn_check(
    *,
    ctx: Context,
    model: str,
    window: dt.timedelta,
    params: dict[str, Any],
    now: dt.datetime | None = None,
    kind: str = BURN_MONITOR,
) -> Check:
    """The monitor of a burn-rate rule: FAILED while the budget burns at least `factor` times too fast over
    both the long window (`window`) and the short one (`params['short_s']`), in the worse of the sources."""
    at = now or clock.now()
    objective = str(params.get("objective", "latency"))
    factor = float(params["factor"])
    short = dt.timedelta(seconds=float(params["short_s"]))
    name = f"slo-burn:{model}:{objective}"
    with ctx.db.session() as session:
        objectives = get_objectives(session=session, settings=ctx.settings, model=model)
        if objectives is None:
            return Check(name, Outcome.INCONCLUSIVE, f"model {model} has no SLO")
        budget = budget_of(objectives, objective)
        long_found = measure(ctx=ctx, session=session, objectives=objectives, window=window, now=at)
        short_found = measure(ctx=ctx, session=session, objectives=objectives, window=short, now=at)
    long_rate, long_source = _worst_burn(long_found, objective, budget)
    short_rate, short_source = _worst_burn(short_found, objective, budget)
    evidence = {
        "objective": objective,
        "factor": factor,
        "budget": budget,
        "long_window": format_duration(window),
        "short_window": format_duration(short),
        "long_burn_rate": long_rate,
        "short_burn_rate": short_rate,
        "long_source": long_source,
        "short_source": short_source,
        "long": [m.to_dict() for m in long_found],
        "short": [m.to_dict() for m in short_found],
        "value": long_rate,
    }
    if long_rate is None or short_rate is None:
        return Check(name, Outcome.SUCCESSFUL, "no requests measured in the window", evidence)
    if long_rate >= factor and short_rate >= factor:
        return Check(
            name, Outcome.FAILED,
            f"{objective} budget burning {long_rate:.1f}x over {format_duration(window)} and {short_rate:.1f}x "
            f"over {format_duration(short)} (alert at {factor:g}x)", evidence,
        )  # fmt: skip
    return Check(
        name, Outcome.SUCCESSFUL, f"burn rate {long_rate:.1f}x/{short_rate:.1f}x below {factor:g}x", evidence
    )


def alert_rules(*, session: Session, settings: Settings) -> list[dict[str, Any]]:
    """The burn-rate rules of every SLO, as the alerts domain's rule dicts (two objectives, three windows)."""
    rules = []
    for objectives in list_objectives(session=session, settings=settings):
        for objective in OBJECTIVE_KINDS:
            for w in burn_windows(objectives.window):
                rules.append(
                    {
                        "name": f"slo-{objective}-{w.name}-{objectives.model}",
                        "model": objectives.model,
                        "monitor": BURN_MONITOR,
                        "params": {
                            "objective": objective,
                            "factor": w.factor,
                            "short_s": w.short.total_seconds(),
                        },
                        "window": w.long,
                        "for": 0,
                        "severity": w.severity,
                        "runbook": "scaling",
                        "labels": {"slo": objective, "burn": w.name},
                        "annotations": {
                            "summary": f"{{{{ $labels.model }}}} burns its {objective} error budget",
                            "description": f"Budget burning {{{{ $value }}}}x over {format_duration(w.long)} "
                            f"(alert at {w.factor:g}x over {format_duration(w.long)} and {format_duration(w.short)}).",
                        },
                    }
                )
    return rules


def budget_left(
    *, ctx: Context, session: Session, objectives: Objectives, now: dt.datetime
) -> dict[str, float | None]:
    """The share of each objective's error budget left over the SLO window (None: no request measured)."""
    whole = measure(ctx=ctx, session=session, objectives=objectives, window=objectives.window, now=now)
    out: dict[str, float | None] = {}
    for objective in OBJECTIVE_KINDS:
        rate, _ = _worst_burn(whole, objective, budget_of(objectives, objective))
        out[objective] = None if rate is None else 1.0 - rate
    return out


def slo_status(
    *, ctx: Context, session: Session, model: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Objective, measured, error budget left over the SLO window, and the burn rate of every alert window."""
    at = now or clock.now()
    objectives = require_objectives(session=session, settings=ctx.settings, model=model)
    whole = measure(ctx=ctx, session=session, objectives=objectives, window=objectives.window, now=at)
    rows = []
    for objective in OBJECTIVE_KINDS:
        budget = budget_of(objectives, objective)
        rate, source = _worst_burn(whole, objective, budget)
        windows = []
        for w in burn_windows(objectives.window):
            long_rate, _ = _worst_burn(
                measure(ctx=ctx, session=session, objectives=objectives, window=w.long, now=at),
                objective,
                budget,
            )
            short_rate, _ = _worst_burn(
                measure(ctx=ctx, session=session, objectives=objectives, window=w.short, now=at),
                objective,
                budget,
            )
            firing = (
                long_rate is not None and short_rate is not None and min(long_rate, short_rate) >= w.factor
            )
            windows.append(
                {**w.to_dict(), "long_burn_rate": long_rate, "short_burn_rate": short_rate, "firing": firing}
            )
        measured = next((m for m in whole if m.source == source), None)
        rows.append(
            {
                "objective": objective,
                "target": objectives.latency_p99_ms if objective == "latency" else budget,
                "budget": budget,
                "measured_bad_share": None
                if measured is None
                else measured.bad(objective) / measured.requests,
                "source": source,
                "budget_left": None if rate is None else 1.0 - rate,
                "windows": windows,
            }
        )
    return {
        "slo": objectives.to_dict(),
        "at": at.isoformat(),
        "sources": [m.to_dict() for m in whole],
        "objectives": rows,
    }


# --- scaling decisions, changes and their cost -------------------------------------------------------------


def record_event(
    *,
    session: Session,
    model: str,
    action: str,
    from_workers: int,
    to_workers: int,
    applied: bool,
    reason: str,
    evidence: dict[str, Any],
    actor: str,
    due_at: dt.datetime | None = None,
    at: dt.datetime | None = None,
) -> ScalingEvent:
    """Record one decision or change with the metric values behind it."""
    row = ScalingEvent(
        model=model, at=at or clock.now(), actor=actor, action=action, from_workers=from_workers,
        to_workers=to_workers, applied=applied, reason=reason, evidence=evidence, due_at=due_at,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row


def list_events(*, session: Session, model: str, limit: int = 50) -> list[ScalingEvent]:
    """The latest decisions and changes of a model, oldest first."""
    rows = session.scalars(
        sa.select(ScalingEvent)
        .where(ScalingEvent.model == model)
        .order_by(ScalingEvent.id.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))


def pending_scale_downs(*, session: Session, model: str) -> list[ScalingEvent]:
    """Scheduled scale-downs not yet checked."""
    done = {
        e.evidence.get("schedule_id")
        for e in session.scalars(
            sa.select(ScalingEvent).where(ScalingEvent.model == model, ScalingEvent.action == "checked")
        )
    }
    rows = session.scalars(
        sa.select(ScalingEvent).where(ScalingEvent.model == model, ScalingEvent.action == "scheduled")
    ).all()
    return [r for r in rows if r.id not in done]


@dataclass(frozen=True)
class Cost(Record):
    """Replica-seconds over a span and what they cost at the configured price per core-hour."""

    since: dt.datetime
    until: dt.datetime
    replica_seconds: float
    price_per_core_hour: float
    cost: float
    workers_at_end: int


def price_per_core_hour(settings: Settings) -> float:
    """`[scaling] price_per_core_hour` (default 0.05, a cloud vCPU-hour's order of magnitude)."""
    raw = settings.section("scaling").get("price_per_core_hour", 0.05)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
        raise InvalidInput(f"[scaling] price_per_core_hour={raw!r} must be a number of at least 0")
    return float(raw)


def cost(
    *, session: Session, settings: Settings, model: str, since: dt.datetime, until: dt.datetime, workers: int
) -> Cost:
    """Replica-seconds from the applied changes over [since, until): `workers` before the first change."""
    changes = session.scalars(
        sa.select(ScalingEvent)
        .where(ScalingEvent.model == model, ScalingEvent.applied.is_(True), ScalingEvent.at < until)
        .order_by(ScalingEvent.at, ScalingEvent.id)
    ).all()
    current = workers
    before = [c for c in changes if c.at <= since]
    if before:
        current = before[-1].to_workers
    elif changes:
        current = changes[0].from_workers
    t = since
    total = 0.0
    for c in changes:
        if c.at <= since:
            continue
        total += current * (c.at - t).total_seconds()
        t, current = c.at, c.to_workers
    total += current * max(0.0, (until - t).total_seconds())
    price = price_per_core_hour(settings)
    return Cost(since, until, total, price, total / 3600.0 * price, current)
