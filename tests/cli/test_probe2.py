"""The second probe of the CLI: settings no timeout can be, addresses no host has, lengths past the
calendar; each a usage error (exit 2) said before anything starts, never a hang or an internal error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mloncall.api.connections import ServerLimits
from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput
from mloncall.serving.config import ServingConfig
from mloncall.stores.context import Context
from tests.helpers import run_cli


def _env(ctx: Context, **extra: str) -> dict[str, str]:
    return {**os.environ, "MLONCALL_HOME": str(ctx.settings.home), **extra}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # Were taken: an infinite timeout never fires, so a client that never finished its headers held its
        # connection for good; NaN passed the `<= 0` check and failed every connection in uvloop.
        ("header_timeout", "nan"),
        ("body_timeout", "inf"),
        ("keep_alive_timeout", "-Infinity"),
        ("max_connections", True),
    ],
)
def test_a_setting_that_is_no_finite_number_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: object
) -> None:
    toml = tmp_path / "mloncall.toml"
    if isinstance(value, str):
        monkeypatch.setenv(f"MLONCALL_SERVER_{key.upper()}", value)
        toml.write_text("")
    else:
        toml.write_text(f"[server]\n{key} = true\n")
    settings = Settings.load(env={"MLONCALL_HOME": str(tmp_path / "home")}, config_file=toml)
    with pytest.raises(InvalidInput, match=f"{key}="):
        ServerLimits.from_settings(settings)
    with pytest.raises(InvalidInput, match="positive and finite"):
        ServingConfig.from_settings(settings, env={"MLONCALL_SERVING_REFRESH_SECONDS": "inf"})


def test_the_server_stops_on_such_a_setting_before_it_starts(ctx: Context) -> None:
    env = _env(ctx, MLONCALL_SERVER_HEADER_TIMEOUT="nan")
    res = run_cli("server", "--port", "1", env=env, cwd=ctx.settings.home)
    assert res.returncode == 2, (res.returncode, res.stderr[-500:])
    assert "must be positive and finite" in res.stderr
    assert "startup complete" not in res.stderr.lower() and "Traceback" not in res.stderr


@pytest.mark.parametrize("host", ["999.1.1.1"])
def test_a_host_no_address_resolves_to_is_a_usage_error(ctx: Context, host: str) -> None:
    res = run_cli("server", "--host", host, "--port", "8123", env=_env(ctx), cwd=ctx.settings.home)
    assert res.returncode == 2, res.stderr[-500:]
    assert f"cannot listen on {host}:8123" in res.stderr


def test_a_silence_past_the_calendar_is_a_usage_error_not_an_internal_error(ctx: Context) -> None:
    # Was exit 70: "internal error: OverflowError: date value out of range".
    args = ("alerts", "silence", "-m", "model=iris", "--duration", "999999w", "--comment", "maintenance")
    res = run_cli(*args, env=_env(ctx), cwd=ctx.settings.home)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "at most 365 days" in res.stderr and "internal error" not in res.stderr


def test_a_time_past_the_utc_calendar_is_a_usage_error(ctx: Context) -> None:
    from mloncall.access import service as access
    from mloncall.incidents import schedules

    with ctx.db.session() as session:
        access.bootstrap_admin(session=session)
        schedules.create_schedule(
            session=session, name="primary", members=["admin"], time_zone="UTC", handoff="09:00",
            shift="1d", start=None, actor="test",
        )  # fmt: skip
    # Was exit 70: "internal error: StatementError: (builtins.OverflowError) date value out of range".
    args = ("oncall", "schedule", "override", "primary", "admin")
    times = ("--from", "0001-01-01T00:00+14:00", "--until", "0001-01-02T00:00+00:00")
    res = run_cli(*args, *times, env=_env(ctx), cwd=ctx.settings.home)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "years 1 to 9999" in res.stderr


def test_an_artifact_store_that_cannot_be_reached_is_exit_7_without_its_password(ctx: Context) -> None:
    # Was exit 70: "internal error: gaierror ..." (an ftp store connects as it is made), the URL unmasked.
    env = _env(ctx, MLONCALL_ARTIFACTS="ftp://ops:hunter2@127.0.0.1:1/artifacts")
    res = run_cli("models", "list", env=env, cwd=ctx.settings.home)
    assert res.returncode == 7, (res.returncode, res.stderr)
    assert "cannot be reached" in res.stderr and "ftp://ops:***@127.0.0.1:1" in res.stderr
    assert "hunter2" not in res.stderr + res.stdout
