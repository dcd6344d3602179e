"""Prometheus alerting rules over mloncall's own `/metrics`, for teams that run their own Prometheus (route its
alerts back with Alertmanager's webhook to `/api/v1/alerts/alertmanager`). Each rule is one small function of
the thresholds; `prometheus_rules` writes them as one rules file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

_HEADER = (
    "# Prometheus alerting rules for mloncall's /metrics, written by `mloncall monitor prometheus-rules`.\n"
    "# Load with `rule_files:` in prometheus.yml; check with `promtool check rules FILE`.\n"
)


@dataclass(frozen=True)
class Thresholds:
    """The job Prometheus scrapes mloncall as, and the limits that alert."""

    job: str = "mloncall"
    max_error_rate: float = 0.01
    max_p99_seconds: float = 0.25
    max_validation_failure_rate: float = 0.05
    max_out_of_range_rate: float = 0.05
    min_volume_ratio: float = 0.5


def _rule(
    alert: str, expr: str, for_: str, severity: str, runbook: str, summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": alert,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, "runbook": runbook, "source": "mloncall-prometheus"},
        "annotations": {"summary": summary, "description": description},
    }


def _requests(window: str) -> str:
    return f"sum by (model) (rate(mloncall_requests_total[{window}]))"


def _down(t: Thresholds) -> dict[str, Any]:
    return _rule(
        "MloncallDown",
        f'up{{job="{t.job}"}} == 0',
        "2m",
        "critical",
        "scaling",
        "mloncall at {{ $labels.instance }} cannot be scraped",
        "Prometheus has not scraped job " + t.job + " at {{ $labels.instance }} for 2 minutes.",
    )


def _high_error_rate(t: Thresholds) -> dict[str, Any]:
    return _rule(
        "MloncallHighErrorRate",
        'sum by (model) (rate(mloncall_requests_total{status=~"5.."}[5m]))\n  / '
        + _requests("5m")
        + f"\n  > {t.max_error_rate:g}",
        "5m",
        "critical",
        "deployment",
        "{{ $labels.model }} answers with server errors",
        "{{ $value | humanizePercentage }} of the requests to {{ $labels.model }} failed with 5xx "
        f"over 5 minutes (maximum {t.max_error_rate:.2%}).",
    )


def _high_latency(t: Thresholds) -> dict[str, Any]:
    return _rule(
        "MloncallHighLatencyP99",
        "histogram_quantile(0.99,\n  sum by (model, le) (rate(mloncall_request_latency_seconds_bucket[5m])))"
        f"\n  > {t.max_p99_seconds:g}",
        "10m",
        "warning",
        "scaling",
        "p99 latency of {{ $labels.model }} is high",
        "p99 latency is {{ $value | humanizeDuration }} over 5 minutes "
        f"(maximum {t.max_p99_seconds * 1000:g} ms).",
    )


def _validation_failures(t: Thresholds) -> dict[str, Any]:
    return _rule(
        "MloncallValidationFailures",
        "sum by (model) (rate(mloncall_validation_failures_total[10m]))\n  / "
        + _requests("10m")
        + f"\n  > {t.max_validation_failure_rate:g}",
        "10m",
        "warning",
        "data-quality",
        "Requests to {{ $labels.model }} fail input validation",
        "{{ $value | humanizePercentage }} of the requests were refused by input validation "
        f"(maximum {t.max_validation_failure_rate:.0%}): check the upstream data.",
    )


def _out_of_range(t: Thresholds) -> dict[str, Any]:
    return _rule(
        "MloncallOutOfRangeInputs",
        "sum by (model) (rate(mloncall_out_of_range_total[15m]))\n"
        "  / sum by (model) (rate(mloncall_predictions_total[15m]))"
        f"\n  > {t.max_out_of_range_rate:g}",
        "10m",
        "warning",
        "data-quality",
        "{{ $labels.model }} receives values outside the training range",
        "{{ $value | humanizePercentage }} out-of-range values per predicted row over 15 minutes "
        f"(maximum {t.max_out_of_range_rate:.0%}).",
    )


def _volume_drop(t: Thresholds) -> dict[str, Any]:
    return _rule(
        "MloncallVolumeDrop",
        _requests("30m")
        + f"\n  < {t.min_volume_ratio:g} * "
        + _requests("30m").replace("[30m]", "[30m] offset 1d"),
        "15m",
        "warning",
        "pipeline",
        "Requests to {{ $labels.model }} dropped",
        f"Request rate is below {t.min_volume_ratio:.0%} of the same time yesterday: is a source gone quiet?",
    )


#: The rules of the `mloncall-serving` group, in the order they are written.
SERVING_RULES: tuple[Callable[[Thresholds], dict[str, Any]], ...] = (
    _down,
    _high_error_rate,
    _high_latency,
    _validation_failures,
    _out_of_range,
    _volume_drop,
)


def prometheus_rules(
    *,
    job: str = "mloncall",
    max_error_rate: float = 0.01,
    max_p99_seconds: float = 0.25,
    max_validation_failure_rate: float = 0.05,
    max_out_of_range_rate: float = 0.05,
    min_volume_ratio: float = 0.5,
) -> str:
    """A Prometheus alerting rules file over the serving metrics."""
    thresholds = Thresholds(
        job=job,
        max_error_rate=max_error_rate,
        max_p99_seconds=max_p99_seconds,
        max_validation_failure_rate=max_validation_failure_rate,
        max_out_of_range_rate=max_out_of_range_rate,
        min_volume_ratio=min_volume_ratio,
    )
    doc = {"groups": [{"name": "mloncall-serving", "rules": [make(thresholds) for make in SERVING_RULES]}]}
    return _HEADER + yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=120, allow_unicode=True)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL expressions) as `|` blocks, as people write them."""


def _str_block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_block)
