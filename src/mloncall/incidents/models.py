"""Incident tables: incidents and every transition, their alerts and the alert groups they hold, roles, the
bridge, updates, the timeline, the outbox of messages and every delivery attempt, pages, on-call schedules
and overrides, escalation policies, post-mortems and their action items."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mloncall.alerts.models import DeliveryColumns
from mloncall.incidents.states import (
    OPEN_STATES,
    ActionItemStatus,
    IncidentState,
    MessageStatus,
    PostmortemStatus,
    Role,
    Severity,
    sql_in,
)
from mloncall.stores.db import Base, TransitionEvent


class Incident(Base):
    """One problem being worked, from the first page to the post-mortem."""

    __tablename__ = "incidents"
    __table_args__ = (
        sa.CheckConstraint(sql_in("state", IncidentState), name="ck_incidents_state"),
        sa.CheckConstraint(sql_in("severity", Severity), name="ck_incidents_severity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(255))
    severity: Mapped[str] = mapped_column(sa.String(8))
    #: An `IncidentState`; it changes only through `lifecycle.move`, each move an `IncidentEvent`.
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    model: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, index=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    opened_by: Mapped[str] = mapped_column(sa.String(128))
    #: The first signal: when the condition behind the first alert started to hold (or when it was opened).
    detected_at: Mapped[dt.datetime]
    opened_at: Mapped[dt.datetime]
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, default=None)
    mitigated_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    closed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    resolution: Mapped[str] = mapped_column(sa.Text, default="")
    root_cause: Mapped[str] = mapped_column(sa.Text, default="")
    #: A duplicate points to the incident it was merged into, and remembers the state it left.
    merged_into_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True, index=True
    )
    state_before_merge: Mapped[str | None] = mapped_column(sa.String(16), nullable=True, default=None)
    #: The one bridge (a URL or a chat channel), recorded once.
    bridge: Mapped[str | None] = mapped_column(sa.String(512), nullable=True, default=None)
    bridge_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    bridge_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, default=None)
    #: ML lineage this incident is about (`version:iris:3`, `dataset:7`, `rollout:4`), for correlation.
    lineage: Mapped[list[Any]] = mapped_column(default=list)
    last_signal_at: Mapped[dt.datetime]
    #: The update cadence in seconds (from the severity unless set on the incident).
    cadence_s: Mapped[float] = mapped_column(sa.Float)
    next_update_due: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    update_reminders: Mapped[int] = mapped_column(default=0)
    #: Roles already reminded about while unclaimed.
    role_reminders: Mapped[list[Any]] = mapped_column(default=list)
    escalation_policy: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, default=None)
    escalation_step: Mapped[int] = mapped_column(default=0)
    escalation_round: Mapped[int] = mapped_column(default=0)
    next_escalation_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None, index=True)
    #: Channel names told of opening, updates and resolution.
    subscribers: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    events: Mapped[list[IncidentEvent]] = relationship(
        back_populates="incident", order_by="IncidentEvent.id", cascade="all, delete-orphan"
    )

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


class IncidentEvent(TransitionEvent, Base):
    """One transition of an incident: when, who, from which state to which, and why."""

    __tablename__ = "incident_events"

    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)

    incident: Mapped[Incident] = relationship(back_populates="events")


class GroupClaim(Base):
    """An alert group held by an open incident. The group id is unique: at most one open incident per alert
    group, on every backend. Claims are released when the incident resolves and move with a merge."""

    __tablename__ = "incident_group_claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(sa.ForeignKey("alert_groups.id", ondelete="CASCADE"), unique=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    #: The incident that first claimed it (a merge moves `incident_id`, an unmerge moves it back).
    origin_incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"))
    claimed_at: Mapped[dt.datetime]


class IncidentAlert(Base):
    """An alert that joined an incident, with the reason; a detached row records an undone join."""

    __tablename__ = "incident_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    origin_incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"))
    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(sa.Text)
    #: What matched: `{"key": "version:iris:3", "via_alert": 12}` or `{"key": "group:5"}`.
    match: Mapped[dict[str, Any]] = mapped_column(default=dict)
    linked_at: Mapped[dt.datetime]
    linked_by: Mapped[str] = mapped_column(sa.String(128))
    detached_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    detached_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, default=None)
    detach_reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True, default=None)


class RoleAssignment(Base):
    """Who holds a role of an incident, from when it was assumed until it was renounced (handoffs)."""

    __tablename__ = "incident_roles"
    __table_args__ = (sa.CheckConstraint(sql_in("role", Role), name="ck_incident_roles_role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    principal: Mapped[str] = mapped_column(sa.String(128))
    #: `<incident>:<role>` while held, NULL once renounced: one holder per role on every backend.
    holder_key: Mapped[str | None] = mapped_column(sa.String(64), unique=True, nullable=True)
    assumed_at: Mapped[dt.datetime]
    assigned_by: Mapped[str] = mapped_column(sa.String(128))
    renounced_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    note: Mapped[str] = mapped_column(sa.Text, default="")


class StatusUpdate(Base):
    """One status update posted to the incident's subscribers."""

    __tablename__ = "incident_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime]
    author: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.Text)
    impact: Mapped[str] = mapped_column(sa.Text, default="")
    next_steps: Mapped[str] = mapped_column(sa.Text, default="")
    next_update_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    #: The stakeholder summary in plain words, as sent.
    summary: Mapped[str] = mapped_column(sa.Text)


class TimelineEntry(Base):
    """One entry of an incident's timeline (alerts, roles, updates, pages, notes, runbook steps, grants)."""

    __tablename__ = "incident_timeline"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    #: A `TimelineKind`.
    kind: Mapped[str] = mapped_column(sa.String(16))
    actor: Mapped[str] = mapped_column(sa.String(128))
    text: Mapped[str] = mapped_column(sa.Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Message(Base):
    """One message to send (the outbox): queued in the change's unit of work, sent after it commits."""

    __tablename__ = "incident_messages"
    __table_args__ = (
        sa.CheckConstraint(sql_in("status", MessageStatus), name="ck_incident_messages_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    #: A `MessageKind`.
    kind: Mapped[str] = mapped_column(sa.String(16))
    #: The channel names to tell.
    channels: Mapped[list[Any]] = mapped_column(default=list)
    title: Mapped[str] = mapped_column(sa.String(255))
    text: Mapped[str] = mapped_column(sa.Text)
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True, default=None)
    created_at: Mapped[dt.datetime]
    claimed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)


class Delivery(DeliveryColumns, Base):
    """One try at sending a message to one channel: who was told, when, and how it went."""

    __tablename__ = "incident_deliveries"

    message_id: Mapped[int] = mapped_column(
        sa.ForeignKey("incident_messages.id", ondelete="CASCADE"), index=True
    )
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)


class Page(Base):
    """One page of a person for an incident: the escalation step that sent it and its message."""

    __tablename__ = "incident_pages"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    principal: Mapped[str] = mapped_column(sa.String(128))
    #: `schedule:primary` or `person:alice`.
    target: Mapped[str] = mapped_column(sa.String(160))
    step: Mapped[int | None] = mapped_column(nullable=True, default=None)
    round: Mapped[int | None] = mapped_column(nullable=True, default=None)
    reason: Mapped[str] = mapped_column(sa.Text)
    message_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("incident_messages.id", ondelete="SET NULL"), nullable=True
    )
    at: Mapped[dt.datetime]


class Schedule(Base):
    """An on-call rotation: members take shifts of one length in turn from a handoff time in a time zone."""

    __tablename__ = "oncall_schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    members: Mapped[list[Any]]
    time_zone: Mapped[str] = mapped_column(sa.String(64))
    #: The first handoff, local to the time zone (`2026-01-05T09:00`); shifts repeat from it.
    starts: Mapped[str] = mapped_column(sa.String(32))
    shift_s: Mapped[float] = mapped_column(sa.Float)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(sa.String(128))

    overrides: Mapped[list[Override]] = relationship(
        back_populates="schedule", order_by="Override.id", cascade="all, delete-orphan"
    )


class Override(Base):
    """Someone takes a schedule's shift from `starts_at` until `ends_at`."""

    __tablename__ = "oncall_overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        sa.ForeignKey("oncall_schedules.id", ondelete="CASCADE"), index=True
    )
    principal: Mapped[str] = mapped_column(sa.String(128))
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[dt.datetime]

    schedule: Mapped[Schedule] = relationship(back_populates="overrides")


class EscalationPolicy(Base):
    """Ordered steps (`[{"notify": "schedule:primary", "wait": 300.0}]`), repeated `repeat` more times."""

    __tablename__ = "escalation_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    steps: Mapped[list[Any]]
    repeat: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(sa.String(128))


class Postmortem(Base):
    """The post-mortem of one incident: a Markdown draft from the evidence, completed by people."""

    __tablename__ = "incident_postmortems"
    __table_args__ = (
        sa.CheckConstraint(sql_in("status", PostmortemStatus), name="ck_incident_postmortems_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    markdown: Mapped[str] = mapped_column(sa.Text)
    #: The figures the draft states (times to detect, acknowledge, mitigate, resolve; impact).
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    went_well: Mapped[str] = mapped_column(sa.Text, default="")
    went_badly: Mapped[str] = mapped_column(sa.Text, default="")
    drafted_at: Mapped[dt.datetime]
    completed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
    completed_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, default=None)


class ActionItem(Base):
    """Work that follows an incident, with an owner and a due date, tracked until done."""

    __tablename__ = "incident_action_items"
    __table_args__ = (
        sa.CheckConstraint(sql_in("status", ActionItemStatus), name="ck_incident_action_items_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(sa.Text)
    owner: Mapped[str] = mapped_column(sa.String(128))
    due: Mapped[dt.date] = mapped_column(sa.Date)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    created_at: Mapped[dt.datetime]
    created_by: Mapped[str] = mapped_column(sa.String(128))
    done_at: Mapped[dt.datetime | None] = mapped_column(nullable=True, default=None)
