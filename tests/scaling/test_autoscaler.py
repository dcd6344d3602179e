"""The autoscaler's decisions: a spike held for the upscale delay adds a worker, calm held for the downscale
delay retires one, never past min and max, and each decision says which values it read."""

from __future__ import annotations

import datetime as dt

from mloncall.scaling.autoscaler import Autoscaler, Metrics, Policy
from mloncall.scaling.contention import CpuSample, contention, explain_no_gain

T0 = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_a_spike_held_for_the_upscale_delay_adds_a_worker_and_calm_retires_it() -> None:
    scaler = Autoscaler(
        Policy(1, 3, objective_ms=50, up_delay=dt.timedelta(seconds=3), down_delay=dt.timedelta(seconds=10))
    )
    spike = Metrics(workers=1, queued=12, p99_ms=400.0)
    assert scaler.step(spike, _at(0)).action == "pending"
    assert scaler.step(spike, _at(2)).action == "pending"
    out = scaler.step(spike, _at(3))
    assert (out.action, out.from_workers, out.to_workers) == ("scale_out", 1, 2)
    assert "p99 400.0 ms vs objective 50 ms" in out.reason and "12 queued on 1 workers" in out.reason
    # a noisy second between calm ones restarts the downscale delay: no oscillation
    calm = Metrics(workers=2, queued=0, p99_ms=5.0)
    assert scaler.step(calm, _at(10)).action == "pending"
    assert scaler.step(Metrics(workers=2, queued=0, p99_ms=30.0), _at(15)).action == "hold"
    assert scaler.step(calm, _at(16)).action == "pending"
    assert scaler.step(calm, _at(25)).action == "pending"
    down = scaler.step(calm, _at(26))
    assert (down.action, down.to_workers) == ("scale_in", 1)
    assert scaler.step(Metrics(workers=1, queued=0, p99_ms=1.0), _at(60)).action == "hold"  # at --min


def test_at_the_maximum_it_holds_and_says_so() -> None:
    scaler = Autoscaler(Policy(1, 2, objective_ms=50, up_delay=dt.timedelta(0)))
    out = scaler.step(Metrics(workers=2, queued=50, p99_ms=900.0), _at(0))
    assert out.action == "hold" and "already at --max 2" in out.reason


def test_no_gain_is_explained_from_the_machine_cpu() -> None:
    found = contention(CpuSample.take(), server_pids=set())
    assert 0.0 <= found["cpu_busy_share"] <= 1.0 and found["cores"] >= 1
    saturated = {
        "cpu_busy_share": 0.97,
        "other_cores": 1.2,
        "top_others": [{"name": "stress", "pid": 7, "cores": 1.1}],
    }
    assert "saturated" in explain_no_gain(saturated) and "stress (7)" in explain_no_gain(saturated)
    assert "outside the workers" in explain_no_gain({"cpu_busy_share": 0.3, "other_cores": 0.0})
