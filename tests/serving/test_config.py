"""Serving settings from `[serving]` in mloncall.toml and MLONCALL_SERVING_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput
from mloncall.serving.config import ServingConfig


def settings(tmp_path: Path, toml: str) -> Settings:
    path = tmp_path / "mloncall.toml"
    path.write_text(toml)
    return Settings.load(env={"MLONCALL_HOME": str(tmp_path)}, config_file=path)


def test_defaults_toml_and_environment(tmp_path: Path) -> None:
    s = settings(tmp_path, "[serving]\nmax_body_bytes = 2048\nrefresh_seconds = 0.5\n")
    assert ServingConfig.from_settings(s, env={}).max_body_bytes == 2048
    config = ServingConfig.from_settings(s, env={"MLONCALL_SERVING_REFRESH_SECONDS": "0.2"})
    assert (config.refresh_seconds, config.default_max_rows) == (0.2, 1000)


@pytest.mark.parametrize(
    ("toml", "env", "match"),
    [
        ("[serving]\nmax_rows = 5\n", {}, "unknown key"),
        ("[serving]\nmax_body_bytes = 'big'\n", {}, "must be a whole number"),
        ("", {"MLONCALL_SERVING_LOG_FLUSH_SECONDS": "0"}, "must be positive"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, toml: str, env: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        ServingConfig.from_settings(settings(tmp_path, toml), env=env)
