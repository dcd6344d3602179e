"""`mloncall access`: who may do what, why (`explain`), roles and teams, denies, and break-glass requests.

Like `mloncall tokens`, these work on the installation's database directly, for whoever runs mloncall on its
machine. A command a person does as themselves (`request`, `approve`, `deny`) names them with `--as`; the
same steps over HTTP take the person from their token (`/api/v1/access/requests`).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from mloncall.access import authorize, grants, roles, service
from mloncall.access.models import Principal
from mloncall.access.permissions import PERMISSIONS, check_scope, scope_label
from mloncall.access.schemas import AccessRequestOut, ExplanationOut
from mloncall.cli.support import JsonOption, audited_change, id_argument, installation, print_json_if_asked
from mloncall.core import console
from mloncall.core.durations import parse_duration
from mloncall.core.errors import InvalidInput, PermissionDenied
from mloncall.incidents import service as incidents

app = typer.Typer(
    name="access",
    help="Who may do what and why: explain a decision, grant roles, deny, teams, break-glass requests.",
    no_args_is_help=True,
)
ScopeOption = Annotated[str | None, typer.Option("--scope", help="One model's name; default: everywhere.")]


@app.command("explain")
def explain(
    principal: Annotated[str, typer.Argument(help="Who: a user or service account.")],
    permission: Annotated[str, typer.Argument(help=f"What, one of: {', '.join(PERMISSIONS)}.")],
    resource: Annotated[
        str | None, typer.Argument(help="On which model (a name, or model:NAME); default: globally.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Allowed or denied, with the chain of reasons and the one command that would fix it.

    Exit code 0 when allowed, 6 when denied.
    """
    model = (
        None if resource is None else check_scope(resource).removeprefix("model:").removeprefix("*") or None
    )
    with installation() as ctx, ctx.db.session() as session:
        who = service.get_principal_or_raise(session=session, name=principal)
        why = ExplanationOut.model_validate(
            authorize.explain(session=session, principal=who, permission=permission, model=model).as_dict()
        )
    if as_json:
        console.print_json(why.model_dump(mode="json"))
    else:
        verdict = "[green]ALLOWED[/]" if why.allowed else "[red]DENIED[/]"
        console.out.print(f"{verdict}: {why.principal} {why.permission} {scope_label(why.scope)}")
        for reason in why.reasons:
            console.out.print(f"  - {reason}")
        if why.fix:
            console.out.print(f"fix: [bold]{why.fix}[/]")
        if why.workaround:
            console.out.print(f"or, for now: [bold]{why.workaround}[/]")
    if not why.allowed:
        raise PermissionDenied(f"{why.principal} may not {why.permission} {scope_label(why.scope)}")


@contextmanager
def _on_principal(action: str, name: str) -> Iterator[tuple[Session, dict[str, Any], Principal]]:
    """The audited unit of work of a change to one principal's policy, with the principal."""
    with audited_change(action, f"principal:{name}") as (session, _ctx, detail):
        yield session, detail, service.get_principal_or_raise(session=session, name=name)


@app.command("grant")
def grant(
    principal: Annotated[str, typer.Argument(help="Who: a user, service account or team.")],
    role: Annotated[str, typer.Argument(help="The role: viewer, engineer, oncall, admin, or a defined one.")],
    scope: ScopeOption = None,
) -> None:
    """Give a role, everywhere or on one model (the lasting fix `explain` proposes)."""
    where = check_scope(scope)
    with _on_principal("access.grant", principal) as (session, detail, who):
        added = roles.bind(session=session, principal=who, role=role, scope=where, actor=console.actor())
        detail.update(role=role, scope=where, added=added)
    said = "now holds" if added else "already held"
    console.out.print(f"{principal} {said} the {roles.canonical(role)} role {scope_label(where)}.")


@app.command("ungrant")
def ungrant(
    principal: Annotated[str, typer.Argument(help="Who.")],
    role: Annotated[str, typer.Argument(help="The role to take away.")],
    scope: ScopeOption = None,
) -> None:
    """Take a role away (in that scope)."""
    where = check_scope(scope)
    with _on_principal("access.ungrant", principal) as (session, detail, who):
        removed = roles.unbind(session=session, principal=who, role=role, scope=where)
        detail.update(role=role, scope=where, removed=removed)
    said = "no longer holds" if removed else "did not hold"
    console.out.print(f"{principal} {said} the {roles.canonical(role)} role {scope_label(where)}.")


@app.command("deny")
def deny(
    principal: Annotated[str, typer.Argument(help="Who: a user, service account or team.")],
    permission: Annotated[str, typer.Argument(help="The permission to deny, whatever the roles allow.")],
    scope: ScopeOption = None,
) -> None:
    """Deny a permission outright: a deny wins over every role and grant."""
    where = check_scope(scope)
    with _on_principal("access.deny", principal) as (session, detail, who):
        detail.update(permission=permission, scope=where)
        roles.deny(session=session, principal=who, permission=permission, scope=where, actor=console.actor())
    console.out.print(f"{principal} is denied {permission} {scope_label(where)}.")


@app.command("undeny")
def undeny(
    principal: Annotated[str, typer.Argument(help="Who.")],
    permission: Annotated[str, typer.Argument(help="The permission.")],
    scope: ScopeOption = None,
) -> None:
    """Lift a deny."""
    where = check_scope(scope)
    with _on_principal("access.undeny", principal) as (session, detail, who):
        removed = roles.undeny(session=session, principal=who, permission=permission, scope=where)
        detail.update(permission=permission, scope=where, removed=removed)
    console.out.print(
        f"{principal}: deny of {permission} {scope_label(where)} {'lifted' if removed else 'was not set'}."
    )


@app.command("principal")
def create_principal(
    name: Annotated[str, typer.Argument(help="The new principal's name.")],
    kind: Annotated[str, typer.Option(help="user, service or team.")] = "user",
    role: Annotated[str | None, typer.Option(help="A role to hold everywhere.")] = None,
) -> None:
    """Create a user, a service account or a team."""
    with audited_change("access.principal", f"principal:{name}", create=True) as (session, _ctx, detail):
        service.create_principal(session=session, name=name, kind=kind, role=role, actor=console.actor())
        detail.update(kind=kind, role=role)
    console.out.print(f"Created {kind} {name}" + (f" with role {role}." if role else "."))


@app.command("join")
def join(
    member: Annotated[str, typer.Argument(help="A user or service account.")],
    team: Annotated[str, typer.Argument(help="The team.")],
) -> None:
    """Put a member in a team: it holds the team's roles."""
    with audited_change("access.join", f"principal:{team}") as (session, _ctx, detail):
        added = service.add_member(session=session, team=team, member=member, actor=console.actor())
        detail.update(member=member, added=added)
    console.out.print(f"{member} {'is now' if added else 'already was'} in team {team}.")


@app.command("enable")
def enable(name: Annotated[str, typer.Argument(help="The principal.")]) -> None:
    """Enable a disabled principal again."""
    with audited_change("access.enable", f"principal:{name}") as (session, _ctx, _detail):
        service.enable_principal(session=session, name=name)
    console.out.print(f"{name} is enabled.")


@app.command("request")
def request(
    role: Annotated[str, typer.Argument(help="The role you need.")],
    reason: Annotated[str, typer.Option("--reason", help="What you need it for (required).")],
    requester: Annotated[str, typer.Option("--as", help="Who is asking.")],
    duration: Annotated[str, typer.Option("--for", help="How long from approval, e.g. 2h.")] = "1h",
    scope: ScopeOption = None,
    incident: Annotated[int | None, typer.Option("--incident", min=1, help="The incident it is for.")] = None,
    as_json: JsonOption = False,
) -> None:
    """File a break-glass request; someone else approves it with `mloncall access approve`."""
    length = parse_duration(duration, what="grant duration")
    with audited_change("access.request", f"principal:{requester}") as (session, ctx, detail):
        if incident is not None:
            incidents.get_incident_or_raise(session=session, incident_id=incident)
        row = grants.request(
            session=session,
            requester=service.get_principal_or_raise(session=session, name=requester),
            role=role, scope=scope, duration=length, reason=reason, incident_id=incident,
            limits=grants.GrantLimits.load(ctx.settings),
        )  # fmt: skip
        detail.update(request_id=row.id, role=row.role, scope=row.scope)
        out = AccessRequestOut.model_validate(row)
    _print_request(
        out,
        as_json,
        f"Filed access request #{out.id}: approve with `mloncall access approve {out.id} --as NAME`",
    )


def _print_request(out: AccessRequestOut, as_json: bool, line: str) -> None:
    if not print_json_if_asked(out, as_json):
        console.out.print(line)


def _answer(request_id: int, approver: str, note: str, approve: bool) -> AccessRequestOut:
    action = "access.approve" if approve else "access.deny_request"
    with audited_change(action, f"access-request:{request_id}") as (session, _ctx, detail):
        who = service.get_principal_or_raise(session=session, name=approver)
        authorize.require(session=session, principal=who, permission="access:approve")
        answer = grants.approve if approve else grants.deny
        row = answer(session=session, request_id=request_id, approver=who, note=note)
        detail.update(requester=row.requester, role=row.role, scope=row.scope)
        return AccessRequestOut.model_validate(row)


@app.command("approve")
def approve(
    request_id: Annotated[int, id_argument("The request id.")],
    approver: Annotated[
        str, typer.Option("--as", help="Who approves (not the requester; needs access:approve).")
    ],
    note: Annotated[str, typer.Option(help="Why.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Approve a pending request: the grant starts now and expires by itself."""
    out = _answer(request_id, approver, note, approve=True)
    until = f"{out.expires_at:%Y-%m-%d %H:%M} UTC" if out.expires_at else "?"
    _print_request(
        out,
        as_json,
        f"Approved #{out.id}: {out.requester} holds {out.role} {scope_label(out.scope)} until {until}.",
    )


@app.command("refuse")
def refuse(
    request_id: Annotated[int, id_argument("The request id.")],
    approver: Annotated[str, typer.Option("--as", help="Who answers (not the requester).")],
    note: Annotated[str, typer.Option(help="Why.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Deny a pending request (`deny` denies a permission; this answers a request)."""
    out = _answer(request_id, approver, note, approve=False)
    _print_request(out, as_json, f"Denied request #{out.id} of {out.requester}.")


@app.command("revoke")
def revoke(
    request_id: Annotated[int, id_argument("The grant's request id.")],
    as_json: JsonOption = False,
) -> None:
    """End an approved grant now; it stays in the history."""
    with audited_change("access.revoke", f"access-request:{request_id}") as (session, _ctx, detail):
        row = grants.revoke(session=session, request_id=request_id, actor=console.actor())
        detail.update(requester=row.requester)
        out = AccessRequestOut.model_validate(row)
    _print_request(out, as_json, f"Grant #{out.id} of {out.requester} revoked.")


@app.command("requests")
def list_requests(
    state: Annotated[
        str | None, typer.Option(help="pending, approved, denied, lapsed, expired or revoked.")
    ] = None,
    requester: Annotated[str | None, typer.Option(help="Only this requester's.")] = None,
    incident: Annotated[int | None, typer.Option(min=1, help="Only those tied to this incident.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Requests and grants, newest first; expired ones stay here."""
    with installation() as ctx, ctx.db.session() as session:
        grants.expire_due(session=session)
        rows = [
            AccessRequestOut.model_validate(r)
            for r in grants.list_requests(
                session=session, requester=requester, state=state, incident_id=incident
            )
        ]
    if as_json:
        console.print_json([r.model_dump(mode="json") for r in rows])
        return
    if not rows:
        console.out.print("no access requests")
        return
    table_rows = [
        [
            r.id, r.requester, r.role, "*" if r.scope == "*" else r.scope.removeprefix("model:"), r.state,
            str(dt.timedelta(seconds=r.duration_seconds)),
            f"{r.expires_at:%m-%d %H:%M}" if r.expires_at else "-", r.decided_by or "-", r.reason,
        ]
        for r in rows
    ]  # fmt: skip
    columns = ["id", "requester", "role", "model", "state", "for", "expires", "approver", "reason"]
    drop = ["reason", "for", "expires", "approver"]
    console.out.print(console.table("access requests", columns, table_rows, drop_first=drop))


@app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="The user whose dashboard password to set.")],
) -> None:
    """Set a user's dashboard password (at least 12 characters), stored only as its argon2id hash.

    The password is read from MLONCALL_PASSWORD, or asked twice on the terminal; never from an argument, so
    it stays out of shell history. There is no default password.
    """
    password = os.environ.get("MLONCALL_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            raise InvalidInput("no terminal to ask the password on: set MLONCALL_PASSWORD")
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    with audited_change("access.passwd", f"principal:{name}") as (session, _ctx, _detail):
        service.set_password(session=session, name=name, password=password)
    console.out.print(f"Password of {name} set.")
