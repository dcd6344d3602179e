"""The overview's view-model: per model what the oncall engineer looks at first.

`slo` is the model's SLO and the error budget left over its window (`scaling.service.budget_left`), or "no
SLO declared", beside the served error rate and p99 latency of the hour up to the last closed minute
(`monitoring.service.served_figures`). Both are read once a minute per model.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.alerts.models import Alert
from mloncall.alerts.states import OPEN_STATES as ALERT_OPEN
from mloncall.core import clock
from mloncall.core.durations import format_duration
from mloncall.core.errors import MloncallError
from mloncall.incidents.models import Incident
from mloncall.incidents.states import OPEN_STATES as INCIDENT_OPEN
from mloncall.monitoring import service as monitoring
from mloncall.registry import service as registry
from mloncall.rollout import service as rollouts
from mloncall.rollout.models import Rollout
from mloncall.scaling import service as scaling
from mloncall.scaling.slo import Objectives
from mloncall.serving import service as routing
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.context import Context

WINDOW = dt.timedelta(hours=1)


@dataclass
class Slo:
    """The SLO status and error budget; `declared` False until an SLO is declared for the model."""

    declared: bool = False
    status: str = "no SLO declared"
    error_budget: str = "-"


@dataclass
class ModelCard:
    name: str
    production: int | None
    split: list[tuple[int, float]]
    drift: str
    open_alerts: int
    open_incidents: int
    rollout: Rollout | None
    error_rate: float | None
    p99_ms: float | None
    slo: Slo = field(default_factory=Slo)


def _counts(session: Session, column: Any, state: Any, states: Any) -> dict[str | None, int]:
    rows = session.execute(sa.select(column, sa.func.count()).where(state.in_(list(states))).group_by(column))
    return {name: int(n) for name, n in rows}


def _drifting(session: Session) -> dict[str | None, list[str]]:
    rows = session.execute(
        sa.select(Alert.model, Alert.rule).where(
            Alert.state.in_(list(ALERT_OPEN)), Alert.rule.like("%drift%")
        )
    )
    out: dict[str | None, list[str]] = {}
    for model, rule in rows:
        out.setdefault(model, []).append(rule)
    return out


#: The served figures of each model's last hour, by the closed minute they end at: every overview asked
#: for during one minute shows the same closed window, read once.
_FIGURES: dict[tuple[str, str, dt.datetime], dict[str, float | None]] = {}


def _last_hour(
    session: Session, store: ArtifactStore, model: str, now: dt.datetime
) -> dict[str, float | None]:
    """Error rate and p99 over the hour up to the last closed minute."""
    until = now.replace(second=0, microsecond=0)
    key = (str(store.base), model, until)
    if key not in _FIGURES:
        try:
            figures = monitoring.served_figures(
                session=session,
                store=store,
                model=model,
                metrics=("error_rate", "p99_ms"),
                window=WINDOW,
                now=until,
            )
        except MloncallError:
            figures = {}
        for old in [k for k in _FIGURES if k[2] < until]:
            _FIGURES.pop(old, None)
        _FIGURES[key] = figures
    return _FIGURES[key]


_SLOS: dict[tuple[str, str, dt.datetime], Slo] = {}


def _slo(ctx: Context, session: Session, model: str, now: dt.datetime) -> Slo:
    """The model's objectives and the share of each error budget left, as of the last closed minute."""
    until = now.replace(second=0, microsecond=0)
    key = (str(ctx.store.base), model, until)
    if key not in _SLOS:
        try:
            objectives = scaling.get_objectives(session=session, settings=ctx.settings, model=model)
            left = (
                scaling.budget_left(ctx=ctx, session=session, objectives=objectives, now=until)
                if objectives is not None
                else None
            )
        except MloncallError as exc:
            _SLOS[key] = Slo(status=f"SLO unreadable: {exc.message[:120]}")
        else:
            _SLOS[key] = Slo() if objectives is None or left is None else _slo_text(objectives, left)
        for old in [k for k in _SLOS if k[2] < until]:
            _SLOS.pop(old, None)
    return _SLOS[key]


def _days(window: dt.timedelta) -> str:
    """An SLO window as people say it: `30d` rather than `4w2d`."""
    whole_days = window.total_seconds() / 86400
    return f"{whole_days:g}d" if whole_days >= 1 and whole_days.is_integer() else format_duration(window)


def _slo_text(objectives: Objectives, left: dict[str, float | None]) -> Slo:
    known = [v for v in left.values() if v is not None]
    status = (
        f"p99 ≤ {objectives.latency_p99_ms:g} ms, errors ≤ {objectives.errors_budget:.2%} over "
        f"{_days(objectives.window)}"
    )
    if not known:
        return Slo(declared=True, status=status + ": nothing measured yet", error_budget="-")
    worst = min(known)
    verdict = "budget spent" if worst <= 0 else "within budget"
    return Slo(declared=True, status=f"{status}: {verdict}", error_budget=f"{max(worst, 0.0):.0%} left")


def _split(session: Session, name: str) -> list[tuple[int, float]]:
    try:
        view = routing.effective(session=session, name=name)
    except MloncallError:
        return []
    if view.canary_version is None or view.canary_weight <= 0:
        return [(view.stable_version, 1.0)]
    return [(view.stable_version, 1.0 - view.canary_weight), (view.canary_version, view.canary_weight)]


def cards(*, session: Session, ctx: Context) -> list[ModelCard]:
    """One card per registered model."""
    store = ctx.store
    now = clock.now()
    alerts = _counts(session, Alert.model, Alert.state, ALERT_OPEN)
    incidents = _counts(session, Incident.model, Incident.state, INCIDENT_OPEN)
    drifting = _drifting(session)
    out = []
    for model in registry.list_models(session=session):
        alias = registry.get_alias(session=session, name=model.name, alias="production")
        rules = drifting.get(model.name, [])
        figures = _last_hour(session, store, model.name, now)
        out.append(
            ModelCard(
                name=model.name,
                production=alias.model_version.version if alias else None,
                split=_split(session, model.name),
                drift=("drifting: " + ", ".join(sorted(set(rules)))) if rules else "no drift alert open",
                open_alerts=alerts.get(model.name, 0),
                open_incidents=incidents.get(model.name, 0),
                rollout=rollouts.get_active(session=session, name=model.name),
                error_rate=figures.get("error_rate"),
                p99_ms=figures.get("p99_ms"),
                slo=_slo(ctx, session, model.name, now),
            )
        )
    return out
