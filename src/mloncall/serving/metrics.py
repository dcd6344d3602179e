"""Prometheus metrics of the data plane, counted in process memory and published to prometheus-client.

The hot path never touches prometheus-client: each request adds to plain dicts (a tuple key, an int), which
costs well under a microsecond, where a labelled child's `inc`/`observe` (a lock, and in multiprocess mode
an mmap write per value) cost several. `publish()` moves what was counted into the prometheus-client metrics:
the app calls it once a second and before each scrape, on the event loop thread that counts, so nothing
counted is lost between the two. The exposition (names, labels, buckets) is prometheus-client's, unchanged.

With several workers, the server sets `PROMETHEUS_MULTIPROC_DIR` (an empty folder, before any worker starts);
each worker then writes its values to files there and `/metrics` merges them with `MultiProcessCollector`,
so another worker's counts reach a scrape within its publishing interval (a second).
Without it, each app keeps its own registry (so tests can build many apps in one process).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from mloncall.stores.predlog import METRICS as LOG_METRICS

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: The upper bounds as prometheus-client keeps them (+Inf last): index i counts values in (b[i-1], b[i]].
_BOUNDS = (*LATENCY_BUCKETS, float("inf"))

#: (model, version, route) -> [count, sum of seconds, per-bucket counts...]
_Latency = dict[tuple[str, str, str], list[Any]]


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServingMetrics:
    """The counters, histogram and gauge of one app, counted in memory and published by `publish()`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mloncall_requests", "Inference requests", ["model", "version", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "mloncall_request_latency_seconds",
            "Time to answer an inference request, from body received to response ready",
            ["model", "version", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "mloncall_predictions", "Predicted rows by class", ["model", "version", "class"], registry=r
        )
        self.validation_failures = Counter(
            "mloncall_validation_failures",
            "Requests refused by input validation",
            ["model", "reason"],
            registry=r,
        )
        self.out_of_range = Counter(
            "mloncall_out_of_range",
            "Values outside the training range, served and flagged",
            ["model", "version", "feature"],
            registry=r,
        )
        self.traffic_weight = Gauge(
            "mloncall_traffic_weight",
            "Share of a model's traffic routed to a version",
            ["model", "version"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._weights: dict[str, dict[str, float]] = {}
        # What was counted since the last publish, by label values.
        self._latency: _Latency = {}
        self._failed: dict[tuple[str, str, str, str], int] = {}
        self._classes: dict[tuple[str, str, str], int] = {}
        self._refused: dict[tuple[str, str], int] = {}
        self._flagged: dict[tuple[str, str, str], int] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # --- hot path: plain dicts ---

    def served(self, model: str, version: str, route: str, seconds: float, labels: list[str]) -> None:
        """A successful request: its count, latency and the predicted classes."""
        key = (model, version, route)
        entry = self._latency.get(key)
        if entry is None:
            entry = self._latency[key] = [0, 0.0] + [0] * len(_BOUNDS)
        entry[0] += 1
        entry[1] += seconds
        entry[2 + bisect_left(_BOUNDS, seconds)] += 1
        classes = self._classes
        for label in labels:
            k = (model, version, label)
            classes[k] = classes.get(k, 0) + 1

    def failed(self, model: str, version: str, route: str, status: int, reason: str | None) -> None:
        """A refused request; a validation reason is counted too."""
        key = (model, version, route, str(status))
        self._failed[key] = self._failed.get(key, 0) + 1
        if reason is not None:
            k = (model, reason)
            self._refused[k] = self._refused.get(k, 0) + 1

    def flagged(self, model: str, version: str, feature: str, n: int) -> None:
        key = (model, version, feature)
        self._flagged[key] = self._flagged.get(key, 0) + n

    # --- publishing ---

    def publish(self) -> None:
        """Add what was counted since the last call to the prometheus-client metrics (call it on the thread
        that counts)."""
        latency, self._latency = self._latency, {}
        failed, self._failed = self._failed, {}
        classes, self._classes = self._classes, {}
        refused, self._refused = self._refused, {}
        flagged, self._flagged = self._flagged, {}
        for (model, version, route), entry in latency.items():
            self._child(self.requests, model, version, route, "200").inc(entry[0])
            hist = self._child(self.latency, model, version, route)
            # prometheus-client's Histogram keeps one value per bucket (not cumulative) and the sum; adding
            # to them is what `observe` does for each value, done once per bucket.
            hist._sum.inc(entry[1])
            for i, n in enumerate(entry[2:]):
                if n:
                    hist._buckets[i].inc(n)
        for metric, counts in (
            (self.requests, failed),
            (self.predictions, classes),
            (self.validation_failures, refused),
            (self.out_of_range, flagged),
        ):
            for labels, n in counts.items():
                self._child(metric, *labels).inc(n)

    def set_weights(self, model: str, weights: dict[str, float]) -> None:
        """The current share of each version; versions no longer routed drop to 0."""
        previous = self._weights.get(model, {})
        for version in previous.keys() - weights.keys():
            self.traffic_weight.labels(model, version).set(0.0)
        for version, w in weights.items():
            self.traffic_weight.labels(model, version).set(w)
        self._weights[model] = dict(weights)

    def render(self) -> bytes:
        """The text exposition: this process's registry, or every worker's files in multiprocess mode
        (what was counted reaches it through `publish()`)."""
        if multiprocess_dir():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        # The log readers (alert evaluation runs in this process) count the log files they had to skip.
        return generate_latest(self.registry) + generate_latest(LOG_METRICS)
