"""Runbook 7, `access --param principal=svc-retrain --param action=registry:read`: an engineer or a service
cannot reach the registry, storage or the dashboard.

Confirm the denial (the policy's own decision), check authentication (a live token, an enabled principal),
validate permissions (`explain`: the deciding line, a scope mismatch, an expired grant, the fix), apply the
short-term workaround (a break-glass request, approved by someone else), escalate (the security contact is
told), then fix the root cause (the role change `explain` proposed, recorded) and end the grant.

Acceptance asks the server itself, with a short-lived token of the principal narrowed to the action: the
action is allowed, the workaround is on the run, and the grant is over while the role change alone allows it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

import httpx

from mloncall.access import authorize, grants, roles
from mloncall.access import service as access
from mloncall.access.permissions import PERMISSIONS, check_scope, scope_label
from mloncall.alerts import notify
from mloncall.alerts.channels import channels_from_settings
from mloncall.core.durations import parse_duration
from mloncall.core.outcome import Check, Outcome
from mloncall.runbooks.runcontext import AwaitingOthers, RunContext
from mloncall.runbooks.spec import Criterion, Param, Runbook, Step
from mloncall.runbooks.states import StepKind

NAME = "access"
#: A read route per permission, called with the principal's token when acceptance is judged.
READ_ROUTES = {
    "registry:read": "/api/v1/models",
    "artifacts:read": "/api/v1/datasets",
    "alerts:read": "/api/v1/alerts",
    "incidents:read": "/api/v1/incidents",
    "runbooks:read": "/api/v1/runbooks",
    "access:admin": "/api/v1/tokens",
}


def _model(rc: RunContext) -> str | None:
    scope = check_scope(rc.params["model"])
    return None if scope == "*" else scope.removeprefix("model:")


def _explain(rc: RunContext) -> authorize.Explanation:
    with rc.ctx.db.session() as s:
        who = access.get_principal_or_raise(session=s, name=rc.params["principal"])
        return authorize.explain(session=s, principal=who, permission=rc.params["action"], model=_model(rc))


def _what(rc: RunContext) -> str:
    return f"{rc.params['principal']} {rc.params['action']} {scope_label(check_scope(rc.params['model']))}"


# --- 1. confirm ----------------------------------------------------------------------------------------------


def confirm(rc: RunContext) -> Check:
    """Reproduce it: the policy's own decision on this principal, action and scope."""
    why = _explain(rc)
    evidence = {"allowed": why.allowed, "decided_by": why.decided_by, "considered": why.considered}
    if why.allowed:
        return Check("confirm", Outcome.FAILED, f"not reproduced: {_what(rc)} is allowed ({why.reasons[-1]}); "
                     "the trouble is elsewhere (network, VPN, the client's configuration): "
                     "run `mloncall access diagnose` on their machine", evidence)  # fmt: skip
    return Check("confirm", Outcome.SUCCESSFUL, f"reproduced: {_what(rc)} is denied", evidence)


# --- 2. authentication -------------------------------------------------------------------------------------


def authentication(rc: RunContext) -> Check:
    """The principal is enabled and holds a live token (expired and revoked ones are told apart)."""
    with rc.ctx.db.session() as s:
        who = access.get_principal_or_raise(session=s, name=rc.params["principal"])
        tokens = [
            (t.prefix, t.status, t.expires_at) for t in access.list_tokens(session=s, principal_name=who.name)
        ]
        disabled, kind = who.disabled, who.kind
    states = {
        status: sum(1 for _, st, _ in tokens if st == status) for status in ("active", "expired", "revoked")
    }
    evidence: dict[str, Any] = {"kind": kind, "disabled": disabled, "tokens": states}
    if disabled:
        return Check("authentication", Outcome.FAILED, f"{rc.params['principal']} is disabled: "
                     f"`mloncall access enable {rc.params['principal']}` if that was a mistake", evidence)  # fmt: skip
    if states["active"] == 0:
        expired = [
            f"{p}… expired {e:%Y-%m-%d %H:%M}" for p, st, e in tokens if st == "expired" and e is not None
        ]
        told = f" ({', '.join(expired[:3])})" if expired else ""
        return Check("authentication", Outcome.FAILED, f"{rc.params['principal']} has no active token{told}: "
                     f"issue one with `mloncall tokens create {rc.params['principal']}`", evidence)  # fmt: skip
    return Check("authentication", Outcome.SUCCESSFUL,
                 f"authenticated: enabled, {states['active']} active token(s)", evidence)  # fmt: skip


# --- 3. permissions ------------------------------------------------------------------------------------------


def permissions(rc: RunContext) -> Check:
    """Why the policy refuses: the roles and teams considered, the deciding line, and the fix."""
    why = _explain(rc)
    evidence = why.as_dict()
    if why.fix is None:
        return Check("permissions", Outcome.FAILED, f"no fix found: {'; '.join(why.reasons)}", evidence)
    return Check("permissions", Outcome.SUCCESSFUL, f"{why.reasons[-1]}; fix: {why.fix}", evidence)


def _fix_role(rc: RunContext) -> str:
    """The role to grant: `--param role`, else the weakest role that has the permission."""
    if rc.params["role"]:
        return str(rc.params["role"])
    with rc.ctx.db.session() as s:
        role = roles.weakest_role_with(session=s, permission=rc.params["action"])
    if role is None:
        raise ValueError(f"no role grants {rc.params['action']}")
    return role


# --- 4. short-term workaround ----------------------------------------------------------------------------


def _request_id(rc: RunContext) -> int | None:
    found = rc.evidence_of("workaround").get("request_id")
    return int(found) if found is not None else None


def workaround_trace(rc: RunContext) -> str | None:
    """What a half-run workaround left: the request it filed, if any."""
    with rc.ctx.db.session() as s:
        rows = grants.list_requests(session=s, requester=rc.params["principal"], limit=20)
        mine = [r for r in rows if f"runbook run #{rc.run_id}" in r.reason]
        return f"access request #{mine[0].id}" if mine else None


def workaround(rc: RunContext) -> Check:
    """File the break-glass request for the role, in the action's scope, for a while, with the reason."""
    role = _fix_role(rc)
    with rc.ctx.db.session() as s:
        who = access.get_principal_or_raise(session=s, name=rc.params["principal"])
        reason = f"{rc.params['reason'] or 'needs ' + rc.params['action']} (runbook run #{rc.run_id})"
        row = grants.request(
            session=s, requester=who, role=role, scope=rc.params["model"], duration=parse_duration(rc.params["for"]),
            reason=reason, incident_id=rc.params["incident"], limits=grants.GrantLimits.load(rc.ctx.settings),
        )  # fmt: skip
        request_id = row.id
    return Check("workaround", Outcome.SUCCESSFUL,
                 f"filed access request #{request_id}: {role} {scope_label(check_scope(rc.params['model']))} "
                 f"for {rc.params['for']}; someone else approves it with "
                 f"`mloncall access approve {request_id} --as NAME`",
                 {"request_id": request_id, "role": role, "duration": rc.params["for"]})  # fmt: skip


def workaround_resume(rc: RunContext) -> Check:
    """The request was filed before an interruption: keep it, do not file a second one."""
    with rc.ctx.db.session() as s:
        rows = grants.list_requests(session=s, requester=rc.params["principal"], limit=20)
        mine = [r for r in rows if f"runbook run #{rc.run_id}" in r.reason]
        row = mine[0]
        return Check("workaround", Outcome.SUCCESSFUL, f"kept access request #{row.id} filed before the "
                     "interruption", {"request_id": row.id, "role": row.role})  # fmt: skip


def approval(rc: RunContext) -> Check:
    """The request is answered by a principal other than the requester: the run waits until then."""
    request_id = _request_id(rc)
    if request_id is None:
        return Check("approval", Outcome.FAILED, "no request was filed")
    with rc.ctx.db.session() as s:
        grants.expire_due(session=s)
        row = grants.get_request_or_raise(session=s, request_id=request_id)
        state, by, until = row.state, row.decided_by, row.expires_at
    if state == grants.PENDING:
        raise AwaitingOthers(rc.run_id, f"access request #{request_id} waits for approval by someone other than "
                             f"{rc.params['principal']}: `mloncall access approve {request_id} --as NAME`, then "
                             f"`mloncall runbook resume {rc.run_id}`")  # fmt: skip
    evidence = {"request_id": request_id, "state": state, "approved_by": by,
                "expires_at": until.isoformat() if until else None}  # fmt: skip
    if state != grants.APPROVED:
        return Check(
            "approval",
            Outcome.FAILED,
            f"access request #{request_id} was {state} by {by or 'nobody'}",
            evidence,
        )
    return Check("approval", Outcome.SUCCESSFUL,
                 f"approved by {by}: the grant holds until {until:%Y-%m-%d %H:%M} UTC" if until else "approved",
                 evidence)  # fmt: skip


# --- 5. escalate ---------------------------------------------------------------------------------------------


def escalate(rc: RunContext) -> Check:
    """Tell the security contact: who needed what, the grant given, and the fix about to be made."""
    wanted = rc.params["security_channel"] or rc.ctx.settings.section("access").get("security_channel")
    channels = {c.name: c for c in channels_from_settings(rc.ctx.settings)}
    if not wanted or wanted not in channels:
        known = ", ".join(sorted(channels)) or "none configured"
        return Check("escalate", Outcome.INCONCLUSIVE, f"no security contact to tell: set [access] security_channel "
                     f"or --param security_channel to one of the [alerts] channels ({known})",
                     {"channel": wanted})  # fmt: skip
    request_id = _request_id(rc)
    why = rc.evidence_of("permissions")
    message = notify.PlainMessage(
        title=f"access: {_what(rc)} (runbook run #{rc.run_id})",
        text=f"{_what(rc)} was denied: {'; '.join(why.get('reasons', []))}\n"
        f"Short-term workaround: access request #{request_id}, approved by "
        f"{rc.evidence_of('approval').get('approved_by')}.\nRoot-cause fix: {why.get('fix')}",
        body={
            "kind": "access",
            "run_id": rc.run_id,
            "principal": rc.params["principal"],
            "action": rc.params["action"],
            "scope": check_scope(rc.params["model"]),
            "request_id": request_id,
            "fix": why.get("fix"),
        },
        headers={"Run": str(rc.run_id)},
    )
    status = notify.send_plain(channels[wanted], message)
    ok = status < 400
    return Check("escalate", Outcome.SUCCESSFUL if ok else Outcome.FAILED,
                 f"told {wanted} ({channels[wanted].type}): answer {status}", {"channel": wanted, "status": status})  # fmt: skip


# --- 6. root cause -------------------------------------------------------------------------------------------


def root_cause(rc: RunContext) -> Check:
    """Make the lasting fix (the role change), recorded, then end the grant: the role alone must carry it."""
    role = _fix_role(rc)
    scope = check_scope(rc.params["model"])
    with rc.ctx.db.session() as s:
        who = access.get_principal_or_raise(session=s, name=rc.params["principal"])
        added = roles.bind(session=s, principal=who, role=role, scope=scope, actor=rc.actor)
        ended = None
        request_id = _request_id(rc)
        if (
            request_id is not None
            and grants.get_request_or_raise(session=s, request_id=request_id).state == grants.APPROVED
        ):
            ended = grants.revoke(session=s, request_id=request_id, actor=rc.actor).state
    document = (
        f"# Access fix, runbook run #{rc.run_id}\n\n- Denied: {_what(rc)}\n"
        f"- Why: {'; '.join(rc.evidence_of('permissions').get('reasons', []))}\n"
        f"- Workaround: access request #{request_id} ({rc.evidence_of('approval').get('state')}, "
        f"approved by {rc.evidence_of('approval').get('approved_by')})\n"
        f"- Root-cause fix: {role} {scope_label(scope)} given to {rc.params['principal']} by {rc.actor}\n"
        f"- Grant #{request_id}: {ended or 'not active'}\n"
    )
    attachment = rc.attach("access-fix.md", document.encode(), "text/markdown")
    return Check("root-cause", Outcome.SUCCESSFUL,
                 f"{rc.params['principal']} {'now holds' if added else 'already held'} {role} {scope_label(scope)}; "
                 f"grant #{request_id} {ended or 'was not active'}",
                 {"role": role, "scope": scope, "added": added, "grant": request_id, "grant_state": ended,
                  "document": attachment["key"]})  # fmt: skip


# --- acceptance ----------------------------------------------------------------------------------------------


def _server(rc: RunContext) -> str:
    return str(rc.params["server"] or os.environ.get("MLONCALL_URL") or "http://127.0.0.1:8000").rstrip("/")


def can_act(rc: RunContext) -> Check:
    """Asked of the server with a token of the principal, narrowed to the action and living one minute."""
    model = _model(rc)
    with rc.ctx.db.session() as s:
        token, secret = access.create_token(
            session=s, principal_name=rc.params["principal"], description=f"acceptance of runbook run #{rc.run_id}",
            expires_in=dt.timedelta(minutes=1), permissions=[rc.params["action"]], model=model,
        )  # fmt: skip
        token_id = token.id
    try:
        headers = {"Authorization": f"Bearer {secret}"}
        query = {"permission": rc.params["action"], **({"model": model} if model else {})}
        with httpx.Client(base_url=_server(rc), headers=headers, timeout=10) as client:
            answer = client.get("/api/v1/access/explain", params=query)
            route = READ_ROUTES.get(rc.params["action"])
            read = (
                client.get(f"/api/v1/models/{model}" if route == "/api/v1/models" and model else route)
                if route
                else None
            )
    except httpx.HTTPError as exc:
        return Check("engineer can act", Outcome.ERROR, f"the server at {_server(rc)} did not answer: {exc}")
    finally:
        with rc.ctx.db.session() as s:
            access.revoke_token(session=s, token_id=token_id)
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
    evidence = {"server": _server(rc), "explain": answer.status_code, "allowed": body.get("allowed"),
                "read_route": route, "read_status": read.status_code if read is not None else None}  # fmt: skip
    ok = (
        answer.status_code == 200 and body.get("allowed") is True and (read is None or read.status_code < 400)
    )
    return Check("engineer can act", Outcome.SUCCESSFUL if ok else Outcome.FAILED,
                 f"the server {'allows' if ok else 'still refuses'} {_what(rc)} with their token", evidence)  # fmt: skip


def workaround_documented(rc: RunContext) -> Check:
    """The workaround is on the run: the request, who approved it, and the document."""
    approved = rc.evidence_of("approval")
    document = rc.evidence_of("root-cause").get("document")
    ok = approved.get("state") == grants.APPROVED and bool(approved.get("approved_by")) and bool(document)
    return Check("workaround documented", Outcome.SUCCESSFUL if ok else Outcome.FAILED,
                 f"request #{approved.get('request_id')} approved by {approved.get('approved_by')}; document {document}",
                 {"approval": approved, "document": document})  # fmt: skip


def root_cause_fixed(rc: RunContext) -> Check:
    """The grant is over (expired or revoked) and the role change alone allows the action."""
    request_id = _request_id(rc)
    with rc.ctx.db.session() as s:
        grants.expire_due(session=s)
        state = grants.get_request_or_raise(session=s, request_id=request_id).state if request_id else None
    why = _explain(rc)
    over = state in (grants.EXPIRED, grants.REVOKED, grants.DENIED, grants.LAPSED) or state is None
    ok = over and why.allowed and why.grant is None
    return Check("root cause fixed", Outcome.SUCCESSFUL if ok else Outcome.FAILED,
                 f"grant #{request_id} {state}; {why.reasons[-1] if why.reasons else ''}",
                 {"grant_state": state, "allowed": why.allowed, "via": why.via, "decided_by": why.decided_by})  # fmt: skip


def _target(params: Mapping[str, Any]) -> str:
    return f"principal:{params['principal']}"


RUNBOOK = Runbook(
    name=NAME,
    title="Access and permissions",
    scenario="An engineer cannot access storage, the model registry or the monitoring dashboard.",
    objective="Resolve access and permission issues quickly, and fix their root cause for good.",
    params=(
        Param("principal", "who cannot act (a user or service account)", required=True),
        Param(
            "action",
            f"what they tried: one of {', '.join(PERMISSIONS)}",
            required=True,
            choices=tuple(PERMISSIONS),
        ),
        Param("model", "the model they tried it on (default: a global action)"),
        Param("role", "the role to grant (default: the weakest role with the permission)"),
        Param("for", "how long the short-term grant lasts, from its approval", type="duration", default="2h"),
        Param("reason", "why they need it (recorded on the request)"),
        Param("incident", "the incident this is for", type="int"),
        Param(
            "security_channel",
            "the [alerts] channel of the security contact (default: [access] security_channel)",
        ),
        Param("server", "the server acceptance asks (default: MLONCALL_URL or http://127.0.0.1:8000)"),
    ),
    steps=(
        Step("confirm", "Confirm the issue", StepKind.CHECK, confirm),
        Step("authentication", "Check authentication status", StepKind.CHECK, authentication),
        Step("permissions", "Validate permissions", StepKind.CHECK, permissions),
        Step(
            "workaround",
            "Apply a short-term workaround (a break-glass request)",
            StepKind.ACTION,
            workaround,
            idempotent=False,
            trace=workaround_trace,
            resume=workaround_resume,
            question=lambda rc: f"File a break-glass request for {rc.params['principal']}?",
        ),
        Step("approval", "Have the workaround approved by someone else", StepKind.CHECK, approval),
        Step(
            "escalate",
            "Escalate: tell the security contact",
            StepKind.ACTION,
            escalate,
            stop_on_failure=False,
            question="Tell the security contact?",
        ),
        Step(
            "root-cause",
            "Document and fix the root cause (the role change), and end the grant",
            StepKind.ACTION,
            root_cause,
            question=lambda rc: f"Give {rc.params['principal']} the role for good and end the grant?",
        ),
    ),
    acceptance=(
        Criterion("engineer able to perform the action", can_act),
        Criterion("workaround documented", workaround_documented),
        Criterion("root cause fixed permanently", root_cause_fixed),
    ),
    contacts=("Primary: ML Engineering", "Secondary: Security/Infrastructure"),
    target=_target,
    troubleshooting=("Expired credentials.", "Misconfigured role.", "Network/VPN issues."),
)
