"""`mloncall tokens create|list|rotate|revoke`.

They work on the installation's database directly, so whoever runs mloncall on its machine can always issue
an admin token. Every change is audited with the actor `cli:<user>`. Errors are raised as `MloncallError`
for the root command to turn into a one-line message and an exit code.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from mloncall.access import service
from mloncall.access.schemas import TokenCreated, TokenOut
from mloncall.cli.support import JsonOption, audited_change, id_argument, installation
from mloncall.core import console
from mloncall.core.durations import parse_duration

app = typer.Typer(name="tokens", help="Issue, list and revoke API tokens.", no_args_is_help=True)


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


@app.command("create")
def create(
    principal: Annotated[str, typer.Argument(help="Who the token is for; created if new.")],
    role: Annotated[
        str | None,
        typer.Option(help="Role of a new principal everywhere: viewer (default), engineer, oncall, admin."),
    ] = None,
    permission: Annotated[
        list[str] | None,
        typer.Option(
            "--permission", help="Narrow the token to this permission (repeatable), e.g. registry:read."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Narrow the token to this model.")] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime such as 12h, 7d or 2w; default never.")
    ] = None,
    description: Annotated[str, typer.Option(help="What the token is for.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Issue a token; its secret is printed once and never stored."""
    expiry = parse_duration(expires_in, what="token lifetime") if expires_in is not None else None
    with audited_change("tokens.create", f"principal:{principal}", create=True) as (session, _ctx, detail):
        detail.update(role=role, expires_in=expires_in)
        found, created = service.ensure_principal(session=session, name=principal, role=role)
        token, secret = service.create_token(
            session=session,
            principal_name=found.name,
            description=description,
            expires_in=expiry,
            permissions=permission or None,
            model=model,
        )
        detail.update(token_id=token.id, prefix=token.prefix, principal_created=created)
        out = TokenCreated(token=TokenOut.model_validate(token), secret=secret, principal_created=created)
    if as_json:
        console.print_json(out.model_dump(mode="json"))
        return
    if created:
        console.out.print(f"Created principal [bold]{principal}[/] with role [bold]{role or 'viewer'}[/].")
    expires = f"expires {_when(out.token.expires_at)} UTC" if out.token.expires_at else "never expires"
    console.out.print(f"Token {out.token.id} for [bold]{principal}[/] ({_scope(out.token)}, {expires}):")
    typer.echo(secret)
    console.out.print("[yellow]Store it now: it is not shown again.[/]")


def _scope(token: TokenOut) -> str:
    parts = [", ".join(token.scope_permissions)] if token.scope_permissions else ["all its roles allow"]
    if token.scope_model:
        parts.append(f"model {token.scope_model}")
    return " on ".join(parts)


@app.command("rotate")
def rotate(
    token_id: Annotated[int, id_argument("The token id from `mloncall tokens list`.")],
    expires_in: Annotated[
        str | None,
        typer.Option("--expires-in", help="Lifetime of the new token; default: what the old one had left."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Replace a token with a new secret of the same owner and scope; the old one is revoked."""
    expiry = parse_duration(expires_in, what="token lifetime") if expires_in is not None else None
    with audited_change("tokens.rotate", f"token:{token_id}") as (session, _ctx, detail):
        new, secret, old = service.rotate_token(session=session, token_id=token_id, expires_in=expiry)
        detail.update(new_token_id=new.id, prefix=new.prefix, old_prefix=old.prefix)
        out = TokenCreated(token=TokenOut.model_validate(new), secret=secret, principal_created=False)
    if as_json:
        console.print_json(out.model_dump(mode="json"))
        return
    console.out.print(
        f"Token {token_id} revoked; its replacement, token {out.token.id} ({_scope(out.token)}):"
    )
    typer.echo(secret)
    console.out.print("[yellow]Store it now: it is not shown again.[/]")


@app.command("list")
def list_(
    principal: Annotated[str | None, typer.Option(help="Only this principal's tokens.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every token, newest first, never its secret."""
    with installation() as ctx, ctx.db.session() as session:
        tokens = [
            TokenOut.model_validate(t) for t in service.list_tokens(session=session, principal_name=principal)
        ]
    if as_json:
        console.print_json([t.model_dump(mode="json") for t in tokens])
        return
    if not tokens:
        console.out.print("no tokens yet: create one with `mloncall tokens create NAME`")
        return
    status = {"active": "[green]active[/]", "revoked": "[red]revoked[/]", "expired": "[yellow]expired[/]"}
    rows = [
        [
            t.id,
            t.principal,
            _scope(t),
            t.prefix + "…",
            status[t.status],
            _when(t.created_at),
            _when(t.expires_at),
            _when(t.last_used_at),
            t.description,
        ]
        for t in tokens
    ]
    columns = [
        "id",
        "principal",
        "scope",
        "prefix",
        "status",
        "created",
        "expires",
        "last used",
        "description",
    ]
    drop = ["description", "created", "last used", "scope", "expires"]
    console.out.print(console.table("tokens", columns, rows, drop_first=drop))


@app.command("revoke")
def revoke(
    token_id: Annotated[int, id_argument("The token id from `mloncall tokens list`.")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a token: requests with it are refused from now on."""
    with audited_change("tokens.revoke", f"token:{token_id}") as (session, _ctx, detail):
        token = service.revoke_token(session=session, token_id=token_id)
        detail.update(principal=token.principal.name, prefix=token.prefix)
        out = TokenOut.model_validate(token)
    if as_json:
        console.print_json(out.model_dump(mode="json"))
        return
    console.out.print(
        f"Token {out.id} ({out.prefix}…) of [bold]{out.principal}[/] revoked at {_when(out.revoked_at)} UTC."
    )
