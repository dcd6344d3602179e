"""The dashboard's pages: each a GET over the same domain services the API and the CLI read.

Every list is paginated (`?page=`), every page reads with JavaScript off, and a page needs a session: without
one it answers with a redirect to the login page.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from markdown_it import MarkdownIt
from markupsafe import Markup

from mloncall.access import audit, authorize, grants
from mloncall.access.permissions import PERMISSIONS
from mloncall.alerts import service as alerts
from mloncall.core import clock
from mloncall.core.errors import MloncallError
from mloncall.incidents import service as incidents
from mloncall.monitoring import service as monitoring
from mloncall.monitoring.verdict import version_label
from mloncall.pipelines import quarantine, records
from mloncall.registry import service as registry
from mloncall.rollout import service as rollouts
from mloncall.rollout.models import RolloutState
from mloncall.runbooks import service as runbooks
from mloncall.runbooks.catalog import all_runbooks, get_runbook
from mloncall.web import charts, overview
from mloncall.web.base import CurrentContext, DbSession, Page, PageQuery, User, render

router = APIRouter(include_in_schema=False)
_markdown = MarkdownIt("commonmark", {"html": False})
Text = Annotated[str | None, Query(max_length=200)]
PageNumber = Annotated[int, Query(ge=1, le=100_000)]


def _clean(value: str | None) -> str | None:
    return value.strip() or None if value else None


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, session: DbSession, ctx: CurrentContext, user: User) -> HTMLResponse:
    cards = overview.cards(session=session, ctx=ctx)
    return render(request, "overview.html", user, session, cards=cards)


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(
    request: Request,
    name: str,
    session: DbSession,
    ctx: CurrentContext,
    user: User,
    a: int | None = None,
    b: int | None = None,
    verify: int | None = None,
) -> HTMLResponse:
    model = registry.get_model_or_raise(session=session, name=name)
    versions = sorted(model.versions, key=lambda v: v.version, reverse=True)
    aliases = {v.version: registry.aliases_of(session=session, model_version=v) for v in versions}
    by_number = {v.version: v for v in versions}
    diff = None
    if a in by_number and b in by_number:
        diff = (by_number[a], by_number[b], sorted(set(by_number[a].metrics) | set(by_number[b].metrics)))
    verified = None
    if verify in by_number:
        verified = registry.verify(store=ctx.store, model_version=by_number[verify])
    return render(
        request,
        "model.html",
        user,
        session,
        model=model,
        versions=versions,
        aliases=aliases,
        history=registry.alias_history(session=session, name=name),
        diff=diff,
        verified=verified,
        rollouts=rollouts.history(session=session, name=name),
    )


@router.get("/models/{name}/rollout", response_class=HTMLResponse)
def rollout_page(
    request: Request, name: str, session: DbSession, ctx: CurrentContext, user: User
) -> HTMLResponse:
    registry.get_model_or_raise(session=session, name=name)
    r = rollouts.latest(session=session, name=name)
    analysis = None
    if r is not None and r.state == RolloutState.RUNNING:
        try:
            analysis = rollouts.analyse(
                session=session, store=ctx.store, rollout=r, now=clock.now()
            ).to_dict()
        except MloncallError as exc:
            analysis = {"outcome": "error", "reason": exc.message}
    active = r is not None and r.state in (RolloutState.RUNNING, RolloutState.PAUSED)
    return render(
        request, "rollout.html", user, session, name=name, rollout=r, analysis=analysis, active=active
    )


def _marks(session: Any, name: str) -> list[charts.Mark]:
    out = []
    for r in rollouts.history(session=session, name=name):
        for e in r.events:
            kind = (
                "rollback"
                if e.to_state in ("aborted", "rolled_back") or r.strategy == "rollback"
                else "deploy"
            )
            if e.to_state in ("running", "promoted", "aborted", "rolled_back"):
                out.append(charts.Mark(e.at, f"v{r.to_version} {e.to_state}", kind))
    return out


def _drift_charts(
    reports: list[monitoring.DriftReport], marks: list[charts.Mark], since: dt.datetime, now: dt.datetime
) -> list[Markup]:
    """One chart per feature and served version: its PSI, KS and Wasserstein at the end of each slice (each
    version against its own reference, so a canary's drift is not drawn over the stable version's)."""
    lines: dict[tuple[str, int | None], dict[str, list[tuple[dt.datetime, float | None]]]] = {}
    for each in reports:
        for v in each.versions:
            for f in v.features:
                stats = lines.setdefault((f.feature, v.version), {stat: [] for stat in DRIFT_STATS})
                for stat in DRIFT_STATS:
                    stats[stat].append((each.until, getattr(f, stat)))
    return [
        charts.time_chart(
            f"{feature} ({version_label(version)}): PSI, KS, Wasserstein",
            [charts.Line(stat, points) for stat, points in stats.items()],
            marks,
            since,
            now,
        )
        for (feature, version), stats in sorted(lines.items(), key=_feature_then_version)
    ]


def _feature_then_version(item: tuple[tuple[str, int | None], Any]) -> tuple[str, bool, int]:
    (feature, version), _ = item
    return feature, version is None, version or 0


#: The serving charts of the monitoring page: metric, unit, title.
SERVING_CHARTS = (
    ("requests", "", "volume (requests)"),
    ("error_rate", "", "error rate"),
    ("p50_ms", "ms", "latency p50"),
    ("p95_ms", "ms", "latency p95"),
    ("p99_ms", "ms", "latency p99"),
    ("accuracy", "", "accuracy from late labels"),
)
#: The monitoring page's window is judged for drift in this many consecutive slices.
DRIFT_SLICES = 6
DRIFT_STATS = ("psi", "ks", "wasserstein")


@router.get("/models/{name}/monitoring", response_class=HTMLResponse)
def monitoring_page(
    request: Request,
    name: str,
    session: DbSession,
    ctx: CurrentContext,
    user: User,
    hours: Annotated[int, Query(ge=1, le=24)] = 1,
) -> HTMLResponse:
    registry.get_model_or_raise(session=session, name=name)
    now = clock.now()
    window = dt.timedelta(hours=hours)
    step = window / 30
    since = now - window
    marks = _marks(session, name)
    serving = monitoring.series_by_metric(
        session=session,
        store=ctx.store,
        model=name,
        version=None,
        metrics=tuple(metric for metric, _, _ in SERVING_CHARTS),
        window=window,
        step=step,
        now=now,
    )
    drawn = []
    for metric, unit, title in SERVING_CHARTS:
        line = charts.Line("all versions", [(p.start, p.value) for p in serving[metric]])
        drawn.append(charts.time_chart(title, [line], marks, since, now, unit))
    try:
        reports = monitoring.drift_reports(ctx=ctx, model=name, window=window, slices=DRIFT_SLICES, now=now)
    except MloncallError:
        reports = []
    report = reports[-1] if reports else None
    drift_charts = _drift_charts(reports, marks, since, now)
    histograms = []
    if report is not None:
        for v in report.versions:
            for f in v.features:
                if f.histogram is not None:
                    h = f.histogram.to_dict()
                    title = f"{f.feature} (v{v.version}): reference vs current"
                    histograms.append(
                        charts.histogram(title, h["edges"], h["reference_share"], h["current_share"])
                    )
    return render(
        request,
        "monitoring.html",
        user,
        session,
        name=name,
        charts=drawn,
        drift_charts=drift_charts,
        histograms=histograms,
        report=report,
        hours=hours,
    )


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    session: DbSession,
    user: User,
    page: PageQuery,
    state: Text = None,
    model: Text = None,
    rule: Text = None,
) -> HTMLResponse:
    rows = alerts.list_alerts(
        session=session,
        state=_clean(state),
        model=_clean(model),
        rule=_clean(rule),
        limit=page.size + 1,
        offset=page.offset,
    )
    return render(request, "alerts.html", user, session, alerts=page.cut(list(rows)), page=page)


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(request: Request, alert_id: int, session: DbSession, user: User) -> HTMLResponse:
    alert = alerts.get_alert_or_raise(session=session, alert_id=alert_id)
    runbook = None
    if alert.runbook:
        try:
            runbook = get_runbook(alert.runbook)
        except MloncallError:
            runbook = None
    return render(
        request,
        "alert.html",
        user,
        session,
        alert=alert,
        runbook=runbook,
        events=alerts.history(session=session, alert_id=alert_id),
        silenced=alerts.silenced_by(session=session, alert=alert),
    )


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(
    request: Request, session: DbSession, user: User, page: PageQuery, state: Text = None
) -> HTMLResponse:
    rows = incidents.list_incidents(
        session=session, state=_clean(state), limit=page.size + 1, offset=page.offset
    )
    return render(request, "incidents.html", user, session, incidents=page.cut(list(rows)), page=page)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(request: Request, incident_id: int, session: DbSession, user: User) -> HTMLResponse:
    incident = incidents.get_incident_or_raise(session=session, incident_id=incident_id)
    updates = list(incidents.list_updates(session=session, incident_id=incident_id))
    pm = incidents.get_postmortem(session=session, incident_id=incident_id)
    postmortem = Markup(_markdown.render(pm.markdown)) if pm is not None and pm.markdown else None
    open_ = incident.state in ("triggered", "acknowledged", "mitigated")
    overdue = open_ and incident.next_update_due is not None and incident.next_update_due < clock.now()
    return render(
        request,
        "incident.html",
        user,
        session,
        incident=incident,
        updates=updates,
        overdue=overdue,
        timeline=incidents.timeline(session=session, incident_id=incident_id),
        postmortem=postmortem,
        roles=incidents.current_roles(session=session, incident_id=incident_id),
    )


@router.get("/runbooks", response_class=HTMLResponse)
def runs_page(request: Request, session: DbSession, user: User, page: PageQuery) -> HTMLResponse:
    rows = runbooks.list_runs(session=session, limit=page.size + 1, offset=page.offset)
    return render(
        request, "runs.html", user, session, runs=page.cut(list(rows)), page=page, runbooks=all_runbooks()
    )


@router.get("/runbooks/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: int, session: DbSession, user: User) -> HTMLResponse:
    run = runbooks.get_run_or_raise(session=session, run_id=run_id)
    return render(
        request,
        "run.html",
        user,
        session,
        run=run,
        children=runbooks.children(session=session, run_id=run_id),
    )


@router.get("/runbooks/{name}/start", response_class=HTMLResponse)
def start_page(
    request: Request, name: str, session: DbSession, user: User, alert: int | None = None
) -> HTMLResponse:
    return render(request, "start.html", user, session, runbook=get_runbook(name), alert=alert)


@router.get("/pipelines", response_class=HTMLResponse)
def pipelines_page(
    request: Request, session: DbSession, user: User, page: PageQuery, held_page: PageNumber = 1
) -> HTMLResponse:
    rows = records.list_runs(session=session, limit=page.offset + page.size + 1)[page.offset :]
    qpage = Page(number=held_page)
    held = quarantine.list_batches(session=session, limit=qpage.offset + qpage.size + 1)[qpage.offset :]
    return render(
        request,
        "pipelines.html",
        user,
        session,
        runs=page.cut(list(rows)),
        page=page,
        batches=qpage.cut(list(held)),
        qpage=qpage,
    )


@router.get("/pipelines/runs/{run_id}", response_class=HTMLResponse)
def pipeline_run_page(request: Request, run_id: int, session: DbSession, user: User) -> HTMLResponse:
    run = records.get_run_or_raise(session=session, run_id=run_id)
    failed = next((s for s in run.stages if s.name == run.failed_stage), None)
    diff = (failed.details.get("schema_diff") or {}) if failed is not None else {}
    return render(request, "pipeline_run.html", user, session, run=run, diff=diff, failed=failed)


@router.get("/access", response_class=HTMLResponse)
def access_page(
    request: Request,
    session: DbSession,
    user: User,
    page: PageQuery,
    actor: Text = None,
    action: Text = None,
    outcome: Text = None,
    since: Text = None,
    until: Text = None,
    requests_page: PageNumber = 1,
) -> HTMLResponse:
    mine = [
        (p, authorize.decide(session=session, principal=user.principal, permission=p, token=user.token)[0])
        for p in sorted(PERMISSIONS)
    ]
    approver = authorize.decide(
        session=session, principal=user.principal, permission="access:approve", token=user.token
    )[0]
    requester = None if approver else user.name
    rpage = Page(number=requests_page)
    pending = rpage.cut(
        list(
            grants.list_requests(
                session=session, requester=requester, state="pending", limit=rpage.offset + rpage.size + 1
            )
        )[rpage.offset :]
    )
    records_, verified = [], None
    if authorize.decide(
        session=session, principal=user.principal, permission="access:admin", token=user.token
    )[0]:
        where = audit.AuditFilter.from_text(
            actor=_clean(actor),
            action=_clean(action),
            outcome=_clean(outcome),
            since=_clean(since),
            until=_clean(until),
        )
        records_ = page.cut(
            list(audit.list_matching(session=session, where=where, limit=page.offset + page.size + 1))[
                page.offset :
            ]
        )
        verified = audit.verify(session=session)
    return render(
        request,
        "access.html",
        user,
        session,
        mine=mine,
        pending=pending,
        records=records_,
        verified=verified,
        page=page,
        approver=approver,
        rpage=rpage,
    )
