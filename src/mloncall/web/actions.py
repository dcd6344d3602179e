"""The dashboard's actions: login and logout, and each button's POST through the same domain services and
the same audited unit of work as the API's routes. Every form carries its session's CSRF token; every action
checks its permission here, whatever the page showed."""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from mloncall.access import grants
from mloncall.access import service as access
from mloncall.alerts import notify
from mloncall.alerts import service as alerts
from mloncall.alerts.silences import match_labels
from mloncall.core.durations import parse_duration
from mloncall.core.errors import InvalidInput, MloncallError
from mloncall.incidents import outbox
from mloncall.incidents import service as incidents
from mloncall.pipelines import quarantine
from mloncall.rollout import service as rollouts
from mloncall.runbooks import engine
from mloncall.runbooks.catalog import get_runbook
from mloncall.stores.context import Context
from mloncall.web import auth
from mloncall.web.base import CurrentContext, DbSession, User, render

log = logging.getLogger("mloncall.web")
router = APIRouter(include_in_schema=False)
LIMITER = auth.LoginLimiter()
MAX_FORM_BYTES = 64 * 1024


async def form_fields(request: Request) -> dict[str, str]:
    """The posted form (application/x-www-form-urlencoded), one value per field."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InvalidInput("the form is too large")
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"not a form: {exc}") from None
    return {k: v[-1] for k, v in parsed.items()}


Form = Annotated[dict[str, str], Depends(form_fields)]


def checked(user: auth.WebUser, form: dict[str, str]) -> auth.WebUser:
    auth.check_csrf(user, form.get(auth.CSRF_FIELD))
    return user


def permitted(session: Session, user: auth.WebUser, form: dict[str, str], permission: str) -> None:
    """What a button's POST checks before it acts: its form's CSRF token, then the user's permission."""
    checked(user, form)
    auth.require(session, user, permission)


def _back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _set_cookie(request: Request, response: Response, value: str, max_age: int) -> None:
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(
        auth.COOKIE, value, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/"
    )


# --- login -----------------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", None, None, next=next if next.startswith("/") else "/", error=None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, session: DbSession, ctx: CurrentContext, form: Form) -> Response:
    key = f"{request.client.host if request.client else '?'}|{form.get('name', '').strip() or 'token'}"
    target = form.get("next", "/")
    target = target if target.startswith("/") and not target.startswith("//") else "/"
    if LIMITER.blocked(key):
        return render(
            request,
            "login.html",
            None,
            None,
            status_code=429,
            next=target,
            error="too many failed logins from this address: wait a few minutes",
        )
    try:
        principal, token_id = auth.login(
            session, name=form.get("name", ""), password=form.get("password", ""), token=form.get("token", "")
        )
    except MloncallError as exc:
        LIMITER.failed(key)
        return render(request, "login.html", None, None, status_code=401, next=target, error=exc.message)
    LIMITER.succeeded(key)
    name_actor = getattr(request.app.state, "web_name_actor", None)
    if name_actor is not None:
        name_actor(request, principal.name)
    response = _back(target)
    _set_cookie(
        request,
        response,
        auth.issue_cookie(session, ctx, principal=principal, token_id=token_id),
        auth.SESSION_SECONDS,
    )
    return response


@router.post("/logout")
def logout(request: Request, session: DbSession, ctx: CurrentContext, user: User, form: Form) -> Response:
    checked(user, form)
    auth.end_session(session, ctx, request)
    response = _back("/login")
    response.delete_cookie(auth.COOKIE, path="/")
    return response


# --- rollouts --------------------------------------------------------------------------------------------

STEER = {"pause": rollouts.pause, "resume": rollouts.resume, "promote": rollouts.promote}


@router.post("/models/{name}/rollout/{action}")
def steer_rollout(name: str, action: str, session: DbSession, user: User, form: Form) -> Response:
    checked(user, form)
    if action not in (*STEER, "abort"):
        raise InvalidInput(f"unknown rollout action {action!r}: use pause, resume, promote or abort")
    auth.require(session, user, "deploy:execute", model=name)
    r = rollouts.get_active_or_raise(session=session, name=name)
    reason = form.get("reason", "").strip() or f"{action} by {user.name} from the dashboard"
    if action == "abort":
        rollouts.abort(session=session, rollout=r, actor=user.name, reason=reason)
    else:
        STEER[action](session=session, rollout=r, actor=user.name, reason=reason)
    return _back(f"/models/{name}/rollout")


# --- alerts ----------------------------------------------------------------------------------------------


def _later(tasks: BackgroundTasks, ctx: Context) -> None:
    def run() -> None:
        for send in (notify.send_pending, outbox.send_pending):
            try:
                send(ctx)
            except Exception:
                log.exception("sending messages after a dashboard action failed")

    tasks.add_task(run)


@router.post("/alerts/{alert_id}/{action}")
def alert_action(
    alert_id: int,
    action: str,
    session: DbSession,
    ctx: CurrentContext,
    user: User,
    form: Form,
    tasks: BackgroundTasks,
) -> Response:
    permitted(session, user, form, "alerts:manage")
    note = form.get("note", "").strip()
    if action == "ack":
        alerts.acknowledge(session=session, alert_id=alert_id, actor=user.name, reason=note)
    elif action == "resolve":
        alerts.resolve(
            session=session, alert_id=alert_id, note=note or "resolved from the dashboard", actor=user.name
        )
    elif action == "silence":
        alert = alerts.get_alert_or_raise(session=session, alert_id=alert_id)
        matchers = [f"{k}={v}" for k, v in sorted(match_labels(alert).items())]
        alerts.create_silence(
            session=session,
            matchers=matchers,
            actor=user.name,
            comment=note or f"alert {alert_id}",
            duration=parse_duration(form.get("duration", "1h"), what="silence length"),
        )
    else:
        raise InvalidInput(f"unknown alert action {action!r}: use ack, resolve or silence")
    _later(tasks, ctx)
    return _back(f"/alerts/{alert_id}")


# --- incidents -------------------------------------------------------------------------------------------


@router.post("/incidents/{incident_id}/updates")
def post_update(
    incident_id: int, session: DbSession, ctx: CurrentContext, user: User, form: Form, tasks: BackgroundTasks
) -> Response:
    permitted(session, user, form, "incidents:manage")
    incidents.post_update(
        session=session,
        incident_id=incident_id,
        status=form.get("status", "").strip(),
        impact=form.get("impact", ""),
        next_steps=form.get("next_steps", ""),
        next_update=form.get("next_update", "").strip() or None,
        actor=user.name,
    )
    _later(tasks, ctx)
    return _back(f"/incidents/{incident_id}")


# --- runbooks --------------------------------------------------------------------------------------------


@router.post("/runbooks/runs/{run_id}/confirm")
def confirm_step(
    run_id: int, session: DbSession, ctx: CurrentContext, user: User, form: Form, tasks: BackgroundTasks
) -> Response:
    permitted(session, user, form, "runbooks:run")
    root = engine.resumable(ctx, run_id)
    tasks.add_task(engine.execute_after_answer, ctx, root, actor=user.name, yes=True, resumed=True)
    return _back(f"/runbooks/runs/{run_id}")


@router.post("/runbooks/{name}/runs")
def start_run(
    name: str, session: DbSession, ctx: CurrentContext, user: User, form: Form, tasks: BackgroundTasks
) -> Response:
    permitted(session, user, form, "runbooks:run")
    runbook = get_runbook(name)
    params = {
        p.name: form[f"param_{p.name}"] for p in runbook.params if form.get(f"param_{p.name}", "").strip()
    }
    alert = form.get("alert", "").strip()
    run_id = engine.create(
        ctx,
        runbook=name,
        params=params,
        positional=[],
        actor=user.name,
        alert_id=int(alert) if alert.isdigit() else None,
    )
    tasks.add_task(
        engine.execute_after_answer, ctx, run_id, actor=user.name, yes=form.get("yes") == "on", resumed=False
    )
    return _back(f"/runbooks/runs/{run_id}")


# --- pipelines and access --------------------------------------------------------------------------------


@router.post("/pipelines/quarantine/{batch_id}/release")
def release_batch(batch_id: int, session: DbSession, ctx: CurrentContext, user: User, form: Form) -> Response:
    permitted(session, user, form, "pipelines:run")
    quarantine.release(ctx, batch_id=batch_id, actor=user.name)
    return _back("/pipelines")


@router.post("/access/requests/{request_id}/{answer}")
def answer_request(request_id: int, answer: str, session: DbSession, user: User, form: Form) -> Response:
    permitted(session, user, form, "access:approve")
    if answer not in ("approve", "deny"):
        raise InvalidInput(f"unknown answer {answer!r}: use approve or deny")
    approver = access.get_principal_or_raise(session=session, name=user.name)
    verb = grants.approve if answer == "approve" else grants.deny
    verb(session=session, request_id=request_id, approver=approver, note=form.get("note", ""))
    return _back("/access")
