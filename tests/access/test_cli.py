"""`mloncall tokens` and `mloncall audit` end to end through Typer, against a fresh home."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from mloncall.access import service as access
from mloncall.cli import main
from mloncall.core import console
from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.stores.context import Context


@pytest.fixture
def root(cli_env: dict[str, str]) -> typer.Typer:
    """The real root command, with the access commands mounted as `mloncall` mounts them."""
    return main.app


def test_create_list_revoke_and_audit(root: typer.Typer) -> None:
    runner = CliRunner()
    created = runner.invoke(
        root, ["tokens", "create", "alice", "--role", "operator", "--expires-in", "7d", "--json"]
    )
    assert created.exit_code == 0, created.output
    out = json.loads(created.output)
    secret = out["secret"]
    assert out["principal_created"] is True

    ctx = Context.from_settings()
    with ctx.db.session() as session:
        assert access.authenticate(session=session, secret=secret).name == "alice"
    ctx.close()

    listed = runner.invoke(root, ["tokens", "list", "--json"])
    assert listed.exit_code == 0 and secret not in listed.output
    [token] = json.loads(listed.output)
    assert (token["principal"], token["status"], token["prefix"]) == ("alice", "active", secret[:12])

    human = runner.invoke(root, ["tokens", "list"])
    assert human.exit_code == 0 and "alice" in human.output and secret not in human.output

    revoked = runner.invoke(root, ["tokens", "revoke", str(token["id"]), "--json"])
    assert revoked.exit_code == 0 and json.loads(revoked.output)["status"] == "revoked"

    missing = runner.invoke(root, ["tokens", "revoke", "999"])
    assert isinstance(missing.exception, NotFound)

    log = json.loads(runner.invoke(root, ["audit", "--json"]).output)
    assert [(e["action"], e["target"], e["outcome"]) for e in log] == [
        ("tokens.revoke", "token:999", "error:not_found"),
        ("tokens.revoke", f"token:{token['id']}", "success"),
        ("tokens.create", "principal:alice", "success"),
    ]
    assert {e["actor"] for e in log} == {console.actor()}
    assert secret not in json.dumps(log)

    table = runner.invoke(root, ["audit", "--action", "create"])
    assert table.exit_code == 0 and "tokens.create" in table.output and "tokens.revoke" not in table.output


def test_human_create_prints_the_secret_once_with_a_warning(root: typer.Typer) -> None:
    result = CliRunner().invoke(root, ["tokens", "create", "bob"])
    assert result.exit_code == 0, result.output
    assert "Created principal bob with role viewer" in result.output
    assert "not shown again" in result.output
    assert "never expires" in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("mlo_")]) == 1


def test_bad_input_is_refused_before_anything_is_written(root: typer.Typer) -> None:
    runner = CliRunner()
    bad_duration = runner.invoke(root, ["tokens", "create", "carol", "--expires-in", "soon"])
    assert isinstance(bad_duration.exception, InvalidInput) and "bad token lifetime 'soon'" in str(
        bad_duration.exception
    )
    bad_role = runner.invoke(root, ["tokens", "create", "carol", "--role", "root"])
    assert isinstance(bad_role.exception, NotFound) and "unknown role" in str(bad_role.exception)
    assert json.loads(runner.invoke(root, ["tokens", "list", "--json"]).output) == []
    log = json.loads(runner.invoke(root, ["audit", "--json"]).output)
    assert [e["outcome"] for e in log] == ["error:not_found"], "the refused create is audited, not written"


def test_the_last_admin_token_cannot_be_revoked_from_the_cli(root: typer.Typer) -> None:
    runner = CliRunner()
    created = runner.invoke(root, ["tokens", "create", "root", "--role", "admin", "--json"])
    assert created.exit_code == 0, created.output
    token_id = json.loads(created.output)["token"]["id"]
    refused = runner.invoke(root, ["tokens", "revoke", str(token_id)])
    assert isinstance(refused.exception, Conflict), refused.output
    assert "last active admin token" in refused.exception.message
