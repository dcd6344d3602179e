"""A run as the record a post-mortem quotes: JSON for machines, Markdown for people."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from mloncall.runbooks import service
from mloncall.runbooks.catalog import get_runbook
from mloncall.runbooks.models import RunbookRun, RunbookStep
from mloncall.runbooks.spec import Runbook

FORMATS = ("markdown", "json")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def step_dict(step: RunbookStep) -> dict[str, Any]:
    return {
        "position": step.position,
        "name": step.name,
        "title": step.title,
        "kind": step.kind,
        "state": step.state,
        "reason": step.reason,
        "actor": step.actor,
        "started_at": _iso(step.started_at),
        "finished_at": _iso(step.finished_at),
        "attempts": step.attempts,
        "error": step.error,
        "confirmation": step.confirmation,
        "evidence": step.evidence,
        "attachments": step.attachments,
    }


def run_dict(session: Session, run: RunbookRun, *, events: bool = True) -> dict[str, Any]:
    """Everything recorded about a run: parameters, steps with evidence, timeline, sub-runs, acceptance."""
    out: dict[str, Any] = {
        "id": run.id,
        "runbook": run.runbook,
        "target": run.target,
        "params": run.params,
        "state": run.state,
        "mode": run.mode,
        "outcome": run.outcome,
        "reason": run.reason,
        "started_by": run.started_by,
        "alert_id": run.alert_id,
        "incident_id": run.incident_id,
        "parent_id": run.parent_id,
        "parent_step": run.parent_step,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "finished_at": _iso(run.finished_at),
        "steps": [step_dict(s) for s in run.steps],
        "acceptance": run.acceptance,
        "subruns": [c.id for c in service.children(session=session, run_id=run.id)],
    }
    if events:
        out["events"] = [
            {
                "at": _iso(e.at),
                "step": e.step,
                "from": e.from_state,
                "to": e.to_state,
                "actor": e.actor,
                "reason": e.reason,
            }
            for e in run.events
        ]
    return out


def export(session: Session, run: RunbookRun, fmt: str) -> str:
    """The run, its sub-runs included, as JSON or Markdown."""
    record = run_dict(session, run)
    record["subrun_records"] = [
        run_dict(session, service.get_run_or_raise(session=session, run_id=c)) for c in record["subruns"]
    ]
    if fmt == "json":
        return json.dumps(record, indent=2, default=str) + "\n"
    return markdown(record)


def _evidence_lines(evidence: dict[str, Any]) -> list[str]:
    shown = {
        k: v for k, v in evidence.items() if k not in ("traceback", "outcome") and v not in (None, {}, [])
    }
    if not shown:
        return []
    text = json.dumps(shown, indent=2, default=str)
    if len(text) > 1500:
        text = text[:1500] + "\n… (the full evidence is in `mloncall runbook export RUN --format json`)"
    return ["", "<details><summary>evidence</summary>", "", "```json", text, "```", "", "</details>"]


def _step_section(step: dict[str, Any]) -> list[str]:
    when = f"{step['started_at'] or '-'} → {step['finished_at'] or '-'}"
    lines = [
        f"### {step['position']}. {step['title']} — {step['state']}",
        "",
        f"*{step['kind']}*, by {step['actor'] or '-'}, {when}"
        + (f", {step['attempts']} attempts" if step["attempts"] > 1 else ""),
        "",
        step["reason"] or "(no result)",
    ]
    if step["confirmation"]:
        c = step["confirmation"]
        lines += [
            "",
            f"Confirmed by {c.get('by')} at {c.get('at')}: “{c.get('question')}”"
            + (f" — note: {c['note']}" if c.get("note") else ""),
        ]
    if step["error"]:
        lines += ["", f"**Error:** `{step['error']}`"]
    for a in step["attachments"] or []:
        lines += ["", f"Attachment: [{a['name']}]({a['url']}) (sha256 `{a['sha256']}`, {a['size']} bytes)"]
    return lines + _evidence_lines(step["evidence"] or {})


def markdown(record: dict[str, Any], level: int = 1) -> str:
    book = get_runbook(record["runbook"])
    head = "#" * level
    verdict = record["outcome"] or record["state"]
    lines = [
        f"{head} Runbook run #{record['id']}: {book.title} on {record['target']} — {verdict}",
        "",
        f"- Runbook: `{book.name}` — {book.objective}",
        f"- Scenario: {book.scenario}",
        f"- Started by {record['started_by']} at {record['created_at']}; "
        + (f"finished at {record['finished_at']}" if record["finished_at"] else f"now {record['state']}"),
        "- Parameters: " + ", ".join(f"`{k}={v}`" for k, v in record["params"].items()),
        f"- Result: {record['reason']}",
    ]
    if record["alert_id"]:
        lines.append(f"- Alert: #{record['alert_id']}")
    if record.get("incident_id"):
        lines.append(f"- Incident: #{record['incident_id']} (its timeline holds this run's steps)")
    if record["parent_id"]:
        lines.append(f"- Part of run #{record['parent_id']} (step {record['parent_step']})")
    lines.append(f"- Contacts: {'; '.join(book.contacts)}")
    lines += ["", f"{head}# Acceptance criteria", ""]
    acceptance = record["acceptance"] or {}
    for c in acceptance.get("checks", []):
        lines.append(
            f"- [{'x' if c['outcome'] == 'successful' else ' '}] **{c['name']}** — {c['outcome']}: {c['reason']}"
        )
    if not acceptance:
        lines.append("- not judged yet (the run has not finished)")
    lines += ["", f"{head}# Steps", ""]
    for step in record["steps"]:
        lines += [*_step_section(step), ""]
    lines += [
        f"{head}# Timeline",
        "",
        "| at | step | from | to | by | why |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for e in record.get("events", []):
        why = (e["reason"] or "").replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {e['at']} | {e['step'] or '(run)'} | {e['from'] or '-'} | {e['to']} | {e['actor']} | {why} |"
        )
    for sub in record.get("subrun_records", []):
        lines += ["", markdown(sub, level=level + 1)]
    return "\n".join(lines) + "\n"


def runbook_dict(book: Runbook) -> dict[str, Any]:
    """A runbook's declaration as JSON: scenario, objective, parameters, steps, acceptance, contacts."""
    return {
        "name": book.name,
        "title": book.title,
        "scenario": book.scenario,
        "objective": book.objective,
        "params": [
            {"name": p.name, "type": p.type, "required": p.required, "default": p.default, "help": p.help}
            for p in book.params
        ],
        "steps": [{"name": s.name, "kind": s.kind, "title": s.title} for s in book.steps],
        "acceptance": [c.name for c in book.acceptance],
        "contacts": list(book.contacts),
    }
