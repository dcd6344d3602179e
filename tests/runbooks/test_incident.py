"""Runbook 8 (`incident-communication`) on both metadata backends, on an incident opened from an alert, with
the injectable clock: acceptance when everything is done in time, a missed update caught with its evidence,
the run's steps on the incident's timeline, the export as a report, and the bad input refused."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.incidents import service as incidents
from mloncall.runbooks import engine, export
from mloncall.runbooks import service as runs
from mloncall.runbooks.incident import postmortem_asked
from mloncall.stores.context import Context
from tests.incidents.conftest import fire

BOOK = "incident-communication"


class Oncall:
    """A person at the terminal: says yes, completes the post-mortem when the runbook asks for it, and may
    let time pass before answering a given step's question."""

    def __init__(self, ctx: Context, fc: clock.FrozenClock, *, wait: dict[str, dt.timedelta] | None = None):
        self.actor, self.ctx, self.fc, self.wait = "alice", ctx, fc, wait or {}
        self.asked: list[str] = []

    def ask(self, question: str) -> bool:
        self.asked.append(question)
        for word, pause in self.wait.items():
            if word in question:
                self.fc.advance(seconds=pause.total_seconds())
        incident_id = postmortem_asked(question)
        if incident_id is not None:
            with self.ctx.db.session() as s:
                incidents.complete(session=s, store=self.ctx.store, incident_id=incident_id, actor=self.actor,
                                   went_well="paged at once, one bridge", went_badly="labels arrived late",
                                   root_cause="petal_length shifted upstream")  # fmt: skip
        return True

    def note(self, prompt: str) -> str:
        return "post-mortem reviewed with the team"


def _incident_from_alert(ctx: Context) -> int:
    alert_id = fire(ctx, severity="critical")
    with ctx.db.session() as s:
        routed = incidents.intake(session=s, settings=incidents.incident_settings(ctx.settings)).routed
    (r,) = routed
    assert r.action == "opened"
    with ctx.db.session() as s:
        found = incidents.incident_of_alert(session=s, alert_id=alert_id)
        assert found is not None and found.severity == "SEV2"
        return found.id


def _run(ctx: Context, person: Oncall, incident_id: int, **params: Any) -> dict[str, Any]:
    rid = engine.start(ctx, runbook=BOOK, params={"incident": incident_id, **params}, confirmer=person)
    with ctx.db.session() as s:
        return export.run_dict(s, runs.get_run_or_raise(session=s, run_id=rid))


def _checks(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in record["acceptance"]["checks"]}


def test_the_incident_is_walked_from_page_to_postmortem_and_accepted(
    ictx: Context,
    clock_at: clock.FrozenClock,
) -> None:
    incident_id = _incident_from_alert(ictx)
    clock_at.advance(minutes=4)  # the on-call engineer picks it up within SEV2's 15 minutes
    record = _run(ictx, Oncall(ictx, clock_at), incident_id, operations="bob", scribe="carol")
    steps = {st["name"]: st["state"] for st in record["steps"]}
    assert (record["state"], record["outcome"]) == ("finished", "successful"), record["reason"]
    assert steps == {
        "acknowledge": "successful", "roles": "successful", "bridge": "successful", "update": "successful",
        "cadence": "successful", "escalate": "successful", "page": "skipped", "resolve": "successful",
        "postmortem": "successful", "complete-postmortem": "successful", "close": "successful",
    }  # fmt: skip
    assert record["target"] == f"incident:{incident_id}" and record["incident_id"] == incident_id
    checks = _checks(record)
    assert set(checks) == {"acknowledged within the severity's limit", "all roles assigned",
                           "no cadence gap while open", "post-mortem completed"}  # fmt: skip
    assert checks["acknowledged within the severity's limit"]["evidence"]["took"] == "4m"
    assert checks["no cadence gap while open"]["evidence"]["gaps"] == []
    with ictx.db.session() as s:
        incident = incidents.get_incident_or_raise(session=s, incident_id=incident_id)
        assert incident.state == "closed" and incident.bridge == f"#incident-{incident_id}"
        roles = incidents.current_roles(session=s, incident_id=incident_id)
        assert roles == {
            "commander": "alice",
            "communications": "alice",
            "operations": "bob",
            "scribe": "carol",
        }
        assert incidents.get_postmortem(session=s, incident_id=incident_id).status == "complete"  # type: ignore[union-attr]
        timeline = incidents.timeline(session=s, incident_id=incident_id)
        pm = incidents.get_postmortem(session=s, incident_id=incident_id)
        markdown = pm.markdown if pm is not None else ""
    # The run's moves are on the incident's timeline, and its findings in the post-mortem's root cause.
    ours = [e for e in timeline if e.kind == "runbook" and e.detail.get("runbook_run") == record["id"]]
    finished = {e.detail["step"] for e in ours if e.detail["to"] == "successful"}
    assert {"acknowledge", "roles", "bridge", "update", "resolve"} <= finished
    assert any(e.detail["step"] is None and e.detail["to"] == "running" for e in ours)  # the run's start
    assert f"runbook: run #{record['id']} ({BOOK}) step bridge: running -> successful" in markdown
    # A second bridge is the first: asking again returns it.
    with ictx.db.session() as s:
        again, created = incidents.open_bridge(
            session=s,
            settings=incidents.incident_settings(ictx.settings),
            incident_id=incident_id,
            actor="bob",
        )
        assert (again.bridge, created) == (f"#incident-{incident_id}", False)
    # The export reads as a report.
    with ictx.db.session() as s:
        text = export.export(s, runs.get_run_or_raise(session=s, run_id=record["id"]), "markdown")
    assert text.startswith(f"# Runbook run #{record['id']}: Incident communication on incident:{incident_id}")
    assert f"- Incident: #{incident_id}" in text and "## Acceptance criteria" in text
    assert "- [x] **no cadence gap while open** — successful" in text and "| complete-postmortem |" in text


def test_a_missed_update_fails_the_cadence_criterion_with_its_evidence(
    ictx: Context,
    clock_at: clock.FrozenClock,
) -> None:
    incident_id = _incident_from_alert(ictx)
    person = Oncall(ictx, clock_at, wait={"Resolve incident": dt.timedelta(minutes=47)})  # SEV2: every 30m
    record = _run(ictx, person, incident_id)
    assert (record["state"], record["outcome"]) == ("finished", "failed")
    assert record["reason"] == "acceptance not met: no cadence gap while open"
    cadence = _checks(record)["no cadence gap while open"]
    assert cadence["outcome"] == "failed" and "1 gap(s) longer than the 30m cadence" in cadence["reason"]
    (gap,) = cadence["evidence"]["gaps"]
    assert gap["length"] == "47m" and gap["to"] == cadence["evidence"]["until"]
    assert cadence["evidence"]["updates"] == [gap["from"]]
    others = [c["outcome"] for n, c in _checks(record).items() if n != "no cadence gap while open"]
    assert others == ["successful"] * 3


def test_a_late_acknowledgement_escalates_to_the_next_step(
    ictx: Context,
    clock_at: clock.FrozenClock,
) -> None:
    incident_id = _incident_from_alert(ictx)
    clock_at.advance(minutes=20)  # past SEV2's 15 minutes
    record = _run(ictx, Oncall(ictx, clock_at), incident_id, escalate_to="person:dave")
    steps = {st["name"]: st for st in record["steps"]}
    assert steps["page"]["state"] == "successful" and steps["page"]["evidence"]["paged"] == "dave"
    assert (
        "escalate" in steps["escalate"]["reason"]
        and "past the SEV2 limit of 15m" in steps["escalate"]["reason"]
    )
    ack = _checks(record)["acknowledged within the severity's limit"]
    assert ack["outcome"] == "failed" and ack["evidence"]["took"] == "20m"


def test_a_monitoring_run_on_an_incidents_alert_feeds_its_timeline(
    ictx: Context,
    clock_at: clock.FrozenClock,
) -> None:
    alert_id = fire(ictx, severity="critical")
    with ictx.db.session() as s:
        incidents.intake(session=s, settings=incidents.incident_settings(ictx.settings))
        incident = incidents.incident_of_alert(session=s, alert_id=alert_id)
        assert incident is not None
        incident_id = incident.id
    rid = engine.create(ictx, runbook="monitoring", params={}, alert_id=alert_id, actor="alice")
    with ictx.db.session() as s:
        run = runs.get_run_or_raise(session=s, run_id=rid)
        assert run.incident_id == incident_id
        runs.move_step(session=s, step=runs.step_of(run, "review"), to_state="running", actor="alice",  # type: ignore[arg-type]
                       reason="check started")  # fmt: skip
    with ictx.db.session() as s:
        ours = [e for e in incidents.timeline(session=s, incident_id=incident_id) if e.kind == "runbook"]
    assert [(e.detail["step"], e.detail["to"]) for e in ours] == [(None, "running"), ("review", "running")]
    assert ours[1].text == f"run #{rid} (monitoring) step review: pending -> running: check started"
    # A run on an alert that belongs to no incident writes to no timeline.
    lone = fire(ictx, rule="feature-drift", model="other", severity="warning")
    with ictx.db.session() as s:
        assert (
            runs.get_run_or_raise(
                session=s,
                run_id=engine.create(ictx, runbook="monitoring", params={}, alert_id=lone, actor="a"),
            ).incident_id
            is None
        )


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"incident": 999}, NotFound, "incident 999 does not exist"),
        ({"incident": "seven"}, InvalidInput, "invalid parameter incident='seven': expected a whole number"),
        ({}, InvalidInput, "needs incident"),
        ({"incident": 1, "colour": "red"}, InvalidInput, "unknown parameter colour"),
    ],
)
def test_bad_input_is_refused_before_a_run_exists(
    ictx: Context, params: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        engine.start(ictx, runbook=BOOK, params=params, confirmer=engine.Unattended("alice", yes=True))
    with ictx.db.session() as s:
        assert runs.list_runs(session=s, runbook=BOOK) == []


def test_a_closed_incident_is_refused_clearly(
    ictx: Context,
    clock_at: clock.FrozenClock,
) -> None:
    incident_id = _incident_from_alert(ictx)
    first = _run(ictx, Oncall(ictx, clock_at), incident_id)
    assert first["outcome"] == "successful"
    again: Callable[[], int] = lambda: engine.start(  # noqa: E731
        ictx, runbook=BOOK, params={"incident": incident_id}, confirmer=engine.Unattended("alice", yes=True)
    )
    with pytest.raises(Conflict, match=f"incident {incident_id} is closed .*nothing left to run"):
        again()
    with ictx.db.session() as s:
        assert len(runs.list_runs(session=s, runbook=BOOK)) == 1


def test_an_incident_resolved_before_the_runbook_is_reported_as_it_stood_and_judged(
    ictx: Context,
    clock_at: clock.FrozenClock,
) -> None:
    """Resolved by someone else (the monitoring runbook once its alerts closed) before anyone took command:
    runbook 8 changes nothing the response would have, says what the record holds, and its acceptance fails
    where the response fell short, while the loop (post-mortem, close) still closes."""
    incident_id = _incident_from_alert(ictx)
    clock_at.advance(minutes=3)
    with ictx.db.session() as s:
        incidents.mitigate(session=s, incident_id=incident_id, actor="bob", note="rolled back to v1")
        incidents.resolve(
            session=s, incident_id=incident_id, actor="bob", summary="accuracy is back after v1"
        )
    clock_at.advance(minutes=1)
    record = _run(ictx, Oncall(ictx, clock_at), incident_id)
    steps = {st["name"]: st for st in record["steps"]}
    assert (record["state"], record["outcome"]) == ("finished", "failed"), record["reason"]
    assert "was resolved at" in steps["acknowledge"]["reason"] and "by bob" in steps["acknowledge"]["reason"]
    assert "commander unclaimed" in steps["roles"]["reason"]
    assert steps["bridge"]["reason"].endswith("no bridge was opened")
    assert "no further update is due" in steps["update"]["reason"]
    assert steps["escalate"]["reason"].startswith("no escalation") and steps["page"]["state"] == "skipped"
    assert (
        "already resolved" in steps["resolve"]["reason"] and "accuracy is back" in steps["resolve"]["reason"]
    )
    assert steps["close"]["state"] == "successful"
    checks = {name: c["outcome"] for name, c in _checks(record).items()}
    assert checks == {
        "acknowledged within the severity's limit": "successful",  # mitigating acknowledged it
        "all roles assigned": "failed",
        "no cadence gap while open": "successful",
        "post-mortem completed": "successful",
    }
    with ictx.db.session() as s:
        incident = incidents.get_incident_or_raise(session=s, incident_id=incident_id)
        assert incident.state == "closed" and incident.bridge is None
        assert set(incidents.current_roles(session=s, incident_id=incident_id).values()) == {None}
