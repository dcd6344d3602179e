"""The alerts HTTP API end to end: routes, roles, and the inbound Alertmanager (v4) and PagerDuty (Events v2)
receivers, including malformed payloads that must store nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import sqlalchemy as sa

from mloncall.access import audit
from mloncall.alerts import service
from mloncall.alerts.catalog import Catalog
from mloncall.alerts.models import Alert, AlertEvent, AlertGroup, Notification
from mloncall.core import clock
from mloncall.core.outcome import Outcome
from mloncall.stores.context import Context
from tests.alerts.conftest import ERRORS_RULES, AlertsApi, FakeMonitor, load

AM = "/api/v1/alerts/alertmanager"
PD = "/api/v1/alerts/pagerduty"


def am_alert(
    status: str = "firing", name: str = "HighErrorRate", fp: str = "1a30ba71cca2921f", **labels: str
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": name,
            "model": "iris-classifier",
            "severity": "critical",
            "runbook": "deployment",
            **labels,
        },
        "annotations": {"summary": "iris-classifier fails 7% of requests", "description": "5xx rate > 1%"},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T00:10:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
        "fingerprint": fp,
    }


def am_payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "receiver": "mloncall",
        "status": status,
        "alerts": list(alerts) or [am_alert()],
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
    }


def counts(ctx: Context) -> dict[str, int]:
    with ctx.db.session() as session:
        return {
            table.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
            for table in (Alert, AlertGroup, AlertEvent, Notification)
        }


def test_alertmanager_firing_then_resolved(alerts_api: AlertsApi, frozen_clock: clock.FrozenClock) -> None:
    second = am_alert(fp="2b41cb82ddb3a320", instance="b")
    r = alerts_api.request("POST", AM, json=am_payload(am_alert(), second))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [a["transition"] for a in body["alerts"]] == ["firing", "firing"]
    assert [a["fingerprint"] for a in body["alerts"]] == [
        "alertmanager:1a30ba71cca2921f",
        "alertmanager:2b41cb82ddb3a320",
    ]
    # one Alertmanager group = one alert group
    groups = alerts_api.request("GET", "/api/v1/alerts/groups", role="viewer").json()
    assert len(groups) == 1 and groups[0]["key"] == 'alertmanager:{}:{alertname="HighErrorRate"}'
    assert groups[0]["state"] == "firing" and groups[0]["open_alerts"] == 2
    listed = alerts_api.request("GET", "/api/v1/alerts?state=firing", role="viewer").json()
    assert {
        (a["source"], a["rule"], a["model"], a["severity"], a["runbook"], a["external_id"]) for a in listed
    } == {
        ("alertmanager", "HighErrorRate", "iris-classifier", "critical", "deployment", "1a30ba71cca2921f"),
        ("alertmanager", "HighErrorRate", "iris-classifier", "critical", "deployment", "2b41cb82ddb3a320"),
    }
    # Alertmanager repeats firing notifications: nothing changes
    frozen_clock.advance(minutes=5)
    again = alerts_api.request("POST", AM, json=am_payload(am_alert(), second)).json()
    assert [a["transition"] for a in again["alerts"]] == [None, None]
    assert counts(alerts_api.ctx)["alerts"] == 2
    # resolved
    frozen_clock.advance(minutes=5)
    r = alerts_api.request("POST", AM, json=am_payload(am_alert("resolved"), status="resolved"))
    assert r.json()["alerts"][0]["transition"] == "resolved"
    detail = alerts_api.request(
        "GET", f"/api/v1/alerts/{r.json()['alerts'][0]['alert_id']}", role="viewer"
    ).json()
    assert detail["state"] == "resolved"
    assert [h["kind"] for h in detail["history"]] == ["firing", "resolved"]
    assert detail["history"][0]["actor"] == "alertmanager:operator-user"
    assert detail["history"][0]["evidence"]["generatorURL"].startswith("http://prometheus")
    assert [n["event"] for n in detail["notifications"]] == ["firing", "resolved"]
    assert detail["annotations"]["summary"] == "iris-classifier fails 7% of requests"
    # the request is audited
    with alerts_api.ctx.db.session() as session:
        actions = [r.action for r in audit.list_audit(session=session, action="alertmanager")]
    assert actions and all(a == "POST /api/v1/alerts/alertmanager" for a in actions)


def test_alertmanager_refire_within_the_hold_time_reopens(
    alerts_api: AlertsApi, frozen_clock: clock.FrozenClock
) -> None:
    alerts_api.request("POST", AM, json=am_payload())
    alerts_api.request("POST", AM, json=am_payload(am_alert("resolved"), status="resolved"))
    frozen_clock.advance(minutes=3)
    body = alerts_api.request("POST", AM, json=am_payload()).json()
    assert body["alerts"][0]["transition"] == "reopened"
    assert counts(alerts_api.ctx)["alerts"] == 1


MALFORMED: list[tuple[str, Any, str]] = [
    ("wrong version", lambda p: p.update(version="3"), "version"),
    ("no groupKey", lambda p: p.pop("groupKey"), "groupKey"),
    ("no alerts", lambda p: p.update(alerts=[]), "alerts"),
    ("bad status", lambda p: p.update(status="burning"), "status"),
    ("second alert without labels", lambda p: p["alerts"][1].pop("labels"), "alerts.1.labels"),
    ("second alert bad time", lambda p: p["alerts"][1].update(startsAt="yesterday"), "alerts.1.startsAt"),
    (
        "label that is not a string",
        lambda p: p["alerts"][1]["labels"].update(replicas=3),
        "alerts.1.labels.replicas",
    ),
    (
        "the same alert twice",
        lambda p: p["alerts"][1].update(fingerprint=p["alerts"][0]["fingerprint"]),
        "repeats",
    ),
]


@pytest.mark.parametrize(("case", "change", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_alertmanager_payloads_are_refused_and_store_nothing(
    alerts_api: AlertsApi, case: str, change: Any, reason: str
) -> None:
    payload = am_payload(am_alert(), am_alert(fp="ffff0000ffff0000", instance="b"))
    change(payload)
    before = counts(alerts_api.ctx)
    r = alerts_api.request("POST", AM, json=payload)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_input" and reason in r.json()["error"]
    assert counts(alerts_api.ctx) == before


def test_not_json_and_no_token(alerts_api: AlertsApi) -> None:
    r = alerts_api.request(
        "POST", AM, content=b'{"version": "4", ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    assert alerts_api.request("POST", AM, role=None, json=am_payload()).status_code == 401
    assert alerts_api.request("POST", AM, role="viewer", json=am_payload()).status_code == 403
    assert counts(alerts_api.ctx)["alerts"] == 0


def pd_event(action: str = "trigger", **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": "R0UT1NGKEY0123456789abcdefABCDEF",
        "event_action": action,
        "dedup_key": "disk-42",
    }
    if action == "trigger":
        event["payload"] = {
            "summary": "Feature store latency high",
            "source": "featurestore-1.prod",
            "severity": "error",
            "component": "feature-store",
            "group": "ml-platform",
            "class": "latency",
            "custom_details": {"model": "iris-classifier", "runbook": "pipeline", "p99_ms": 812},
        }
    event.update(extra)
    return event


def test_pagerduty_trigger_acknowledge_resolve(alerts_api: AlertsApi) -> None:
    r = alerts_api.request("POST", PD, json=pd_event())
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["status"], body["message"], body["dedup_key"], body["state"]) == (
        "success", "Event processed", "disk-42", "firing",
    )  # fmt: skip
    alert_id = body["alert_id"]
    detail = alerts_api.request("GET", f"/api/v1/alerts/{alert_id}", role="viewer").json()
    assert (detail["source"], detail["rule"], detail["model"], detail["severity"], detail["runbook"]) == (
        "pagerduty", "latency", "iris-classifier", "error", "pipeline",
    )  # fmt: skip
    assert detail["labels"]["event_source"] == "featurestore-1.prod"
    assert detail["annotations"]["summary"] == "Feature store latency high"
    assert "R0UT1NGKEY" not in r.text + str(detail)  # the routing key is stored only as a digest
    # a second trigger with the same dedup_key is the same alert
    assert alerts_api.request("POST", PD, json=pd_event()).json()["alert_id"] == alert_id
    r = alerts_api.request("POST", PD, json=pd_event("acknowledge"))
    assert r.status_code == 202 and r.json()["transition"] == "acknowledged"
    r = alerts_api.request("POST", PD, json=pd_event("resolve"))
    assert r.status_code == 202 and r.json()["state"] == "resolved"
    detail = alerts_api.request("GET", f"/api/v1/alerts/{alert_id}", role="viewer").json()
    assert [h["kind"] for h in detail["history"]] == ["firing", "acknowledged", "resolved"]
    assert detail["acknowledged_by"] == "pagerduty:operator-user"
    # the same dedup_key under another routing key is another alert
    other = alerts_api.request("POST", PD, json=pd_event(routing_key="another-integration-key")).json()
    assert other["alert_id"] != alert_id


def test_pagerduty_trigger_without_dedup_key_gets_one(alerts_api: AlertsApi) -> None:
    event = pd_event()
    del event["dedup_key"]
    body = alerts_api.request("POST", PD, json=event).json()
    assert len(body["dedup_key"]) == 32
    assert (
        alerts_api.request("POST", PD, json=pd_event("resolve", dedup_key=body["dedup_key"])).status_code
        == 202
    )


@pytest.mark.parametrize(
    ("event", "status", "reason"),
    [
        (
            {
                "event_action": "trigger",
                "routing_key": "k",
                "payload": {"summary": "s", "source": "x", "severity": "error"},
            },
            202,
            "",
        ),
        ({"event_action": "trigger", "routing_key": "k"}, 400, "needs a payload"),
        (
            {
                "event_action": "trigger",
                "routing_key": "k",
                "payload": {"summary": "s", "source": "x", "severity": "page"},
            },
            400,
            "payload.severity",
        ),
        (
            {"event_action": "trigger", "routing_key": "k", "payload": {"source": "x", "severity": "info"}},
            400,
            "payload.summary",
        ),
        ({"event_action": "resolve", "routing_key": "k"}, 400, "needs the dedup_key"),
        ({"event_action": "snooze", "routing_key": "k", "dedup_key": "d"}, 400, "event_action"),
        ({"event_action": "resolve", "dedup_key": "d"}, 400, "routing_key"),
        (
            {"event_action": "resolve", "routing_key": "k", "dedup_key": "never-triggered"},
            404,
            "no alert with dedup_key",
        ),
        ({"event_action": "acknowledge", "routing_key": "k", "dedup_key": "x" * 256}, 400, "dedup_key"),
    ],
)
def test_pagerduty_bad_events(alerts_api: AlertsApi, event: dict[str, Any], status: int, reason: str) -> None:
    before = counts(alerts_api.ctx)
    r = alerts_api.request("POST", PD, json=event)
    assert r.status_code == status, r.text
    if status != 202:
        assert reason in r.json()["error"]
        assert counts(alerts_api.ctx) == before


RULES = ERRORS_RULES


@pytest.fixture
def fired(
    alerts_api: AlertsApi, catalog: Catalog, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> int:
    load(alerts_api.ctx, RULES, catalog)
    monitor.set("error_rate", "iris-classifier", Outcome.FAILED, value=0.07)
    (t,) = service.evaluate_rules(ctx=alerts_api.ctx, monitor=monitor)
    return t.alert_id


def test_list_show_ack_resolve(alerts_api: AlertsApi, fired: int) -> None:
    listed = alerts_api.request("GET", "/api/v1/alerts", role="viewer").json()
    assert [(a["id"], a["state"], a["value"]) for a in listed] == [(fired, "firing", 0.07)]
    detail = alerts_api.request("GET", f"/api/v1/alerts/{fired}", role="viewer").json()
    assert detail["last_check"]["outcome"] == "failed" and detail["history"][0]["kind"] == "firing"
    assert alerts_api.request("POST", f"/api/v1/alerts/{fired}/ack", role="viewer").status_code == 403
    r = alerts_api.request("POST", f"/api/v1/alerts/{fired}/ack", json={"reason": "mine"})
    assert r.status_code == 200 and r.json()["alert"]["acknowledged_by"] == "operator-user"
    assert r.json()["transition"]["kind"] == "acknowledged"
    assert alerts_api.request("POST", f"/api/v1/alerts/{fired}/ack").json()["transition"] is None
    assert alerts_api.request("POST", f"/api/v1/alerts/{fired}/resolve", json={}).status_code == 400
    r = alerts_api.request("POST", f"/api/v1/alerts/{fired}/resolve", json={"note": "rolled back"})
    assert r.status_code == 200 and r.json()["alert"]["state"] == "resolved"
    assert (
        alerts_api.request("POST", f"/api/v1/alerts/{fired}/resolve", json={"note": "x"}).status_code == 409
    )
    assert alerts_api.request("GET", "/api/v1/alerts/9999", role="viewer").status_code == 404
    assert alerts_api.request("GET", "/api/v1/alerts?state=burning", role="viewer").status_code == 400


def test_close_through_the_api(alerts_api: AlertsApi, fired: int) -> None:
    r = alerts_api.request("POST", f"/api/v1/alerts/{fired}/close", json={"root_cause": "bad deploy"})
    assert r.status_code == 400 and "action" in r.json()["error"]
    r = alerts_api.request(
        "POST",
        f"/api/v1/alerts/{fired}/close",
        json={"root_cause": "bad deploy", "action": "rollback", "note": "v1 back"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["root_cause"], r.json()["closed_by"]) == (
        "closed",
        "bad deploy",
        "operator-user",
    )


def test_silences_through_the_api(alerts_api: AlertsApi, fired: int, frozen_clock: clock.FrozenClock) -> None:
    r = alerts_api.request(
        "POST", "/api/v1/alerts/silences",
        json={"matchers": ["model=iris-classifier", "rule=errors"], "duration": "2h", "comment": "deploying"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    silence = r.json()
    assert silence["status"] == "active" and silence["matchers"] == ["model=iris-classifier", "rule=errors"]
    assert (
        alerts_api.request("GET", f"/api/v1/alerts/{fired}", role="viewer").json()["silenced_by"]
        == silence["id"]
    )
    assert [s["id"] for s in alerts_api.request("GET", "/api/v1/alerts/silences", role="viewer").json()] == [
        silence["id"]
    ]
    bad = {"matchers": ["model"], "duration": "2h", "comment": "x"}
    assert alerts_api.request("POST", "/api/v1/alerts/silences", json=bad).status_code == 400
    bad = {"matchers": ["model=x"], "duration": "forever", "comment": "x"}
    assert alerts_api.request("POST", "/api/v1/alerts/silences", json=bad).status_code == 400
    r = alerts_api.request("POST", f"/api/v1/alerts/silences/{silence['id']}/expire")
    assert r.status_code == 200 and r.json()["status"] == "expired"
    assert alerts_api.request("GET", "/api/v1/alerts/silences", role="viewer").json() == []
    assert len(alerts_api.request("GET", "/api/v1/alerts/silences?all=true", role="viewer").json()) == 1
    assert alerts_api.request("GET", f"/api/v1/alerts/{fired}", role="viewer").json()["silenced_by"] is None


def test_rules_through_the_api(alerts_api: AlertsApi, catalog: Catalog) -> None:
    shown = alerts_api.request("GET", "/api/v1/alerts/rules", role="viewer").json()
    assert shown["version"] == 0 and len(shown["rules"]) == 9
    bad = copy.deepcopy(RULES).replace("monitor: error_rate", "monitor: nope")
    r = alerts_api.request("PUT", "/api/v1/alerts/rules", json={"yaml": bad, "origin": "ci"})
    assert r.status_code == 400 and "line 4" in r.json()["error"]
    assert r.json()["details"][0]["line"] == 4
    r = alerts_api.request("PUT", "/api/v1/alerts/rules", json={"yaml": RULES, "origin": "ci"})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] is True and r.json()["rules"]["version"] == 1
    assert (
        alerts_api.request("PUT", "/api/v1/alerts/rules", role="viewer", json={"yaml": RULES}).status_code
        == 403
    )
