"""Runbook 1 end to end: `mloncall runbook run deployment` against a live server under traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mloncall.demo.traffic import LocalServer, Traffic
from tests.helpers import new_samples_csv, run_cli
from tests.rollout.conftest import ok, train_a_bad_model

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-server")]

FAST = [
    "-p",
    "steps=50,100",
    "-p",
    "step_duration=2s",
    "-p",
    "min_requests=30",
    "-p",
    "health_window=3s",
    "-p",
    "timeout=120s",
    # two test workers share two cores: one pause among a 2 s step's few dozen requests doubled v2's p99
    # (14.4 ms against 2.4 ms) in a fresh-clone run; the latency check itself is held by test_analysis
    "-p",
    "thresholds=latency_slack_ms=50",
]


def _states(run: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {s["name"]: s["state"] for s in run["steps"]}


def test_a_good_version_is_deployed_and_accepted(
    served: tuple[LocalServer, Traffic], cli_env: dict[str, str], tmp_path: Path
) -> None:
    ok("models", "alias", "set", "iris-classifier", "production", "1", env=cli_env)
    ok("retrain", "iris-classifier", "--data", str(new_samples_csv(tmp_path)), env=cli_env)
    res = run_cli("runbook", "run", "deployment", "iris-classifier:2", *FAST, "--yes", "--json", env=cli_env)
    assert res.returncode == 0, res.stderr + res.stdout[-3000:]
    run = json.loads(res.stdout)
    assert (run["state"], run["outcome"]) == ("finished", "successful"), run["acceptance"]
    assert _states(run) == {
        "verify": "successful",
        "configure": "successful",
        "load": "successful",
        "smoke": "successful",
        "rollout": "successful",
        "health": "successful",
        "rollback-plan": "successful",
        "rollback-verified": "successful",
        "rollback-exercised": "skipped",
    }
    rollout = next(s for s in run["steps"] if s["name"] == "rollout")
    assert rollout["confirmation"]["by"] and "canary rollout" in rollout["confirmation"]["question"]
    assert rollout["evidence"]["before"]["outcome"] == "successful"  # the precondition, recorded before
    assert [c["outcome"] for c in run["acceptance"]["checks"]] == ["successful"] * 4
    shown = json.loads(ok("models", "show", "iris-classifier@production", "--json", env=cli_env))
    assert shown["version"] == 2
    history = json.loads(ok("rollout", "history", "iris-classifier", "--json", env=cli_env))
    assert history[-1]["to_version"] == 2 and history[-1]["thresholds"]["latency_slack_ms"] == 50.0

    report = ok("runbook", "export", str(run["id"]), "--format", "markdown", env=cli_env)
    assert f"# Runbook run #{run['id']}: Model deployment on model:iris-classifier — successful" in report
    assert "- [x] **new model live, serving >95% of traffic**" in report and "| at | step |" in report
    again = run_cli("runbook", "resume", str(run["id"]), env=cli_env)
    assert again.returncode == 4 and "nothing to resume" in again.stderr


def test_a_bad_model_ends_failed_with_the_rollback_done_and_recorded(
    served: tuple[LocalServer, Traffic], cli_env: dict[str, str], tmp_path: Path
) -> None:
    _server, traffic = served
    train_a_bad_model(cli_env, tmp_path)
    res = run_cli("runbook", "run", "deployment", "iris-classifier:2", *FAST, "--yes", "--json", env=cli_env)
    assert res.returncode == 1, res.stderr
    run = json.loads(res.stdout)
    assert (run["state"], run["outcome"]) == ("finished", "failed")
    states = _states(run)
    assert states["rollout"] == "failed" and states["rollback-verified"] == "successful"
    assert states["rollback-exercised"] == "skipped" and states["health"] == "successful"
    steps = {s["name"]: s for s in run["steps"]}
    assert "disagreement" in steps["rollout"]["reason"]
    assert steps["rollback-verified"]["reason"].startswith("rollback done: v1 serves all traffic again")
    checks = {c["name"]: c["outcome"] for c in run["acceptance"]["checks"]}
    assert checks["new model live, serving >95% of traffic"] == "failed"
    assert checks["rollback plan validated"] == "successful"
    status = json.loads(ok("rollout", "status", "iris-classifier", "--json", env=cli_env))
    assert status["routing"]["stable_version"] == 1 and status["routing"]["canary_version"] is None
    assert traffic.failures == []
    report = ok("runbook", "export", str(run["id"]), "--format", "markdown", env=cli_env)
    assert "— failed" in report and "rollback done" in report
    exported = json.loads(ok("runbook", "export", str(run["id"]), "--format", "json", env=cli_env))
    assert [e["to"] for e in exported["events"] if e["step"] == "rollout"] == ["waiting", "running", "failed"]
