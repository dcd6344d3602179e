"""Fixtures for the alerts tests: the alert tables, a monitor whose verdicts the test sets, a monitor catalog,
real local HTTP and SMTP receivers, and the HTTP API with the alerts router."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from mloncall.access import service as access
from mloncall.alerts import models as alert_models
from mloncall.alerts import service
from mloncall.alerts.catalog import KNOWN_MONITOR_KINDS, Catalog
from mloncall.api.app import create_app, current_principal, refuse_nul_bytes
from mloncall.core.errors import InvalidInput
from mloncall.core.outcome import Check, Outcome
from mloncall.stores.context import Context
from mloncall.stores.db import Base

ALERT_TABLES = [
    alert_models.RuleSet.__table__,
    alert_models.AlertGroup.__table__,
    alert_models.Alert.__table__,
    alert_models.AlertEvent.__table__,
    alert_models.Silence.__table__,
    alert_models.Notification.__table__,
    alert_models.DeliveryAttempt.__table__,
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "prometheus: runs a real Prometheus and Alertmanager")


def create_alert_tables(ctx: Context) -> None:
    """Until the lead's migration includes them: create the alert tables next to the migrated ones."""
    Base.metadata.create_all(ctx.db.engine, tables=ALERT_TABLES)  # type: ignore[arg-type]


@pytest.fixture
def actx(any_ctx: Context) -> Context:
    """A fresh installation with the alert tables, on SQLite and PostgreSQL."""
    create_alert_tables(any_ctx)
    return any_ctx


@pytest.fixture
def sctx(ctx: Context) -> Context:
    """A fresh SQLite installation with the alert tables (tests that are not about the database)."""
    create_alert_tables(ctx)
    return ctx


# --- a monitor the test controls -------------------------------------------------------------------------


@dataclass
class FakeMonitor:
    """Answers FAILED / SUCCESSFUL / INCONCLUSIVE per (kind, model) as the test sets them."""

    default: Outcome = Outcome.SUCCESSFUL
    outcomes: dict[tuple[str, str], Outcome] = field(default_factory=dict)
    values: dict[tuple[str, str], float] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    crash: set[tuple[str, str]] = field(default_factory=set)

    def set(self, kind: str, model: str, outcome: Outcome, value: float | None = None) -> None:
        self.outcomes[(kind, model)] = outcome
        if value is not None:
            self.values[(kind, model)] = value

    def __call__(self, *, kind: str, model: str, params: dict[str, Any], **asked: Any) -> Check:
        """Called as `mloncall.alerts.evaluation.MonitorFn` is (ctx, window and now come in `asked`)."""
        self.calls.append(
            {
                "kind": kind,
                "model": model,
                "window": asked["window"],
                "params": params,
                "now": asked.get("now"),
            }
        )
        if (kind, model) in self.crash:
            raise RuntimeError("monitor exploded")
        outcome = self.outcomes.get((kind, model), self.default)
        value = self.values.get((kind, model), 0.5)
        return Check(
            name=f"{kind}:{model}",
            outcome=outcome,
            reason=f"{kind} is {value} ({outcome.label})",
            evidence={"value": value, "threshold": params.get("threshold"), "rows": 1000},
        )


@pytest.fixture
def monitor() -> FakeMonitor:
    return FakeMonitor()


def fake_validate(kind: str, params: dict[str, Any]) -> None:
    """Stands in for mloncall.monitoring.service.validate_params: known names, non-negative numbers."""
    known = {"threshold", "drift_share", "min_accuracy", "min_labels", "max_error_rate", "quantile",
             "max_latency_ms", "min_ratio", "max_rate", "tolerance", "max_p99_ms"}  # fmt: skip
    for name, value in params.items():
        if name not in known:
            raise InvalidInput(f"monitor {kind}: unknown parameter {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidInput(f"monitor {kind}: parameter {name} must be a number >= 0, got {value!r}")


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(kinds=KNOWN_MONITOR_KINDS, validate=fake_validate)


#: The rule most tests fire: iris-classifier's error rate over 5 minutes, critical as soon as it fails.
ERRORS_RULE = """\
  - name: errors
    model: iris-classifier
    monitor: error_rate
    window: 5m
    for: 0
    severity: critical
    runbook: deployment
"""
#: A rules file of that one rule.
ERRORS_RULES = "rules:\n" + ERRORS_RULE


def load(ctx: Context, text: str, catalog: Catalog, origin: str = "test.yaml") -> service.ActiveRules:
    with ctx.db.session() as session:
        active, _ = service.load_rules(
            session=session, text=text, origin=origin, actor="test", catalog=catalog
        )
    return active


# --- real local receivers --------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 recording every POST; it answers `fail_first` times with `fail_status`."""

    url: str
    requests: list[dict[str, Any]]
    fail_first: int = 0
    fail_status: int = 500

    @property
    def bodies(self) -> list[Any]:
        return [r["json"] for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    requests: list[dict[str, Any]] = []
    state = Receiver(url="", requests=requests)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            with lock:
                n = len(requests)
                requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "json": json.loads(raw or b"null"),
                    }
                )
            status = state.fail_status if n < state.fail_first else 200
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"boom" if status >= 400 else b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[Any]


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on a free local port, keeping every message it receives."""
    from email import message_from_bytes

    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    messages: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            msg = message_from_bytes(envelope.content)
            messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "message": msg})
            return "250 Message accepted for delivery"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    yield Mailbox(host="127.0.0.1", port=port, messages=messages)
    controller.stop()


# --- the HTTP API with the alerts router -----------------------------------------------------------------


@dataclass
class AlertsApi:
    ctx: Context
    client: TestClient
    secrets: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[role]}"}

    def request(self, method: str, path: str, role: str | None = "operator", **kwargs: Any) -> Any:
        headers = {**(self.auth(role) if role else {}), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)


def build_app(ctx: Context) -> Any:
    """The control-plane app with the alerts router mounted as `create_app` mounts domain routers."""
    from mloncall.alerts.views import router

    app = create_app(ctx)
    if not any(getattr(r, "path", "").startswith("/api/v1/alerts") for r in app.routes):
        app.include_router(router, dependencies=[Depends(refuse_nul_bytes), Depends(current_principal)])
    return app


def make_tokens(ctx: Context) -> dict[str, str]:
    with ctx.db.session() as session:
        admin = access.bootstrap_admin(session=session)
        assert admin is not None
        secrets = {"admin": admin}
        for role in ("operator", "viewer"):
            access.create_principal(session=session, name=f"{role}-user", role=role)
            _, secrets[role] = access.create_token(session=session, principal_name=f"{role}-user")
    return secrets


@pytest.fixture
def alerts_api(actx: Context) -> Iterator[AlertsApi]:
    secrets = make_tokens(actx)
    with TestClient(build_app(actx), raise_server_exceptions=False) as client:
        yield AlertsApi(ctx=actx, client=client, secrets=secrets)
