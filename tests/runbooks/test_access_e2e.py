"""Runbook 7 (`access`) end to end against a live `mloncall server`: a service account that may not write to
the registry; the run confirms, checks authentication and permissions, files the break-glass request and
waits; an admin approves it over HTTP (the requester cannot); the run resumes, tells the security contact
(a real webhook receiver), gives the role for good and ends the grant; acceptance asks the server with the
service's own token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mloncall.access import grants, roles
from mloncall.access import service as access
from mloncall.core.config import Settings
from mloncall.runbooks import engine, export
from mloncall.runbooks import service as runs
from mloncall.stores.context import Context
from tests.alerts.conftest import Receiver
from tests.api.live import live_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-server")]


class Yes:
    actor = "carol"

    def ask(self, question: str) -> bool:
        return True

    def note(self, prompt: str) -> str:
        return ""


@pytest.fixture
def installation(tmp_path: Path, receiver: Receiver) -> Iterator[tuple[Context, str, dict[str, str]]]:
    config = tmp_path / "mloncall.toml"
    config.write_text(
        f'[access]\nsecurity_channel = "security"\n\n[[alerts.channels]]\nname = "security"\ntype = "webhook"\n'
        f'url = "{receiver.url}"\n'
    )
    settings = Settings.load(env={"MLONCALL_HOME": str(tmp_path / "home"), "MLONCALL_CONFIG": str(config)})
    ctx = Context.from_settings(settings)
    ctx.init()
    secrets = {}
    with ctx.db.session() as s:
        access.create_principal(session=s, name="bob", role="admin")
        access.create_principal(session=s, name="svc-retrain", kind="service", role="viewer")
        _, secrets["bob"] = access.create_token(session=s, principal_name="bob")
        _, secrets["svc-retrain"] = access.create_token(session=s, principal_name="svc-retrain")
    with live_server(ctx, MLONCALL_CONFIG=str(config)) as url:
        yield ctx, url, secrets
    ctx.close()


def _record(ctx: Context, run_id: int) -> dict[str, Any]:
    with ctx.db.session() as s:
        return export.run_dict(s, runs.get_run_or_raise(session=s, run_id=run_id))


def test_access_runbook_grants_escalates_fixes_and_proves_it_with_the_token(
    installation: tuple[Context, str, dict[str, str]], receiver: Receiver
) -> None:
    ctx, url, secrets = installation
    svc = {"Authorization": f"Bearer {secrets['svc-retrain']}"}
    # deleting a version that does not exist: 404 once allowed, 403 while not
    refused = httpx.delete(f"{url}/api/v1/models/iris/versions/99", headers=svc)
    assert refused.status_code == 403
    assert refused.json()["details"]["fix"] == "mloncall access grant svc-retrain engineer --scope iris"

    params = {"principal": "svc-retrain", "action": "registry:write", "model": "iris", "server": url,
              "reason": "nightly retrain failed on 403"}  # fmt: skip
    run_id = engine.start(ctx, runbook="access", params=params, confirmer=Yes())
    first = _record(ctx, run_id)
    assert first["state"] == "waiting", [(s["name"], s["state"], s.get("reason")) for s in first["steps"]]
    steps = {s["name"]: s for s in first["steps"]}
    assert steps["confirm"]["state"] == "successful" and steps["authentication"]["state"] == "successful"
    assert (
        steps["permissions"]["evidence"]["fix"] == "mloncall access grant svc-retrain engineer --scope iris"
    )
    request_id = steps["workaround"]["evidence"]["request_id"]

    own = httpx.post(f"{url}/api/v1/access/requests/{request_id}/approve", headers=svc, json={})
    assert own.status_code == 403, "a viewer may not approve, and nobody approves their own request"
    bob = {"Authorization": f"Bearer {secrets['bob']}"}
    approved = httpx.post(
        f"{url}/api/v1/access/requests/{request_id}/approve", headers=bob, json={"note": "ok"}
    )
    assert approved.status_code == 200 and approved.json()["state"] == "approved", approved.text
    assert httpx.delete(f"{url}/api/v1/models/iris/versions/99", headers=svc).status_code == 404

    engine.resume(ctx, run_id, confirmer=Yes())
    done = _record(ctx, run_id)
    steps = {s["name"]: s for s in done["steps"]}
    assert done["state"] == "finished", done
    assert steps["approval"]["evidence"]["approved_by"] == "bob"
    assert steps["escalate"]["state"] == "successful"
    [told] = receiver.bodies
    assert (
        told["kind"] == "access" and told["request_id"] == request_id and told["principal"] == "svc-retrain"
    )
    checks = {c["name"]: c for c in done["acceptance"]["checks"]}
    assert all(c["outcome"] == "successful" for c in checks.values()), checks
    assert checks["root cause fixed permanently"]["evidence"]["grant_state"] == "revoked"
    assert checks["engineer able to perform the action"]["evidence"]["allowed"] is True

    with ctx.db.session() as s:
        row = grants.get_request_or_raise(session=s, request_id=request_id)
        assert row.state == "revoked" and row.uses >= 1, "the grant's use was counted"
        svc_principal = access.get_principal_or_raise(session=s, name="svc-retrain")
        assert "engineer" in roles.bound_roles(session=s, principal=svc_principal, scope="model:iris")
    # the grant is over, yet the service may act: the role change alone carries it
    assert httpx.delete(f"{url}/api/v1/models/iris/versions/99", headers=svc).status_code == 404
    assert httpx.delete(f"{url}/api/v1/models/wine/versions/99", headers=svc).status_code == 403
