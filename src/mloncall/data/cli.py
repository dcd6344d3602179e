"""`mloncall datasets ...`: the data each model trained on, its schema and reference profile."""

from __future__ import annotations

from typing import Any

import typer

from mloncall.cli.support import installation
from mloncall.core import console
from mloncall.data.schemas import DatasetVersionRead

app = typer.Typer(
    help="Dataset versions: content-hashed snapshots with schema and reference profile.", no_args_is_help=True
)

JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")


@app.command("list")
def list_datasets(json_out: bool = JSON) -> None:
    """Every dataset version."""
    from mloncall.data import service

    with installation() as ctx, ctx.db.session() as session:
        versions = [v for d in service.list_datasets(session=session) for v in d.versions]
        data = [DatasetVersionRead.of(v).model_dump(mode="json", by_alias=True) for v in versions]
    if json_out:
        console.print_json(data)
        return
    if not data:
        console.out.print("no datasets yet: `mloncall train NAME` registers the data it trains on")
        return
    rows = [
        [f"{d['ref']}", d["row_count"], d["content_hash"][:16] + "…", d["source"], d["created_at"][:19]]
        for d in data
    ]
    console.out.print(
        console.table("datasets", ["dataset", "rows", "content hash", "source", "created"], rows)
    )


@app.command()
def show(
    ref: str = typer.Argument(..., help="NAME (latest version) or NAME:VERSION."),
    json_out: bool = JSON,
) -> None:
    """A dataset version: schema, class balance and the per-feature reference profile."""
    from mloncall.data import service

    with installation() as ctx, ctx.db.session() as session:
        dv = service.resolve(session=session, ref=ref)
        data = DatasetVersionRead.of(dv, with_profile=True).model_dump(mode="json", by_alias=True)
    if json_out:
        console.print_json(data)
        return
    console.out.print(
        f"[bold]{data['ref']}[/]  {data['row_count']} rows  hash {data['content_hash']}\n"
        f"source {data['source']}   target {data['target']}   by {data['created_by']} at {data['created_at'][:19]}"
    )
    profile = data["profile"]
    feats = profile.get("features", {})
    rows = []
    for f in data["schema"].get("features", []):
        p = feats.get(f["name"], {})
        rows.append(
            [
                f["name"],
                f["dtype"],
                _num(p.get("mean")),
                _num(p.get("std")),
                _num(p.get("min")),
                _num(p.get("max")),
            ]
        )
    console.out.print(console.table("features", ["feature", "dtype", "mean", "std", "min", "max"], rows))
    balance = profile.get("class_balance", {})
    counts = balance.get("counts", {})
    shares = balance.get("shares", {})
    console.out.print(
        console.table(
            "class balance",
            ["class", "rows", "share"],
            [[c, n, f"{shares.get(c, 0):.3f}"] for c, n in counts.items()],
        )
    )


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, int | float) else "-"
