"""Runbook 8, `incident-communication --incident ID`: acknowledge, assign the four roles, open the one bridge,
post an update (and check the cadence held), escalate when the acknowledgement came late or when asked,
resolve with a summary the subscribers receive, then close the loop: draft the post-mortem, a person
completes it, the incident closes. Every step lands on the incident's timeline (`service._to_timeline`)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from typing import Any

from mloncall.core import clock
from mloncall.core.durations import format_duration
from mloncall.core.outcome import Check, Outcome
from mloncall.incidents import outbox
from mloncall.incidents import service as incidents
from mloncall.incidents.models import Incident
from mloncall.incidents.states import IncidentState, PostmortemStatus, Role
from mloncall.runbooks.engine import RunContext
from mloncall.runbooks.spec import Criterion, Param, Runbook, Step
from mloncall.runbooks.states import StepKind

NAME = "incident-communication"
ROLE_PARAMS = {str(r): r for r in Role}


def _id(rc: RunContext) -> int:
    return int(rc.params["incident"])


def _incident(rc: RunContext) -> Incident:
    with rc.ctx.db.session() as s:
        incident = incidents.get_incident_or_raise(session=s, incident_id=_id(rc))
        s.expunge(incident)
        return incident


def _settings(rc: RunContext) -> incidents.IncidentSettings:
    return incidents.incident_settings(rc.ctx.settings)


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _over(i: Incident) -> str | None:
    """Why a live step of the response is history now: the incident was resolved (for instance by the monitoring
    runbook once its alerts closed), so the step reports what the record says and acceptance judges it."""
    if i.state in (IncidentState.RESOLVED, IncidentState.CLOSED):
        return f"incident {i.id} was {i.state} at {_iso(i.resolved_at)}"
    return None


# --- 1. acknowledge ----------------------------------------------------------------------------------------


def acknowledge(rc: RunContext) -> Check:
    """Someone is on it: escalation stops and the incident's alerts are acknowledged (the first ack is kept)."""
    i = _incident(rc)
    over = _over(i)
    if over is not None:
        said = (
            f"acknowledged by {i.acknowledged_by} at {_iso(i.acknowledged_at)}"
            if i.acknowledged_at
            else ("never acknowledged")
        )
        return Check("acknowledge", Outcome.SUCCESSFUL, f"{over}: {said}",
                     {"acknowledged_at": _iso(i.acknowledged_at), "acknowledged_by": i.acknowledged_by})  # fmt: skip
    with rc.ctx.db.session() as s:
        i = incidents.acknowledge(session=s, incident_id=_id(rc), actor=rc.actor, note=f"run #{rc.run_id}")
        at, by, state = i.acknowledged_at, i.acknowledged_by, i.state
    return Check("acknowledge", Outcome.SUCCESSFUL, f"acknowledged by {by} at {_iso(at)}; {state}",
                 {"acknowledged_at": _iso(at), "acknowledged_by": by})  # fmt: skip


def ack_in_time(rc: RunContext) -> Check:
    """Acceptance: acknowledged within the severity's limit, counted from when the incident opened."""
    i = _incident(rc)
    limit = _settings(rc).of(i.severity).ack_within
    evidence = {"severity": i.severity, "limit": format_duration(limit), "opened_at": _iso(i.opened_at),
                "acknowledged_at": _iso(i.acknowledged_at)}  # fmt: skip
    if i.acknowledged_at is None:
        return Check("acknowledged in time", Outcome.FAILED, "never acknowledged", evidence)
    took = i.acknowledged_at - i.opened_at
    evidence["took"] = format_duration(took)
    ok = took <= limit
    return Check(
        "acknowledged in time",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        f"acknowledged {format_duration(took)} after opening ({'within' if ok else 'past'} the "
        f"{i.severity} limit of {format_duration(limit)})",
        evidence,
    )


# --- 2. roles ------------------------------------------------------------------------------------------------


def _wanted_roles(rc: RunContext) -> dict[str, str]:
    commander = rc.params.get("commander") or rc.actor
    return {role: rc.params.get(role) or commander for role in ROLE_PARAMS}


def assign_roles(rc: RunContext) -> Check:
    """Give each unclaimed role to its principal; a role someone already holds stays theirs."""
    kept: dict[str, str] = {}
    over = _over(_incident(rc))
    with rc.ctx.db.session() as s:
        held = incidents.current_roles(session=s, incident_id=_id(rc))
        if over is not None:
            text = ", ".join(f"{r} {who or 'unclaimed'}" for r, who in held.items())
            return Check("roles", Outcome.SUCCESSFUL, f"{over}: roles as they stood: {text}", {"roles": held})
        for role, principal in _wanted_roles(rc).items():
            if held.get(role) is not None:
                kept[role] = str(held[role])
                continue
            incidents.assign(session=s, incident_id=_id(rc), role=role, principal=principal, actor=rc.actor,
                             note=f"runbook run #{rc.run_id}")  # fmt: skip
        roles = incidents.current_roles(session=s, incident_id=_id(rc))
    text = ", ".join(f"{r} {who}" for r, who in roles.items())
    return Check("roles", Outcome.SUCCESSFUL, text + (f" (already held: {', '.join(kept)})" if kept else ""),
                 {"roles": roles, "already_held": kept})  # fmt: skip


def roles_question(rc: RunContext) -> str:
    wanted = ", ".join(f"{r} to {who}" for r, who in _wanted_roles(rc).items())
    return f"Assign the unclaimed roles of incident {_id(rc)}: {wanted}?"


def roles_assigned(rc: RunContext) -> Check:
    with rc.ctx.db.session() as s:
        roles = incidents.current_roles(session=s, incident_id=_id(rc))
    missing = [r for r, who in roles.items() if who is None]
    if missing:
        return Check(
            "all roles assigned", Outcome.FAILED, f"unclaimed: {', '.join(missing)}", {"roles": roles}
        )
    return Check("all roles assigned", Outcome.SUCCESSFUL, "every role is held", {"roles": roles})


# --- 3. bridge -----------------------------------------------------------------------------------------------


def bridge(rc: RunContext) -> Check:
    """The one bridge: opened the first time, the same one returned after."""
    i = _incident(rc)
    over = _over(i)
    if over is not None and i.bridge is None:
        return Check("bridge", Outcome.SUCCESSFUL, f"{over}: no bridge was opened", {"bridge": None})
    with rc.ctx.db.session() as s:
        i, created = incidents.open_bridge(
            session=s, settings=_settings(rc), incident_id=_id(rc), actor=rc.actor, bridge=rc.params["bridge"]
        )
        where, by = i.bridge, i.bridge_by
    how = "opened" if created else f"already open (by {by}): the same one"
    return Check("bridge", Outcome.SUCCESSFUL, f"bridge {where} {how}", {"bridge": where, "created": created})


# --- 4. updates ------------------------------------------------------------------------------------------------


def post_update(rc: RunContext) -> Check:
    """Post a status update to the subscribers and the timeline; the next is due after the cadence."""
    i = _incident(rc)
    if i.state not in (IncidentState.TRIGGERED, IncidentState.ACKNOWLEDGED, IncidentState.MITIGATED):
        return Check("update", Outcome.SUCCESSFUL, f"incident {i.id} is {i.state}: no further update is due")
    status = rc.params["status"] or f"{i.title}: being worked on (runbook run #{rc.run_id})"
    with rc.ctx.db.session() as s:
        u = incidents.post_update(session=s, incident_id=_id(rc), status=status, actor=rc.actor,
                                  impact=rc.params["impact"] or "")  # fmt: skip
        summary, due = u.summary, u.next_update_at
    return Check("update", Outcome.SUCCESSFUL, f"update posted; next due {_iso(due)}",
                 {"summary": summary, "next_update_at": _iso(due)})  # fmt: skip


def gaps(rc: RunContext) -> tuple[dt.timedelta, list[dict[str, Any]], dict[str, Any]]:
    """The cadence and every stretch longer than it without word to the subscribers while the incident was
    open: from opening to the first update, between updates, and from the last to the resolution (or now)."""
    i = _incident(rc)
    cadence = dt.timedelta(seconds=i.cadence_s)
    with rc.ctx.db.session() as s:
        updates = [u.at for u in incidents.list_updates(session=s, incident_id=i.id)]
    end = i.resolved_at or clock.now()
    moments = [i.opened_at, *(u for u in updates if u <= end), end]
    found = [
        {"from": _iso(a), "to": _iso(b), "length": format_duration(b - a)}
        for a, b in itertools.pairwise(moments)
        if b - a > cadence
    ]
    evidence = {"cadence": format_duration(cadence), "opened_at": _iso(i.opened_at),
                "updates": [_iso(u) for u in updates], "until": _iso(end), "gaps": found}  # fmt: skip
    return cadence, found, evidence


def _gap_check(rc: RunContext, name: str) -> Check:
    cadence, found, evidence = gaps(rc)
    if found:
        worst = max(found, key=lambda g: g["to"])
        return Check(name, Outcome.FAILED, f"{len(found)} gap(s) longer than the {format_duration(cadence)} "
                     f"cadence, e.g. {worst['length']} from {worst['from']} to {worst['to']}", evidence)  # fmt: skip
    return Check(name, Outcome.SUCCESSFUL, f"no stretch without an update longer than {format_duration(cadence)}",
                 evidence)  # fmt: skip


def cadence_held(rc: RunContext) -> Check:
    """The check after the update: no gap so far (a reminder job chases a lapse; the run records it)."""
    return _gap_check(rc, "cadence")


def no_cadence_gap(rc: RunContext) -> Check:
    return _gap_check(rc, "no cadence gap while open")


# --- 5. escalate -------------------------------------------------------------------------------------------------


def escalate_decision(rc: RunContext) -> Check:
    """Escalate when the acknowledgement came past the severity's limit, or when asked (`escalate=true`)."""
    over = _over(_incident(rc))
    if over is not None:
        return Check("escalate?", Outcome.SUCCESSFUL, f"no escalation: {over} (nobody is paged after it)",
                     {"escalate": False, "chosen": []})  # fmt: skip
    late = ack_in_time(rc)
    asked = bool(rc.params["escalate"])
    go = asked or late.outcome is not Outcome.SUCCESSFUL
    why = "asked to escalate" if asked else late.reason
    return Check("escalate?", Outcome.SUCCESSFUL, f"{'escalate' if go else 'no escalation'}: {why}",
                 {"escalate": go, "asked": asked, "ack": late.evidence, "chosen": ["page"] if go else []})  # fmt: skip


def _page_target(session: Any, incident: Incident, given: str | None) -> str | None:
    if given:
        return given
    if incident.escalation_policy is None:
        return None
    policy = incidents.get_policy_or_raise(session=session, name=incident.escalation_policy)
    return str(policy.steps[min(incident.escalation_step + 1, len(policy.steps) - 1)]["notify"])


def page(rc: RunContext) -> Check:
    """Page the next escalation step (or `escalate_to`, a `person:NAME` or `schedule:NAME`)."""
    with rc.ctx.db.session() as s:
        i = incidents.get_incident_or_raise(session=s, incident_id=_id(rc))
        target = _page_target(s, i, rc.params["escalate_to"])
        if target is None:
            return Check("page", Outcome.FAILED, f"incident {i.id} has no escalation policy: give "
                         "--param escalate_to=person:NAME or schedule:NAME")  # fmt: skip
        p = incidents.page(session=s, incident=i, target=target, reason=f"escalated by runbook run #{rc.run_id}",
                           actor=rc.actor, settings=_settings(rc))  # fmt: skip
        who = p.principal
    return Check("page", Outcome.SUCCESSFUL, f"paged {who} ({target})", {"target": target, "paged": who})


# --- 6. resolution ------------------------------------------------------------------------------------------------


def _summary(rc: RunContext, i: Incident) -> str:
    if rc.params["summary"]:
        return str(rc.params["summary"])
    return i.root_cause or f"{i.title}: handled through runbook run #{rc.run_id}"


def resolve(rc: RunContext) -> Check:
    """Resolve with the summary; the subscribers receive it through their channels now."""
    i = _incident(rc)
    if i.state in (IncidentState.RESOLVED, IncidentState.CLOSED):
        sent = [r.to_dict() for r in outbox.send_pending(rc.ctx) if r.incident_id == i.id]
        return Check("resolve", Outcome.SUCCESSFUL, f"already {i.state} at {_iso(i.resolved_at)}: {i.resolution}; "
                     f"its subscribers ({', '.join(i.subscribers)}) were told then",
                     {"resolved_at": _iso(i.resolved_at), "summary": i.resolution, "subscribers": i.subscribers,
                      "sent": sent})  # fmt: skip
    with rc.ctx.db.session() as s:
        done = incidents.resolve(session=s, incident_id=i.id, actor=rc.actor, summary=_summary(rc, i))
        at, summary, subscribers = done.resolved_at, done.resolution, list(done.subscribers)
    sent = [r.to_dict() for r in outbox.send_pending(rc.ctx) if r.incident_id == i.id]
    return Check("resolve", Outcome.SUCCESSFUL, f"resolved at {_iso(at)}: {summary}; told {', '.join(subscribers)}",
                 {"resolved_at": _iso(at), "summary": summary, "subscribers": subscribers, "sent": sent})  # fmt: skip


# --- 7. close the loop -------------------------------------------------------------------------------------------


def draft_postmortem(rc: RunContext) -> Check:
    with rc.ctx.db.session() as s:
        pm = incidents.draft(session=s, store=rc.ctx.store, incident_id=_id(rc), actor=rc.actor)
        status, facts = pm.status, dict(pm.facts)
    keep = {k: facts.get(k) for k in ("time_to_detect", "time_to_acknowledge", "time_to_resolve", "alerts")}
    return Check("post-mortem", Outcome.SUCCESSFUL, f"post-mortem {status}: `mloncall incident postmortem "
                 f"{_id(rc)}`", {"status": status, **keep})  # fmt: skip


#: How the manual step asks for the post-mortem to be completed: `Post-mortem of incident 7 complete ...?`
POSTMORTEM_QUESTION = "Post-mortem of incident {id} complete"


def postmortem_asked(question: str) -> int | None:
    """The incident whose post-mortem the question asks a person to complete, or None (another question)."""
    head, _, rest = POSTMORTEM_QUESTION.partition("{id}")
    if not question.startswith(head):
        return None
    number = question[len(head) :].split(" ", 1)[0]
    return int(number) if number.isdigit() and question[len(head) + len(number) :].startswith(rest) else None


def _pm_question(rc: RunContext) -> str:
    return (
        POSTMORTEM_QUESTION.format(id=_id(rc))
        + f" (`mloncall incident postmortem {_id(rc)} --complete --went-well ... --went-badly ...`)?"
    )


def _pm_status(rc: RunContext) -> str | None:
    with rc.ctx.db.session() as s:
        pm = incidents.get_postmortem(session=s, incident_id=_id(rc))
        return pm.status if pm is not None else None


def pm_complete(rc: RunContext) -> Check:
    status = _pm_status(rc)
    ok = status == PostmortemStatus.COMPLETE
    return Check("post-mortem completed", Outcome.SUCCESSFUL if ok else Outcome.FAILED,
                 f"post-mortem {status or 'not drafted'}", {"status": status})  # fmt: skip


def close(rc: RunContext) -> Check:
    i = _incident(rc)
    if i.state != IncidentState.CLOSED:
        with rc.ctx.db.session() as s:
            i = incidents.close(session=s, incident_id=i.id, actor=rc.actor)
            s.flush()
    return Check("close", Outcome.SUCCESSFUL, f"incident {i.id} closed at {_iso(i.closed_at)}",
                 {"closed_at": _iso(i.closed_at)})  # fmt: skip


def _target(params: Mapping[str, Any]) -> str:
    return f"incident:{params['incident']}"


RUNBOOK = Runbook(
    name=NAME,
    title="Incident communication",
    scenario="An alert indicates degraded performance; the oncall engineer communicates status and updates.",
    objective="Clear, timely and consistent communication during ML incidents.",
    params=(
        Param(
            "incident",
            "the incident id (see `mloncall incident list`)",
            type="int",
            required=True,
            positional=True,
        ),
        Param("commander", "incident commander (default: who runs this)"),
        Param("communications", "communications lead (default: the commander)"),
        Param("operations", "operations lead (default: the commander)"),
        Param("scribe", "scribe (default: the commander)"),
        Param("bridge", "the bridge URL or channel (default: the [incidents] bridge template)"),
        Param("status", "the status update's text (default: the incident is being worked on)"),
        Param("impact", "what is affected, in plain words (default: the incident's model)"),
        Param("escalate", "escalate even when acknowledged in time", type="bool", default=False),
        Param("escalate_to", "who to page (person:NAME, schedule:NAME; default: the policy's next step)"),
        Param("summary", "the resolution summary (default: the incident's root cause)"),
    ),
    steps=(
        Step(
            "acknowledge",
            "Acknowledge the incident",
            StepKind.ACTION,
            acknowledge,
            question=lambda rc: f"Acknowledge incident {_id(rc)} as {rc.actor}?",
        ),
        Step(
            "roles",
            "Assign roles (commander, communications, operations, scribe)",
            StepKind.ACTION,
            assign_roles,
            question=roles_question,
        ),
        Step(
            "bridge",
            "Open the incident bridge (one per incident)",
            StepKind.ACTION,
            bridge,
            question=lambda rc: f"Open the bridge of incident {_id(rc)}?",
        ),
        Step(
            "update",
            "Post a status update to the subscribers",
            StepKind.ACTION,
            post_update,
            question=lambda rc: f"Post a status update on incident {_id(rc)}?",
        ),
        Step(
            "cadence",
            "Check the update cadence has not lapsed",
            StepKind.CHECK,
            cadence_held,
            stop_on_failure=False,
        ),
        Step(
            "escalate", "Escalate if necessary", StepKind.DECISION, escalate_decision, chooses_among=("page",)
        ),
        Step(
            "page",
            "Page the next escalation step",
            StepKind.ACTION,
            page,
            idempotent=False,
            question=lambda rc: f"Page {rc.params['escalate_to'] or 'the next escalation step'}?",
        ),
        Step(
            "resolve",
            "Communicate the resolution",
            StepKind.ACTION,
            resolve,
            question=lambda rc: f"Resolve incident {_id(rc)} and tell its subscribers?",
        ),
        Step(
            "postmortem",
            "Draft the post-mortem from the timeline",
            StepKind.ACTION,
            draft_postmortem,
            question="Draft the post-mortem?",
        ),
        Step(
            "complete-postmortem",
            "Complete the post-mortem",
            StepKind.MANUAL,
            pm_complete,
            question=_pm_question,
        ),
        Step(
            "close",
            "Close the loop: close the incident",
            StepKind.ACTION,
            close,
            question=lambda rc: f"Close incident {_id(rc)}?",
            precondition=pm_complete,
        ),
    ),
    acceptance=(
        Criterion("acknowledged within the severity's limit", ack_in_time),
        Criterion("all roles assigned", roles_assigned),
        Criterion("no cadence gap while open", no_cadence_gap),
        Criterion("post-mortem completed", pm_complete),
    ),
    contacts=("Primary: Incident Commander", "Secondary: ML, Data, and DevOps team leads"),
    target=_target,
    troubleshooting=("No updates being posted.", "Stakeholder confusion.", "Duplicate channels or bridges."),
)
