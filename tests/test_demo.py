"""The main job: `mloncall demo --fast`, judged from what it stored, not from what it printed."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from mloncall.core.config import Settings
from mloncall.stores.context import Context
from tests.helpers import run_cli

pytestmark = pytest.mark.slow


def test_demo_plays_every_runbook_stage(cli_env: dict[str, str]) -> None:
    res = run_cli("demo", "--fast", env=cli_env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    from mloncall.alerts import service as alerts
    from mloncall.registry import service as registry
    from mloncall.rollout import service as rollouts
    from mloncall.stores.predlog import read_log

    ctx = Context.from_settings(Settings.load(env=cli_env))
    with ctx.db.session() as s:
        model = registry.get_model_or_raise(session=s, name="iris-classifier")
        assert [v.version for v in model.versions] == [1, 2, 3]
        assert registry.resolve(session=s, ref="iris-classifier@production").version == 2
        assert registry.resolve(session=s, ref="iris-classifier@previous").version == 1
        v2 = registry.get_version_or_raise(session=s, name="iris-classifier", version=2)
        assert v2.gate is not None and v2.gate["verdict"] == "pass"

        history = rollouts.history(session=s, name="iris-classifier")
        assert [(r.strategy, r.to_version, r.state) for r in history] == [
            ("direct", 1, "promoted"),
            ("canary", 2, "promoted"),
            ("canary", 3, "aborted"),
        ]
        canary = history[1]
        assert all(a["outcome"] == "successful" for a in canary.analyses)
        assert canary.acceptance is not None and canary.acceptance["outcome"] == "successful"
        bad = history[2]
        assert "canary analysis failed" in bad.reason and "disagreement" in bad.reason

        (drift_alert,) = alerts.list_alerts(session=s, rule="feature-drift")
        assert drift_alert.state == "closed"
        assert drift_alert.fired_at is not None and "petal_length" in (drift_alert.root_cause or "")
        kinds = [e.to_state for e in alerts.history(session=s, alert_id=drift_alert.id)]
        assert kinds[:2] == ["pending", "firing"] and kinds[-1] == "closed"

        # Stages 2 to 4 ran through the runbooks, and each run ended as its story says.
        from mloncall.runbooks import service as runbooks

        runs = sorted(runbooks.list_runs(session=s), key=lambda r: r.id)
        assert [(r.runbook, r.state, r.outcome) for r in runs] == [
            ("retraining", "finished", "successful"),
            ("deployment", "finished", "successful"),
            ("deployment", "finished", "failed"),
            ("monitoring", "finished", "successful"),
            ("incident-communication", "finished", "successful"),
            ("access", "finished", "successful"),
        ], [(r.runbook, r.reason) for r in runs]
        retraining, canary_run, bad_run, monitoring, communication, fixed = runs
        assert canary_run.parent_id == retraining.id and canary_run.params["ref"] == "iris-classifier:2"
        bad_steps = {st.name: st.state for st in bad_run.steps}
        assert bad_steps["rollout"] == "failed" and bad_steps["rollback-verified"] == "successful"
        assert monitoring.alert_id == drift_alert.id
        assert {st.name: st.state for st in monitoring.steps}["communicate"] == "successful"

        # Stage 5: the drift alert opened one incident; runbook 8 walked it from page to post-mortem.
        from mloncall.incidents import service as incidents

        (incident,) = incidents.list_incidents(session=s)
        assert incidents.incident_of_alert(session=s, alert_id=drift_alert.id) == incident
        assert incident.state == "closed" and incident.bridge == f"#incident-{incident.id}"
        assert communication.params["incident"] == incident.id == communication.incident_id
        assert monitoring.incident_id == incident.id
        assert communication.acceptance is not None
        assert {c["name"]: c["outcome"] for c in communication.acceptance["checks"]} == {
            "acknowledged within the severity's limit": "successful",
            "all roles assigned": "successful",
            "no cadence gap while open": "successful",
            "post-mortem completed": "successful",
        }
        pm = incidents.get_postmortem(session=s, incident_id=incident.id)
        assert pm is not None and pm.status == "complete" and pm.facts["time_to_resolve"] is not None
        assert all(who for who in incidents.current_roles(session=s, incident_id=incident.id).values())
        on_timeline = {
            e.detail.get("runbook_run")
            for e in incidents.timeline(session=s, incident_id=incident.id)
            if e.kind == "runbook"
        }
        assert on_timeline == {monitoring.id, communication.id}

        # Stage 6: runbook 7 gave svc-retrain the engineer role on the model and ended its break-glass grant.
        from mloncall.access import grants

        assert fixed.acceptance is not None and fixed.acceptance["outcome"] == "successful"
        [grant] = grants.list_requests(session=s, requester="svc-retrain")
        assert (grant.state, grant.decided_by, grant.scope) == (
            "revoked",
            "security-lead",
            "model:iris-classifier",
        )

    # The investigation wrote its HTML report with the reference-vs-current histograms embedded.
    reports = [k for k in ctx.store.list("reports/investigations/iris-classifier") if k.endswith(".html")]
    assert len(reports) == 1
    html = ctx.store.get_bytes(reports[0]).decode()
    assert html.count("data:image/png;base64,") >= 4 and "petal_length" in html

    # Traffic never stopped: not one request failed on the server side during the whole story.
    log = read_log(ctx.store, "predictions", "iris-classifier")
    assert log is not None and log.num_rows > 500
    assert pc.sum(pc.greater_equal(log.column("status"), 500)).as_py() in (0, None)
    assert set(log.column("version").to_pylist()) == {1, 2, 3}
    ctx.close()

    # Running it again starts over cleanly (the demo owns its home).
    again = run_cli("demo", "--fast", env=cli_env)
    assert again.returncode == 0, again.stderr[-2000:]
