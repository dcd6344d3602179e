"""Fixtures for the incidents tests: an installation with principals, alerts fired through the alerts
lifecycle, the incident settings, and the real local HTTP and SMTP receivers of the alerts tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from mloncall.access import service as access
from mloncall.alerts import lifecycle
from mloncall.alerts.models import Alert
from mloncall.alerts.states import AlertSource, AlertState, EventKind, NotifyEvent
from mloncall.core import clock
from mloncall.incidents.config import IncidentSettings, incident_settings
from mloncall.stores.context import Context
from tests.alerts.conftest import Mailbox, Receiver, receiver, smtp_server  # noqa: F401

PEOPLE = ("alice", "bob", "carol", "dave")
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock_at() -> Iterator[clock.FrozenClock]:
    fc = clock.FrozenClock(START)
    clock.set_clock(fc)
    yield fc
    clock.set_clock(None)


def add_people(ctx: Context) -> None:
    with ctx.db.session() as session:
        for name in PEOPLE:
            access.create_principal(session=session, name=name, role="operator")


@pytest.fixture
def ictx(any_ctx: Context, clock_at: clock.FrozenClock) -> Context:
    """A fresh installation with four operators, on SQLite and PostgreSQL, at a frozen time."""
    add_people(any_ctx)
    return any_ctx


@pytest.fixture
def sictx(ctx: Context, clock_at: clock.FrozenClock) -> Context:
    """The same on SQLite only (tests that are not about the database)."""
    add_people(ctx)
    return ctx


@pytest.fixture
def settings(sictx: Context) -> IncidentSettings:
    return incident_settings(sictx.settings)


def fire(
    ctx: Context,
    *,
    rule: str = "accuracy-drop",
    model: str | None = "iris",
    severity: str = "critical",
    labels: dict[str, Any] | None = None,
    since: dt.timedelta = dt.timedelta(minutes=5),
) -> int:
    """A firing alert made through the alerts lifecycle (as the evaluator makes one); its id."""
    now = clock.now()
    all_labels = {"model": model or "", "runbook": "monitoring", **(labels or {})}
    facts = lifecycle.AlertFacts(
        fingerprint=lifecycle.fingerprint(rule, all_labels), source=AlertSource.MLONCALL, rule=rule, model=model,
        severity=severity, runbook="monitoring", labels=all_labels, annotations={"summary": f"{rule} on {model}"},
    )  # fmt: skip
    with ctx.db.session() as session:
        group = lifecycle.ensure_group(
            session, key=lifecycle.group_key(all_labels, ("model", "runbook")), source="mloncall",
            labels={"model": model, "runbook": "monitoring"}, at=now,
        )  # fmt: skip
        alert = lifecycle.new_alert(
            session, previous=lifecycle.current_alert(session=session, fingerprint=facts.fingerprint),
            facts=facts, group=group, state=AlertState.FIRING, at=now,
        )  # fmt: skip
        alert.active_since = now - since
        alert.last_check = {"reason": f"{rule} failed"}
        lifecycle.record(
            session, alert, kind=EventKind.FIRING, from_state=None, actor="test", at=now, reason="condition held",
            notify=NotifyEvent.FIRING,
        )  # fmt: skip
        return alert.id


def alert_row(ctx: Context, alert_id: int) -> Alert:
    with ctx.db.session() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None
        return alert
