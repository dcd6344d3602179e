"""`mloncall server`'s arguments are checked before anything starts."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.helpers import run_cli


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "MLONCALL_HOME": str(tmp_path / "home")}


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(port: str, tmp_path: Path) -> None:
    res = run_cli("server", "--port", port, env=_env(tmp_path), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "--port" in res.stderr
    assert not (tmp_path / "home").exists()  # refused before anything was created


def test_a_port_in_use_is_a_conflict_said_before_starting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run_cli("server", "--port", str(port), env=_env(tmp_path), cwd=tmp_path)
    assert res.returncode == 4, res.stderr
    assert f"127.0.0.1:{port} is already in use" in res.stderr
    assert "startup complete" not in res.stderr.lower()


def test_the_server_refuses_a_store_that_was_never_initialised(tmp_path: Path) -> None:
    res = run_cli("server", env=_env(tmp_path), cwd=tmp_path)
    assert res.returncode == 7, res.stderr
    assert "run `mloncall init`" in res.stderr
    assert not (tmp_path / "home").exists()
