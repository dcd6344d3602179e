"""`mloncall quarantine list|show|release|drop|files`: the rows validate stages set aside and the source files
moved aside as corrupted, and what to do with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from mloncall.cli.support import (
    JsonOption,
    audited_change,
    confirm,
    id_argument,
    installation,
    limit_option,
)
from mloncall.core import console
from mloncall.core.errors import InvalidInput

app = typer.Typer(
    help="Rows set aside by pipelines' checks: list them, see why they failed, release them into a dataset "
    "once they pass again, or drop them.",
    no_args_is_help=True,
)

BatchId = Annotated[int, id_argument("The quarantine batch id (from `mloncall quarantine list`).")]


@app.command("list")
def list_batches(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's batches.")] = None,
    state: Annotated[str | None, typer.Option(help="Only batches held, released or dropped.")] = None,
    limit: Annotated[int, limit_option("At most this many batches.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Quarantine batches, newest first: how many rows each holds and which checks they failed."""
    from mloncall.pipelines import quarantine

    with installation() as ctx, ctx.db.session() as session:
        rows = quarantine.list_batches(session=session, pipeline=pipeline, state=state, limit=limit)
        data = [quarantine.QuarantineBatch.of(r).to_dict() for r in rows]
    if as_json:
        console.print_json(data)
        return
    if not data:
        console.out.print("no quarantined rows")
        return
    table = [
        [
            d["id"],
            d["pipeline"],
            d["state"],
            d["rows"],
            f"{d['share']:.1%}",
            _top(d["counts"]),
            d["source_file"],
        ]
        for d in data
    ]
    columns = ["id", "pipeline", "state", "rows", "share", "failed checks", "source file"]
    console.out.print(
        console.table("quarantine", columns, table, drop_first=("source file", "failed checks"))
    )


@app.command()
def files(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's source files.")] = None,
    limit: Annotated[int, limit_option("At most this many files.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Source files moved aside as corrupted, newest first: where each was, and why it could not be read."""
    from mloncall.pipelines import quarantine

    with installation() as ctx, ctx.db.session() as session:
        data = quarantine.list_files(session=session, source=pipeline, limit=limit)
    if as_json:
        console.print_json(data)
        return
    if not data:
        console.out.print("no quarantined source files")
        return
    rows = [[d["id"], d["source"], d["run_id"] or "-", d["location"], d["reason"]] for d in data]
    console.out.print(
        console.table("quarantined files", ["id", "pipeline", "run", "file", "reason"], rows,
                      drop_first=("run",))
    )  # fmt: skip


@app.command()
def show(
    batch_id: BatchId,
    rows: Annotated[int, typer.Option(min=0, max=10_000, help="Show this many failing cells.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """One batch: where its rows came from, each check's count, and the first failing cells with values."""
    from mloncall.pipelines import quarantine

    with installation() as ctx:
        with ctx.db.session() as session:
            row = quarantine.get_batch(session=session, batch_id=batch_id)
            batch = quarantine.QuarantineBatch.of(row)
            events: list[dict[str, Any]] = [
                {
                    "at": e.at.isoformat(),
                    "actor": e.actor,
                    "from": e.from_state,
                    "to": e.to_state,
                    "reason": e.reason,
                }
                for e in row.events
            ]
            session.expunge(row)
        cells = quarantine.read_failures(ctx, row) if batch.state == "held" else None
    data: dict[str, Any] = {**batch.to_dict(), "events": events}
    if cells is not None:
        data["failures"] = json.loads(cells.head(rows).to_json(orient="records"))
    if as_json:
        console.print_json(data)
        return
    console.out.print(
        f"[bold]quarantine batch {batch.id}[/]  {batch.state}  {batch.rows} of {batch.source_rows} rows "
        f"({batch.share:.1%})  pipeline {batch.pipeline}  run {batch.run_id}\n"
        f"source {batch.source_file}   dataset {batch.dataset or '-'}   released {batch.released_rows}"
        f"{f' into {batch.released_to}' if batch.released_to else ''}"
    )
    console.out.print(console.table("checks", ["check", "cells"], sorted(batch.counts.items())))
    if data.get("failures"):
        cells_rows = [[f["row"], f["column"], f["check"], f["value"]] for f in data["failures"]]
        console.out.print(console.table("failing cells", ["row", "column", "check", "value"], cells_rows))
    console.out.print(console.table("history", ["at", "actor", "to", "reason"], [
        [e["at"][:19], e["actor"], e["to"], e["reason"]] for e in events
    ]))  # fmt: skip


@app.command()
def release(
    batch_id: BatchId,
    into: Annotated[
        str | None, typer.Option(help="The dataset whose next version gets the rows (default: the batch's).")
    ] = None,
    checks: Annotated[
        Path | None,
        typer.Option(
            help="A YAML or JSON file of the checks to re-validate against (default: those they failed)."
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-validate the rows, append those that pass to a new dataset version, keep the rest quarantined.

    The new version is the dataset's latest rows followed by the released ones (its parent is that latest
    version); it is content-hashed, so releasing the same rows again makes no second version."""
    from mloncall.pipelines import quarantine

    schema = _load_checks(checks) if checks is not None else None
    confirm(f"release quarantine batch {batch_id}?", yes=yes)
    with audited_change("quarantine.release", f"quarantine:{batch_id}") as (_session, ctx, detail):
        done = quarantine.release(ctx, batch_id=batch_id, into=into, schema=schema, actor=console.actor())
        detail.update(released=done.released, refused=done.refused, dataset_version=done.dataset_version)
    if as_json:
        console.print_json(done.to_dict())
        return
    console.out.print(
        f"released {done.released} rows of batch {batch_id} into {done.dataset_version}; "
        f"{done.refused} still fail and stay quarantined"
        + (f" ({_top(done.refused_counts)})" if done.refused else "")
    )


@app.command()
def drop(
    batch_id: BatchId,
    reason: Annotated[
        str, typer.Option(help="Why the rows are discarded (kept in the batch's history).")
    ] = "",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Discard a batch's rows for good: the batch says dropped and why, its files are removed."""
    from mloncall.pipelines import quarantine

    confirm(f"drop the rows of quarantine batch {batch_id}?", yes=yes)
    with audited_change("quarantine.drop", f"quarantine:{batch_id}") as (_session, ctx, detail):
        batch = quarantine.drop(ctx, batch_id=batch_id, reason=reason, actor=console.actor())
        detail.update(rows=batch.rows, reason=reason)
    if as_json:
        console.print_json(batch.to_dict())
        return
    console.out.print(f"dropped quarantine batch {batch_id} ({batch.rows} rows)")


def _top(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:3])


def _load_checks(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"checks file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        body = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"checks file {path} is not YAML or JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput(f"checks file {path} must hold a mapping (features, target, checks)")
    return body
