"""`mloncall loadtest`: open-loop, rate-controlled load against an OIP or `/predict` URL, judged against the
model's SLO.

A shape is a finite schedule of due times: `constant` (the rate for the whole duration), `steps` (each rate of
`--steps` for an equal share of it) or `spike` (the rate, then `--spike-rate` for `--spike-for` from
`--spike-at`, then the rate again). Latency is counted from each request's due time (`loadgen`), so it is
corrected for coordinated omission. A run is bounded in requests (`loadgen.MAX_REQUESTS`) and in time (its
duration plus one timeout for the last answers). Every request carries `x-mloncall-synthetic: 1`: the server
logs its rows as synthetic, so the load's rows count toward latency, errors and throughput but never toward
drift, data quality or accuracy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import urllib.error
import urllib.request
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from mloncall.core import clock
from mloncall.core.errors import InvalidInput, StoreUnavailable
from mloncall.core.net import unanswered
from mloncall.core.records import Record
from mloncall.scaling.loadgen import MAX_REQUESTS, PacedLoad, Sample, raw_request
from mloncall.scaling.service import ProbeSecond
from mloncall.scaling.slo import Objectives
from mloncall.serving.protocol import SYNTHETIC_HEADER

SHAPES = ("constant", "steps", "spike")
MAX_DURATION_S = 3600.0
MAX_RATE = 50_000.0
PERCENTILES = (50, 90, 99, 99.9)
#: Sent with every request: a load test's requests are synthetic by definition.
SYNTHETIC = f"{SYNTHETIC_HEADER}: 1"


@dataclass(frozen=True)
class Shape:
    """How the rate moves over the run."""

    kind: str
    rate: float
    duration_s: float
    steps: tuple[float, ...] = ()
    spike_rate: float = 0.0
    spike_at_s: float = 0.0
    spike_for_s: float = 0.0

    def rate_at(self, t: float) -> float:
        if self.kind == "steps":
            share = self.duration_s / len(self.steps)
            return self.steps[min(int(t // share), len(self.steps) - 1)]
        if self.kind == "spike" and self.spike_at_s <= t < self.spike_at_s + self.spike_for_s:
            return self.spike_rate
        return self.rate

    def peak(self) -> float:
        if self.kind == "steps":
            return max(self.steps)
        return max(self.rate, self.spike_rate) if self.kind == "spike" else self.rate


def make_shape(
    kind: str,
    *,
    rate: float,
    duration_s: float,
    steps: Sequence[float] = (),
    spike_rate: float | None = None,
    spike_at_s: float | None = None,
    spike_for_s: float | None = None,
) -> Shape:
    """A checked shape; InvalidInput names what is wrong."""
    if kind not in SHAPES:
        raise InvalidInput(f"unknown shape {kind!r}: one of {', '.join(SHAPES)}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise InvalidInput(f"--duration must be above 0 and at most {MAX_DURATION_S:.0f}s")
    rates = [rate, *steps, *([spike_rate] if spike_rate is not None else [])]
    for r in rates:
        if not (math.isfinite(r) and 0 < r <= MAX_RATE):
            raise InvalidInput(f"rate {r:g}: must be above 0 and at most {MAX_RATE:g} requests/s")
    if kind == "steps" and not steps:
        raise InvalidInput("--shape steps needs --steps, e.g. --steps 100,200,400")
    if kind == "spike":
        spike_rate = spike_rate if spike_rate is not None else rate * 5
        spike_at_s = spike_at_s if spike_at_s is not None else duration_s / 3
        spike_for_s = spike_for_s if spike_for_s is not None else duration_s / 3
        if not 0 <= spike_at_s < duration_s or spike_for_s <= 0:
            raise InvalidInput("the spike must start within the run (--spike-at) and last (--spike-for)")
        return Shape(kind, rate, duration_s, (), spike_rate, spike_at_s, spike_for_s)
    return Shape(kind, rate, duration_s, tuple(steps))


def schedule(shape: Shape) -> list[float]:
    """The due times, seconds from the start; refused when longer than one run may send."""
    expected = sum(shape.rate_at(float(s)) for s in range(math.ceil(shape.duration_s)))
    if expected > MAX_REQUESTS:
        raise InvalidInput(f"about {expected:,.0f} requests: more than one run sends ({MAX_REQUESTS:,})")
    out: list[float] = []
    start, rate, k = 0.0, shape.rate_at(0.0), 0
    t = 0.0
    while t < shape.duration_s and len(out) < MAX_REQUESTS:
        out.append(t)
        k += 1
        t = start + k / rate  # counted from the segment's start: a float sum would drift
        if shape.rate_at(t) != rate:
            start, rate, k = t, shape.rate_at(t), 0
    return out


@dataclass(frozen=True)
class Target:
    """Where the requests go: host, port, path, the model, and the body sent."""

    host: str
    port: int
    path: str
    model: str
    body: bytes

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


def target_of(url: str, *, model: str | None, body: bytes | None, timeout_s: float = 2.0) -> Target:
    """The target of a URL: `.../v2/models/M/infer`, `.../predict` (then --model), or a server's root with
    --model (OIP). Without a body, one row of 1.0 per feature from the model's metadata. A URL nothing answers
    at is StoreUnavailable (exit 7) within `timeout_s`."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise InvalidInput(f"{url!r}: give an http:// URL, e.g. http://127.0.0.1:8000/v2/models/iris/infer")
    port = parts.port or 80
    path = parts.path.rstrip("/") or ""
    segments = [s for s in path.split("/") if s]
    if len(segments) >= 3 and segments[:2] == ["v2", "models"]:
        model = model or segments[2]
    elif not segments:
        if not model:
            raise InvalidInput("a server's root URL needs --model (or give .../v2/models/MODEL/infer)")
        path = f"/v2/models/{model}/infer"
    elif segments == ["predict"]:
        if not model:
            raise InvalidInput("/predict needs --model, so the requests name it and the SLO is known")
    else:
        raise InvalidInput(f"{url!r}: not an inference URL (/v2/models/MODEL/infer or /predict)")
    host = parts.hostname
    _check_listening(host, port, url, timeout_s)
    if body is None:
        body = _default_body(host, port, model, path, timeout_s)
    return Target(host, port, path, model, body)


def _check_listening(host: str, port: int, url: str, timeout_s: float) -> None:
    why = unanswered(host, port, timeout_s)
    if why is not None:
        raise StoreUnavailable(f"nothing answers at {url} ({why}): is the server running on {host}:{port}?")


def _default_body(host: str, port: int, model: str, path: str, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/v2/models/{model}", timeout=timeout_s) as r:
            meta: dict[str, Any] = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise InvalidInput(f"the server does not serve {model!r} (HTTP {exc.code}): give --body") from None
    except (OSError, ValueError) as exc:
        raise StoreUnavailable(f"cannot read the metadata of {model!r}: {exc}") from None
    features = list(meta.get("features") or [])
    if not features:
        raise InvalidInput(f"the metadata of {model!r} names no features: give --body")
    if path.endswith("/predict"):
        return json.dumps({"model": model, "instances": [dict.fromkeys(features, 1.0)]}).encode()
    row = [1.0] * len(features)
    return json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, len(row)], "data": row}]}
    ).encode()


@dataclass
class Report(Record):
    """What a run measured and its verdict against the SLO."""

    url: str
    model: str
    shape: str
    offered_rate: float
    peak_rate: float
    duration_s: float
    sent: int
    answered: int
    errors: int
    timeouts: int
    resent: int
    answered_per_s: float
    percentiles_ms: dict[str, float]
    sent_percentiles_ms: dict[str, float]
    slo: dict[str, Any] | None
    within_slo: bool | None
    verdict: str
    started_at: str
    per_second: list[dict[str, Any]] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    return {f"p{p:g}": round(float(np.percentile(values, p)), 3) for p in PERCENTILES}


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the client on uvloop where it is installed: a fifth less CPU per request than asyncio's own loop,
    which the server beside it on the same machine gets instead."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it on Linux and macOS
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def run_load(
    target: Target, shape: Shape, *, connections: int, timeout_s: float, slo: Objectives | None
) -> tuple[Report, list[Sample]]:
    """Run the shape against the target; the report and every request's sample."""
    due = schedule(shape)
    started = clock.now()
    request = raw_request(target.host, target.port, target.path, target.body, headers=(SYNTHETIC,))
    load = PacedLoad(
        target.host, target.port, request, due, connections=max(1, min(connections, len(due))),
        timeout_s=timeout_s,
    )  # fmt: skip
    run_loop(load.run())
    return summarize(target, shape, load, started, slo), sorted(load.samples, key=lambda s: s.due_s)


def summarize(
    target: Target, shape: Shape, load: PacedLoad, started: dt.datetime, slo: Objectives | None
) -> Report:
    samples = load.samples
    ok = np.array([s.latency_ms for s in samples if not s.error])
    sent_ok = np.array([s.sent_latency_ms for s in samples if not s.error])
    timeouts = sum(1 for s in samples if s.error == "timeout")
    errors = sum(1 for s in samples if s.error and s.error != "timeout")
    pct = _percentiles(ok)
    within: bool | None = None
    verdict = "no SLO for this model: set one with `mloncall slo set`"
    slo_dict = None
    if slo is not None:
        slo_dict = slo.to_dict()
        failed_share = (errors + timeouts) / max(1, len(samples))
        p99 = pct.get("p99", math.inf)
        within = p99 <= slo.latency_p99_ms and failed_share <= slo.errors_budget
        verdict = (
            f"p99 {p99:.1f} ms {'<=' if p99 <= slo.latency_p99_ms else '>'} objective {slo.latency_p99_ms:g} ms; "
            f"failed {failed_share:.3%} {'<=' if failed_share <= slo.errors_budget else '>'} budget "
            f"{slo.errors_budget:.3%}: {'within SLO' if within else 'SLO BROKEN'}"
        )
    return Report(
        url=target.url, model=target.model, shape=shape.kind, offered_rate=round(len(samples) / shape.duration_s, 1),
        peak_rate=shape.peak(), duration_s=shape.duration_s, sent=len(samples), answered=int(ok.size),
        errors=errors, timeouts=timeouts, resent=load.resent,
        answered_per_s=round(ok.size / max(load.elapsed_s, 1e-9), 1), percentiles_ms=pct,
        sent_percentiles_ms=_percentiles(sent_ok), slo=slo_dict, within_slo=within, verdict=verdict,
        started_at=started.isoformat(),
        per_second=[p.__dict__ | {"at": p.at.isoformat()} for p in per_second(load.samples, started, slo)],
        first_errors=sorted({s.error for s in samples if s.error})[:5],
    )  # fmt: skip


def per_second(samples: Sequence[Sample], started: dt.datetime, slo: Objectives | None) -> list[ProbeSecond]:
    """Each second of the run (by due time): requests, slower than the objective, failed, timed out, p99."""
    limit = slo.latency_p99_ms if slo is not None else math.inf
    buckets: dict[int, list[Sample]] = {}
    for s in samples:
        buckets.setdefault(int(s.due_s), []).append(s)
    out = []
    for second in sorted(buckets):
        group = buckets[second]
        ok = [s.latency_ms for s in group if not s.error]
        out.append(
            ProbeSecond(
                at=started + dt.timedelta(seconds=second),
                requests=len(group),
                slow=sum(1 for v in ok if v > limit),
                errors=sum(1 for s in group if s.error and s.error != "timeout"),
                timeouts=sum(1 for s in group if s.error == "timeout"),
                p99_ms=round(float(np.percentile(ok, 99)), 3) if ok else None,
            )
        )
    return out


def write_png(path: Path, samples: Sequence[Sample], report: Report) -> None:
    """Latency over the run (each answer at its due time; failures marked), the objective as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    ok = [(s.due_s, s.latency_ms) for s in samples if not s.error]
    bad = [s.due_s for s in samples if s.error]
    if ok:
        xs, ys = zip(*ok, strict=True)
        ax.scatter(xs, ys, s=2, alpha=0.4, label="latency from due time")
    for i, p in enumerate(report.per_second):
        if p["p99_ms"] is not None:
            ax.plot(
                [i, i + 1],
                [p["p99_ms"]] * 2,
                color="tab:orange",
                lw=1.5,
                label="p99 per second" if i == 0 else None,
            )
    if bad:
        top = max((y for _, y in ok), default=1.0)
        ax.scatter(bad, [top] * len(bad), s=8, marker="x", color="tab:red", label="failed / timed out")
    if report.slo is not None:
        ax.axhline(report.slo["latency_p99_ms"], color="tab:green", ls="--", label="p99 objective")
    ax.set_yscale("log")
    ax.set_xlabel("seconds from start (due time)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(
        f"{report.model}: {report.shape} load, peak {report.peak_rate:g} req/s — {report.verdict[:60]}"
    )
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
