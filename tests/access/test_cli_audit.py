"""`mloncall audit` and `mloncall audit verify` through the real command, against a fresh home."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from mloncall.cli import main
from mloncall.core.errors import IntegrityError
from mloncall.stores.context import Context


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main.run(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def home(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Context:
    """A home with a few changes made from the CLI: two tokens created, one refused revoke."""
    for argv in (["tokens", "create", "alice", "--role", "operator"], ["tokens", "create", "bob"]):
        assert _run(capsys, *argv)[0] == 0
    assert _run(capsys, "tokens", "revoke", "999")[0] == 3
    ctx = Context.from_settings()
    ctx.open()
    return ctx


def test_cli_changes_carry_a_request_id_and_the_filters_narrow(
    home: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, "audit", "--json")
    records = json.loads(out)
    assert code == 0 and all(r["request_id"] for r in records if r["action"].startswith("tokens."))
    assert len({r["request_id"] for r in records}) == len(records), "one id per command"
    [failed] = json.loads(_run(capsys, "audit", "--outcome", "error", "--json")[1])
    assert (failed["target"], failed["reason"]) == ("token:999", "token 999 does not exist")
    by_id = json.loads(_run(capsys, "audit", "--request-id", failed["request_id"], "--json")[1])
    assert [r["id"] for r in by_id] == [failed["id"]]
    found = json.loads(_run(capsys, "audit", "--resource", "principal:", "--json")[1])
    assert [r["target"] for r in found] == ["principal:bob", "principal:alice"]
    mine = json.loads(_run(capsys, "audit", "--principal", failed["actor"], "--since", "1h", "--json")[1])
    assert [r["action"] for r in mine] == ["tokens.revoke", "tokens.create", "tokens.create"]
    assert json.loads(_run(capsys, "audit", "--until", "1h", "--json")[1]) == []
    assert _run(capsys, "audit", "--since", "last week")[0] == 2


def test_the_table_keeps_ids_and_names_whole_in_80_columns(
    home: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    from mloncall.core import console

    console.out.width = 80
    try:
        code, out = _run(capsys, "audit")
    finally:
        console.out.width = None  # type: ignore[assignment]
    lines = out.splitlines()
    assert code == 0 and all(len(line) <= 80 for line in lines)
    assert any("principal" in line and "action" in line and "outcome" in line for line in lines)
    assert "cli:" in out and "tokens.create" in out, "the principal and the action are never cut"


def test_verify_exits_0_when_intact_and_5_naming_the_broken_link(
    home: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, "audit", "verify")
    assert code == 0 and out.startswith("intact: ")
    report = json.loads(_run(capsys, "audit", "verify", "--json")[1])
    assert report["intact"] is True and report["checked"] == report["head_seq"] == 3

    with home.db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 2"))
    code = main.run(["audit", "verify"])
    out, err = capsys.readouterr()
    assert code == IntegrityError.exit_code == 5 and out.startswith("broken after 1 intact record")
    assert "record after seq 1 is missing: seq 3 links to a hash no record has" in err
    code, out = _run(capsys, "audit", "verify", "--json")
    report = json.loads(out)
    assert code == 5 and report["intact"] is False and report["broken"]["kind"] == "missing"
    assert report["broken"]["seq"] == 2
