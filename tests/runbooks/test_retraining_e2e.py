"""Runbook 2 end to end: `kill -9` in the middle of a retraining, then `resume`, repeats no action."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mloncall.core.config import Settings
from mloncall.demo.traffic import LocalServer, Traffic
from mloncall.registry import service as registry
from mloncall.rollout import service as rollouts
from mloncall.runbooks import service
from mloncall.stores.context import Context
from tests.helpers import new_samples_csv, run_cli
from tests.rollout.conftest import ok

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-server")]


def _rollout_step_running(ctx: Context) -> bool:
    """The deployment sub-run's rollout step is running and has started its rollout: a half-run action."""
    with ctx.db.session() as s:
        started = any(r.to_version == 2 for r in rollouts.history(session=s, name="iris-classifier"))
        for run in service.list_runs(session=s, runbook="deployment"):
            if started and service.step_of(run, "rollout").state == "running":
                return True
    return False


def test_kill_9_in_the_middle_of_retraining_then_resume_repeats_nothing(
    served: tuple[LocalServer, Traffic], cli_env: dict[str, str], tmp_path: Path
) -> None:
    ok("models", "alias", "set", "iris-classifier", "production", "1", env=cli_env)
    data = new_samples_csv(tmp_path)
    fast = ["-p", "steps=50,100", "-p", "step_duration=4s", "-p", "min_requests=30", "-p", "health_window=3s"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mloncall",
            "runbook",
            "run",
            "retraining",
            "iris-classifier",
            "-p",
            f"data={data}",
            *fast,
            "--yes",
            "--json",
        ],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ctx = Context.from_settings(Settings.load(env=cli_env))
    try:
        deadline = time.monotonic() + 120
        while not _rollout_step_running(ctx) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert _rollout_step_running(ctx), "the deployment sub-run never reached its rollout"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

        res = run_cli("runbook", "resume", "1", "--yes", "--json", env=cli_env)
        assert res.returncode == 0, res.stderr + res.stdout[-3000:]
        run = json.loads(res.stdout)
        assert (run["state"], run["outcome"]) == ("finished", "successful"), run["acceptance"]
        with ctx.db.session() as s:
            model = registry.get_model_or_raise(session=s, name="iris-classifier")
            assert [v.version for v in model.versions] == [1, 2]  # retrained once
            v2 = [r for r in rollouts.history(session=s, name="iris-classifier") if r.to_version == 2]
            assert len(v2) == 1 and v2[0].state == "promoted"  # rolled out once
            parent = service.get_run_or_raise(session=s, run_id=1)
            (child,) = service.children(session=s, run_id=1)
            rollout = service.step_of(child, "rollout")
            assert rollout.evidence["recovered"]["trace"].startswith(f"rollout #{v2[0].id} of v2")
            assert service.step_of(parent, "retrain").attempts == 1
            assert [e.to_state for e in parent.events if e.step is None][-2:] == ["running", "finished"]
        text = ok("runbook", "export", "1", "--format", "markdown", env=cli_env)
        assert "## Acceptance criteria" in text and "\n## Runbook run #2: Model deployment" in text
    finally:
        if proc.poll() is None:
            proc.kill()
        ctx.close()
