"""One incident per problem, on SQLite and PostgreSQL: alert groups held by one open incident (a unique
constraint), ML-lineage joins with their reasons, undoing a join, merge and unmerge, and the alert storm."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mloncall.alerts import lifecycle, notify
from mloncall.alerts.channels import Channel
from mloncall.alerts.models import Notification
from mloncall.alerts.states import AlertSource, AlertState, EventKind, NotifyEvent
from mloncall.core import clock
from mloncall.core.errors import Conflict, InvalidInput
from mloncall.incidents import jobs, service
from mloncall.incidents.models import GroupClaim, Incident, IncidentAlert, Message
from mloncall.incidents.states import IncidentState
from mloncall.rollout import service as rollouts
from mloncall.stores.context import Context
from tests.alerts.conftest import Receiver
from tests.helpers import new_samples_csv, train_iris
from tests.incidents.conftest import fire


def settings_of(ctx: Context) -> service.IncidentSettings:
    return service.incident_settings(ctx.settings)


def test_an_alert_opens_an_incident_and_its_group_joins_it(ictx: Context) -> None:
    first = fire(ictx, rule="accuracy-drop")
    second = fire(ictx, rule="high-error-rate")
    with ictx.db.session() as session:
        result = service.intake(session=session, settings=settings_of(ictx))
    assert [r.action for r in result.routed] == ["opened", "joined"]
    with ictx.db.session() as session:
        (incident,) = service.list_incidents(session=session)
        assert incident.severity == "SEV2" and incident.state == IncidentState.TRIGGERED
        assert incident.model == "iris"
        links = service.links(session=session, incident_id=incident.id)
        assert [link.alert_id for link in links] == [first, second]
        assert links[1].reason.startswith('the same alert group mloncall:{model="iris"')
        # the first signal is when the first alert's condition began to hold
        assert incident.detected_at == clock.now() - dt.timedelta(minutes=5)
    with ictx.db.session() as session:  # a second pass has nothing to route
        assert service.intake(session=session, settings=settings_of(ictx)).routed == []


def test_one_open_incident_per_alert_group_is_a_database_constraint(ictx: Context) -> None:
    fire(ictx)
    with ictx.db.session() as session:
        service.intake(session=session, settings=settings_of(ictx))
    with ictx.db.session() as session:
        claim = session.scalars(sa.select(GroupClaim)).one()
        other = service.open_incident(
            session=session, settings=settings_of(ictx), title="dup", severity="SEV3", actor="t"
        )
        claim_info = (claim.group_id, other.id)
    with pytest.raises(IntegrityError), ictx.db.session() as session:
        session.add(GroupClaim(group_id=claim_info[0], incident_id=claim_info[1], origin_incident_id=claim_info[1],
                               claimed_at=clock.now()))  # fmt: skip
        session.flush()


def test_alerts_on_the_same_model_version_join_across_groups_with_the_reason(ictx: Context) -> None:
    fire(ictx, rule="accuracy-drop", labels={"version": "3"})
    fire(ictx, rule="feature-drift", severity="warning", labels={"version": "3", "runbook": "data-quality"})
    fire(ictx, rule="volume-drop", model="other", severity="warning")
    with ictx.db.session() as session:
        routed = service.intake(session=session, settings=settings_of(ictx)).routed
    assert [r.action for r in routed] == ["opened", "joined", "skipped"]
    assert routed[1].reason.startswith("the same model version iris:3, within 1h")
    assert routed[2].reason == "severity warning opens no incident"
    with ictx.db.session() as session:
        (incident,) = service.list_incidents(session=session)
        assert "version:iris:3" in incident.lineage
        assert session.scalar(sa.select(sa.func.count()).select_from(GroupClaim)) == 2


@pytest.mark.parametrize("source", ["feature", "pipeline"])
def test_alerts_on_the_same_feature_source_join_across_models_with_the_reason(
    ictx: Context, source: str
) -> None:
    """Two models fed by one feature source are in two alert groups; their alerts are one problem."""
    fire(ictx, rule="feature-drift", model="iris", labels={source: "petal_width"})
    fire(ictx, rule="feature-drift", model="wine", labels={source: "petal_width"})
    fire(ictx, rule="feature-drift", model="beer", labels={source: "alcohol"})
    with ictx.db.session() as session:
        routed = service.intake(session=session, settings=settings_of(ictx)).routed
    assert [r.action for r in routed] == ["opened", "joined", "opened"]
    assert routed[1].incident_id == routed[0].incident_id != routed[2].incident_id
    assert routed[1].reason == f"the same {source} petal_width, within 1h of the incident's last signal"
    with ictx.db.session() as session:
        link = service.links(session=session, incident_id=routed[0].incident_id)[1]  # type: ignore[arg-type]
        assert link.reason == routed[1].reason and link.match == {"key": f"{source}:petal_width"}
        incident = service.get_incident_or_raise(session=session, incident_id=routed[0].incident_id)  # type: ignore[arg-type]
        assert f"{source}:petal_width" in incident.lineage
        texts = [i.text for i in service.timeline(session=session, incident_id=incident.id)]
        assert any(t.startswith(f"alert #{link.alert_id} feature-drift on wine (critical) joined: the same {source}")
                   for t in texts)  # fmt: skip


def test_alerts_after_the_same_deploy_join_with_the_reason(sictx: Context, tmp_path: Path) -> None:
    """An alert during v2's canary and one after its promotion share no version and no training data (v2
    was trained on other rows): only the deploy ties them, and that is the reason shown."""
    train_iris(sictx)
    train_iris(sictx, data=new_samples_csv(tmp_path, n=150, seed=11))
    direct = rollouts.DeploySpec(strategy="direct")
    canary = rollouts.DeploySpec(strategy="canary", steps=[10, 100], step_duration_s=3600.0)
    with sictx.db.session() as session:
        rollouts.deploy(session=session, store=sictx.store, ref="iris-classifier:1", spec=direct, actor="t")
        rollout_id = rollouts.deploy(
            session=session, store=sictx.store, ref="iris-classifier:2", spec=canary, actor="t"
        ).id
    fire(sictx, rule="accuracy-drop", model="iris-classifier")
    with sictx.db.session() as session:
        (opened,) = service.intake(session=session, settings=settings_of(sictx)).routed
        promoted = rollouts.get_active_or_raise(session=session, name="iris-classifier")
        rollouts.promote(session=session, rollout=promoted, actor="t")
    fire(sictx, rule="high-latency", model="iris-classifier", labels={"runbook": "serving"})  # another group
    with sictx.db.session() as session:
        (joined,) = service.intake(session=session, settings=settings_of(sictx)).routed
    assert opened.action == "opened" and joined.action == "joined"
    assert joined.incident_id == opened.incident_id
    assert joined.reason == (
        f"the same deploy (rollout #{rollout_id} of iris-classifier), within 1h of the incident's last signal"
    )
    with sictx.db.session() as session:
        incident = service.get_incident_or_raise(session=session, incident_id=opened.incident_id)  # type: ignore[arg-type]
        assert {"version:iris-classifier:1", f"rollout:{rollout_id}", "version:iris-classifier:2"} <= set(
            incident.lineage
        )
        assert service.links(session=session, incident_id=incident.id)[1].match == {
            "key": f"rollout:{rollout_id}"
        }


def test_lineage_outside_the_window_opens_a_new_incident(ictx: Context, clock_at: clock.FrozenClock) -> None:
    fire(ictx, labels={"version": "3"})
    with ictx.db.session() as session:
        service.intake(session=session, settings=settings_of(ictx))
    clock_at.advance(hours=2)
    fire(ictx, rule="high-error-rate", labels={"version": "3", "runbook": "serving"})
    with ictx.db.session() as session:
        (routed,) = service.intake(session=session, settings=settings_of(ictx)).routed
    assert routed.action == "opened"


def test_undoing_a_join_keeps_the_record_and_does_not_rejoin(ictx: Context) -> None:
    fire(ictx, labels={"version": "3"})
    drift = fire(ictx, rule="feature-drift", severity="warning", labels={"version": "3", "runbook": "dq"})
    with ictx.db.session() as session:
        service.intake(session=session, settings=settings_of(ictx))
        (incident,) = service.list_incidents(session=session)
        incident_id = incident.id
    with ictx.db.session() as session:
        service.detach(
            session=session, incident_id=incident_id, alert_id=drift, actor="alice", reason="unrelated"
        )
    with ictx.db.session() as session:
        assert service.intake(session=session, settings=settings_of(ictx)).routed == []
        link = session.scalars(sa.select(IncidentAlert).where(IncidentAlert.alert_id == drift)).one()
        assert link.detached_by == "alice" and link.detach_reason == "unrelated"
        assert session.scalar(sa.select(sa.func.count()).select_from(GroupClaim)) == 1  # its group let go
        texts = [i.text for i in service.timeline(session=session, incident_id=incident_id)]
        assert any("detached (join undone): unrelated" in t for t in texts)
    with pytest.raises(Conflict), ictx.db.session() as session:
        service.detach(
            session=session, incident_id=incident_id, alert_id=drift, actor="alice", reason="again"
        )


def test_the_alerts_named_when_an_incident_is_opened_join_it_by_hand(ictx: Context) -> None:
    first = fire(ictx)
    second = fire(ictx, rule="feature-drift", model="wine", severity="warning")
    with ictx.db.session() as session:
        incident = service.open_incident(
            session=session, settings=settings_of(ictx), title="iris is wrong", severity="SEV2", actor="alice"
        )
        service.link_opening_alerts(
            session=session, incident_id=incident.id, alert_ids=[first, second], actor="alice"
        )
        incident_id = incident.id
    with ictx.db.session() as session:
        found = [
            (link.alert_id, link.reason, link.match)
            for link in service.links(session=session, incident_id=incident_id)
        ]
    assert found == [
        (first, "by hand: named when opened", {"key": "manual"}),
        (second, "by hand: named when opened", {"key": "manual"}),
    ]
    with pytest.raises(Conflict, match="already part of incident"), ictx.db.session() as session:
        service.link_opening_alerts(session=session, incident_id=incident_id, alert_ids=[first], actor="bob")


def test_merge_and_unmerge(ictx: Context) -> None:
    a_alert = fire(ictx, model="iris")
    b_alert = fire(ictx, model="wine")
    with ictx.db.session() as session:
        service.intake(session=session, settings=settings_of(ictx))
        b, a = service.list_incidents(session=session)
        a_id, b_id = a.id, b.id
    with ictx.db.session() as session:
        dup = service.merge(
            session=session, duplicate_id=b_id, into_id=a_id, actor="alice", reason="same outage"
        )
        assert dup.state == IncidentState.MERGED and dup.merged_into_id == a_id and dup.id == b_id
    with ictx.db.session() as session:
        assert {link.alert_id for link in service.links(session=session, incident_id=a_id)} == {
            a_alert,
            b_alert,
        }
        with pytest.raises(Conflict, match="merged into incident"):
            service.post_update(session=session, incident_id=b_id, status="x", actor="bob")
    # a new alert in the duplicate's group joins the survivor
    fire(ictx, model="wine", rule="high-error-rate")
    with ictx.db.session() as session:
        (routed,) = service.intake(session=session, settings=settings_of(ictx)).routed
        assert routed.incident_id == a_id
    with ictx.db.session() as session:
        back = service.unmerge(session=session, incident_id=b_id, actor="alice")
        assert back.state == IncidentState.TRIGGERED and back.merged_into_id is None
    with ictx.db.session() as session:
        assert [link.alert_id for link in service.links(session=session, incident_id=b_id)] == [b_alert]


def test_merging_into_itself_or_into_a_closed_incident_is_refused(ictx: Context) -> None:
    s = settings_of(ictx)
    with ictx.db.session() as session:
        a = service.open_incident(session=session, settings=s, title="a", severity="SEV3", actor="t")
        b = service.open_incident(session=session, settings=s, title="b", severity="SEV3", actor="t")
        ids = a.id, b.id
    with pytest.raises(InvalidInput, match="into itself"), ictx.db.session() as session:
        service.merge(session=session, duplicate_id=ids[0], into_id=ids[0], actor="t")
    with ictx.db.session() as session:
        service.resolve(session=session, incident_id=ids[1], actor="t", summary="gone")
    with pytest.raises(Conflict, match="it is resolved"), ictx.db.session() as session:
        service.merge(session=session, duplicate_id=ids[0], into_id=ids[1], actor="t")
    with ictx.db.session() as session:
        session.get(Incident, ids[1]).state = IncidentState.CLOSED  # type: ignore[union-attr]
    with pytest.raises(Conflict, match="it is closed"), ictx.db.session() as session:
        service.merge(session=session, duplicate_id=ids[0], into_id=ids[1], actor="t")


def _storm(ictx: Context, start: dt.datetime, shards: range) -> None:
    """Alerts for one model, one per shard, 60 ms apart, each firing through the lifecycle (with its
    notification queued), as the evaluator makes them."""
    with ictx.db.session() as session:
        for i in shards:
            at = start + dt.timedelta(milliseconds=60 * i)
            labels = {"model": "iris", "runbook": "monitoring", "shard": str(i)}
            facts = lifecycle.AlertFacts(
                fingerprint=lifecycle.fingerprint("storm", labels), source=AlertSource.MLONCALL, rule="storm",
                model="iris", severity="critical", runbook="monitoring", labels=labels, annotations={},
            )  # fmt: skip
            group = lifecycle.ensure_group(
                session,
                key=lifecycle.group_key(labels, ("model", "runbook")),
                source="mloncall",
                labels={},
                at=at,
            )
            alert = lifecycle.new_alert(
                session, previous=None, facts=facts, group=group, state=AlertState.FIRING, at=at
            )
            lifecycle.record(session, alert, kind=EventKind.FIRING, from_state=None, actor="test", at=at,
                             reason="condition held", notify=NotifyEvent.FIRING)  # fmt: skip


def test_an_alert_storm_ends_as_one_incident_with_bounded_notifications(
    ictx: Context, receiver: Receiver
) -> None:
    """1,000 alerts for one model within a minute: one incident, 1,000 linked alerts, a few messages, alert
    messages and incident messages alike, to a real webhook receiver."""
    hook = [Channel(name="hook", type="webhook", url=receiver.url)]
    start = clock.now() - dt.timedelta(minutes=1)
    _storm(ictx, start, range(0, 500))
    first = notify.send_pending(ictx, channels=hook)  # the sender runs while the storm goes on
    _storm(ictx, start, range(500, 1000))
    sent = jobs.run_once(ictx, channels=hook)
    assert sent.routed == {"opened": 1, "joined": 999}
    second = notify.send_pending(ictx, channels=hook)
    with ictx.db.session() as session:
        (incident,) = service.list_incidents(session=session)
        assert len(service.links(session=session, incident_id=incident.id)) == 1000
        messages = session.scalar(sa.select(sa.func.count()).select_from(Message))
        assert messages is not None and 1 <= messages <= 3  # opened (+ the first page when a policy exists)
        statuses = dict(
            session.execute(
                sa.select(Notification.status, sa.func.count()).group_by(Notification.status)
            ).all()
        )
        assert statuses == {"sent": 2, "grouped": 998}  # every alert's event told, in two messages
    assert [(len(r.grouped), r.status) for r in first + second] == [(499, "sent"), (499, "sent")]
    alert_bodies = [b for b in receiver.bodies if "alert" in b and "grouped" in b]
    assert len(alert_bodies) == 2 and [b["grouped"]["count"] for b in alert_bodies] == [499, 499]
    assert "and 499 more" in alert_bodies[0]["title"]
    assert len(receiver.bodies) <= 5  # two alert messages and at most three incident messages
    assert jobs.run_once(ictx, channels=hook).routed == {}
    assert notify.send_pending(ictx, channels=hook) == []
