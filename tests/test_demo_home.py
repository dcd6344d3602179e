"""The demo owns its home: a previous demo's home is wiped before the next run, anyone else's installation
is refused with the way out (`--reset`), and `--reset` wipes it. (The full demo runs once, in test_demo.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from mloncall.cli.main import run
from mloncall.core.config import Settings
from mloncall.demo.cli import MARKER, _prepare_home


def _settings(home: Path) -> Settings:
    return Settings.load(env={"MLONCALL_HOME": str(home)})


def test_a_previous_demo_home_is_wiped_and_another_installation_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_home = tmp_path / "demo"
    _prepare_home(_settings(demo_home), reset=False)
    (demo_home / "mloncall.db").write_text("left by the last story")
    _prepare_home(_settings(demo_home), reset=False)
    assert sorted(p.name for p in demo_home.iterdir()) == [MARKER]  # started over cleanly

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "mloncall.db").write_text("someone's installation")
    monkeypatch.setenv("MLONCALL_HOME", str(theirs))
    assert run(["demo", "--fast"]) == 4  # Conflict, before anything is touched
    assert (theirs / "mloncall.db").read_text() == "someone's installation"
    _prepare_home(_settings(theirs), reset=True)
    assert sorted(p.name for p in theirs.iterdir()) == [MARKER]
