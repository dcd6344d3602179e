"""Runbook 5, `scaling MODEL`: the model receives more requests than usual, and latency and timeouts rise.

Identify the trigger (a firing burn-rate alert of the model's SLO, or the p99 clients measured above the
objective), choose the approach (the workers needed from the measured capacity per worker and the observed
peak rate), apply it (confirmed), validate (a load test at the observed peak against the SLO), monitor a
window after, and plan the cleanup (a scale-down scheduled back to where it started, checked once due).
Each scaling decision is recorded with its evidence (`mloncall scale explain`) and on the timeline of the
model's open incident, if any; the run's record holds the cost before, during and after.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.alerts import service as alerts
from mloncall.core import clock
from mloncall.core.durations import format_duration, parse_duration
from mloncall.core.outcome import Check, Outcome
from mloncall.incidents import timeline
from mloncall.incidents.models import Incident
from mloncall.incidents.states import OPEN_STATES, TimelineKind
from mloncall.runbooks.runcontext import RunContext
from mloncall.runbooks.spec import Criterion, Param, Runbook, Step, model_target
from mloncall.runbooks.states import StepKind
from mloncall.scaling import contention, jobs, loadtest, service, workers
from mloncall.scaling.models import SloProbe

#: How far back the trigger looks for what clients measured.
LOOKBACK = dt.timedelta(minutes=5)
#: The capacity probe: a short burst at this multiple of the observed peak, on the current workers.
PROBE_FACTOR = 2.0
PROBE_S = 2.0
#: A cleanup due within this long is waited for and checked in the run; a later one by `scale cleanup`.
WAIT_FOR_CLEANUP = dt.timedelta(seconds=60)


def _model(rc: RunContext) -> str:
    return str(rc.params["model"])


def _url(rc: RunContext) -> str:
    runtime = workers.read_runtime(rc.ctx.settings.home)
    host = "127.0.0.1" if runtime.host in ("0.0.0.0", "::") else runtime.host
    return f"http://{host}:{runtime.port}/v2/models/{_model(rc)}/infer"


def _objectives(rc: RunContext) -> service.Objectives:
    with rc.ctx.db.session() as s:
        return service.require_objectives(session=s, settings=rc.ctx.settings, model=_model(rc))


def _open_incident(s: Session, model: str) -> Incident | None:
    return s.scalar(
        sa.select(Incident)
        .where(Incident.model == model, Incident.state.in_(OPEN_STATES))
        .order_by(Incident.id.desc())
    )


def _record(rc: RunContext, **event: Any) -> None:
    """One scaling decision, in the scaling record and on the model's open incident's timeline."""
    with rc.ctx.db.session() as s:
        row = service.record_event(session=s, model=_model(rc), actor=rc.actor, **event)
        evidence = {"run": rc.run_id, "event": row.id}
        row.evidence = {**row.evidence, **evidence}
        incident = _open_incident(s, _model(rc))
        if incident is not None:
            text = f"scaling: {row.action} {row.from_workers} -> {row.to_workers} workers ({row.reason})"
            timeline.add_entry(
                session=s, incident_id=incident.id, kind=TimelineKind.RUNBOOK, text=text, actor=rc.actor,
                detail=evidence,
            )  # fmt: skip


def trigger(rc: RunContext) -> Check:
    """1. A firing burn-rate alert of the model's SLO, or the p99 clients measured above the objective; the
    observed peak rate and the workers now."""
    objectives = _objectives(rc)
    now = clock.now()
    with rc.ctx.db.session() as s:
        firing = [
            a for a in alerts.list_alerts(session=s, state="firing", model=_model(rc))
            if a.runbook == "scaling"
        ]  # fmt: skip
        seconds = s.scalars(
            sa.select(SloProbe).where(SloProbe.model == _model(rc), SloProbe.at >= now - LOOKBACK)
        ).all()
    firing.sort(key=lambda a: (a.severity != "critical", a.id))  # a page before a ticket
    p99s = [p.p99_ms for p in seconds if p.p99_ms is not None]
    measured = max(p99s) if p99s else None
    peak = float(rc.params["rate"] or max((p.requests for p in seconds), default=0))
    evidence = {
        "alerts": [{"id": a.id, "rule": a.rule, "value": a.value} for a in firing],
        "measured_p99_ms": measured,
        "objective_ms": objectives.latency_p99_ms,
        "peak_rate": peak,
        "workers": workers.current_workers(rc.ctx.settings.home),
    }
    if peak <= 0:
        return Check("trigger", Outcome.FAILED, "no request rate observed: give --param rate=R", evidence)
    if firing:
        return Check("trigger", Outcome.SUCCESSFUL, f"burn-rate alert {firing[0].rule} is firing", evidence)
    if measured is not None and measured > objectives.latency_p99_ms:
        return Check(
            "trigger", Outcome.SUCCESSFUL,
            f"clients measured p99 {measured:.1f} ms over the {objectives.latency_p99_ms:g} ms objective", evidence,
        )  # fmt: skip
    return Check(
        "trigger", Outcome.FAILED, "no burn-rate alert fires and latency is within the SLO", evidence
    )


def approach(rc: RunContext) -> Check:
    """2. The capacity of one worker, measured by a short burst above the peak, and the workers the peak
    needs at the headroom asked for (within the server's maximum)."""
    found = rc.evidence_of("trigger")
    peak = float(found["peak_rate"])
    now_workers = int(found["workers"])
    runtime = workers.read_runtime(rc.ctx.settings.home)
    target = loadtest.target_of(_url(rc), model=_model(rc), body=None)
    shape = loadtest.make_shape("constant", rate=peak * PROBE_FACTOR, duration_s=PROBE_S)
    report, _ = loadtest.run_load(target, shape, connections=20, timeout_s=5.0, slo=None)
    per_worker = report.answered_per_s / max(1, now_workers)
    headroom = float(rc.params["headroom"])
    needed = math.ceil(peak / max(per_worker * headroom, 1e-9))
    chosen = min(max(needed, now_workers + 1), runtime.max_workers)
    evidence = {
        "peak_rate": peak, "answered_per_s": report.answered_per_s, "per_worker_capacity": round(per_worker, 1),
        "headroom": headroom, "needed": needed, "workers": now_workers, "chosen": chosen,
        "max_workers": runtime.max_workers, "probe": {"rate": shape.rate, "seconds": PROBE_S},
    }  # fmt: skip
    if chosen <= now_workers:
        return Check(
            "approach", Outcome.FAILED,
            f"already at the maximum of {runtime.max_workers} workers: raise --max-workers or spread the load",
            evidence,
        )  # fmt: skip
    return Check(
        "approach", Outcome.SUCCESSFUL,
        f"one worker answers about {per_worker:.0f} req/s; {peak:g} req/s at {headroom:.0%} use needs {needed}: "
        f"scale {now_workers} -> {chosen} (at most {runtime.max_workers})", evidence,
    )  # fmt: skip


def _question(rc: RunContext) -> str:
    found = rc.evidence_of("approach")
    return f"Scale {_model(rc)} from {found.get('workers')} to {found.get('chosen')} workers?"


def apply(rc: RunContext) -> Check:
    """3. Change the workers (an in-flight request finishes; a new worker takes traffic once ready)."""
    found = rc.evidence_of("approach")
    start = clock.now()
    change = workers.scale_to(rc.ctx.settings.home, int(found["chosen"]))
    _record(
        rc, action="scale_out", from_workers=change.before, to_workers=change.after, applied=True,
        reason=f"runbook: {found['peak_rate']:g} req/s needs {found['needed']} workers "
        f"at {found['per_worker_capacity']} req/s per worker",
        evidence={"approach": found, "change": change.to_dict()},
    )  # fmt: skip
    return Check(
        "apply", Outcome.SUCCESSFUL, f"{change.before} -> {change.after} workers in {change.seconds:.1f}s",
        # the engine keeps an action's evidence under "after" too: the counts get names of their own
        {**change.to_dict(), "workers_before": change.before, "workers_after": change.after, "at": start.isoformat()},
    )  # fmt: skip


def _load_at_peak(rc: RunContext, seconds: float) -> loadtest.Report:
    objectives = _objectives(rc)
    peak = float(rc.evidence_of("trigger")["peak_rate"])
    target = loadtest.target_of(_url(rc), model=_model(rc), body=None)
    shape = loadtest.make_shape("constant", rate=peak, duration_s=seconds)
    cpu = contention.CpuSample.take()
    # more connections than workers many times over: the kernel hands each to whichever worker accepts first
    report, samples = loadtest.run_load(target, shape, connections=60, timeout_s=5.0, slo=objectives)
    runtime = workers.read_runtime(rc.ctx.settings.home)
    load = contention.contention(cpu, server_pids={runtime.pid, *workers.worker_pids(runtime.pid)})
    rc.memo["contention"] = load
    started = dt.datetime.fromisoformat(report.started_at)
    with rc.ctx.db.session() as s:
        service.record_probes(
            session=s, model=_model(rc), seconds=loadtest.per_second(samples, started, objectives)
        )
    return report


def _judged(rc: RunContext, name: str, report: loadtest.Report) -> Check:
    """The load test against the SLO; when more workers did not bring it back, why, from the machine's CPU."""
    load = rc.memo.get("contention", {})
    evidence = {**{k: v for k, v in report.to_dict().items() if k != "per_second"}, "contention": load}
    if report.within_slo:
        return Check(name, Outcome.SUCCESSFUL, report.verdict, evidence)
    return Check(name, Outcome.FAILED, f"{report.verdict}; {contention.explain_no_gain(load)}", evidence)


#: How long the peak runs unjudged before validation: a worker just started loads its model and fills its
#: caches on its first requests, which would otherwise be counted against the SLO it is there to restore.
WARM_UP_S = 2.0


def _warm_up(rc: RunContext) -> None:
    peak = float(rc.evidence_of("trigger")["peak_rate"])
    target = loadtest.target_of(_url(rc), model=_model(rc), body=None)
    shape = loadtest.make_shape("constant", rate=peak, duration_s=WARM_UP_S)
    loadtest.run_load(target, shape, connections=60, timeout_s=5.0, slo=None)


def validate(rc: RunContext) -> Check:
    """4. A load test at the observed peak rate, judged against the SLO (after a short unjudged warm-up)."""
    _warm_up(rc)
    return _judged(
        rc, "validate", _load_at_peak(rc, parse_duration(rc.params["validate_for"]).total_seconds())
    )


def monitor(rc: RunContext) -> Check:
    """5. A window after: the peak again for `monitor_for`, every worker still running."""
    report = _load_at_peak(rc, parse_duration(rc.params["monitor_for"]).total_seconds())
    check = _judged(rc, "monitor", report)
    running = workers.current_workers(rc.ctx.settings.home)
    check.evidence["workers"] = running
    expected = int(rc.evidence_of("apply").get("workers_after", running))
    if running != expected:
        return Check(
            "monitor", Outcome.FAILED, f"{running} workers run, {expected} were started", check.evidence
        )
    return check


def _cost(rc: RunContext, since: dt.datetime, until: dt.datetime, workers_before: int) -> dict[str, Any]:
    with rc.ctx.db.session() as s:
        c = service.cost(
            session=s,
            settings=rc.ctx.settings,
            model=_model(rc),
            since=since,
            until=until,
            workers=workers_before,
        )
    return c.to_dict()


def cleanup(rc: RunContext) -> Check:
    """6. Schedule the scale-down back to where the run started; when it falls due within a minute, wait, apply
    it and check that it happened. The cost before, during and after goes into the record."""
    before = int(rc.evidence_of("trigger")["workers"])
    after_change = int(rc.evidence_of("apply").get("workers_after", before))
    delay = parse_duration(rc.params["scale_down_after"], allow_zero=True)
    due = clock.now() + delay
    with rc.ctx.db.session() as s:
        scheduled = service.record_event(
            session=s, model=_model(rc), action="scheduled", from_workers=after_change, to_workers=before,
            applied=False, reason=f"runbook cleanup: back to {before} workers after {format_duration(delay)}",
            evidence={"run": rc.run_id}, actor=rc.actor, due_at=due,
        )  # fmt: skip
        schedule_id = scheduled.id
    evidence: dict[str, Any] = {"schedule_id": schedule_id, "due_at": due.isoformat(), "to_workers": before}
    if delay > WAIT_FOR_CLEANUP:
        evidence["cost"] = _costs(rc, before)
        return Check(
            "cleanup", Outcome.SUCCESSFUL,
            f"scale-down to {before} workers scheduled for {due:%H:%M:%S} UTC (`mloncall scale cleanup {_model(rc)}`)",
            evidence,
        )  # fmt: skip
    time.sleep(max(0.0, (due - clock.now()).total_seconds()))
    done = apply_due_scale_downs(rc)
    evidence["checked"] = done
    evidence["cost"] = _costs(rc, before)
    running = workers.current_workers(rc.ctx.settings.home)
    if running != before:
        return Check(
            "cleanup", Outcome.FAILED, f"{running} workers run after the scale-down to {before}", evidence
        )
    return Check("cleanup", Outcome.SUCCESSFUL, f"scaled back down to {before} workers, checked", evidence)


def apply_due_scale_downs(rc: RunContext) -> list[dict[str, Any]]:
    """The model's scheduled scale-downs now due, applied and checked; each on the open incident's timeline."""
    done = jobs.apply_due_scale_downs(rc.ctx, model=_model(rc), actor=rc.actor)
    with rc.ctx.db.session() as s:
        incident = _open_incident(s, _model(rc))
        for d in done:
            if incident is None:
                break
            timeline.add_entry(
                session=s, incident_id=incident.id, kind=TimelineKind.RUNBOOK, actor=rc.actor,
                text=f"scaling: scheduled scale-down #{d['schedule_id']} {'done' if d['ok'] else 'failed'}",
                detail={"run": rc.run_id, "event": d["event"]},
            )  # fmt: skip
    return done


def _costs(rc: RunContext, before_workers: int) -> dict[str, Any]:
    """Replica-seconds before (an hour at the starting count), during (the run) and after (an hour at now's)."""
    started = dt.datetime.fromisoformat(str(rc.evidence_of("apply").get("at") or clock.now().isoformat()))
    now = clock.now()
    during = _cost(rc, started, now, before_workers)
    price = during["price_per_core_hour"]
    running = workers.current_workers(rc.ctx.settings.home)
    return {
        "before_per_hour": round(before_workers * price, 6),
        "during": during,
        "after_per_hour": round(running * price, 6),
        "workers_before": before_workers,
        "workers_after": running,
    }


# --- acceptance --------------------------------------------------------------------------------------------


def within_slo(rc: RunContext) -> Check:
    found = rc.evidence_of("validate")
    ok = bool(found.get("within_slo"))
    return Check(
        "within-slo", Outcome.SUCCESSFUL if ok else Outcome.FAILED, str(found.get("verdict", "not validated"))
    )


def decisions_recorded(rc: RunContext) -> Check:
    with rc.ctx.db.session() as s:
        events = [
            e
            for e in service.list_events(session=s, model=_model(rc), limit=200)
            if e.evidence.get("run") == rc.run_id
        ]
    scaled = [e for e in events if e.action == "scale_out" and e.applied and e.evidence.get("approach")]
    ok = bool(scaled)
    return Check(
        "decisions", Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        f"{len(events)} scaling decisions of this run recorded with their evidence (`mloncall scale explain`)",
        {"events": [e.id for e in events]},
    )  # fmt: skip


def cost_reviewed(rc: RunContext) -> Check:
    cost = rc.evidence_of("cleanup").get("cost")
    if not cost:
        return Check("cost", Outcome.FAILED, "no cost in the run's record")
    return Check(
        "cost", Outcome.SUCCESSFUL,
        f"{cost['workers_before']} workers cost {cost['before_per_hour']:g}/h before, "
        f"{cost['during']['replica_seconds']:.0f} replica-seconds during, {cost['after_per_hour']:g}/h after",
        cost,
    )  # fmt: skip


RUNBOOK = Runbook(
    name="scaling",
    title="Scaling the model",
    scenario="The model receives more requests than usual, and latency and timeouts rise.",
    objective="Scale the model's serving to hold its SLO under the load, then back down.",
    params=(
        Param("model", "the model whose latency rose", required=True, positional=True),
        Param(
            "rate",
            "the peak rate to plan for, requests/s (default: the highest second clients measured)",
            type="float",
            default=0.0,
        ),
        Param("headroom", "the share of a worker's capacity to plan on", type="float", default=0.7),
        Param("validate_for", "how long the validating load test runs", type="duration", default="4s"),
        Param("monitor_for", "how long the window after runs", type="duration", default="4s"),
        Param("scale_down_after", "when to scale back down", type="duration", default="10m"),
    ),
    steps=(
        Step("trigger", "Identify the trigger", StepKind.CHECK, trigger),
        Step("approach", "Choose the scaling approach", StepKind.CHECK, approach),
        Step("apply", "Apply the scaling", StepKind.ACTION, apply, question=_question),
        Step("validate", "Validate performance", StepKind.CHECK, validate, stop_on_failure=False),
        Step("monitor", "Monitor after scaling", StepKind.CHECK, monitor, stop_on_failure=False),
        Step("cleanup", "Plan the cleanup", StepKind.ACTION, cleanup, question="Schedule the scale-down?"),
    ),
    acceptance=(
        Criterion("latency and error rates within SLO", within_slo),
        Criterion("autoscaling tested and documented", decisions_recorded),
        Criterion("cost impact reviewed", cost_reviewed),
    ),
    contacts=("Primary: ML Platform", "Secondary: Infrastructure"),
    target=model_target,
    troubleshooting=(
        "Scaling doesn't reduce latency: `mloncall scale explain MODEL` shows the CPU evidence.",
        "Misconfigured autoscaler: every decision is recorded with its metric values.",
        "Contention for the processor: other processes' CPU use is in the evidence.",
    ),
)
