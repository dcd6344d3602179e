"""What every command needs to act on the installation: open it, and do one audited unit of work.

Domain CLIs import this module and `mloncall.core.console`, never each other: a table two commands print
lives in the domain's `render.py`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from sqlalchemy.orm import Session

from mloncall.access import audit
from mloncall.core import console
from mloncall.core.errors import InvalidInput, MloncallError, PermissionDenied, Unauthenticated
from mloncall.core.names import MAX_ID
from mloncall.stores.context import Context

#: What a send of queued messages returns for each message.
Sent = TypeVar("Sent")
#: `--json`: the command prints its result as JSON instead of text or a table.
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@contextmanager
def installation(*, create: bool = False) -> Iterator[Context]:
    """The installation named by the settings, its schema brought up to date; closed afterwards.

    Reading and changing commands need an existing one (`mloncall init`), so a typo in the home or the
    database URL is an error rather than a new empty store. The commands that make the first things a store
    holds (`train`, `tokens create`) pass `create=True` and set it up as `init` does.
    """
    ctx = Context.from_settings()
    try:
        if create:
            ctx.init()
        else:
            ctx.open()
        # One request id for everything the command records (its changes, the runs it drives).
        with audit.bind_request_id(audit.current_request_id()):
            yield ctx
    finally:
        ctx.close()


def open_installation() -> Context:
    """The installation for a command that keeps it open until the process ends (long-running commands)."""
    ctx = Context.from_settings()
    try:
        ctx.open()
    except BaseException:
        ctx.close()
        raise
    return ctx


def id_argument(help: str, *, metavar: str = "ID") -> Any:
    """A positional id or version: an integer from 1 to `MAX_ID`, anything else a usage error (exit 2)."""
    return typer.Argument(min=1, max=MAX_ID, metavar=metavar, help=help, show_default=False)


def limit_option(help: str) -> Any:
    """`--limit`: at least 1 and no more than an id can be (a larger one is a usage error, exit 2)."""
    return typer.Option(min=1, max=MAX_ID, help=help)


def print_json_if_asked(result: BaseModel | Sequence[BaseModel], as_json: bool) -> bool:
    """Print the result as JSON if `--json` asked for it (a list as an array of its items); whether it did.

    What a command prints otherwise (a line, a table, a page of text) and how it prints it stay its own."""
    if as_json:
        console.print_json(
            [r.model_dump(mode="json") for r in result]
            if isinstance(result, Sequence)
            else result.model_dump(mode="json")
        )
    return as_json


def confirm(question: str, *, yes: bool) -> None:
    """Ask before a destructive change; `--yes` skips the question. Without a terminal to ask on, refuse
    (InvalidInput, exit 2) rather than read an answer from whatever stdin holds."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(f"{question} needs a confirmation and there is no terminal to ask on: pass --yes")
    typer.confirm(question, abort=True)


@contextmanager
def audited_unit_of_work(
    ctx: Context, *, action: str, target: str
) -> Iterator[tuple[Session, dict[str, Any]]]:
    """A unit of work audited with its success; a failure is audited in its own session, then raised.

    Both records carry the command's request id (a new one if none is bound)."""
    detail: dict[str, Any] = {}
    request_id = audit.current_request_id() or audit.new_request_id()
    try:
        with ctx.db.session() as session:
            yield session, detail
            audit.record(
                session=session,
                actor=console.actor(),
                action=action,
                target=target,
                outcome="success",
                detail=detail,
                request_id=request_id,
            )
    except MloncallError as exc:
        outcome = {PermissionDenied.code: "denied", Unauthenticated.code: "unauthenticated"}.get(
            exc.code, f"error:{exc.code}"
        )
        try:
            with ctx.db.session() as session:
                audit.record(
                    session=session,
                    actor=console.actor(),
                    action=action,
                    target=target,
                    outcome=outcome,
                    reason=exc.message,
                    detail={**detail, "error": exc.message[:500]},
                    request_id=request_id,
                )
        except MloncallError:
            pass  # the database itself failed: the original error says more than this one would
        raise


@contextmanager
def audited_change(
    action: str, target: str, *, create: bool = False, then: Callable[[Context], None] | None = None
) -> Iterator[tuple[Session, Context, dict[str, Any]]]:
    """One audited change to the installation (set up first with `create`, as `installation` does); `then`
    runs after it commits (e.g. to send what it queued)."""
    with installation(create=create) as ctx:
        with audited_unit_of_work(ctx, action=action, target=target) as (session, detail):
            yield session, ctx, detail
        if then is not None:
            then(ctx)


def report_sending(
    send: Callable[[], Iterable[Sent]], *, what: str, failure: Callable[[Sent], str | None]
) -> None:
    """Send what a change queued: a misconfigured channel is reported, not fatal to the change made, and so is
    each message `failure` has a line for."""
    try:
        results = send()
    except InvalidInput as exc:
        console.err.print(f"[yellow]{what} not sent:[/] {exc.message}")
        return
    for r in results:
        line = failure(r)
        if line is not None:
            console.err.print(f"[yellow]{line}[/]")
