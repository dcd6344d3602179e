"""Rules files: what loads, what is refused (with the line and the reason), and that a refused file leaves
the active rules as they were."""

from __future__ import annotations

import datetime as dt
import importlib.util
import textwrap

import pytest

from mloncall.alerts import rules, service
from mloncall.alerts.catalog import Catalog
from mloncall.alerts.rules import parse_rules
from mloncall.alerts.templates import render
from mloncall.core.durations import format_duration, parse_duration
from mloncall.core.errors import InvalidInput
from mloncall.stores.context import Context
from tests.alerts.conftest import load
from tests.conftest import unavailable

GOOD = textwrap.dedent(
    """\
    group_by: [model]
    hold_time: 5m
    rules:
      - name: drift
        model: "*"
        monitor: drift
        params: {drift_share: 0.5}
        window: 1h
        for: 15m
        severity: warning
        runbook: monitoring
        labels: {team: ml}
        annotations:
          summary: "drift on {{ $labels.model }}: {{ $value }}"
      - name: errors
        model: iris-classifier
        monitor: error_rate
        params: {max_error_rate: 0.01}
        window: 5m
        for: 0
        severity: critical
        runbook: deployment
    """
)


def refused(text: str, catalog: Catalog) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_rules(text, origin="bad.yaml", catalog=catalog)
    return info.value


def test_a_good_file_parses_into_rules(catalog: Catalog) -> None:
    parsed = parse_rules(GOOD, catalog=catalog)
    assert parsed.group_by == ("model",)
    assert parsed.hold_time == dt.timedelta(minutes=5)
    drift, errors = parsed.rules
    assert drift.name == "drift" and drift.model == "*" and drift.line == 4
    assert drift.window == dt.timedelta(hours=1) and drift.for_ == dt.timedelta(minutes=15)
    assert drift.labels == {"team": "ml"}
    assert errors.for_ == dt.timedelta(0) and errors.severity == "critical"
    assert errors.alert_labels("iris-classifier")["runbook"] == "deployment"
    # the normalised form round-trips
    again = rules.RuleFile.from_dict(parsed.to_dict())
    assert again.rules == parsed.rules and again.hold_time == parsed.hold_time


def test_a_plain_list_of_rules_is_a_rules_file_too(catalog: Catalog) -> None:
    text = GOOD.split("rules:\n", 1)[1]
    text = textwrap.dedent(text)
    parsed = parse_rules(text, catalog=catalog)
    assert [r.name for r in parsed.rules] == ["drift", "errors"]
    assert parsed.group_by == rules.DEFAULT_GROUP_BY


@pytest.mark.parametrize(
    ("old", "new", "line", "reason"),
    [
        ("monitor: drift", "monitor: drfit", 6, "unknown monitor 'drfit'"),
        ("window: 1h", "window: 1 hour", 8, "bad duration '1 hour'"),
        ("for: 15m", "for: 15", 9, "for: bad duration 15"),
        ("window: 5m", "window: 0", 19, "window: bad duration 0: it must be longer than 0"),
        (
            "params: {drift_share: 0.5}",
            "params: {drift_share: -1}",
            7,
            "parameter drift_share must be a number",
        ),
        ("params: {max_error_rate: 0.01}", "params: {bogus: 1}", 18, "unknown parameter 'bogus'"),
        ("severity: warning", "severity: page", 10, "bad severity 'page'"),
        ("runbook: deployment", "runbook: firefighting", 22, "unknown runbook 'firefighting'"),
        ("labels: {team: ml}", "labels: {model: other}", 12, "label 'model' is set by mloncall"),
        ("{{ $labels.model }}", "{{ .Labels.model }}", 14, "unknown template"),
        ("  - name: errors", "  - name: drift", 15, "duplicate rule name (first defined on line 4)"),
        ("    for: 0\n", "    fro: 0\n", 15, "missing field: for"),
        ("hold_time: 5m", "hold_time: soon", 2, "hold_time: bad duration 'soon'"),
        ("model: iris-classifier", "model: Iris Classifier", 16, "invalid model name"),
    ],
)
def test_each_bad_input_is_refused_with_its_line_and_reason(
    catalog: Catalog, old: str, new: str, line: int, reason: str
) -> None:
    assert old in GOOD
    error = refused(GOOD.replace(old, new, 1), catalog)
    lines = [d["line"] for d in error.details]
    assert line in lines, (error.message, error.details)
    assert any(reason in d["error"] for d in error.details), error.message
    assert f"line {line}" in error.message
    assert "the active rules are unchanged" in error.message


def test_yaml_syntax_errors_name_the_line(catalog: Catalog) -> None:
    error = refused(GOOD.replace("params: {drift_share: 0.5}", "params: {drift_share: 0.5"), catalog)
    assert error.details[0]["error"].startswith("YAML syntax error")
    assert error.details[0]["line"] in (7, 8)
    error = refused("rules:\n  - name: x\n   monitor: drift\n", catalog)
    assert "YAML syntax error" in error.message and "line 3" in error.message


def test_missing_fields_unknown_keys_and_structure(catalog: Catalog) -> None:
    error = refused("rules:\n  - name: lonely\n    monitor: drift\n    treshold: 3\n", catalog)
    messages = " | ".join(d["error"] for d in error.details)
    assert "missing fields: model, window, for, severity, runbook" in messages
    assert "unknown key 'treshold'" in messages
    assert {d["line"] for d in error.details} == {2, 4}
    assert all(d["rule"] == "lonely" for d in error.details)
    assert "empty" in refused("", catalog).message
    assert "missing 'rules'" in refused("group_by: [model]\n", catalog).message
    assert "expected a list" in refused("rules: 3\n", catalog).message
    assert "each rule must be a mapping" in refused("rules: [3]\n", catalog).message
    assert (
        "given twice"
        in refused(GOOD.replace("    window: 1h\n", "    window: 1h\n    window: 2h\n"), catalog).message
    )


def test_every_error_of_a_file_is_reported(catalog: Catalog) -> None:
    bad = GOOD.replace("monitor: drift", "monitor: nope").replace("window: 5m", "window: soon")
    error = refused(bad, catalog)
    assert [d["line"] for d in error.details] == [6, 19]
    assert "2 errors" in error.message


def test_a_refused_file_leaves_the_active_rules_in_force(actx: Context, catalog: Catalog) -> None:
    first = load(actx, GOOD, catalog)
    assert first.version == 1 and [r.name for r in first.rules.rules] == ["drift", "errors"]
    with pytest.raises(InvalidInput, match="line 6"), actx.db.session() as session:
        service.load_rules(
            session=session,
            text=GOOD.replace("monitor: drift", "monitor: nope"),
            origin="broken.yaml",
            actor="test",
            catalog=catalog,
        )
    with actx.db.session() as session:
        active = service.active_rules(session=session, catalog=catalog)
        assert active.version == 1 and active.sha256 == rules.sha256_of(GOOD)
        assert len(service.list_rule_sets(session=session)) == 1
    # loading the same text again changes nothing; a different file is the next version
    with actx.db.session() as session:
        _, changed = service.load_rules(session=session, text=GOOD, origin="x", actor="t", catalog=catalog)
        assert changed is False
    second = load(actx, GOOD.replace("for: 15m", "for: 20m"), catalog)
    assert second.version == 2 and second.rules.rules[0].for_ == dt.timedelta(minutes=20)
    assert second.loaded_by == "test" and second.origin == "test.yaml"


def test_without_a_loaded_file_the_built_in_defaults_are_active(actx: Context, catalog: Catalog) -> None:
    with actx.db.session() as session:
        active = service.active_rules(session=session, catalog=catalog)
    assert active.version == 0 and "built in" in active.origin
    by_monitor = {r.monitor: r for r in active.rules.rules}
    assert set(by_monitor) >= {
        "drift",
        "accuracy",
        "error_rate",
        "latency",
        "volume",
        "out_of_range",
        "missing_features",
    }
    assert by_monitor["drift"].runbook == "monitoring"
    assert all(r.model == "*" for r in active.rules.rules)


def test_the_default_rules_pass_the_real_monitors_validation() -> None:
    if importlib.util.find_spec("mloncall.monitoring") is None:
        unavailable("mloncall.monitoring is not built yet: default_rules.yaml params are unchecked")
    parsed = service.default_rules()  # the real catalog: MONITOR_KINDS and validate_params
    assert len(parsed.rules) == 9


def test_durations() -> None:
    assert parse_duration("0", allow_zero=True) == dt.timedelta(0)
    assert parse_duration(0, allow_zero=True) == dt.timedelta(0)
    assert parse_duration(15) == dt.timedelta(seconds=15)  # a number, not text, is seconds
    assert parse_duration("90s") == dt.timedelta(seconds=90)
    assert parse_duration("1h30m") == dt.timedelta(minutes=90)
    assert parse_duration("2w") == dt.timedelta(days=14)
    for bad in ("", "15", "1.5h", "2W", "m", "-5m", "5 m", True, None, "1h 30m"):
        with pytest.raises(InvalidInput):
            parse_duration(bad)
    with pytest.raises(InvalidInput):
        parse_duration("0")
    assert format_duration(dt.timedelta(minutes=90)) == "1h30m"
    assert format_duration(dt.timedelta(0)) == "0s"


def test_annotation_templates() -> None:
    labels = {"model": "iris", "rule": "drift"}
    text = "{{ $rule }} on {{ $model }} ({{ $labels.model }}): {{ $value }} > {{ $evidence.threshold }}, {{ $evidence.a.b }}"
    assert render(text, labels=labels, value=0.123456, evidence={"threshold": 0.1, "a": {"b": "deep"}}) == (
        "drift on iris (iris): 0.1235 > 0.1, deep"
    )
    assert render("{{ $value }} {{ $evidence.missing }}", labels={}, value=None, evidence={}) == "n/a n/a"


def test_the_real_monitors_parameter_errors_point_at_the_parameter() -> None:
    if importlib.util.find_spec("mloncall.monitoring") is None:
        unavailable("mloncall.monitoring is not built yet")
    text = GOOD.replace(
        "params: {max_error_rate: 0.01}", "params:\n      min_rows: 10\n      max_error_rate: 2"
    )
    with pytest.raises(InvalidInput) as info:
        parse_rules(text, origin="real.yaml")  # the monitoring domain's MONITOR_KINDS and validate_params
    (detail,) = info.value.details
    assert detail["line"] == 20 and detail["rule"] == "errors" and "max_error_rate" in detail["error"]
