"""The states of the alerts domain and the moves allowed between them, in one place.

An alert goes `pending` (the condition holds, not yet for `for:`) -> `firing` -> `resolved`; a pending alert
whose condition clears before it fires becomes `inactive` (nobody was told); `closed` ends an investigation
and is final. A notification goes `pending` -> `sending` -> `sent` | `failed` | `unrouted`, or is queued
`suppressed` when a silence mutes it. Members equal their strings, so stored rows and JSON are unchanged.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable

from mloncall.core.states import Moves


class AlertState(enum.StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    INACTIVE = "inactive"
    CLOSED = "closed"


ALERT_STATES = tuple(AlertState)
#: States whose alert a fingerprint's next evaluation may still drive, acknowledge or resolve.
OPEN_STATES = (AlertState.PENDING, AlertState.FIRING)

#: Where an alert may go from each state (None: a new alert). Closing is allowed from every state but
#: `closed`; `resolved -> firing` is a re-open within the hold time; `resolved -> pending` happens to a
#: resolved alert that never fired.
ALERT_TRANSITIONS = Moves(
    AlertState,
    {
        None: frozenset({AlertState.PENDING, AlertState.FIRING}),
        AlertState.PENDING: frozenset(
            {AlertState.FIRING, AlertState.INACTIVE, AlertState.RESOLVED, AlertState.CLOSED}
        ),
        AlertState.FIRING: frozenset({AlertState.RESOLVED, AlertState.CLOSED}),
        AlertState.RESOLVED: frozenset({AlertState.FIRING, AlertState.PENDING, AlertState.CLOSED}),
        AlertState.INACTIVE: frozenset({AlertState.PENDING, AlertState.FIRING, AlertState.CLOSED}),
        AlertState.CLOSED: frozenset(),
    },
)


#: The states of a group's alerts, most urgent first.
_URGENCY = (
    AlertState.FIRING,
    AlertState.PENDING,
    AlertState.RESOLVED,
    AlertState.INACTIVE,
    AlertState.CLOSED,
)


def most_urgent(states: Iterable[str]) -> AlertState:
    """The most urgent of some alerts' states (`inactive` for none)."""
    present = set(states)
    return next((s for s in _URGENCY if s in present), AlertState.INACTIVE)


class EventKind(enum.StrEnum):
    """What an entry of an alert's history records: a move to a state, a re-open or an acknowledgement."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    INACTIVE = "inactive"
    CLOSED = "closed"
    REOPENED = "reopened"
    ACKNOWLEDGED = "acknowledged"
    #: Evidence attached without a move: the read-only checks of the alert's runbook (`auto_run: checks`).
    CHECKS = "checks"


class NotifyEvent(enum.StrEnum):
    """Events that notify: an alert starts firing, resolves, or is re-opened within the hold time."""

    FIRING = "firing"
    RESOLVED = "resolved"
    REOPENED = "reopened"


class AlertSource(enum.StrEnum):
    MLONCALL = "mloncall"
    ALERTMANAGER = "alertmanager"
    PAGERDUTY = "pagerduty"


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    UNROUTED = "unrouted"
    #: Told within another notification's grouped message (`grouped_into`), with the rest of its group.
    GROUPED = "grouped"


#: pending -> sending when one sender claims it; sending -> pending when its claim went stale (the sender
#: died); sending -> sent | failed | unrouted when it finishes, or grouped when another notification of its
#: group told it. A suppressed notification is final.
NOTIFICATION_TRANSITIONS = Moves(
    NotificationStatus,
    {
        NotificationStatus.PENDING: frozenset({NotificationStatus.SENDING}),
        NotificationStatus.SENDING: frozenset(
            {
                NotificationStatus.PENDING,
                NotificationStatus.SENT,
                NotificationStatus.FAILED,
                NotificationStatus.UNROUTED,
                NotificationStatus.GROUPED,
            }
        ),
        NotificationStatus.SENT: frozenset(),
        NotificationStatus.FAILED: frozenset(),
        NotificationStatus.SUPPRESSED: frozenset(),
        NotificationStatus.UNROUTED: frozenset(),
        NotificationStatus.GROUPED: frozenset(),
    },
)


class DeliveryStatus(enum.StrEnum):
    """How one attempt at sending a notification to one channel went."""

    OK = "ok"
    FAILED = "failed"


class SilenceStatus(enum.StrEnum):
    ACTIVE = "active"
    PENDING = "pending"
    EXPIRED = "expired"


def silence_state(starts_at: dt.datetime, ends_at: dt.datetime, at: dt.datetime) -> SilenceStatus:
    """`expired` once it ended, `pending` before it starts, `active` in between."""
    if ends_at <= at:
        return SilenceStatus.EXPIRED
    if starts_at > at:
        return SilenceStatus.PENDING
    return SilenceStatus.ACTIVE


def sql_in(column: str, states: type[enum.StrEnum]) -> str:
    """`state IN ('pending', ...)`: a check constraint naming every member, in their order."""
    return f"{column} IN ({', '.join(repr(str(s)) for s in states)})"
