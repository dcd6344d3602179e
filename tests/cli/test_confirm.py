"""A destructive command never reads its confirmation from a stdin that is not a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_delete_without_a_terminal_refuses_unless_yes(tmp_path: Path) -> None:
    env = {**os.environ, "MLONCALL_HOME": str(tmp_path / "home")}
    res = subprocess.run(
        [sys.executable, "-m", "mloncall", "models", "delete", "iris-classifier:1"],
        input="y\n",  # a piped answer is not a person's: it must not count
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "no terminal to ask on: pass --yes" in res.stderr
