"""The engine on both metadata backends: bad input, confirmations, raising steps, resume, the lease."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.core.outcome import Check, Outcome
from mloncall.runbooks import catalog, engine, lease, service
from mloncall.runbooks.engine import RunContext, Unattended
from mloncall.runbooks.spec import Criterion, Param, Runbook, Step
from mloncall.runbooks.states import StepKind
from mloncall.stores.context import Context

CALLS: list[str] = []
GATE: dict[str, Any] = {}


def _check(rc: RunContext) -> Check:
    CALLS.append("look")
    return Check("look", Outcome.SUCCESSFUL, f"looked at {rc.params['model']}", {"seen": 1})


def _act(rc: RunContext) -> Check:
    CALLS.append("act")
    rc.progress(did="act")
    if rc.params["hold"]:
        GATE["entered"].set()
        GATE["release"].wait(10)
    if rc.params["explode"]:
        raise RuntimeError("the disk is on fire")
    return Check("act", Outcome.SUCCESSFUL, "acted", {"changed": True})


def _trace(rc: RunContext) -> str | None:
    return "its change" if rc.evidence_of("act").get("did") else None


def _adopt(rc: RunContext) -> Check:
    CALLS.append("adopt")
    return Check("act", Outcome.SUCCESSFUL, "kept the change made before the interruption")


def _after(rc: RunContext) -> Check:
    CALLS.append("after")
    return Check("after", Outcome.SUCCESSFUL, "after")


TEST_BOOK = Runbook(
    name="test-book",
    title="A test runbook",
    scenario="tests",
    objective="exercise the engine",
    params=(
        Param("model", "a model", required=True, positional=True),
        Param("hold", "block inside the action", type="bool", default=False),
        Param("explode", "raise inside the action", type="bool", default=False),
        Param("count", "a number", type="int", default=1),
    ),
    steps=(
        Step("look", "Look", StepKind.CHECK, _check),
        Step(
            "act",
            "Act",
            StepKind.ACTION,
            _act,
            question="Act now?",
            idempotent=False,
            trace=_trace,
            resume=_adopt,
            precondition=lambda rc: Check("pre", Outcome.SUCCESSFUL, "fine", {"state": "before"}),
        ),
        Step("note", "A person confirms", StepKind.MANUAL, lambda rc: Check("note", Outcome.SUCCESSFUL)),
        Step("after", "After", StepKind.CHECK, _after),
    ),
    acceptance=(Criterion("acted", lambda rc: Check("acted", Outcome.SUCCESSFUL, "yes")),),
    contacts=("Primary: the tests",),
    target=lambda p: f"model:{p['model']}",
)


class Answers:
    """Answers questions from a list, as a person at a terminal would."""

    def __init__(self, *answers: bool | None, actor: str = "alice") -> None:
        self.actor, self.answers, self.asked = actor, list(answers), []  # type: list[str]

    def ask(self, question: str) -> bool | None:
        self.asked.append(question)
        return self.answers.pop(0) if self.answers else None

    def note(self, prompt: str) -> str:
        return "checked the dashboard"


@pytest.fixture(autouse=True)
def _book(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    catalog.all_runbooks()
    monkeypatch.setitem(catalog.RUNBOOKS, TEST_BOOK.name, TEST_BOOK)
    CALLS.clear()
    GATE.update(entered=threading.Event(), release=threading.Event())
    yield
    GATE["release"].set()


def _run(ctx: Context, run_id: int) -> dict[str, Any]:
    with ctx.db.session() as s:
        run = service.get_run_or_raise(session=s, run_id=run_id)
        return {
            "state": run.state,
            "outcome": run.outcome,
            "reason": run.reason,
            "steps": {
                st.name: (st.state, st.reason, st.error, st.evidence, st.confirmation) for st in run.steps
            },
        }


def _start(ctx: Context, confirmer: Any, **params: Any) -> int:
    return engine.start(ctx, runbook="test-book", params=params, positional=["iris"], confirmer=confirmer)


def test_bad_input_is_refused_before_anything_runs(any_ctx: Context) -> None:
    yes = Unattended("alice", yes=True)
    with pytest.raises(NotFound, match=r"no runbook 'nope': known runbooks are .*deployment"):
        engine.start(any_ctx, runbook="nope", params={}, confirmer=yes)
    for params, positional, message in [
        ({}, [], "needs model"),
        ({"count": "many"}, ["iris"], "invalid parameter count='many': expected a whole number"),
        ({"hold": "perhaps"}, ["iris"], "use true or false"),
        ({"colour": "red"}, ["iris"], "unknown parameter colour for runbook test-book"),
        ({"model": "x"}, ["iris"], "given twice"),
        ({}, ["iris", "extra"], "takes 1 argument"),
    ]:
        with pytest.raises(InvalidInput, match=re.escape(message)):
            engine.start(any_ctx, runbook="test-book", params=params, positional=positional, confirmer=yes)
    with pytest.raises(InvalidInput, match=r"strategy=.*use one of canary, direct"):
        catalog.get_runbook("deployment").parse_params({"strategy": "yolo"}, ["m:2"])
    deployment = catalog.get_runbook("deployment")
    for text, message in [
        ("latency_slack=5", "unknown threshold 'latency_slack': known are"),
        ("latency_slack_ms", "invalid parameter thresholds 'latency_slack_ms': use NAME=VALUE"),
        ("max_error_rate=-1", "threshold max_error_rate must be a finite number >= 0"),
    ]:
        with pytest.raises(InvalidInput, match=re.escape(message)):
            deployment.parse_params({"thresholds": text}, ["m:2"])
    parsed = deployment.parse_params({"thresholds": "latency_slack_ms=50, max_disagreement=0.2"}, ["m:2"])
    assert parsed["thresholds"] == {"latency_slack_ms": "50", "max_disagreement": "0.2"}
    assert deployment.parse_params({}, ["m:2"])["thresholds"] == {}
    assert CALLS == []


def test_a_run_records_every_step_and_resuming_it_finished_is_refused(any_ctx: Context) -> None:
    rid = _start(any_ctx, Answers(True, True))
    run = _run(any_ctx, rid)
    assert (run["state"], run["outcome"]) == ("finished", "successful")
    act = run["steps"]["act"]
    assert act[0] == "successful" and act[3]["before"]["evidence"] == {"state": "before"}
    assert act[3]["after"] == {"changed": True} and act[4]["by"] == "alice"
    assert run["steps"]["note"][4]["note"] == "checked the dashboard"
    assert CALLS == ["look", "act", "after"]
    with pytest.raises(Conflict, match=r"finished successful .*nothing to resume"):
        engine.resume(any_ctx, rid, confirmer=Answers())
    from mloncall.access import audit

    with any_ctx.db.session() as s:
        audited = [a.outcome for a in audit.list_audit(session=s, action="runbooks.test-book", limit=100)]
    assert audited.count("waiting") == 2 and "finished" in audited


def test_recheck_judges_a_finished_runs_acceptance_again_and_refuses_an_unfinished_one(
    any_ctx: Context,
) -> None:
    stopped = _start(any_ctx, Answers(False))
    with pytest.raises(Conflict, match=r"is stopped: acceptance is judged when it has finished"):
        engine.recheck(any_ctx, stopped, actor="bob")
    rid = _start(any_ctx, Answers(True, True))
    acceptance = engine.recheck(any_ctx, rid, actor="bob")
    assert acceptance["outcome"] == "successful" and [c["name"] for c in acceptance["checks"]] == ["acted"]
    from mloncall.access import audit

    with any_ctx.db.session() as s:
        assert service.get_run_or_raise(session=s, run_id=rid).acceptance == acceptance
        found = audit.list_audit(session=s, action="runbooks.test-book.accept", limit=10)
        assert [(a.actor, a.target, a.outcome) for a in found] == [("bob", f"run:{rid}", "successful")]


def test_a_refused_confirmation_changes_nothing_and_stops_the_run(any_ctx: Context) -> None:
    rid = _start(any_ctx, Answers(False))
    run = _run(any_ctx, rid)
    assert run["state"] == "stopped" and "refused by alice" in run["reason"]
    assert run["steps"]["act"][0] == "failed" and run["steps"]["after"][0] == "pending"
    assert CALLS == ["look"]
    engine.resume(any_ctx, rid, confirmer=Answers(True, True))
    assert _run(any_ctx, rid)["state"] == "finished" and CALLS == ["look", "act", "after"]


def test_with_nobody_to_ask_the_run_waits_and_resume_goes_on(any_ctx: Context) -> None:
    rid = _start(any_ctx, Unattended("cron"))
    run = _run(any_ctx, rid)
    assert run["state"] == "waiting" and run["steps"]["act"][0] == "waiting"
    engine.resume(any_ctx, rid, confirmer=Unattended("alice", yes=True))
    assert _run(any_ctx, rid)["outcome"] == "successful" and CALLS == ["look", "act", "after"]


def test_a_step_that_raises_is_failed_with_its_error_and_nothing_after_it_runs(any_ctx: Context) -> None:
    rid = _start(any_ctx, Unattended("alice", yes=True), explode="true")
    run = _run(any_ctx, rid)
    state, reason, error, evidence, _ = run["steps"]["act"]
    assert (state, error) == ("failed", "RuntimeError: the disk is on fire") and "raised" in reason
    assert "Traceback" in evidence["traceback"] and run["state"] == "stopped"
    assert run["steps"]["after"][0] == "pending" and "after" not in CALLS


def test_an_interrupted_action_is_not_repeated_blindly(any_ctx: Context) -> None:
    """The action left a trace when the process died in it: a person is asked, and it is not run again."""
    rid = _start(any_ctx, Unattended("cron"))  # waits at the action
    with any_ctx.db.session() as s:  # what kill -9 in the middle of the action leaves behind
        run = service.get_run_or_raise(session=s, run_id=rid)
        step = service.step_of(run, "act")
        service.move_step(session=s, step=step, to_state="running", actor="alice", reason="started")  # type: ignore[arg-type]
        step.evidence = {"did": "act"}
        service.move_run(session=s, run=run, to_state="running", actor="alice", reason="resumed")  # type: ignore[arg-type]
    CALLS.clear()
    refusing = Answers(False)
    engine.resume(any_ctx, rid, confirmer=refusing)
    assert "was interrupted; it left its change" in refusing.asked[0] and CALLS == []
    assert _run(any_ctx, rid)["steps"]["act"][0] == "failed"
    engine.resume(any_ctx, rid, confirmer=Answers(True, True))
    run = _run(any_ctx, rid)
    assert run["outcome"] == "successful" and run["steps"]["act"][1].startswith("kept the change")
    assert CALLS.count("act") == 0 and "adopt" in CALLS


def test_two_runs_on_the_same_model_cannot_act_at_once(any_ctx: Context) -> None:
    first: dict[str, Any] = {}
    t = threading.Thread(
        target=lambda: first.update(id=_start(any_ctx, Unattended("alice", yes=True), hold="yes"))
    )
    t.start()
    assert GATE["entered"].wait(30)
    with pytest.raises(Conflict, match=r"model:iris is being acted on by run #\d+"):
        _start(any_ctx, Unattended("bob", yes=True))
    GATE["release"].set()
    t.join(30)
    assert _run(any_ctx, first["id"])["outcome"] == "successful"
    assert lease.holder(db=any_ctx.db, target="model:iris") is None
    with any_ctx.db.session() as s:
        second = service.list_runs(session=s, runbook="test-book")[0]
        assert second.state == "stopped" and "being acted on" in second.reason
        second_id = second.id
    engine.resume(any_ctx, second_id, confirmer=Unattended("bob", yes=True))
    assert _run(any_ctx, second_id)["outcome"] == "successful"


def test_a_lease_of_a_dead_process_is_taken_over(any_ctx: Context) -> None:
    ghost = f"{lease.HOST}:999999:feedface"
    assert lease.acquire(db=any_ctx.db, target="model:x", run_id=1, owner=ghost)
    assert lease.acquire(db=any_ctx.db, target="model:x", run_id=2, owner=lease.new_owner())
    elsewhere = "another-host:1:cafe"
    assert lease.acquire(db=any_ctx.db, target="model:y", run_id=3, owner=elsewhere)
    with pytest.raises(Conflict, match="run #3"):
        lease.acquire(db=any_ctx.db, target="model:y", run_id=4, owner=lease.new_owner())
