"""One live server for the scaling tests: iris-classifier v1 in production behind `mloncall server
--max-workers 3`, in its own home (module-scoped: training and starting it cost seconds on this machine)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mloncall.demo.traffic import LocalServer
from tests.helpers import run_cli

MODEL = "iris-classifier"


def ok(*args: str, env: dict[str, str]) -> str:
    res = run_cli(*args, env=env)
    assert res.returncode == 0, f"mloncall {' '.join(args)} -> {res.returncode}: {res.stderr}"
    return res.stdout


def scaling_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLONCALL_")}
    return {**env, "MLONCALL_HOME": str(home)}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, dict[str, str]]]:
    """The server (1 worker, at most 3) and the environment that names its installation."""
    env = scaling_env(tmp_path_factory.mktemp("scaling") / "home")
    ok("init", env=env)
    ok("train", MODEL, env=env)
    ok("deploy", f"{MODEL}:1", "--strategy", "direct", env=env)
    server = LocalServer(env, workers=1, max_workers=3).start(timeout=120)
    try:
        yield server, env
    finally:
        server.stop()
