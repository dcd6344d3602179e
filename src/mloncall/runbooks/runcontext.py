"""What a step works with while a run executes (the installation, the run's parameters and record, who
answers its questions), and the run's record: each transition its own committed unit of work, so a run
killed at any moment leaves a record that says exactly where it was."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mloncall.core.outcome import Check, Outcome
from mloncall.runbooks import service
from mloncall.runbooks.catalog import get_runbook
from mloncall.runbooks.models import RunbookRun, RunbookStep
from mloncall.runbooks.spec import Runbook
from mloncall.runbooks.states import RunState, StepState
from mloncall.stores.context import Context


class Confirmer(Protocol):
    """Who answers a run's questions: a terminal prompt, `--yes`, or (later) an approval."""

    actor: str

    def ask(self, question: str) -> bool | None:
        """True to go ahead, False to refuse, None when nobody can be asked now."""

    def note(self, prompt: str) -> str:
        """A person's note for a manual step."""


@dataclass
class Unattended:
    """No one at a terminal: `yes` answers every question, otherwise the run waits."""

    actor: str
    yes: bool = False

    def ask(self, question: str) -> bool | None:
        return True if self.yes else None

    def note(self, prompt: str) -> str:
        return "confirmed with --yes" if self.yes else ""


class SubRunPaused(Exception):
    """A sub-run stopped or waits: its parent step stays running and the parent run pauses with it."""

    def __init__(self, run_id: int, state: str, reason: str) -> None:
        super().__init__(reason)
        self.run_id, self.state, self.reason = run_id, state, reason


class AwaitingOthers(SubRunPaused):
    """A step waits for something a person outside the run does (another principal approves a request): the
    step stays running, the run waits, and `runbook resume` runs the step again."""

    def __init__(self, run_id: int, reason: str) -> None:
        super().__init__(run_id, "waiting", reason)


@dataclass
class RunContext:
    """What a step function works with: the installation, the run's parameters, and its record."""

    ctx: Context
    run_id: int
    runbook: Runbook
    params: dict[str, Any]
    actor: str
    confirmer: Confirmer
    owner: str
    alert_id: int | None = None
    step_name: str = ""
    memo: dict[str, Any] = field(default_factory=dict)
    on_change: Callable[[int], None] | None = None

    def remember(self, key: str, make: Callable[[], Any]) -> Any:
        """A value computed once per execution (evidence several steps read)."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def evidence_of(self, step: str) -> dict[str, Any]:
        """What an earlier step of this run recorded."""
        with self.ctx.db.session() as s:
            run = service.get_run_or_raise(session=s, run_id=self.run_id)
            return dict(service.step_of(run, step).evidence or {})

    def state_of(self, step: str) -> str:
        with self.ctx.db.session() as s:
            run = service.get_run_or_raise(session=s, run_id=self.run_id)
            return service.step_of(run, step).state

    def progress(self, **evidence: Any) -> None:
        """Record evidence of the running step at once (what a resumed step reads to not repeat itself)."""
        with self.ctx.db.session() as s:
            run = service.get_run_or_raise(session=s, run_id=self.run_id)
            row = service.step_of(run, self.step_name)
            row.evidence = {**(row.evidence or {}), **evidence}

    def attach(self, name: str, data: bytes, media_type: str) -> dict[str, Any]:
        """Keep a large attachment (an HTML report, a plot) in the artifact store with its sha256."""
        key = f"runbooks/runs/{self.run_id}/{self.step_name}/{name}"
        stored = self.ctx.store.put_bytes(key, data)
        entry = {
            "name": name,
            "key": key,
            "url": self.ctx.store.url(key),
            "sha256": stored.sha256,
            "size": stored.size,
            "media_type": media_type,
        }
        with self.ctx.db.session() as s:
            run = service.get_run_or_raise(session=s, run_id=self.run_id)
            row = service.step_of(run, self.step_name)
            row.attachments = [*(a for a in row.attachments or [] if a["name"] != name), entry]
        return entry

    def subrun(self, runbook: str, params: dict[str, Any]) -> Check:
        """Run another runbook as a linked sub-run of this step (resumed, not restarted, on a second call)."""
        with self.ctx.db.session() as s:
            parent = service.get_run_or_raise(session=s, run_id=self.run_id)
            child = service.child_run(session=s, parent_id=self.run_id, step=self.step_name)
            if child is None:
                book = get_runbook(runbook)
                child = service.create_run(
                    session=s,
                    runbook=book,
                    params=book.parse_params(params),
                    actor=self.actor,
                    alert_id=self.alert_id,
                    parent=parent,
                    parent_step=self.step_name,
                )
            child_id, finished = child.id, child.state == RunState.FINISHED
        self.progress(subrun=child_id)
        if not finished:
            from mloncall.runbooks.engine import execute  # the engine drives the sub-run as it does any

            execute(self.ctx, child_id, confirmer=self.confirmer, owner=self.owner, on_change=self.on_change)
        with self.ctx.db.session() as s:
            child = service.get_run_or_raise(session=s, run_id=child_id)
            state, outcome, reason = child.state, child.outcome, child.reason
        if state != RunState.FINISHED:
            raise SubRunPaused(child_id, state, f"sub-run #{child_id} ({runbook}) {state}: {reason}")
        return Check(
            f"{runbook} run #{child_id}",
            Outcome.parse(outcome or "inconclusive"),
            f"{runbook} run #{child_id} finished {outcome}: {reason}",
            {"subrun": child_id, "outcome": outcome},
        )


# --- the record --------------------------------------------------------------------------------------------


def step_row(rc: RunContext, name: str) -> RunbookStep:
    with rc.ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=rc.run_id)
        row = service.step_of(run, name)
        s.expunge(row)
        return row


def run_state(rc: RunContext) -> str:
    with rc.ctx.db.session() as s:
        return service.get_run_or_raise(session=s, run_id=rc.run_id).state


def move_step(rc: RunContext, name: str, to: StepState, reason: str, **fields: Any) -> None:
    with rc.ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=rc.run_id)
        step = service.step_of(run, name)
        if step.state == to == StepState.WAITING:
            return
        service.move_step(session=s, step=step, to_state=to, actor=rc.actor, reason=reason, **fields)
    changed(rc)


def move_run(rc: RunContext, to: RunState, reason: str, only_from: tuple[RunState, ...] = ()) -> None:
    with rc.ctx.db.session() as s:
        run: RunbookRun = service.get_run_or_raise(session=s, run_id=rc.run_id)
        if only_from and run.state not in only_from:
            return
        service.move_run(session=s, run=run, to_state=to, actor=rc.actor, reason=reason)
    changed(rc)


def changed(rc: RunContext) -> None:
    if rc.on_change is not None:
        rc.on_change(rc.run_id)
