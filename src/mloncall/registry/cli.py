"""`mloncall models ...`: what is live, is it intact, what did it train on, and moving aliases."""

from __future__ import annotations

import typer

from mloncall.cli.support import audited_change, confirm, id_argument, installation
from mloncall.core import console
from mloncall.core.errors import IntegrityError
from mloncall.core.names import ModelRef
from mloncall.registry import schemas
from mloncall.registry import service as registry
from mloncall.registry.render import print_version, print_versions, version_json

app = typer.Typer(help="The model registry: versions, aliases, integrity.", no_args_is_help=True)
alias_app = typer.Typer(
    help="Point an alias (production, canary, previous, any name) at a version.", no_args_is_help=True
)
app.add_typer(alias_app, name="alias")

JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")


@app.command("list")
def list_models(json_out: bool = JSON) -> None:
    """Every model with its newest version and its aliases."""
    with installation() as ctx, ctx.db.session() as session:
        models = registry.list_models(session=session)
        if json_out:
            console.print_json([schemas.ModelSummary.from_model(m).model_dump(mode="json") for m in models])
            return
        rows = []
        for m in models:
            latest = m.versions[-1] if m.versions else None
            aliases = "\n".join(  # one alias a line: a narrow terminal never cuts one in two
                f"{a.name}→v{a.model_version.version}" for a in sorted(m.aliases, key=lambda a: a.name)
            )
            acc = latest.metrics.get("accuracy") if latest else None
            rows.append(
                [
                    m.name,
                    len(m.versions),
                    f"v{latest.version}" if latest else "-",
                    f"{acc:.4f}" if isinstance(acc, float) else "-",
                    aliases or "-",
                    f"{m.created_at:%Y-%m-%d %H:%M}",
                ]
            )
        if not rows:
            console.out.print("no models yet: train one with `mloncall train NAME`")
            return
        console.out.print(
            console.table(
                "models",
                ["model", "versions", "latest", "accuracy", "aliases", "created"],
                rows,
                drop_first=("created", "versions"),
            )
        )


@app.command()
def show(
    ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS."),
    json_out: bool = JSON,
) -> None:
    """A model's versions (NAME), or everything about one version (NAME:VERSION, NAME@ALIAS)."""
    with installation() as ctx:
        parsed = ModelRef.parse(ref)
        with ctx.db.session() as session:
            if parsed.version is None and parsed.alias is None:
                model = registry.get_model_or_raise(session=session, name=parsed.name)
                if json_out:
                    console.print_json(
                        {
                            **schemas.ModelSummary.from_model(model).model_dump(mode="json"),
                            "versions": [
                                version_json(session=session, store=ctx.store, model_version=v)
                                for v in model.versions
                            ],
                        }
                    )
                    return
                print_versions(session, model.versions, title=f"{model.name}: versions")
                return
            mv = registry.resolve(session=session, ref=parsed)
            print_version(session=session, store=ctx.store, model_version=mv, json_out=json_out)


@app.command()
def verify(
    ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS."),
    json_out: bool = JSON,
) -> None:
    """Recompute every file's sha256 and name each file that is missing or altered (exit 5 if any)."""
    with installation() as ctx, ctx.db.session() as session:
        mv = registry.resolve(session=session, ref=ref)
        report = registry.verify(store=ctx.store, model_version=mv)
    if json_out:
        console.print_json(schemas.VerifyReportOut.model_validate(report).model_dump(mode="json"))
    else:
        rows = [
            [f.name, f.status, f.expected[:16] + "…", (f.actual or "-")[:16], f.size] for f in report.files
        ]
        console.out.print(
            console.table(
                f"verify {report.ref}", ["file", "status", "recorded sha256", "actual", "bytes"], rows
            )
        )
        mb = report.total_bytes / 1e6
        console.out.print(
            f"{console.outcome_text(report.check.outcome)}: {report.check.reason} "
            f"({mb:.2f} MB in {report.seconds * 1000:.1f} ms)"
        )
    if not report.ok:
        raise IntegrityError(f"{report.ref}: {report.check.reason}")


@alias_app.command("set")
def alias_set(
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Argument(..., help="Alias, e.g. production."),
    version: int = id_argument("Version number.", metavar="VERSION"),
    reason: str = typer.Option("", help="Why: kept in the alias history."),
    json_out: bool = JSON,
) -> None:
    """Point ALIAS at VERSION (the move is recorded with who and why)."""
    with audited_change("models.alias.set", f"{name}@{alias}") as (session, _ctx, detail):
        event = registry.set_alias(
            session=session, name=name, alias=alias, version=version, actor=console.actor(), reason=reason
        )
        detail.update({"from": event.from_version, "to": event.to_version, "reason": reason})
        moved = {
            "model": name,
            "alias": alias,
            "from_version": event.from_version,
            "to_version": event.to_version,
        }
    if json_out:
        console.print_json(moved)
    else:
        was = f"v{moved['from_version']}" if moved["from_version"] else "nothing"
        console.out.print(f"{name}@{alias} → v{version} (was {was})")


@alias_app.command("rm")
def alias_rm(
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Argument(..., help="Alias to remove."),
    reason: str = typer.Option("", help="Why: kept in the alias history."),
) -> None:
    """Remove an alias (the move is recorded)."""
    with audited_change("models.alias.rm", f"{name}@{alias}") as (session, _ctx, detail):
        event = registry.remove_alias(
            session=session, name=name, alias=alias, actor=console.actor(), reason=reason
        )
        detail.update({"from": event.from_version, "reason": reason})
    console.out.print(f"{name}@{alias} removed (was v{event.from_version})")


@alias_app.command("history")
def alias_history(
    name: str = typer.Argument(..., help="Model name."),
    alias: str | None = typer.Argument(None, help="Only this alias."),
    json_out: bool = JSON,
) -> None:
    """Every alias move of a model: when, who, from, to, why."""
    with installation() as ctx, ctx.db.session() as session:
        events = registry.alias_history(session=session, name=name, alias=alias)
        data = [schemas.AliasEventOut.of(e, model_name=name).model_dump(mode="json") for e in events]
    if json_out:
        console.print_json(data)
        return
    rows = [
        [d["at"][:19], d["alias"], d["from_version"] or "-", d["to_version"] or "-", d["actor"], d["reason"]]
        for d in data
    ]
    console.out.print(
        console.table(f"{name}: alias history", ["at", "alias", "from", "to", "by", "reason"], rows)
    )


@app.command()
def delete(
    ref: str = typer.Argument(..., help="NAME:VERSION to delete."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Delete a version and its files (refused while an alias points at it)."""
    parsed = ModelRef.parse(ref)
    if parsed.version is None:
        raise typer.BadParameter("give an explicit version: NAME:VERSION", param_hint="REF")
    confirm(f"delete {parsed} and its files?", yes=yes)
    with audited_change("models.delete", str(parsed)) as (session, ctx, _detail):
        registry.delete_version(session=session, store=ctx.store, name=parsed.name, version=parsed.version)
    console.out.print(f"deleted {parsed}")
