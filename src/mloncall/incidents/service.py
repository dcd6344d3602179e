"""The incidents domain's verbs in one place, for views, commands and runbooks: a runbook acknowledges,
assigns, opens the bridge, posts updates, escalates, resolves and drafts the post-mortem with these calls.

Each is a keyword-only function taking a session that never commits; the modules behind them own one seam
each: `lifecycle` (states), `correlation` (alerts, merges), `roles`, `comms` (bridge, updates, reminders),
`escalation` (policies, pages), `schedules` (rotations, overrides, iCalendar), `timeline`, `postmortem`.
"""

from __future__ import annotations

from mloncall.incidents.comms import list_updates, open_bridge, post_update, remind_overdue, subscribe
from mloncall.incidents.config import IncidentSettings, incident_settings, parse_severity
from mloncall.incidents.correlation import (
    detach,
    incident_of_alert,
    intake,
    link_alert,
    link_opening_alerts,
    links,
    merge,
    unmerge,
)
from mloncall.incidents.escalation import (
    create_policy,
    escalate_due,
    get_policy_or_raise,
    list_policies,
    next_target,
    page,
)
from mloncall.incidents.lifecycle import (
    acknowledge,
    close,
    get_incident_or_raise,
    history,
    list_incidents,
    mitigate,
    open_incident,
    resolve,
)
from mloncall.incidents.postmortem import (
    action_items,
    add_action_item,
    complete,
    draft,
    finish_action_item,
    get_postmortem,
)
from mloncall.incidents.roles import assign, current_roles, handoff, remind_unclaimed, renounce, role_history
from mloncall.incidents.schedules import (
    add_override,
    create_schedule,
    get_schedule_or_raise,
    list_schedules,
    oncall_now,
    to_ical,
)
from mloncall.incidents.timeline import add_entry, add_note
from mloncall.incidents.timeline import read as timeline

__all__ = [
    "IncidentSettings",
    "acknowledge",
    "action_items",
    "add_action_item",
    "add_entry",
    "add_note",
    "add_override",
    "assign",
    "close",
    "complete",
    "create_policy",
    "create_schedule",
    "current_roles",
    "detach",
    "draft",
    "escalate_due",
    "finish_action_item",
    "get_incident_or_raise",
    "get_policy_or_raise",
    "get_postmortem",
    "get_schedule_or_raise",
    "handoff",
    "history",
    "incident_of_alert",
    "incident_settings",
    "intake",
    "link_alert",
    "link_opening_alerts",
    "links",
    "list_incidents",
    "list_policies",
    "list_schedules",
    "list_updates",
    "merge",
    "mitigate",
    "next_target",
    "oncall_now",
    "open_bridge",
    "open_incident",
    "page",
    "parse_severity",
    "post_update",
    "remind_overdue",
    "remind_unclaimed",
    "renounce",
    "resolve",
    "role_history",
    "subscribe",
    "timeline",
    "to_ical",
    "unmerge",
]
