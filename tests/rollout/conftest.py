"""A real `mloncall server` in a subprocess with steady client traffic, as in production."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mloncall.data import iris
from mloncall.demo.traffic import LocalServer, Traffic
from tests.helpers import run_cli, write_csv


def ok(*args: str, env: dict[str, str]) -> str:
    res = run_cli(*args, env=env)
    assert res.returncode == 0, f"mloncall {' '.join(args)} -> {res.returncode}: {res.stderr}"
    return res.stdout


def train_a_bad_model(cli_env: dict[str, str], tmp_path: Path) -> None:
    """Train iris-classifier's next version on Iris with every species relabelled: a model that is wrong."""
    bad = write_csv(tmp_path / "bad.csv", iris.corrupted_labels(iris.iris_frame()))
    ok("train", "iris-classifier", "--data", str(bad), env=cli_env)


@pytest.fixture
def served(cli_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[LocalServer, Traffic]]:
    """iris-classifier v1 in production behind a live server, with traffic flowing."""
    ok("init", env=cli_env)
    ok("train", "iris-classifier", env=cli_env)
    ok("deploy", "iris-classifier:1", "--strategy", "direct", env=cli_env)
    server = LocalServer(cli_env).start()
    traffic = Traffic(server.base).start()
    try:
        yield server, traffic
    finally:
        traffic.stop()
        server.stop()
