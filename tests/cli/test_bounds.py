"""The CLI refuses ids and versions past what the database holds as usage errors, never exit 70."""

from __future__ import annotations

import os

import pytest

from mloncall.stores.context import Context
from tests.helpers import run_cli

HUGE = "99999999999999999999999"


@pytest.mark.parametrize(
    "args",
    [
        ("models", "verify", f"iris-classifier:{HUGE}"),
        ("models", "show", f"iris-classifier:{HUGE}"),
        ("models", "delete", f"iris-classifier:{2**63}", "--yes"),
        ("alerts", "show", HUGE),
        ("alerts", "ack", str(2**63)),
        ("tokens", "revoke", HUGE, "--yes"),
        ("datasets", "show", f"iris:{HUGE}"),
    ],
)
def test_a_huge_id_or_version_is_a_usage_error(ctx: Context, args: tuple[str, ...]) -> None:
    env = {**os.environ, "MLONCALL_HOME": str(ctx.settings.home)}
    res = run_cli(*args, env=env, cwd=ctx.settings.home)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
