"""`mloncall logs compact|stats`: compact the prediction log's closed hours and write their summaries now, and
show what the log holds per model."""

from __future__ import annotations

import typer

from mloncall.cli.support import JsonOption, installation
from mloncall.core import clock, console
from mloncall.monitoring import jobs
from mloncall.stores.predlog import compact as compaction

app = typer.Typer(
    help="The prediction log: compaction, summaries, retention and what it holds.", no_args_is_help=True
)


@app.command("compact")
def compact_command(json_out: JsonOption = False) -> None:
    """Summarise closed minutes and hours, compact closed hours, expire hours past `[logs] retention`."""
    with installation() as ctx:
        report = jobs.run_pass(ctx, now=clock.now())
    data = {"summaries_written": report.summaries_written, "models": report.models, **report.compaction}
    if json_out:
        console.print_json(data)
        return
    console.out.print(
        f"{data['hours_compacted']} hours compacted ({data['files_merged']} files, {data['rows']} rows), "
        f"{data['files_deleted']} files deleted, {len(data['expired_hours'])} hours expired, "
        f"{data['summaries_written']} summaries written"
    )
    for s in data["skipped_files"]:
        console.out.print(f"skipped unreadable {s['folder']}/{s['file']}: {s['reason']}")


@app.command("stats")
def stats_command(json_out: JsonOption = False) -> None:
    """Files, rows, bytes and the oldest and newest hour of each model's logs."""
    with installation() as ctx:
        stats = compaction.log_stats(ctx.store)
    if json_out:
        console.print_json([s.to_dict() for s in stats])
        return
    rows = [
        [s.model, s.kind, s.files, s.raw_files, s.rows, _size(s.bytes), _hour(s.oldest_hour), _hour(s.newest_hour),
         f"{s.compacted_hours}/{s.hours}", s.skipped_files]
        for s in stats
    ]  # fmt: skip
    columns = [
        "model",
        "kind",
        "files",
        "raw",
        "rows",
        "bytes",
        "oldest hour",
        "newest hour",
        "compacted",
        "bad",
    ]
    console.out.print(console.table("prediction logs", columns, rows, drop_first=["raw", "bad", "compacted"]))


def _hour(iso: str | None) -> str:
    """`2026-03-01T09:00Z` as `03-01 09h` (the year is in --json)."""
    return "" if iso is None else f"{iso[5:10]} {iso[11:13]}h"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
