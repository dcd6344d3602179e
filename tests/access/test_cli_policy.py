"""`mloncall access` end to end through the real root command: principals and teams, grant and deny, explain
with its exit code, break-glass requests answered by someone else, the history, and passwords."""

from __future__ import annotations

import json

import pytest

from mloncall.access import service as access
from mloncall.cli import main
from mloncall.stores.context import Context


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.run(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_grant_explain_deny_and_teams_from_the_terminal(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "init")[0] == 0
    assert _run(capsys, "access", "principal", "alice", "--role", "viewer")[0] == 0
    assert _run(capsys, "access", "principal", "ml", "--kind", "team")[0] == 0

    code, out, err = _run(capsys, "access", "explain", "alice", "deploy:execute", "iris")
    assert code == 6 and "DENIED" in out and "fix: mloncall access grant alice oncall --scope iris" in out
    assert "alice may not deploy:execute on model iris" in err

    assert _run(capsys, "access", "grant", "ml", "oncall", "--scope", "iris")[0] == 0
    code, out, _ = _run(capsys, "access", "join", "alice", "ml")
    assert code == 0 and "alice is now in team ml" in out
    code, out, _ = _run(capsys, "access", "explain", "alice", "deploy:execute", "iris", "--json")
    why = json.loads(out)
    assert code == 0 and why["allowed"] and why["via"] == ["user:alice", "team:ml", "role:oncall"]

    assert _run(capsys, "access", "deny", "alice", "deploy:execute", "--scope", "iris")[0] == 0
    code, out, _ = _run(capsys, "access", "explain", "alice", "deploy:execute", "iris")
    assert (
        code == 6
        and "explicit deny" in out
        and "mloncall access undeny alice deploy:execute --scope iris" in out
    )
    assert _run(capsys, "access", "undeny", "alice", "deploy:execute", "--scope", "iris")[0] == 0
    code, out, _ = _run(capsys, "access", "ungrant", "ml", "oncall", "--scope", "iris")
    assert code == 0 and "no longer holds" in out
    assert _run(capsys, "access", "explain", "alice", "deploy:execute", "iris")[0] == 6

    code, _, err = _run(capsys, "access", "grant", "alice", "root")
    assert code == 3 and "unknown role 'root'" in err
    code, _, err = _run(capsys, "access", "explain", "alice", "deploy:everything")
    assert code == 2 and "unknown permission" in err
    code, _, err = _run(capsys, "access", "grant", "nobody", "viewer")
    assert code == 3 and "nobody" in err


def test_a_break_glass_request_from_the_terminal_is_answered_by_someone_else(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "init")[0] == 0
    _run(capsys, "access", "principal", "alice", "--role", "viewer")
    _run(capsys, "access", "principal", "bob", "--role", "admin")
    code, out, _ = _run(
        capsys, "access", "request", "oncall", "--scope", "iris", "--for", "2h", "--reason", "roll back",
        "--as", "alice", "--json",
    )  # fmt: skip
    assert code == 0, out
    request_id = str(json.loads(out)["id"])
    code, _, err = _run(capsys, "access", "approve", request_id, "--as", "alice")
    assert code == 6 and "access:approve" in err, "a viewer may not approve, least of all their own request"
    code, out, _ = _run(capsys, "access", "approve", request_id, "--as", "bob")
    assert code == 0 and "alice holds oncall on model iris until" in out
    assert _run(capsys, "access", "explain", "alice", "deploy:execute", "iris")[0] == 0
    code, out, _ = _run(capsys, "access", "requests")
    assert code == 0 and "approved" in out and "alice" in out
    assert _run(capsys, "access", "revoke", request_id)[0] == 0
    assert _run(capsys, "access", "explain", "alice", "deploy:execute", "iris")[0] == 6
    code, out, _ = _run(capsys, "access", "requests", "--state", "revoked", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [int(request_id)]
    code, _, err = _run(capsys, "access", "request", "admin", "--for", "9h", "--reason", "x", "--as", "alice")
    assert code == 6 and "at most 8:00:00" in err
    code, _, err = _run(
        capsys, "access", "request", "oncall", "--reason", "x", "--as", "alice", "--incident", "9"
    )
    assert code == 3 and "incident 9" in err


def test_passwd_reads_the_environment_never_an_argument(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run(capsys, "init")[0] == 0
    _run(capsys, "access", "principal", "alice", "--role", "viewer")
    monkeypatch.setenv("MLONCALL_PASSWORD", "short")
    code, _, err = _run(capsys, "access", "passwd", "alice")
    assert code == 2 and "at least 12 characters" in err
    monkeypatch.setenv("MLONCALL_PASSWORD", "a long enough passphrase")
    assert _run(capsys, "access", "passwd", "alice")[0] == 0
    ctx = Context.from_settings()
    with ctx.db.session() as session:
        assert (
            access.check_password(session=session, name="alice", password="a long enough passphrase").name
            == "alice"
        )
    ctx.close()
