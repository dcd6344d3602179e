"""The states of the incidents domain and the moves allowed between them, in one place.

An incident goes `triggered` -> `acknowledged` -> `mitigated` -> `resolved` -> `closed`; closing needs a
completed post-mortem. A duplicate merged into another incident is `merged` (it keeps its id and points to
the survivor) until it is unmerged, when it goes back to the state it left. Members equal their strings.
"""

from __future__ import annotations

import enum

from mloncall.core.states import Moves


class IncidentState(enum.StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    CLOSED = "closed"
    MERGED = "merged"


#: States of an incident that is still being worked: it holds its alert groups, pages and reminds.
OPEN_STATES = (IncidentState.TRIGGERED, IncidentState.ACKNOWLEDGED, IncidentState.MITIGATED)

#: Where an incident may go from each state (None: a new incident). Resolving straight from `triggered` is
#: allowed (the alert cleared before anyone acknowledged); `resolved -> triggered` is a re-open.
TRANSITIONS = Moves(
    IncidentState,
    {
        None: frozenset({IncidentState.TRIGGERED}),
        IncidentState.TRIGGERED: frozenset(
            {
                IncidentState.ACKNOWLEDGED,
                IncidentState.MITIGATED,
                IncidentState.RESOLVED,
                IncidentState.MERGED,
            }
        ),
        IncidentState.ACKNOWLEDGED: frozenset(
            {IncidentState.MITIGATED, IncidentState.RESOLVED, IncidentState.MERGED}
        ),
        IncidentState.MITIGATED: frozenset({IncidentState.RESOLVED, IncidentState.MERGED}),
        IncidentState.RESOLVED: frozenset({IncidentState.CLOSED, IncidentState.TRIGGERED}),
        IncidentState.CLOSED: frozenset(),
        IncidentState.MERGED: frozenset(OPEN_STATES),
    },
)


class Severity(enum.StrEnum):
    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"
    SEV5 = "SEV5"


class Role(enum.StrEnum):
    """The incident command roles (Google SRE's incident management)."""

    COMMANDER = "commander"
    COMMUNICATIONS = "communications"
    OPERATIONS = "operations"
    SCRIBE = "scribe"


class TimelineKind(enum.StrEnum):
    """What one entry of an incident's timeline records."""

    STATE = "state"
    ALERT = "alert"
    ALERT_DETACHED = "alert-detached"
    MERGE = "merge"
    ROLE = "role"
    BRIDGE = "bridge"
    UPDATE = "update"
    REMINDER = "reminder"
    PAGE = "page"
    NOTE = "note"
    DEPLOY = "deploy"
    RUNBOOK = "runbook"
    GRANT = "grant"
    POSTMORTEM = "postmortem"
    ACTION_ITEM = "action-item"


class MessageKind(enum.StrEnum):
    """Why a message goes out: the incident opened or resolved, an update, a page, a reminder."""

    OPENED = "opened"
    UPDATE = "update"
    RESOLVED = "resolved"
    PAGE = "page"
    REMINDER = "reminder"


class MessageStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNROUTED = "unrouted"


class PostmortemStatus(enum.StrEnum):
    DRAFT = "draft"
    COMPLETE = "complete"


class ActionItemStatus(enum.StrEnum):
    OPEN = "open"
    DONE = "done"


def sql_in(column: str, states: type[enum.StrEnum]) -> str:
    """`state IN ('triggered', ...)`: a check constraint naming every member."""
    return f"{column} IN ({', '.join(repr(str(s)) for s in states)})"
