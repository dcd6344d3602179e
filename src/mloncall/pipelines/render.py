"""What the pipeline commands print: a run's stages, its failure with the fix, a status with consumers."""

from __future__ import annotations

from mloncall.core import console
from mloncall.pipelines.schemas import PipelineSummary, RunRead, StatusRead

_STYLE = {"succeeded": "green", "reused": "cyan", "failed": "red", "interrupted": "red", "running": "yellow"}


def _state(state: str) -> str:
    style = _STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def print_pipelines(items: list[PipelineSummary]) -> None:
    rows = [
        [p.name, p.dataset, p.source, " > ".join(p.stages),
         f"#{p.latest_run} {_state(p.latest_state or '')}" if p.latest_run else "never run"]
        for p in items
    ]  # fmt: skip
    console.out.print(
        console.table(
            "pipelines",
            ["name", "dataset", "source", "stages", "latest run"],
            rows,
            drop_first=("stages", "source"),
        )
    )


def print_run(run: RunRead) -> None:
    parent = f" (re-run of #{run.parent_id} from {run.from_stage})" if run.parent_id else ""
    console.out.print(
        f"[bold]pipeline run #{run.id}[/] {run.pipeline}: {_state(run.state)}{parent}  "
        f"{run.orchestrator} run {run.orchestrator_run_id or '-'}"
    )
    rows = [
        [s.name, _state(s.state), s.attempts, f"{s.seconds:.2f}" if s.seconds is not None else "-",
         "-" if s.rows_in is None else s.rows_in, "-" if s.rows_out is None else s.rows_out,
         (s.output_hash or "-")[:12], s.failure_class or ""]
        for s in run.stages
    ]  # fmt: skip
    console.out.print(
        console.table(
            None,
            ["stage", "state", "tries", "seconds", "rows in", "rows out", "output", "failure"],
            rows,
            drop_first=("output", "tries"),
        )
    )
    if run.failed_stage:
        console.out.print(
            f"[red]{run.state} at {run.failed_stage}[/] ({run.failure_class or 'interrupted'}): {run.error}",
            soft_wrap=True,
        )
        stage = next((s for s in run.stages if s.name == run.failed_stage), None)
        for row in (stage.details.get("rows") or [])[:5] if stage else []:
            console.out.print(f"  row {row['row']}: {row['reason']}  {row['values']}", soft_wrap=True)
        diff = (stage.details.get("schema_diff") or {}) if stage else {}
        for line in diff.get("messages", []):
            console.out.print(f"  vs last good run #{diff.get('against_run')}: {line}", soft_wrap=True)
        fix = run.fix or f"re-run it: mloncall pipeline rerun {run.pipeline} --from-failed"
        console.out.print(f"[bold]fix to try:[/] {fix}", soft_wrap=True)


def print_status(status: StatusRead) -> None:
    h = status.health
    verdict = "[red]blocked[/]" if h["blocked"] else "[green]healthy[/]"
    newest = f" (newest version {status.newest_version})" if status.newest_version else ""
    console.out.print(f"[bold]{status.pipeline}[/] feeds dataset {status.dataset}{newest}: {verdict}")
    for reason in h["reasons"]:
        console.out.print(f"  - {reason}", soft_wrap=True)
    if status.latest is not None:
        print_run(status.latest)
    rows = [
        [c["model"], c["version"], c["trains_on"], ", ".join(c["aliases"]) or "-",
         "yes" if c["monitored"] else "no", "blocked" if c["model"] in status.blocked_models else "ok"]
        for c in status.consumers
    ]  # fmt: skip
    if rows:
        console.out.print(
            console.table(
                "downstream",
                ["model", "version", "trains on", "alias", "monitors compare", "retraining"],
                rows,
            )
        )
    else:
        console.out.print(f"no model trains on {status.dataset} yet")
