"""Opening an installation never creates one: a typo in the home or the database URL is an error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mloncall.core.config import Settings
from mloncall.core.errors import StoreUnavailable
from mloncall.stores.context import Context
from tests.helpers import run_cli


def _settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings.load(env={"MLONCALL_HOME": str(tmp_path / "home"), "MLONCALL_DB_URL": db_url})


def test_open_refuses_a_missing_sqlite_file_and_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nonexistent/dir/x.db"
    ctx = Context.from_settings(_settings(tmp_path, url))
    with pytest.raises(StoreUnavailable, match="run `mloncall init`"):
        ctx.open()
    assert not (tmp_path / "nonexistent").exists()


def test_open_refuses_an_empty_database_then_init_creates_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    ctx = Context.from_settings(_settings(tmp_path, url))
    (tmp_path / "x.db").touch()  # a file, but no mloncall schema in it
    with pytest.raises(StoreUnavailable, match="no mloncall installation"):
        ctx.open()
    ctx.init()
    ctx.open()  # now it exists: opening works and is idempotent
    ctx.open()
    ctx.close()


def test_a_typo_in_the_database_url_creates_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "MLONCALL_DB_URL": f"sqlite:///{tmp_path}/nonexistent/dir/x.db"}
    res = run_cli("models", "list", env=env, cwd=tmp_path)
    assert res.returncode == 7, (res.returncode, res.stdout, res.stderr)
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize("command", [["models", "list"], ["alerts", "list"], ["rollout", "status", "iris"]])
def test_read_commands_refuse_an_uninitialised_home(command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "MLONCALL_HOME": str(tmp_path / "home")}
    env.pop("MLONCALL_DB_URL", None)
    res = run_cli(*command, env=env, cwd=tmp_path)
    assert res.returncode == 7, (res.returncode, res.stdout, res.stderr)
    assert "run `mloncall init`" in res.stderr
    assert not (tmp_path / "home").exists()
