"""Alert tables: the active rule set (versioned), alerts and their groups, every transition, silences, the
notification outbox and every delivery attempt."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mloncall.alerts.states import (
    OPEN_STATES,
    AlertState,
    NotificationStatus,
    SilenceStatus,
    most_urgent,
    silence_state,
    sql_in,
)
from mloncall.core import clock
from mloncall.stores.db import Base, TransitionEvent


class RuleSet(Base):
    """One loaded rules file. The newest row is the active set; a refused file never gets a row."""

    __tablename__ = "alert_rule_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    origin: Mapped[str] = mapped_column(sa.String(512))
    source: Mapped[str] = mapped_column(sa.Text)
    #: The validated, normalised rules and policy (`rules.RuleFile.to_dict()`).
    spec: Mapped[dict[str, Any]]
    loaded_at: Mapped[dt.datetime]
    loaded_by: Mapped[str] = mapped_column(sa.String(128))


class AlertGroup(Base):
    """Alerts that belong together: by `group_by` labels (model, runbook) or by an Alertmanager groupKey."""

    __tablename__ = "alert_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(512), unique=True)
    source: Mapped[str] = mapped_column(sa.String(32))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    alerts: Mapped[list[Alert]] = relationship(back_populates="group", order_by="Alert.id")

    @property
    def alert_ids(self) -> list[int]:
        return [a.id for a in self.alerts]

    @property
    def open_alerts(self) -> int:
        return sum(a.state in OPEN_STATES for a in self.alerts)

    @property
    def state(self) -> AlertState:
        """The most urgent state among the group's alerts."""
        return most_urgent(a.state for a in self.alerts)


class Alert(Base):
    """One alert: a rule's condition on one label set, from pending to closed."""

    __tablename__ = "alerts"
    __table_args__ = (sa.CheckConstraint(sql_in("state", AlertState), name="ck_alerts_state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(128), index=True)
    #: The fingerprint while this is the alert that fingerprint's next evaluation updates (None once closed
    #: or superseded): unique, so two evaluators can never open two alerts for one rule and label set.
    current_key: Mapped[str | None] = mapped_column(sa.String(128), unique=True, nullable=True)
    source: Mapped[str] = mapped_column(sa.String(32))
    external_id: Mapped[str | None] = mapped_column(sa.String(255), nullable=True, default=None)
    rule: Mapped[str] = mapped_column(sa.String(255), index=True)
    model: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, index=True)
    #: An `AlertState` (see `mloncall.alerts.states` for the moves between them).
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    severity: Mapped[str] = mapped_column(sa.String(16))
    runbook: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    group_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("alert_groups.id", ondelete="SET NULL"), nullable=True, index=True
    )
    value: Mapped[float | None] = mapped_column(sa.Float, nullable=True, default=None)
    #: The latest check (`Check.to_dict()`) behind the alert's state.
    last_check: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_evaluated_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    #: Since when the condition has held without a break (the `for:` clock).
    active_since: Mapped[dt.datetime]
    fired_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    reopen_count: Mapped[int] = mapped_column(default=0)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, default=None)
    closed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    closed_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, default=None)
    root_cause: Mapped[str | None] = mapped_column(sa.Text, nullable=True, default=None)
    action: Mapped[str | None] = mapped_column(sa.Text, nullable=True, default=None)
    resolution_note: Mapped[str | None] = mapped_column(sa.Text, nullable=True, default=None)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    group: Mapped[AlertGroup | None] = relationship(back_populates="alerts")
    events: Mapped[list[AlertEvent]] = relationship(
        back_populates="alert", order_by="AlertEvent.id", cascade="all, delete-orphan"
    )
    notifications: Mapped[list[Notification]] = relationship(
        back_populates="alert", order_by="Notification.id", cascade="all, delete-orphan"
    )

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None


class AlertEvent(TransitionEvent, Base):
    """One entry of an alert's history: a state change, an acknowledgement, a close, with the evidence."""

    __tablename__ = "alert_events"

    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    silence_id: Mapped[int | None] = mapped_column(nullable=True, default=None)

    alert: Mapped[Alert] = relationship(back_populates="events")


class Silence(Base):
    """Mute notifications of alerts whose labels match every matcher, from `starts_at` until `ends_at`."""

    __tablename__ = "alert_silences"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: `[{"name": "model", "op": "=", "value": "iris"}]`; op is one of =, !=, =~, !~.
    matchers: Mapped[list[Any]]
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime] = mapped_column(index=True)
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[dt.datetime]
    expired_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, default=None)

    @property
    def status(self) -> SilenceStatus:
        """Active, pending (starts later) or expired, now."""
        return silence_state(self.starts_at, self.ends_at, clock.now())


class Notification(Base):
    """One alert event to tell the channels about (the outbox): queued in the transition's unit of work, sent
    after it commits, to every configured channel that takes it. Silenced events are kept as `suppressed`."""

    __tablename__ = "alert_notifications"
    __table_args__ = (
        sa.CheckConstraint(sql_in("status", NotificationStatus), name="ck_alert_notifications_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("alert_events.id", ondelete="SET NULL"), nullable=True
    )
    #: firing, resolved or reopened.
    event: Mapped[str] = mapped_column(sa.String(16))
    #: A `NotificationStatus`: pending -> sending -> sent | failed | unrouted (no channel takes it) | grouped;
    #: suppressed when silenced.
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    silence_id: Mapped[int | None] = mapped_column(nullable=True, default=None)
    #: The notification whose grouped message told this one (status `grouped`).
    grouped_into: Mapped[int | None] = mapped_column(nullable=True, default=None)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True, default=None)
    created_at: Mapped[dt.datetime]
    claimed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)

    alert: Mapped[Alert] = relationship(back_populates="notifications")
    deliveries: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="notification", order_by="DeliveryAttempt.id", cascade="all, delete-orphan"
    )


class DeliveryColumns:
    """The columns of one try at sending something to one channel (an alert's notification, an incident's
    message): which channel, the attempt, how it went, when."""

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(128))
    channel_type: Mapped[str] = mapped_column(sa.String(16))
    attempt: Mapped[int]
    #: A `DeliveryStatus`: ok or failed.
    status: Mapped[str] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True, default=None)
    response_code: Mapped[int | None] = mapped_column(nullable=True, default=None)
    at: Mapped[dt.datetime]


class DeliveryAttempt(DeliveryColumns, Base):
    """One try at sending a notification: who was told, when, and how it went."""

    __tablename__ = "alert_delivery_attempts"

    notification_id: Mapped[int] = mapped_column(
        sa.ForeignKey("alert_notifications.id", ondelete="CASCADE"), index=True
    )
    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alerts.id", ondelete="CASCADE"), index=True)

    notification: Mapped[Notification] = relationship(back_populates="deliveries")
