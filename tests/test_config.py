from __future__ import annotations

from pathlib import Path

import pytest

from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput


def test_defaults_live_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.load(env={})
    assert s.home == tmp_path / ".mloncall"
    assert s.db_url == f"sqlite:///{tmp_path / '.mloncall' / 'mloncall.db'}"
    assert s.artifacts == str(tmp_path / ".mloncall" / "artifacts")


def test_environment_overrides_the_toml_file(tmp_path: Path) -> None:
    cfg = tmp_path / "mloncall.toml"
    cfg.write_text('home = "/srv/ml"\nartifacts = "s3://bucket/prefix"\n[gate]\nrecall_margin = 0.1\n')
    s = Settings.load(env={"MLONCALL_CONFIG": str(cfg), "MLONCALL_DB_URL": "postgresql+psycopg://u@h/db"})
    assert s.home == Path("/srv/ml")
    assert s.artifacts == "s3://bucket/prefix"
    assert s.db_url == "postgresql+psycopg://u@h/db"
    assert s.section("gate") == {"recall_margin": 0.1}


@pytest.mark.parametrize(
    ("text", "message"),
    [("home = [1", "not valid TOML"), ("colour = 'red'", "unknown key"), ("db_url = 3", "must be a string")],
)
def test_bad_config_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "mloncall.toml"
    cfg.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        Settings.load(env={"MLONCALL_CONFIG": str(cfg)})


def test_missing_config_file_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        Settings.load(env={"MLONCALL_CONFIG": str(tmp_path / "nope.toml")})
