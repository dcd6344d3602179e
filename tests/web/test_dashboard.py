"""The dashboard in a real browser: every page for every built-in role, the actions a person takes from it
(each checked afterwards in the stored state), CSRF, the login redirect, and refusals a page hides."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from mloncall.access import grants
from mloncall.alerts import service as alerts
from mloncall.data import iris
from mloncall.incidents import service as incidents
from mloncall.rollout import service as rollouts
from mloncall.runbooks import service as runbooks
from tests.web.conftest import Dashboard
from tests.web.state import MODEL, PASSWORD, ROLES

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web")]


def pages(d: Dashboard) -> dict[str, str]:
    b = d.built
    return {
        "overview": "/",
        "model": f"/models/{MODEL}?a=1&b=2&verify=2",
        "rollout": f"/models/{MODEL}/rollout",
        "monitoring": f"/models/{MODEL}/monitoring",
        "alerts": "/alerts?state=open",
        "alert": f"/alerts/{b.alerts[0]}",
        "incidents": "/incidents",
        "incident": f"/incidents/{b.incident}",
        "runs": "/runbooks",
        "run": f"/runbooks/runs/{b.run}",
        "start": "/runbooks/monitoring/start",
        "pipelines": "/pipelines",
        "access": "/access",
    }


#: What each page must show, whoever looks.
KEY_CONTENT = {
    "overview": [
        "iris-classifier",
        "production",
        "v1 90%, v2 10%",
        "p99 ≤ 250 ms, errors ≤ 0.10% over 30d: within budget",
        "error rate 0.00%",
        "drifting: feature-drift",
        "canary to v2: running",
    ],
    "model": ["Versions", "hash", "libraries", "Alias history", "Version diff", "signature", "ok:"],
    "rollout": ["canary v1 → v2", "10%", "Analyses of each step", "Acceptance", "Transitions"],
    "monitoring": ["volume (requests)", "latency p99", "error rate", "accuracy from late labels"],
    "alerts": ["feature-drift", "firing"],
    "alert": ["Transitions", "monitoring"],
    "incidents": ["iris inputs drift"],
    "incident": ["roles", "bridge", "escalation", "Timeline", "Post-mortem"],
    "runs": ["incident-communication", "waiting"],
    "run": ["Acknowledge the incident", "waiting"],
    "start": ["Start runbook monitoring"],
    "pipelines": ["Pipeline runs", "Quarantine"],
    "access": ["My permissions", "Pending grant requests"],
}


def test_a_page_without_a_session_redirects_to_login(dashboard: Dashboard) -> None:
    for path in pages(dashboard).values():
        r = httpx.get(dashboard.url + path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path


@pytest.mark.parametrize("role", ROLES)
def test_every_page_loads_for_each_role_with_its_key_content(
    dashboard: Dashboard, as_role: Any, role: str
) -> None:
    w = as_role(role)
    for name, path in pages(dashboard).items():
        response = w.visit(path)
        assert response is not None and response.status == 200, (name, response and response.status)
        text = w.page.inner_text("main")
        for wanted in KEY_CONTENT[name]:
            assert wanted in text, f"{role} on {name}: {wanted!r} missing"
        w.assert_clean(f"{role} on {name}")
        if role in ("admin", "viewer"):  # each page as the most and the least permitted see it
            w.page.screenshot(path=str(dashboard.shots / f"{role}-{name}.png"), full_page=True)
    w.visit("/access")
    shown = "Audit log" in w.page.inner_text("main")
    assert shown == (role == "admin"), "the audit log is for access:admin only"


def _polyline_points(chart: Any) -> list[list[tuple[float, float]]]:
    lines = chart.locator("polyline").evaluate_all("ps => ps.map(p => p.getAttribute('points'))")
    return [[tuple(map(float, xy.split(","))) for xy in line.split()] for line in lines]


def test_the_monitoring_page_charts_the_logged_traffic(dashboard: Dashboard, as_role: Any) -> None:
    w = as_role("viewer")
    w.visit(f"/models/{MODEL}/monitoring")
    w.assert_clean("monitoring")
    for title in ("volume (requests)", "error rate", "latency p99", "accuracy from late labels"):
        chart = w.page.locator(f"svg[aria-label='{title}']")
        assert "no data" not in (chart.text_content() or ""), title
        (line,) = _polyline_points(chart)
        assert len(line) >= 20, (title, line)  # a point per 2-minute bucket of the traffic's hour
    volume = w.page.locator("svg[aria-label='volume (requests)']")
    top = float(volume.locator("text.axis").first.text_content() or "0")
    assert top > 0
    (volume_line,) = _polyline_points(volume)
    assert max(180 - 36 - y for _, y in volume_line) > 50  # the busiest bucket reaches well up the chart
    drift = w.page.locator("svg[aria-label$='PSI, KS, Wasserstein']")
    titles = drift.evaluate_all("cs => cs.map(c => c.getAttribute('aria-label'))")
    assert titles == [f"{f} (v{v}): PSI, KS, Wasserstein" for f in sorted(iris.FEATURES) for v in (1, 2)]
    for i in range(len(titles)):
        lines = _polyline_points(drift.nth(i))
        assert len(lines) == 3  # PSI, KS and Wasserstein over the slices
        for line in lines:  # one point per slice, left to right: each version drawn on its own
            xs = [x for x, _ in line]
            assert len(xs) >= 2 and xs == sorted(set(xs)), (titles[i], line)
    bars = w.page.locator("svg.histogram rect").evaluate_all(
        "rs => rs.filter(r => parseFloat(r.getAttribute('height')) > 0).length"
    )
    assert bars > 0
    assert "v1: no dataset drift" in w.page.inner_text("main")


def test_viewer_sees_no_abort_button_and_a_forged_abort_is_refused(
    dashboard: Dashboard, as_role: Any
) -> None:
    w = as_role("viewer")
    w.visit(f"/models/{MODEL}/rollout")
    assert w.page.locator("form[data-action=abort]").count() == 0
    assert w.page.locator("form[data-action=ack]").count() == 0
    csrf = w.page.locator("input[name=csrf_token]").first.get_attribute("value")
    forged = w.page.request.post(f"/models/{MODEL}/rollout/abort", form={"csrf_token": csrf, "confirm": "on"})
    assert forged.status == 403 and forged.headers["content-type"].startswith("text/html")
    assert "may not deploy:execute" in forged.text() and "<h1>Not allowed</h1>" in forged.text()
    w.page.goto(f"/models/{MODEL}/rollout")
    w.page.evaluate(
        """csrf => { const f = document.createElement("form"); f.method = "post";
        f.action = location.pathname + "/abort"; f.innerHTML = `<input name="csrf_token" value="${csrf}">`;
        document.body.append(f); f.submit(); }""",
        csrf,
    )
    w.page.wait_for_selector("#refusal")
    assert "may not deploy:execute" in w.page.inner_text("#refusal")
    w.page.click("#back")
    w.page.wait_for_url(re.compile(r".*/rollout$"))
    with dashboard.ctx.db.session() as s:
        assert rollouts.get_active_or_raise(session=s, name=MODEL).state == "running"


def test_a_form_posted_without_its_csrf_token_is_refused(dashboard: Dashboard, as_role: Any) -> None:
    w = as_role("oncall")
    alert = dashboard.built.alerts[1]
    refused = w.page.request.post(f"/alerts/{alert}/ack", form={"note": "no token"})
    assert refused.status == 403
    wrong = w.page.request.post(f"/alerts/{alert}/ack", form={"csrf_token": "forged", "note": "wrong token"})
    assert wrong.status == 403
    with dashboard.ctx.db.session() as s:
        assert alerts.get_alert_or_raise(session=s, alert_id=alert).acknowledged_by is None


def test_oncall_acks_an_alert(dashboard: Dashboard, as_role: Any) -> None:
    w = as_role("oncall")
    alert = dashboard.built.alerts[0]
    w.visit(f"/alerts/{alert}")
    w.page.fill("form[data-action=ack] input[name=note]", "looking at it")
    w.page.click("form[data-action=ack] button")
    w.page.wait_for_url(re.compile(rf".*/alerts/{alert}$"))
    assert "oncall-user" in w.page.inner_text("main")
    with dashboard.ctx.db.session() as s:
        stored = alerts.get_alert_or_raise(session=s, alert_id=alert)
        assert stored.acknowledged_by == "oncall-user"


def test_oncall_posts_an_incident_update(dashboard: Dashboard, as_role: Any) -> None:
    w = as_role("oncall")
    incident = dashboard.built.incident
    w.visit(f"/incidents/{incident}")
    w.page.fill("#update-form textarea[name=status]", "canary held at 10%, drift being investigated")
    w.page.fill("#update-form input[name=next_update]", "30m")
    w.page.click("#update-form button")
    w.page.wait_for_url(re.compile(rf".*/incidents/{incident}$"))
    assert "canary held at 10%" in w.page.inner_text("table.updates")
    with dashboard.ctx.db.session() as s:
        (update,) = incidents.list_updates(session=s, incident_id=incident)
        assert update.author == "oncall-user" and update.status.startswith("canary held")


def test_oncall_confirms_a_waiting_runbook_step(dashboard: Dashboard, as_role: Any) -> None:
    w = as_role("oncall")
    run = dashboard.built.run
    w.visit(f"/runbooks/runs/{run}")
    form = w.page.locator("form[data-action=confirm]")
    form.locator("input[name=confirm]").check()
    form.locator("button").click()
    w.page.wait_for_url(re.compile(rf".*/runbooks/runs/{run}$"))
    deadline = time.monotonic() + 60
    while True:
        with dashboard.ctx.db.session() as s:
            step = runbooks.step_of(runbooks.get_run_or_raise(session=s, run_id=run), "acknowledge")
            if step.state not in ("waiting", "running") or time.monotonic() > deadline:
                break
        time.sleep(0.2)
    assert step.state == "successful", step.reason
    with dashboard.ctx.db.session() as s:
        incident = incidents.get_incident_or_raise(session=s, incident_id=dashboard.built.incident)
        assert incident.acknowledged_by == "oncall-user"


def test_admin_approves_a_grant(dashboard: Dashboard, as_role: Any) -> None:
    w = as_role("admin")
    grant = dashboard.built.grant
    w.visit("/access")
    form = w.page.locator(f"tr[data-request='{grant}'] form[data-action=approve]")
    form.locator("input[name=confirm]").check()
    form.locator("button").click()
    w.page.wait_for_url(re.compile(r".*/access$"))
    with dashboard.ctx.db.session() as s:
        row = grants.get_request_or_raise(session=s, request_id=grant)
        assert row.state == "approved" and row.decided_by == "admin-user"


def test_oncall_aborts_the_canary(dashboard: Dashboard, as_role: Any) -> None:
    w = as_role("oncall")
    w.visit(f"/models/{MODEL}/rollout")
    form = w.page.locator("form[data-action=abort]")
    form.locator("input[name=reason]").fill("drift on petal_length")
    form.locator("input[name=confirm]").check()
    form.locator("button").click()
    w.page.wait_for_url(re.compile(r".*/rollout$"))
    assert w.page.inner_text("#rollout-state") == "aborted"
    w.assert_clean("abort")
    with dashboard.ctx.db.session() as s:
        r = rollouts.latest(session=s, name=MODEL)
        assert r is not None and r.state == "aborted" and "drift on petal_length" in r.reason
    from mloncall.access import audit

    with dashboard.ctx.db.session() as s:
        (record,) = audit.list_audit(session=s, limit=1, resource="/rollout/abort", outcome="success")
        assert record.actor == "oncall-user"


def test_logins_are_rate_limited_and_logout_ends_the_session(dashboard: Dashboard, as_role: Any) -> None:
    for _ in range(10):
        r = httpx.post(f"{dashboard.url}/login", data={"name": "nobody", "password": "wrong"})
        assert r.status_code == 401
    r = httpx.post(f"{dashboard.url}/login", data={"name": "nobody", "password": PASSWORD})
    assert r.status_code == 429
    w = as_role("viewer")
    (copied,) = [c["value"] for c in w.page.context.cookies() if c["name"] == "mloncall_session"]
    assert httpx.get(f"{dashboard.url}/alerts", cookies={"mloncall_session": copied}).status_code == 200
    w.page.click("header form button")
    w.page.wait_for_url(re.compile(r".*/login$"))
    w.visit("/alerts")
    assert w.page.url.startswith(f"{dashboard.url}/login")
    # a copy of the cookie taken before the logout opens nothing: the session ended on the server
    replayed = httpx.get(
        f"{dashboard.url}/alerts", cookies={"mloncall_session": copied}, follow_redirects=False
    )
    assert replayed.status_code == 303 and replayed.headers["location"] == "/login?next=/alerts"


def test_the_post_mortem_draft_reads_as_rendered_markdown(dashboard: Dashboard, as_role: Any) -> None:
    incident = dashboard.built.incident
    with dashboard.ctx.db.session() as s:
        # a post-mortem is drafted once the incident is resolved; the runbook confirmed in another test may
        # or may not have resolved it yet, so it is resolved here when it is still open
        if incidents.get_incident_or_raise(session=s, incident_id=incident).state not in (
            "resolved",
            "closed",
        ):
            incidents.resolve(
                session=s, incident_id=incident, actor="oncall-user", summary="inputs fixed upstream"
            )
    with dashboard.ctx.db.session() as s:
        incidents.draft(session=s, store=dashboard.ctx.store, incident_id=incident, actor="oncall-user")
    w = as_role("oncall")
    w.visit(f"/incidents/{incident}")
    assert w.page.locator(".postmortem h1, .postmortem h2").count() > 0
    assert "#" not in w.page.inner_text(".postmortem h2").split()[0]
    w.assert_clean("post-mortem")
    w.page.screenshot(path=str(dashboard.shots / "readme-incident.png"), full_page=False)
    w.visit("/")
    w.page.screenshot(path=str(dashboard.shots / "readme-overview.png"), full_page=False)
