"""Notifications against real local receivers: a JSON webhook, a Slack-compatible webhook and an SMTP server;
retries with backoff, every attempt recorded."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from mloncall.alerts import notify, service
from mloncall.alerts.catalog import Catalog
from mloncall.alerts.channels import Channel, channels_from_settings, parse_channel
from mloncall.alerts.models import DeliveryAttempt, Notification
from mloncall.core import clock
from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput
from mloncall.core.outcome import Outcome
from mloncall.stores.context import Context
from tests.alerts.conftest import ERRORS_RULES, FakeMonitor, Mailbox, Receiver, load

RULES = (
    ERRORS_RULES
    + """\
    annotations:
      summary: "{{ $labels.model }} fails {{ $value }} of requests"
      description: "error rate {{ $value }}"
"""
)


@pytest.fixture
def firing(
    sctx: Context, catalog: Catalog, monitor: FakeMonitor, frozen_clock: clock.FrozenClock
) -> tuple[Context, FakeMonitor]:
    load(sctx, RULES, catalog)
    monitor.set("error_rate", "iris-classifier", Outcome.FAILED, value=0.25)
    service.evaluate_rules(ctx=sctx, monitor=monitor)
    return sctx, monitor


def attempts(ctx: Context) -> list[tuple[str, int, str, str | None]]:
    with ctx.db.session() as session:
        rows = session.query(DeliveryAttempt).order_by(DeliveryAttempt.id).all()
        return [(r.channel, r.attempt, r.status, r.error) for r in rows]


def statuses(ctx: Context) -> list[tuple[str, str]]:
    with ctx.db.session() as session:
        return [(n.event, n.status) for n in session.query(Notification).order_by(Notification.id)]


def test_webhook_gets_the_json_body_on_firing_and_resolved(
    firing: tuple[Context, FakeMonitor], receiver: Receiver
) -> None:
    ctx, monitor = firing
    channel = Channel(name="hook", type="webhook", url=receiver.url, headers={"Authorization": "Bearer abc"})
    (result,) = notify.send_pending(ctx, channels=[channel])
    assert (result.status, result.channels) == ("sent", {"hook": "sent"})
    (request,) = receiver.requests
    assert request["headers"]["Authorization"] == "Bearer abc"
    body = request["json"]
    assert body["version"] == "1" and body["event"] == "firing"
    assert body["title"] == "[FIRING] errors on iris-classifier (critical)"
    alert = body["alert"]
    assert (alert["rule"], alert["model"], alert["state"], alert["severity"], alert["runbook"]) == (
        "errors", "iris-classifier", "firing", "critical", "deployment",
    )  # fmt: skip
    assert alert["annotations"]["summary"] == "iris-classifier fails 0.25 of requests"
    assert alert["value"] == 0.25 and alert["labels"]["model"] == "iris-classifier"
    assert "condition true" in alert["reason"]
    assert attempts(ctx) == [("hook", 1, "ok", None)]
    assert notify.send_pending(ctx, channels=[channel]) == []  # nothing sent twice
    monitor.set("error_rate", "iris-classifier", Outcome.SUCCESSFUL)
    service.evaluate_rules(ctx=ctx, monitor=monitor)
    notify.send_pending(ctx, channels=[channel])
    assert [b["event"] for b in receiver.bodies] == ["firing", "resolved"]
    assert receiver.bodies[1]["alert"]["state"] == "resolved"
    assert statuses(ctx) == [("firing", "sent"), ("resolved", "sent")]


def test_slack_gets_text_and_blocks(firing: tuple[Context, FakeMonitor], receiver: Receiver) -> None:
    ctx, _ = firing
    notify.send_pending(ctx, channels=[Channel(name="slack", type="slack", url=receiver.url)])
    (body,) = receiver.bodies
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith(":rotating_light: [FIRING] errors on iris-classifier (critical)")
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "section", "context"]
    assert body["blocks"][0]["text"] == {
        "type": "plain_text",
        "text": "[FIRING] errors on iris-classifier (critical)",
    }
    assert body["blocks"][1]["text"]["type"] == "mrkdwn"
    assert {"type": "mrkdwn", "text": "*Severity*\ncritical"} in body["blocks"][2]["fields"]


def test_email_through_a_real_smtp_server(firing: tuple[Context, FakeMonitor], smtp_server: Mailbox) -> None:
    ctx, _ = firing
    channel = Channel(
        name="mail", type="email", host=smtp_server.host, port=smtp_server.port,
        sender="mloncall@example.com", recipients=("oncall@example.com", "ml@example.com"),
    )  # fmt: skip
    (result,) = notify.send_pending(ctx, channels=[channel])
    assert result.status == "sent"
    (mail,) = smtp_server.messages
    assert mail["from"] == "mloncall@example.com"
    assert mail["to"] == ["oncall@example.com", "ml@example.com"]
    message = mail["message"]
    assert message["Subject"] == "[mloncall] [FIRING] errors on iris-classifier (critical)"
    assert message["X-Mloncall-Event"] == "firing"
    text = message.get_payload(decode=True).decode()
    assert "iris-classifier fails 0.25 of requests" in text and "runbook: deployment" in text
    assert "mloncall alerts show" in text
    assert attempts(ctx) == [("mail", 1, "ok", None)]


def test_starttls_against_a_server_without_it_fails_without_retrying_forever(
    firing: tuple[Context, FakeMonitor], smtp_server: Mailbox
) -> None:
    ctx, _ = firing
    channel = Channel(
        name="mail", type="email", host=smtp_server.host, port=smtp_server.port, starttls=True,
        sender="a@example.com", recipients=("b@example.com",), max_attempts=2, backoff=0,
    )  # fmt: skip
    (result,) = notify.send_pending(ctx, channels=[channel], sleep=lambda _s: None)
    assert result.status == "failed"
    recorded = attempts(ctx)
    assert [a[:3] for a in recorded] == [("mail", 1, "failed"), ("mail", 2, "failed")]
    assert "STARTTLS" in (recorded[0][3] or "")
    assert smtp_server.messages == []


def test_a_receiver_that_fails_twice_then_succeeds_gets_three_attempts(
    firing: tuple[Context, FakeMonitor], receiver: Receiver
) -> None:
    ctx, _ = firing
    receiver.fail_first = 2
    waits: list[float] = []
    channel = Channel(
        name="hook", type="webhook", url=receiver.url, max_attempts=5, backoff=2, max_backoff=60
    )
    (result,) = notify.send_pending(ctx, channels=[channel], sleep=waits.append)
    assert result.status == "sent"
    assert attempts(ctx) == [
        ("hook", 1, "failed", "HTTP 500: boom"),
        ("hook", 2, "failed", "HTTP 500: boom"),
        ("hook", 3, "ok", None),
    ]
    assert waits == [2, 4]  # exponential backoff, without sleeping in the test
    assert len(receiver.requests) == 3
    with ctx.db.session() as session:
        (row,) = session.query(DeliveryAttempt).filter(DeliveryAttempt.status == "ok").all()
        assert row.response_code == 200 and row.at == clock.now()


def test_retries_are_bounded_and_4xx_is_not_retried(
    firing: tuple[Context, FakeMonitor], receiver: Receiver
) -> None:
    ctx, _ = firing
    receiver.fail_first = 100
    waits: list[float] = []
    channel = Channel(
        name="hook", type="webhook", url=receiver.url, max_attempts=4, backoff=10, max_backoff=25
    )
    (result,) = notify.send_pending(ctx, channels=[channel], sleep=waits.append)
    assert result.status == "failed" and len(attempts(ctx)) == 4
    assert waits == [10, 20, 25]
    assert statuses(ctx) == [("firing", "failed")]
    with ctx.db.session() as session:
        assert "HTTP 500" in (session.query(Notification).one().error or "")
    # a refusal that retrying cannot change is tried once
    assert notify.backoff_delays(Channel(name="x", type="webhook", url="http://x", max_attempts=1)) == []


def test_a_4xx_answer_is_tried_once(
    sctx: Context, catalog: Catalog, monitor: FakeMonitor, receiver: Receiver, frozen_clock: clock.FrozenClock
) -> None:
    load(sctx, RULES, catalog)
    monitor.set("error_rate", "iris-classifier", Outcome.FAILED)
    service.evaluate_rules(ctx=sctx, monitor=monitor)
    receiver.fail_first, receiver.fail_status = 100, 404
    (result,) = notify.send_pending(sctx, channels=[Channel(name="hook", type="webhook", url=receiver.url)])
    assert result.status == "failed"
    assert attempts(sctx) == [("hook", 1, "failed", "HTTP 404: boom")]


def test_an_unreachable_receiver_is_retried_and_recorded(firing: tuple[Context, FakeMonitor]) -> None:
    from tests.conftest import free_port

    ctx, _ = firing
    channel = Channel(
        name="down", type="webhook", url=f"http://127.0.0.1:{free_port()}/x", max_attempts=3, timeout=2
    )
    (result,) = notify.send_pending(ctx, channels=[channel], sleep=lambda _s: None)
    assert result.status == "failed"
    assert [(c, n, s) for c, n, s, _ in attempts(ctx)] == [
        ("down", 1, "failed"),
        ("down", 2, "failed"),
        ("down", 3, "failed"),
    ]
    assert "ConnectError" in (attempts(ctx)[0][3] or "")


def test_silenced_alerts_send_nothing(
    sctx: Context, catalog: Catalog, monitor: FakeMonitor, receiver: Receiver, frozen_clock: clock.FrozenClock
) -> None:
    import datetime as dt

    load(sctx, RULES, catalog)
    with sctx.db.session() as session:
        service.create_silence(
            session=session,
            matchers=["rule=errors"],
            duration=dt.timedelta(hours=1),
            comment="known",
            actor="a",
        )
    monitor.set("error_rate", "iris-classifier", Outcome.FAILED)
    service.evaluate_rules(ctx=sctx, monitor=monitor)
    assert notify.send_pending(sctx, channels=[Channel(name="hook", type="webhook", url=receiver.url)]) == []
    assert receiver.requests == [] and statuses(sctx) == [("firing", "suppressed")]


def test_channel_filters_and_unrouted_events(firing: tuple[Context, FakeMonitor], receiver: Receiver) -> None:
    ctx, _ = firing
    only_info = Channel(name="info", type="webhook", url=receiver.url, severities=("info",))
    only_resolved = Channel(name="resolved", type="webhook", url=receiver.url, events=("resolved",))
    (result,) = notify.send_pending(ctx, channels=[only_info, only_resolved])
    assert result.status == "unrouted" and receiver.requests == []
    with ctx.db.session() as session:
        assert session.query(Notification).one().error == "no configured channel takes this event"


def test_channels_from_the_config_file(tmp_path: Any) -> None:
    config = tmp_path / "mloncall.toml"
    config.write_text(
        textwrap.dedent(
            """\
            [alerts]
            evaluation_interval = "30s"

            [[alerts.channels]]
            name = "hook"
            type = "webhook"
            url = "https://hooks.example.com/x"
            headers = { Authorization = "Bearer t" }

            [[alerts.channels]]
            name = "slack"
            type = "slack"
            url_env = "SLACK_URL"
            severities = ["critical"]

            [[alerts.channels]]
            name = "mail"
            type = "email"
            host = "smtp.example.com"
            port = 587
            starttls = true
            username = "u"
            password_env = "SMTP_PASSWORD"
            from = "mloncall@example.com"
            to = ["oncall@example.com"]
            max_attempts = 5
            """
        )
    )
    settings = Settings.load(env={"MLONCALL_HOME": str(tmp_path)}, config_file=config)
    env = {"SLACK_URL": "https://hooks.slack.com/services/T/B/C", "SMTP_PASSWORD": "pw"}
    hook, slack, mail = channels_from_settings(settings, env=env)
    assert (hook.type, hook.headers) == ("webhook", {"Authorization": "Bearer t"})
    assert slack.url == env["SLACK_URL"] and slack.severities == ("critical",)
    assert (mail.port, mail.starttls, mail.password, mail.recipients, mail.max_attempts) == (
        587, True, "pw", ("oncall@example.com",), 5,
    )  # fmt: skip
    assert "pw" not in repr(mail) and "T/B/C" in slack.describe()
    with pytest.raises(InvalidInput, match="SLACK_URL"):
        channels_from_settings(settings, env={"SMTP_PASSWORD": "pw"})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"type": "webhook", "url": "http://x"}, "'name' is required"),
        ({"name": "a", "type": "pager", "url": "http://x"}, "type must be one of"),
        ({"name": "a", "type": "webhook", "url": "ftp://x"}, "url must be an http"),
        ({"name": "a", "type": "webhook", "url": "http://x", "retries": 3}, "unknown key"),
        ({"name": "a", "type": "webhook", "url": "http://x", "max_attempts": 0}, "max_attempts"),
        ({"name": "a", "type": "webhook", "url": "http://x", "events": ["paged"]}, "unknown 'paged'"),
        ({"name": "a", "type": "email", "host": "h", "from": "a@b", "to": []}, "to must be"),
        ({"name": "a", "type": "email", "host": "h", "from": "nobody", "to": ["x@y"]}, "'from'"),
        (
            {
                "name": "a",
                "type": "email",
                "host": "h",
                "from": "a@b",
                "to": ["x@y"],
                "ssl": True,
                "starttls": True,
            },
            "not both",
        ),
    ],
)
def test_bad_channel_configuration_is_refused(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_channel(raw, env={})


def test_email_with_starttls_and_login(firing: tuple[Context, FakeMonitor], tmp_path: Any) -> None:
    """A real SMTP server that requires STARTTLS and a login (self-signed certificate trusted via ca_file)."""
    import shutil
    import ssl
    import subprocess
    from email import message_from_bytes

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from tests.conftest import free_port

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(str(cert), str(key))
    received: list[Any] = []
    logins: list[tuple[str, str]] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(message_from_bytes(envelope.content))
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        user, password = data.login.decode(), data.password.decode()
        logins.append((user, password))
        ok = (user, password) == ("mloncall", "s3cret")
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 on failure

    port = free_port()
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True,
        authenticator=authenticator, auth_required=True,
    )  # fmt: skip
    controller.start()
    try:
        ctx, monitor = firing
        base = {"name": "mail", "type": "email", "host": "127.0.0.1", "port": port, "starttls": True,
                "ca_file": str(cert), "username": "mloncall", "from": "a@example.com", "to": ["b@example.com"]}  # fmt: skip
        channel = parse_channel({**base, "password_env": "PW"}, env={"PW": "s3cret"})
        (result,) = notify.send_pending(ctx, channels=[channel])
        assert result.status == "sent", attempts(ctx)
        assert logins == [("mloncall", "s3cret")]
        assert received[0]["Subject"] == "[mloncall] [FIRING] errors on iris-classifier (critical)"
        # a wrong password is refused and not retried (retrying cannot fix it)
        monitor.set("error_rate", "iris-classifier", Outcome.SUCCESSFUL)
        service.evaluate_rules(ctx=ctx, monitor=monitor)
        wrong = parse_channel({**base, "password": "nope", "max_attempts": 3}, env={})
        (result,) = notify.send_pending(ctx, channels=[wrong], sleep=lambda _s: None)
        assert result.status == "failed"
        assert [a[:3] for a in attempts(ctx)[1:]] == [("mail", 1, "failed")]
        assert "authentication failed" in (attempts(ctx)[1][3] or "")
    finally:
        controller.stop()
