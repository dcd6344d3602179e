"""The local autoscaler: between min and max workers, from the measured queued requests and p99 latency, with
upscale and downscale delays, every decision recorded with the values behind it (`scale explain`).

Each tick reads the requests queued on the server's port (`contention.queued_requests`: accepted, not yet
read by a worker) and the p99 of the last seconds as clients measured it (load tests' seconds, which include
the queue). A condition must hold for the upscale delay before a worker is added (one per step), and for the
downscale delay before one is retired, so one noisy second does not make the count oscillate. After a
scale-out, when the p99 did not fall, the decision says why, with the machine's CPU evidence.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mloncall.core import clock
from mloncall.core.errors import InvalidInput
from mloncall.core.records import Record
from mloncall.scaling import contention, workers
from mloncall.scaling.models import SloProbe
from mloncall.scaling.service import record_event, require_objectives
from mloncall.stores.context import Context

MAX_TICKS = 100_000


@dataclass(frozen=True)
class Policy(Record):
    """The autoscaler's bounds and delays."""

    min_workers: int
    max_workers: int
    objective_ms: float
    target_queued: float = 2.0
    up_delay: dt.timedelta = dt.timedelta(seconds=3)
    down_delay: dt.timedelta = dt.timedelta(seconds=30)

    def check(self) -> None:
        if self.min_workers < 1:
            raise InvalidInput(f"--min {self.min_workers}: at least 1 worker")
        if self.max_workers < self.min_workers:
            raise InvalidInput(f"--max {self.max_workers} is below --min {self.min_workers}")
        if self.target_queued <= 0:
            raise InvalidInput("--target-queued must be above 0")


@dataclass(frozen=True)
class Metrics(Record):
    """What one tick measured."""

    workers: int
    queued: int
    p99_ms: float | None


@dataclass(frozen=True)
class Decision(Record):
    """What the autoscaler chose at one tick and why."""

    action: str
    from_workers: int
    to_workers: int
    reason: str
    metrics: Metrics


@dataclass
class Autoscaler:
    """The state between ticks: since when a condition holds, the last scale-out's p99."""

    policy: Policy
    pressure_since: dt.datetime | None = None
    idle_since: dt.datetime | None = None
    last_out: tuple[dt.datetime, float | None] | None = None
    notes: list[str] = field(default_factory=list)

    def step(self, m: Metrics, now: dt.datetime) -> Decision:
        p = self.policy
        slow = m.p99_ms is not None and m.p99_ms > p.objective_ms
        crowded = m.queued / max(1, m.workers) > p.target_queued
        calm = (m.p99_ms is None or m.p99_ms < p.objective_ms / 2) and m.queued == 0
        why = _why(m, p)
        if m.workers < p.min_workers or m.workers > p.max_workers:
            target = min(max(m.workers, p.min_workers), p.max_workers)
            return Decision(
                "scale_out" if target > m.workers else "scale_in",
                m.workers,
                target,
                f"outside [{p.min_workers}, {p.max_workers}]",
                m,
            )
        if slow or crowded:
            self.idle_since = None
            self.pressure_since = self.pressure_since or now
            held = now - self.pressure_since
            if m.workers >= p.max_workers:
                return Decision(
                    "hold", m.workers, m.workers, f"{why}, but already at --max {p.max_workers}", m
                )
            if held < p.up_delay:
                return Decision(
                    "pending",
                    m.workers,
                    m.workers,
                    f"{why} for {held.total_seconds():.1f}s of the {p.up_delay.total_seconds():g}s upscale delay",
                    m,
                )
            self.pressure_since = None
            self.last_out = (now, m.p99_ms)
            return Decision(
                "scale_out", m.workers, m.workers + 1, f"{why} for {held.total_seconds():.1f}s", m
            )
        self.pressure_since = None
        if calm and m.workers > p.min_workers:
            self.idle_since = self.idle_since or now
            held = now - self.idle_since
            if held < p.down_delay:
                return Decision(
                    "pending",
                    m.workers,
                    m.workers,
                    f"calm ({why}) for {held.total_seconds():.1f}s of the {p.down_delay.total_seconds():g}s downscale delay",
                    m,
                )
            self.idle_since = None
            return Decision(
                "scale_in", m.workers, m.workers - 1, f"calm ({why}) for {held.total_seconds():.1f}s", m
            )
        self.idle_since = None if not calm else self.idle_since
        return Decision("hold", m.workers, m.workers, f"steady ({why})", m)


def _why(m: Metrics, p: Policy) -> str:
    p99 = (
        "no p99 measured" if m.p99_ms is None else f"p99 {m.p99_ms:.1f} ms vs objective {p.objective_ms:g} ms"
    )
    return f"{p99}; {m.queued} queued on {m.workers} workers (target {p.target_queued:g} per worker)"


def recent_p99(ctx: Context, model: str, window: dt.timedelta, now: dt.datetime) -> float | None:
    """The worst per-second p99 the clients measured over the window."""
    with ctx.db.session() as session:
        found = session.scalar(
            sa.select(sa.func.max(SloProbe.p99_ms)).where(
                SloProbe.model == model, SloProbe.at >= now - window
            )
        )
    return None if found is None else float(found)


def run_autoscaler(
    ctx: Context,
    *,
    model: str,
    policy: Policy,
    duration: dt.timedelta,
    interval: dt.timedelta = dt.timedelta(seconds=1),
    window: dt.timedelta = dt.timedelta(seconds=5),
    actor: str = "autoscaler",
) -> list[Decision]:
    """Run ticks for `duration` against the installation's server; every non-steady decision recorded (a
    pending delay once, when it starts); every decision returned."""
    policy.check()
    home: Path = ctx.settings.home
    runtime = workers.read_runtime(home)
    with ctx.db.session() as session:
        require_objectives(session=session, settings=ctx.settings, model=model)
    scaler = Autoscaler(policy)
    decisions: list[Decision] = []
    deadline = time.monotonic() + duration.total_seconds()
    cpu = contention.CpuSample.take()
    last_pending: tuple[str, int, int, bool] | None = None
    for _ in range(MAX_TICKS):
        if time.monotonic() >= deadline:
            break
        now = clock.now()
        pids = workers.worker_pids(runtime.pid)
        metrics = Metrics(
            len(pids), contention.queued_requests(runtime.port), recent_p99(ctx, model, window, now)
        )
        decision = scaler.step(metrics, now)
        evidence: dict[str, Any] = {"metrics": metrics.to_dict(), "policy": policy.to_dict()}
        if (
            scaler.last_out is not None
            and decision.action != "scale_out"
            and now - scaler.last_out[0] >= window
        ):
            before = scaler.last_out[1]
            scaler.last_out = None
            if before is not None and metrics.p99_ms is not None and metrics.p99_ms >= before:
                load = contention.contention(cpu, server_pids={runtime.pid, *pids})
                decision = Decision(
                    "no_gain", decision.from_workers, decision.to_workers,
                    f"adding a worker did not lower p99 ({before:.1f} -> {metrics.p99_ms:.1f} ms): "
                    + contention.explain_no_gain(load), metrics,
                )  # fmt: skip
                evidence["contention"] = load
        applied = False
        if decision.to_workers != decision.from_workers:
            workers.scale_to(home, decision.to_workers)
            applied = True
            cpu = contention.CpuSample.take()
        # a delay that keeps running is recorded when it starts, not at each of its ticks
        key = (
            decision.action,
            decision.from_workers,
            decision.to_workers,
            decision.reason.startswith("calm"),
        )
        repeated = decision.action == "pending" and key == last_pending
        last_pending = key if decision.action == "pending" else None
        if (decision.action != "hold" or applied) and not repeated:
            with ctx.db.session() as session:
                record_event(
                    session=session, model=model, action=decision.action, from_workers=decision.from_workers,
                    to_workers=decision.to_workers, applied=applied, reason=decision.reason, evidence=evidence,
                    actor=actor,
                )  # fmt: skip
        decisions.append(decision)
        time.sleep(interval.total_seconds())
    return decisions
