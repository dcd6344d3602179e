"""What `mloncall server --backend ray` deploys: the cluster's address and the Serve autoscaling config.

`autoscaling_for` derives Ray Serve's `autoscaling_config` from a latency objective and the measured
capacity of one replica. It is a pure function of plain numbers, so an SLO (or a runbook step that knows
the observed rate) can hand it its objective, and every field comes with the reason it has its value: the
answer to "is the autoscaler misconfigured?" is printed before anything is deployed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mloncall.core.errors import InvalidInput

#: The name of the Serve application the server deploys (one per cluster: a second `serve.run` replaces it).
APP_NAME = "mloncall"
#: Share of the p99 objective a request may spend queued behind others in its replica; the rest is left to
#: the proxy hop, the log and the slow tail of the model's own time.
QUEUE_SHARE = 0.5
#: Ray Serve's own upscale delay is 30 s; an SLO of a few minutes' window cannot wait that long.
DEFAULT_UPSCALE_DELAY = 10.0
#: Scaling down this many times slower than up is what stops the oscillation users report (ray#18925).
DOWNSCALE_FACTOR = 30
MIN_DOWNSCALE_DELAY = 300.0
MAX_REPLICAS_LIMIT = 1000


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` of the cluster's head (its GCS, `ray start --head --port`); InvalidInput otherwise."""
    host, sep, port = address.strip().rpartition(":")
    if address.startswith("ray://"):
        raise InvalidInput(
            f"--ray-address {address!r}: Ray Client addresses are not supported; give the head's GCS "
            "address host:port (`ray start --head --port 6379` prints it)"
        )
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--ray-address {address!r} is not host:port (for example 10.0.0.5:6379)")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class RayAutoscaling:
    """Ray Serve's autoscaling fields for the inference deployment, each with why it has its value."""

    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float
    max_ongoing_requests: int
    upscale_delay_s: float
    downscale_delay_s: float
    #: field name -> the reason for its value
    reasons: dict[str, str] = field(default_factory=dict)

    def autoscaling_config(self) -> dict[str, Any] | None:
        """The `autoscaling_config` of `serve.deployment`, or None for a fixed replica count."""
        if self.min_replicas == self.max_replicas:
            return None
        return {
            "min_replicas": self.min_replicas,
            "initial_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "max_ongoing_requests": self.max_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "autoscaling": self.autoscaling_config() is not None,
            "reasons": dict(self.reasons),
        }


def _replicas(min_replicas: int, max_replicas: int) -> None:
    if min_replicas < 1:
        raise InvalidInput(
            f"--min-replicas {min_replicas}: at least 1; a replica started from zero takes tens of seconds "
            "to load (the cold start breaks any p99 objective)"
        )
    if max_replicas < min_replicas:
        raise InvalidInput(f"--max-replicas {max_replicas} is below --min-replicas {min_replicas}")
    if max_replicas > MAX_REPLICAS_LIMIT:
        raise InvalidInput(f"--max-replicas {max_replicas} is more than {MAX_REPLICAS_LIMIT}")


def fixed_replicas(replicas: int) -> RayAutoscaling:
    """No objective given: a fixed replica count with Ray Serve's default request limits."""
    _replicas(replicas, replicas)
    why = "no latency objective given (--target-p99): a fixed count"
    return RayAutoscaling(
        min_replicas=replicas,
        max_replicas=replicas,
        target_ongoing_requests=2.0,
        max_ongoing_requests=5,
        upscale_delay_s=0.0,
        downscale_delay_s=0.0,
        reasons={
            "min_replicas": why,
            "max_replicas": why,
            "target_ongoing_requests": "Ray Serve's default",
            "max_ongoing_requests": "Ray Serve's default",
        },
    )


def autoscaling_for(
    *,
    target_p99_seconds: float,
    replica_capacity_rps: float,
    min_replicas: int = 1,
    max_replicas: int = 4,
    upscale_delay_seconds: float = DEFAULT_UPSCALE_DELAY,
) -> RayAutoscaling:
    """Ray Serve's autoscaling from a p99 latency objective and the requests/s one replica sustains.

    A replica answers a request in about 1/capacity seconds, so a request that finds q others ahead of it
    waits about q/capacity. Keeping that wait within `QUEUE_SHARE` of the objective bounds the ongoing
    requests a replica should carry (Little's law): Serve adds replicas above that target. A request beyond
    objective x capacity would break the objective however long it waited, so that is where a replica stops
    taking more (`max_ongoing_requests`) and the proxy queues or spreads them instead.
    """
    if not math.isfinite(target_p99_seconds) or target_p99_seconds <= 0:
        raise InvalidInput(f"the p99 objective must be a positive duration, not {target_p99_seconds!r}")
    if not math.isfinite(replica_capacity_rps) or replica_capacity_rps <= 0:
        raise InvalidInput(f"--replica-capacity must be a positive requests/s, not {replica_capacity_rps!r}")
    if not math.isfinite(upscale_delay_seconds) or upscale_delay_seconds < 0:
        raise InvalidInput(f"--upscale-delay must be zero or more seconds, not {upscale_delay_seconds!r}")
    _replicas(min_replicas, max_replicas)
    service_s = 1.0 / replica_capacity_rps
    if service_s > target_p99_seconds:
        raise InvalidInput(
            f"a p99 of {target_p99_seconds * 1000:g} ms cannot be met: one request alone takes "
            f"{service_s * 1000:g} ms at {replica_capacity_rps:g} requests/s per replica (more replicas "
            "add throughput, not speed)"
        )
    in_budget = target_p99_seconds * replica_capacity_rps
    target = max(1.0, math.floor(in_budget * QUEUE_SHARE * 10) / 10)
    max_ongoing = max(math.ceil(target) + 1, math.floor(in_budget))
    downscale = max(MIN_DOWNSCALE_DELAY, DOWNSCALE_FACTOR * upscale_delay_seconds)
    p99_ms = f"{target_p99_seconds * 1000:g} ms"
    return RayAutoscaling(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_ongoing_requests=target,
        max_ongoing_requests=max_ongoing,
        upscale_delay_s=float(upscale_delay_seconds),
        downscale_delay_s=float(downscale),
        reasons={
            "min_replicas": "never zero: a cold start takes tens of seconds",
            "max_replicas": "the most it may add (--max-replicas)",
            "target_ongoing_requests": (
                f"{QUEUE_SHARE:g} x p99 {p99_ms} x {replica_capacity_rps:g} req/s per replica: the queue "
                "a request may wait in and stay within the objective"
            ),
            "max_ongoing_requests": (
                f"p99 {p99_ms} x {replica_capacity_rps:g} req/s: one more would miss the objective"
            ),
            "upscale_delay_s": "given (--upscale-delay): short, so a spike adds replicas within the SLO",
            "downscale_delay_s": (
                f"{DOWNSCALE_FACTOR}x the upscale delay, at least {MIN_DOWNSCALE_DELAY:g} s: scaling down "
                "slowly stops replicas oscillating"
            ),
        },
    )


@dataclass(frozen=True)
class RayServeOptions:
    """Where and how the inference app is deployed on the cluster."""

    address: str
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    replica_cpus: float = 1.0
    #: How long to wait for every replica to load its models before giving up (and deleting the app).
    ready_timeout_s: float = 120.0
    #: How long the head may take to answer at all.
    connect_timeout_s: float = 3.0
