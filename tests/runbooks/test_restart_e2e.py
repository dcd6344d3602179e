"""A server restart in the middle of a run: a `deployment` run started through the API executes in the
server; the server is killed (SIGKILL) in the canary stage and started again on the same installation, and
`runbook resume RUN --yes` completes the run without repeating an action."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mloncall.access import service as access
from mloncall.demo.traffic import LocalServer, Traffic
from mloncall.rollout.models import Rollout
from mloncall.runbooks import service
from mloncall.stores.context import Context
from tests.helpers import new_samples_csv, run_cli
from tests.rollout.conftest import ok

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-server")]

PARAMS = {"steps": "50,100", "step_duration": "6s", "min_requests": "30", "health_window": "3s"}


def _wait_for(predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    return None


def test_a_run_killed_with_its_server_in_the_canary_stage_resumes_without_repeating(
    served: tuple[LocalServer, Traffic], cli_env: dict[str, str], tmp_path: Path
) -> None:
    server, traffic = served
    ok("models", "alias", "set", "iris-classifier", "production", "1", env=cli_env)
    ok("retrain", "iris-classifier", "--data", str(new_samples_csv(tmp_path)), env=cli_env)
    ctx = Context.from_settings()
    try:
        with ctx.db.session() as s:
            access.create_principal(session=s, name="oncall", role="operator")
            _, token = access.create_token(session=s, principal_name="oncall")
        started = httpx.post(
            f"{server.base}/api/v1/runbooks/deployment/runs",
            json={"args": ["iris-classifier:2"], "params": {**PARAMS, "timeout": "300s"}, "yes": True},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]

        def in_canary() -> int | None:
            with ctx.db.session() as s:
                step = service.step_of(service.get_run_or_raise(session=s, run_id=run_id), "rollout")
                rid = step.evidence.get("rollout") if step.state == "running" else None
                rollout = s.get(Rollout, rid) if rid else None
                return rid if rollout is not None and rollout.state == "running" else None

        rollout_id = _wait_for(in_canary, timeout=120)
        assert rollout_id, ok("runbook", "status", str(run_id), "--json", env=cli_env)[-3000:]
        server.proc.kill()  # type: ignore[union-attr]  # SIGKILL: no clean-up, the run is left running
        server.proc.wait()  # type: ignore[union-attr]
        with ctx.db.session() as s:
            assert service.get_run_or_raise(session=s, run_id=run_id).state == "running"
        server.start()

        def resumed() -> Any:  # the killed server's lease on the model lapses within its TTL
            res = run_cli("runbook", "resume", str(run_id), "--yes", "--json", env=cli_env)
            return res if res.returncode != 4 or "could not act" not in res.stderr + res.stdout else None

        res = _wait_for(resumed, timeout=120)
        assert res is not None and res.returncode == 0, (res.stderr, res.stdout[-3000:]) if res else "busy"
        run = json.loads(res.stdout)
        steps = [(s["name"], s["state"], s["reason"][:200]) for s in run["steps"]]
        assert (run["state"], run["outcome"]) == ("finished", "successful"), steps
        rollout = next(s for s in run["steps"] if s["name"] == "rollout")
        assert rollout["evidence"]["rollout"] == rollout_id
        assert rollout["evidence"]["recovered"]["trace"]  # continued from what it left, not started again
        with ctx.db.session() as s:
            rollouts = s.scalars(sa.select(Rollout).where(Rollout.model_name == "iris-classifier")).all()
            assert [(r.id, r.state) for r in rollouts if r.to_version == 2] == [(rollout_id, "promoted")]
            exported = json.loads(ok("runbook", "export", str(run_id), "--format", "json", env=cli_env))
            starts = [e for e in exported["events"] if e["step"] == "rollout" and e["to"] == "running"]
            assert len(starts) == 2  # the first start and the recovery: the action ran once, continued once
        assert traffic.failures == [] or all("connect" in str(f).lower() for f in traffic.failures)
    finally:
        ctx.close()
