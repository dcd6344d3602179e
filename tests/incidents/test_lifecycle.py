"""The incident's life with the injectable clock: roles and handoffs, one bridge, updates and the reminder
when one is missed, escalation while nobody acknowledges, schedules and iCalendar, the post-mortem; and every
bad input the issue lists, with a clear error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import icalendar
import pytest
import sqlalchemy as sa

from mloncall.core import clock
from mloncall.core.config import Settings
from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.incidents import jobs, service
from mloncall.incidents.models import Message, Page
from mloncall.incidents.states import IncidentState
from mloncall.stores.context import Context
from tests.incidents.conftest import START, fire


def _setup_oncall(ctx: Context) -> None:
    with ctx.db.session() as session:
        service.create_schedule(session=session, name="primary", members=["alice", "bob"], time_zone="Europe/Paris",
                                handoff="09:00", shift="1d", start=dt.date(2026, 3, 1), actor="t")  # fmt: skip
        service.create_policy(session=session, name="default", steps=["schedule:primary=5m", "person:carol=10m"],
                              repeat=1, actor="t")  # fmt: skip


def _open(ctx: Context, **kwargs: object) -> int:
    with ctx.db.session() as session:
        incident = service.open_incident(
            session=session, settings=service.incident_settings(ctx.settings), title="accuracy dropped",
            severity=str(kwargs.pop("severity", "SEV2")), actor="t", model="iris", **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
        return incident.id


def _pages(ctx: Context, incident_id: int) -> list[tuple[str, str]]:
    with ctx.db.session() as session:
        rows = session.scalars(sa.select(Page).where(Page.incident_id == incident_id).order_by(Page.id)).all()
        return [(p.principal, p.target) for p in rows]


def test_escalation_pages_step_by_step_until_someone_acknowledges(
    sictx: Context, clock_at: clock.FrozenClock
) -> None:
    _setup_oncall(sictx)
    incident_id = _open(sictx)
    # 2026-03-02 09:00 UTC is 10:00 in Paris: the shift of 2026-03-02 (bob, the second member)
    assert _pages(sictx, incident_id) == [("bob", "schedule:primary")]
    clock_at.advance(minutes=4)
    assert jobs.run_once(sictx, channels=[]).escalated == []
    clock_at.advance(minutes=1)
    assert jobs.run_once(sictx, channels=[]).escalated == [incident_id]
    assert _pages(sictx, incident_id)[-1] == ("carol", "person:carol")
    clock_at.advance(minutes=10)  # round 2 starts again from the first step
    jobs.run_once(sictx, channels=[])
    assert len(_pages(sictx, incident_id)) == 3
    with sictx.db.session() as session:
        service.acknowledge(session=session, incident_id=incident_id, actor="bob")
    clock_at.advance(hours=1)
    assert jobs.run_once(sictx, channels=[]).escalated == []
    assert len(_pages(sictx, incident_id)) == 3


def test_no_page_after_resolution(sictx: Context, clock_at: clock.FrozenClock) -> None:
    _setup_oncall(sictx)
    incident_id = _open(sictx)
    with sictx.db.session() as session:
        service.resolve(session=session, incident_id=incident_id, actor="bob", summary="cleared")
    clock_at.advance(days=60)
    done = jobs.run_once(sictx, channels=[])
    assert done.escalated == [] and done.update_reminders == []
    assert len(_pages(sictx, incident_id)) == 1
    with pytest.raises(Conflict, match="nobody is paged"), sictx.db.session() as session:
        incident = service.get_incident_or_raise(session=session, incident_id=incident_id)
        service.page(session=session, incident=incident, target="person:alice", reason="x", actor="t",
                     settings=service.incident_settings(sictx.settings))  # fmt: skip


def test_a_missed_update_reminds_the_commander_then_escalates(
    sictx: Context, clock_at: clock.FrozenClock
) -> None:
    _setup_oncall(sictx)
    incident_id = _open(sictx)  # SEV2: an update every 30m
    with sictx.db.session() as session:
        service.acknowledge(session=session, incident_id=incident_id, actor="bob")
        service.assign(
            session=session, incident_id=incident_id, role="commander", principal="alice", actor="bob"
        )
        service.post_update(session=session, incident_id=incident_id, status="investigating", actor="alice")
    clock_at.advance(minutes=29)
    assert jobs.run_once(sictx, channels=[]).update_reminders == []
    clock_at.advance(minutes=2)
    assert jobs.run_once(sictx, channels=[]).update_reminders == [incident_id]
    with sictx.db.session() as session:
        reminder = session.scalars(sa.select(Message).where(Message.title.like("%update is overdue"))).one()
        assert reminder.text.startswith("alice: incident #") and "1m late" in reminder.text
    assert jobs.run_once(sictx, channels=[]).update_reminders == []  # reminded once
    clock_at.advance(minutes=15)
    assert jobs.run_once(sictx, channels=[]).update_reminders == [incident_id]
    assert _pages(sictx, incident_id)[-1] == ("carol", "person:carol")  # the next escalation step
    with sictx.db.session() as session:  # an update starts the cadence again
        service.post_update(session=session, incident_id=incident_id, status="rolled back", actor="alice")
    clock_at.advance(minutes=20)
    assert jobs.run_once(sictx, channels=[]).update_reminders == []


def test_unclaimed_roles_are_reminded_once(sictx: Context, clock_at: clock.FrozenClock) -> None:
    incident_id = _open(sictx)
    with sictx.db.session() as session:
        service.assign(session=session, incident_id=incident_id, role="ic", principal="alice", actor="t")
    clock_at.advance(minutes=16)
    reminded = jobs.run_once(sictx, channels=[]).role_reminders
    assert sorted(r for _, r in reminded) == ["communications", "operations", "scribe"]
    assert jobs.run_once(sictx, channels=[]).role_reminders == []


def test_roles_handoffs_and_their_history(ictx: Context) -> None:
    incident_id = _open(ictx)
    with ictx.db.session() as session:
        service.assign(
            session=session, incident_id=incident_id, role="commander", principal="alice", actor="t"
        )
        service.handoff(session=session, incident_id=incident_id, role="commander", to="bob", actor="alice")
        assert service.current_roles(session=session, incident_id=incident_id)["commander"] == "bob"
        history = service.role_history(session=session, incident_id=incident_id)
        assert [(h.principal, h.renounced_at is not None) for h in history] == [
            ("alice", True),
            ("bob", False),
        ]
    with pytest.raises(NotFound, match="principal 'nobody'"), ictx.db.session() as session:
        service.assign(session=session, incident_id=incident_id, role="scribe", principal="nobody", actor="t")
    with pytest.raises(InvalidInput, match="already holds commander"), ictx.db.session() as session:
        service.handoff(session=session, incident_id=incident_id, role="commander", to="bob", actor="bob")
    with pytest.raises(Conflict, match="use `mloncall incident handoff"), ictx.db.session() as session:
        service.assign(
            session=session, incident_id=incident_id, role="commander", principal="carol", actor="t"
        )
    with pytest.raises(InvalidInput, match="unknown role"), ictx.db.session() as session:
        service.assign(session=session, incident_id=incident_id, role="chef", principal="carol", actor="t")


def test_one_bridge_per_incident(sictx: Context) -> None:
    incident_id = _open(sictx)
    s = service.incident_settings(sictx.settings)
    with sictx.db.session() as session:
        first, created = service.open_bridge(
            session=session, settings=s, incident_id=incident_id, actor="alice"
        )
        assert created and first.bridge == f"#incident-{incident_id}"
    with sictx.db.session() as session:
        again, created = service.open_bridge(
            session=session, settings=s, incident_id=incident_id, actor="bob"
        )
        assert not created and again.bridge == f"#incident-{incident_id}"
    with pytest.raises(Conflict, match="already has its bridge"), sictx.db.session() as session:
        service.open_bridge(
            session=session,
            settings=s,
            incident_id=incident_id,
            actor="bob",
            bridge="https://meet.example.com/x",
        )


@pytest.mark.parametrize("cadence", ["15", "ten minutes", "-5m", "0", "30x"])
def test_a_cadence_with_a_bad_duration_is_refused(sictx: Context, cadence: str) -> None:
    with pytest.raises(InvalidInput, match="update cadence"):
        _open(sictx, cadence=cadence)


@pytest.mark.parametrize("step", ["schedule:primary=5", "person:alice=soon", "person:alice", "team:x=5m"])
def test_an_escalation_policy_with_a_bad_step_is_refused(sictx: Context, step: str) -> None:
    _setup_oncall(sictx)
    with pytest.raises(InvalidInput), sictx.db.session() as session:
        service.create_policy(session=session, name="bad", steps=[step], actor="t")


def test_updating_a_closed_incident_is_a_conflict_with_the_reason(sictx: Context) -> None:
    incident_id = _open(sictx)
    with sictx.db.session() as session:
        service.resolve(
            session=session, incident_id=incident_id, actor="t", summary="rolled back", cause="bad deploy"
        )
        service.post_update(
            session=session, incident_id=incident_id, status="watching after resolution", actor="t"
        )
    with pytest.raises(Conflict, match="post-mortem is complete"), sictx.db.session() as session:
        service.close(session=session, incident_id=incident_id, actor="t")
    with sictx.db.session() as session:
        service.complete(session=session, store=sictx.store, incident_id=incident_id, actor="t",
                         went_well="paged fast", went_badly="no canary")  # fmt: skip
        service.close(session=session, incident_id=incident_id, actor="t")
    with pytest.raises(Conflict, match="is closed"), sictx.db.session() as session:
        service.post_update(session=session, incident_id=incident_id, status="x", actor="t")


def test_oncall_now_overrides_and_the_icalendar_feed(sictx: Context) -> None:
    _setup_oncall(sictx)
    with sictx.db.session() as session:
        (now,) = service.oncall_now(session=session, schedule="primary")
        assert now.principal == "bob" and not now.override
        assert now.since == dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)  # 09:00 Paris (UTC+1)
        service.add_override(session=session, schedule="primary", principal="dave", starts_at=START,
                             ends_at=START + dt.timedelta(hours=2), actor="t", reason="bob at the dentist")  # fmt: skip
    with sictx.db.session() as session:
        (now,) = service.oncall_now(session=session, schedule="primary")
        assert (now.principal, now.override) == ("dave", True)
        feed = icalendar.Calendar.from_ical(service.to_ical(session=session, schedule="primary", days=30))
    events = [e for e in feed.walk("VEVENT")]
    assert str(events[0]["summary"]) == "On call: dave (primary) (override)"
    assert str(events[1]["summary"]) == "On call: bob (primary)"
    # after the change to summer time (2026-03-29) the handoff stays at 09:00 in Paris: 07:00 UTC
    late = [
        e.decoded("dtstart") for e in events if e.decoded("dtstart") > dt.datetime(2026, 3, 30, tzinfo=dt.UTC)
    ]
    assert late[0] == dt.datetime(2026, 3, 30, 7, 0, tzinfo=dt.UTC)


def test_the_postmortem_carries_the_detection_and_resolution_times(
    sictx: Context, clock_at: clock.FrozenClock
) -> None:
    fire(sictx, since=dt.timedelta(minutes=5))  # the condition began at 08:55, the alert fired at 09:00
    jobs.run_once(sictx, channels=[])
    with sictx.db.session() as session:
        (incident,) = service.list_incidents(session=session)
        incident_id = incident.id
    clock_at.advance(minutes=3)
    with sictx.db.session() as session:
        service.acknowledge(session=session, incident_id=incident_id, actor="alice")
    clock_at.advance(minutes=12)
    with sictx.db.session() as session:
        service.mitigate(session=session, incident_id=incident_id, actor="alice", note="rolled back to v1")
    clock_at.advance(minutes=25)
    with sictx.db.session() as session:
        service.resolve(
            session=session,
            incident_id=incident_id,
            actor="alice",
            summary="accuracy back",
            cause="a bad feature",
        )
        pm = service.draft(session=session, store=sictx.store, incident_id=incident_id, actor="alice")
        assert pm.facts["time_to_detect"] == "5m"
        assert pm.facts["time_to_acknowledge"] == "3m"
        assert pm.facts["time_to_mitigate"] == "20m"
        assert pm.facts["time_to_resolve"] == "45m"
        assert pm.facts["impact"]["predictions"] == 0
        assert "| alert fired | 2026-03-02T09:00:00+00:00 | 5m (time to detect) |" in pm.markdown
        assert "- a bad feature" in pm.markdown and pm.status == "draft"
        service.add_action_item(session=session, incident_id=incident_id, title="alert on the feature", owner="bob",
                                due=dt.date(2026, 3, 20), actor="alice")  # fmt: skip
    with pytest.raises(InvalidInput, match="went_badly"), sictx.db.session() as session:
        service.complete(
            session=session,
            store=sictx.store,
            incident_id=incident_id,
            actor="t",
            went_well="x",
            went_badly=" ",
        )
    with sictx.db.session() as session:
        done = service.complete(session=session, store=sictx.store, incident_id=incident_id, actor="t",
                                went_well="fast rollback", went_badly="late detection")  # fmt: skip
        assert "- [ ] alert on the feature (owner bob, due 2026-03-20)" in done.markdown
        assert (
            service.close(session=session, incident_id=incident_id, actor="t").state == IncidentState.CLOSED
        )
        assert [i.status for i in service.action_items(session=session, status="open")] == ["open"]


def _resolved_with_postmortem(ctx: Context) -> int:
    incident_id = _open(ctx)
    with ctx.db.session() as session:
        service.resolve(session=session, incident_id=incident_id, actor="alice", summary="rolled back",
                        cause="a bad training batch")  # fmt: skip
        service.draft(session=session, store=ctx.store, incident_id=incident_id, actor="alice")
    return incident_id


def test_action_items_are_done_once_and_their_state_shows_on_the_postmortem(
    sictx: Context, clock_at: clock.FrozenClock
) -> None:
    incident_id = _resolved_with_postmortem(sictx)
    with sictx.db.session() as session:
        alert_on = service.add_action_item(session=session, incident_id=incident_id, title="alert on the feature",
                                           owner="bob", due=dt.date(2026, 3, 20), actor="alice").id  # fmt: skip
        canary = service.add_action_item(session=session, incident_id=incident_id, title="canary every deploy",
                                         owner="carol", due=dt.date(2026, 3, 10), actor="alice").id  # fmt: skip
    clock_at.advance(hours=1)
    with sictx.db.session() as session:
        done = service.finish_action_item(session=session, item_id=alert_on, actor="bob")
        assert (done.status, done.done_at) == ("done", clock_at.current)
    with sictx.db.session() as session:
        assert [(i.id, i.status) for i in service.action_items(session=session, incident_id=incident_id)] == [
            (canary, "open"),  # by due date
            (alert_on, "done"),
        ]
        assert [i.id for i in service.action_items(session=session, status="done")] == [alert_on]
        texts = [
            i.text
            for i in service.timeline(session=session, incident_id=incident_id)
            if i.kind == "action-item"
        ]
        assert texts[-1] == "action item done: alert on the feature"
        pm = service.draft(session=session, store=sictx.store, incident_id=incident_id, actor="alice")
        assert "- [x] alert on the feature (owner bob, due 2026-03-20)" in pm.markdown
        assert "- [ ] canary every deploy (owner carol, due 2026-03-10)" in pm.markdown
    with pytest.raises(Conflict, match=f"action item {alert_on} was done at"), sictx.db.session() as session:
        service.finish_action_item(session=session, item_id=alert_on, actor="bob")
    with pytest.raises(NotFound, match="action item 999 does not exist"), sictx.db.session() as session:
        service.finish_action_item(session=session, item_id=999, actor="bob")
    with pytest.raises(NotFound, match="principal 'nobody'"), sictx.db.session() as session:
        service.add_action_item(session=session, incident_id=incident_id, title="x", owner="nobody",
                                due=dt.date(2026, 3, 20), actor="alice")  # fmt: skip
    with pytest.raises(InvalidInput, match="needs a title"), sictx.db.session() as session:
        service.add_action_item(session=session, incident_id=incident_id, title=" ", owner="bob",
                                due=dt.date(2026, 3, 20), actor="alice")  # fmt: skip
    with pytest.raises(InvalidInput, match="use open or done"), sictx.db.session() as session:
        service.action_items(session=session, status="finished")


def test_an_item_done_after_the_postmortem_is_complete_shows_done_on_it(sictx: Context) -> None:
    """Follow-up work is finished after the post-mortem is written: the complete record keeps up."""
    incident_id = _resolved_with_postmortem(sictx)
    with sictx.db.session() as session:
        item = service.add_action_item(session=session, incident_id=incident_id, title="alert on the feature",
                                       owner="bob", due=dt.date(2026, 3, 20), actor="alice").id  # fmt: skip
        complete = service.complete(session=session, store=sictx.store, incident_id=incident_id, actor="alice",
                                    went_well="fast rollback", went_badly="late labels")  # fmt: skip
        assert "- [ ] alert on the feature" in complete.markdown
        service.close(session=session, incident_id=incident_id, actor="alice")
    with sictx.db.session() as session:
        service.finish_action_item(session=session, item_id=item, actor="bob")
    with sictx.db.session() as session:
        pm = service.get_postmortem(session=session, incident_id=incident_id)
        assert pm is not None and pm.status == "complete"
        assert "- [x] alert on the feature (owner bob, due 2026-03-20)" in pm.markdown
        assert "## What went well\n\nfast rollback" in pm.markdown  # the rest of the record is unchanged


def _bridge_settings(ctx: Context, tmp_path: Path, template: str) -> service.IncidentSettings:
    config = tmp_path / "mloncall.toml"
    config.write_text(f"[incidents]\nbridge = {template!r}\n")
    return service.incident_settings(
        Settings.load(env={"MLONCALL_HOME": str(ctx.settings.home)}, config_file=config)
    )


@pytest.mark.parametrize(
    ("template", "model", "bridge"),
    [
        (
            "https://meet.example.com/{model}-{severity}-{id}",
            "iris",
            "https://meet.example.com/iris-sev2-{id}",
        ),
        ("#inc-{id}-{model}", None, "#inc-{id}-incident"),
        ("https://meet.example.com/incident-{id:04d}", "iris", "https://meet.example.com/incident-{id:04d}"),
    ],
)
def test_the_bridge_comes_from_the_configured_template(
    sictx: Context, tmp_path: Path, template: str, model: str | None, bridge: str
) -> None:
    settings = _bridge_settings(sictx, tmp_path, template)
    with sictx.db.session() as session:
        incident = service.open_incident(session=session, settings=settings, title="accuracy dropped",
                                         severity="SEV2", actor="t", model=model)  # fmt: skip
        opened, created = service.open_bridge(session=session, settings=settings, incident_id=incident.id,
                                              actor="alice")  # fmt: skip
        assert created and opened.bridge == bridge.format(id=incident.id)
        texts = [i.text for i in service.timeline(session=session, incident_id=incident.id)]
        assert f"bridge opened: {opened.bridge}" in texts


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("https://meet.example.com/{team}", "unknown placeholder(s) team"),
        ("meet us at {id}", "bad bridge 'meet us at "),
        ("https://meet.example.com/{}", "[incidents] bridge"),
        ("https://meet.example.com/{id", "[incidents] bridge"),
    ],
)
def test_a_bad_bridge_template_is_a_clear_error(
    sictx: Context, tmp_path: Path, template: str, error: str
) -> None:
    settings = _bridge_settings(sictx, tmp_path, template)
    with sictx.db.session() as session:
        incident_id = service.open_incident(session=session, settings=settings, title="accuracy dropped",
                                            severity="SEV2", actor="t", model="iris").id  # fmt: skip
    with pytest.raises(InvalidInput) as caught, sictx.db.session() as session:
        service.open_bridge(session=session, settings=settings, incident_id=incident_id, actor="alice")
    assert error in caught.value.message
    with sictx.db.session() as session:  # nothing was recorded: a fixed template still opens the bridge
        assert service.get_incident_or_raise(session=session, incident_id=incident_id).bridge is None
