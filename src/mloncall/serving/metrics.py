"""Prometheus metrics of the data plane, multiprocess-safe.

With several workers, the server sets `PROMETHEUS_MULTIPROC_DIR` (an empty folder, before any worker starts);
each worker then writes its values to files there and `/metrics` merges them with `MultiProcessCollector`.
Without it, each app keeps its own registry (so tests can build many apps in one process).
"""

from __future__ import annotations

import os
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


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServingMetrics:
    """The counters, histogram and gauge of one app; labelled children are cached for the hot path."""

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

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def served(self, model: str, version: str, route: str, seconds: float, labels: list[str]) -> None:
        """A successful request: its count, latency and the predicted classes."""
        self._child(self.requests, model, version, route, "200").inc()
        self._child(self.latency, model, version, route).observe(seconds)
        if len(labels) == 1:
            self._child(self.predictions, model, version, labels[0]).inc()
        else:
            counts: dict[str, int] = {}
            for label in labels:
                counts[label] = counts.get(label, 0) + 1
            for label, n in counts.items():
                self._child(self.predictions, model, version, label).inc(n)

    def failed(self, model: str, version: str, route: str, status: int, reason: str | None) -> None:
        """A refused request; a validation reason is counted too."""
        self._child(self.requests, model, version, route, str(status)).inc()
        if reason is not None:
            self._child(self.validation_failures, model, reason).inc()

    def flagged(self, model: str, version: str, feature: str, n: int) -> None:
        self._child(self.out_of_range, model, version, feature).inc(n)

    def set_weights(self, model: str, weights: dict[str, float]) -> None:
        """The current share of each version; versions no longer routed drop to 0."""
        previous = self._weights.get(model, {})
        for version in previous.keys() - weights.keys():
            self.traffic_weight.labels(model, version).set(0.0)
        for version, w in weights.items():
            self.traffic_weight.labels(model, version).set(w)
        self._weights[model] = dict(weights)

    def render(self) -> bytes:
        """The text exposition: this process's registry, or every worker's files in multiprocess mode."""
        if multiprocess_dir():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        # The log readers (alert evaluation runs in this process) count the log files they had to skip.
        return generate_latest(self.registry) + generate_latest(LOG_METRICS)
