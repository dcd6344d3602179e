"""An installation in the state the oncall engineer meets: a model in production with a canary in
progress and the last hour of its traffic logged (with late labels, and summarised as the background pass
summarises it), firing alerts, an open incident, a runbook run waiting for confirmation and a pending grant,
and a user of each built-in role with a password. Built through the domains' services, as the demo builds
it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from mloncall.access import grants
from mloncall.access import service as access
from mloncall.alerts import inbound
from mloncall.alerts.schemas import PagerDutyEvent
from mloncall.core import clock
from mloncall.data import iris
from mloncall.incidents import service as incidents
from mloncall.monitoring import jobs
from mloncall.rollout import service as rollouts
from mloncall.runbooks import engine
from mloncall.scaling import service as scaling
from mloncall.stores.context import Context
from tests.helpers import train_iris
from tests.monitoring.conftest import ts_spread, write_feedback, write_predictions

MODEL = "iris-classifier"
ROLES = ("viewer", "engineer", "oncall", "admin")
PASSWORD = "correct horse battery staple"
#: Requests logged over the last TRAFFIC_SPAN: the stable version's and the canary's.
TRAFFIC = {1: 1800, 2: 720}
TRAFFIC_SPAN = dt.timedelta(minutes=58)


@dataclass
class Built:
    alerts: list[int]
    incident: int
    run: int
    grant: int
    rollout: int
    requests: int


def _alert(session: Any, n: int) -> int:
    event = PagerDutyEvent.model_validate(
        {
            "routing_key": "dashboard-test",
            "event_action": "trigger",
            "dedup_key": f"drift-{n}",
            "payload": {
                "summary": f"feature drift on petal_length ({n})",
                "source": "monitor",
                "severity": "critical",
                "class": "feature-drift",
                "custom_details": {"model": MODEL, "runbook": "monitoring"},
            },
        }
    )
    result = inbound.receive_pagerduty(session=session, event=event, actor="pagerduty:test")
    return result.alert_id


def _traffic(ctx: Context) -> int:
    """The last TRAFFIC_SPAN of both versions' requests, every answer labelled a minute later, then one
    background pass, so the closed minutes are read from their summaries as in a running installation."""
    now = clock.now()
    for version, n in TRAFFIC.items():
        frame = iris.iris_like_samples(n, seed=version)
        ts = ts_spread(n, end=now - dt.timedelta(minutes=1), span=TRAFFIC_SPAN)
        labels = frame[iris.TARGET].astype(str).tolist()
        ids = write_predictions(
            ctx, model=MODEL, version=version, frame=frame, ts=ts, labels=labels,
            latency_ms=np.linspace(2.0, 40.0, n), id_prefix=f"v{version}",
        )  # fmt: skip
        truth = labels[:-5] + ["setosa"] * 5  # a few answers proved wrong, so accuracy is below 1
        write_feedback(ctx, model=MODEL, ids=ids, labels=truth, ts=float(ts[-1]) + 30)
    jobs.run_pass(ctx, now=clock.now())
    return sum(TRAFFIC.values())


def build(ctx: Context) -> Built:
    train_iris(ctx)
    spec = rollouts.DeploySpec(
        strategy="direct", steps=[100], step_duration_s=1.0, min_requests=1, thresholds={}
    )
    with ctx.db.session() as s:
        rollouts.deploy(session=s, store=ctx.store, ref=f"{MODEL}:1", spec=spec, actor="admin")
        scaling.set_objectives(session=s, model=MODEL, latency_p99="250ms", error_rate=0.01,
                               availability=0.999, window="30d", actor="admin")  # fmt: skip
    train_iris(ctx, seed=3)
    canary = rollouts.DeploySpec(
        strategy="canary", steps=[10, 50, 100], step_duration_s=3600.0, min_requests=10_000, thresholds={}
    )
    with ctx.db.session() as s:
        rollout = rollouts.deploy(session=s, store=ctx.store, ref=f"{MODEL}:2", spec=canary, actor="admin").id
        for role in ROLES:
            access.create_principal(session=s, name=f"{role}-user", role=role)
            access.set_password(session=s, name=f"{role}-user", password=PASSWORD)
        alerts = [_alert(s, n) for n in range(3)]
        settings = incidents.incident_settings(ctx.settings)
        incident = incidents.open_incident(
            session=s,
            settings=settings,
            title="iris inputs drift",
            severity="sev2",
            actor="oncall-user",
            model=MODEL,
            cadence="1m",
        ).id
        requester = access.get_principal_or_raise(session=s, name="engineer-user")
        grant = grants.request(
            session=s,
            requester=requester,
            role="oncall",
            scope=None,
            duration=dt.timedelta(hours=1),
            reason="roll back the canary at night",
        ).id
    run = engine.create(
        ctx, runbook="incident-communication", params={}, positional=[str(incident)], actor="oncall-user"
    )
    engine.execute(ctx, run, confirmer=engine.Unattended("oncall-user", yes=False), resumed=False)
    requests = _traffic(ctx)
    return Built(alerts=alerts, incident=incident, run=run, grant=grant, rollout=rollout, requests=requests)
