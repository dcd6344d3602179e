"""`mloncall access diagnose` against a live `mloncall server`, a moto S3 server enforcing IAM keys, and a
PostgreSQL reached through a relay the test closes: each layer fails for its real reason, and the first
failing one is named with its fix."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from mloncall.access import diagnose as diagnosis
from mloncall.access import service as access
from mloncall.access.diagnose_stores import local_installation
from mloncall.core import clock
from mloncall.core.errors import InvalidInput
from mloncall.stores.context import Context
from tests.access.servers import Relay, moto_server
from tests.api.live import live_server
from tests.conftest import PG_URL, free_port, make_context, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-server")]
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


@dataclass
class Live:
    """One installation behind one live server, with a token for each case."""

    ctx: Context
    url: str
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    ctx = make_context(tmp_path_factory.mktemp("diagnose") / "home")
    tokens: dict[str, str] = {}
    with ctx.db.session() as session:
        access.create_principal(session=session, name="alice", role="engineer")
        access.set_password(session=session, name="alice", password=PASSWORD)
        access.create_principal(session=session, name="vic", role="viewer")
        access.create_principal(session=session, name="gone", role="viewer")
        tokens["alice"] = access.create_token(session=session, principal_name="alice")[1]
        tokens["vic"] = access.create_token(session=session, principal_name="vic")[1]
        tokens["gone"] = access.create_token(session=session, principal_name="gone")[1]
        access.disable_principal(session=session, name="gone")
        revoked, tokens["revoked"] = access.create_token(session=session, principal_name="vic")
        access.revoke_token(session=session, token_id=revoked.id)
        # Issued a year ago for an hour: expired by the server's clock, with no waiting.
        clock.set_clock(clock.FrozenClock(dt.datetime.now(dt.UTC) - dt.timedelta(days=365)))
        try:
            tokens["expired"] = access.create_token(
                session=session, principal_name="vic", expires_in=dt.timedelta(hours=1)
            )[1]
        finally:
            clock.set_clock(None)
    with live_server(ctx) as url:
        yield Live(ctx=ctx, url=url, tokens=tokens)
    ctx.close()


def target(live: Live, token: str | None = "alice", **changes: Any) -> diagnosis.Target:
    base = diagnosis.Target(
        url=live.url,
        token=live.tokens.get(token or "", token),
        artifacts=live.ctx.settings.artifacts,
        local=live.ctx.settings,
        timeout=5.0,
    )
    return replace(base, **changes)


def states(result: diagnosis.Diagnosis) -> dict[str, str]:
    return {layer.name: layer.state for layer in result.layers}


# --- every layer passes, through the command ----------------------------------------------------------


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLONCALL_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "mloncall", "access", "diagnose", *args],
        env={**clean, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "80", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_layer_passes_and_the_table_reads_in_80_columns(live: Live) -> None:
    done = run_cli(
        "--permission", "registry:write", "--model", "iris", "--user", "alice",
        MLONCALL_URL=live.url, MLONCALL_TOKEN=live.tokens["alice"], MLONCALL_PASSWORD=PASSWORD,
        MLONCALL_HOME=str(live.ctx.settings.home), MLONCALL_DB_URL=live.ctx.settings.db_url,
        MLONCALL_ARTIFACTS=live.ctx.settings.artifacts,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in lines if line.count("│") == 4}
    expected = {"server", "token", "permission", "database", "artifacts", "login"}
    assert expected <= set(rows)
    assert all(rows[name] == "ok" for name in expected - {"login"}), rows
    # The dashboard login route may not exist on this server yet: then the layer says so and is skipped.
    assert rows["login"] in ("ok", "skipped")
    assert live.tokens["alice"] not in done.stdout + done.stderr
    assert live.tokens["alice"][:12] + "…" in done.stdout


def test_json_names_the_first_failing_layer_its_fix_and_the_exit_code(live: Live) -> None:
    done = run_cli("--json", MLONCALL_URL=live.url, MLONCALL_TOKEN=live.tokens["revoked"])
    assert done.returncode == 6, done.stderr
    report = json.loads(done.stdout)
    assert (report["blame"], report["exit_code"], report["ok"]) == ("token", 6, False)
    assert report["fix"] == "ask an admin for a new token: `mloncall tokens create NAME`"
    assert [layer["name"] for layer in report["layers"]] == list(diagnosis.LAYERS)
    assert "first failing layer: token" in done.stderr
    assert live.tokens["revoked"] not in done.stdout + done.stderr


# --- layer 1: the server ------------------------------------------------------------------------------


def test_a_wrong_port_is_connection_refused_and_stops_the_blame_at_the_server(live: Live) -> None:
    result = diagnosis.diagnose(target(live, url=f"http://127.0.0.1:{free_port()}"))
    server = result.layer("server")
    assert server.check.evidence["failure"] == "refused"
    assert "connection refused" in server.check.reason
    assert result.blame is server and result.exit_code == 7
    assert "`mloncall server`" in (server.fix or "")
    s = states(result)
    assert (s["token"], s["permission"], s["login"]) == ("skipped", "skipped", "skipped")
    # The layers that do not need the server still run: the database and the artifacts, reached directly.
    assert (s["database"], s["artifacts"]) == ("ok", "ok")


def test_an_unresolvable_host_is_a_dns_failure(live: Live) -> None:
    result = diagnosis.diagnose(target(live, url="http://no-such-host.invalid:8000"))
    server = result.layer("server")
    assert server.state == "failed" and server.check.evidence["failure"] == "dns"
    assert "no-such-host.invalid" in server.check.reason and "DNS" in (server.fix or "")


def test_https_against_the_plain_http_port_is_a_tls_failure(live: Live) -> None:
    url = live.url.replace("http://", "https://")
    server = diagnosis.diagnose(target(live, url=url)).layer("server")
    assert server.check.evidence["failure"] == "tls"
    assert "TLS handshake failed" in server.check.reason
    assert server.fix == f"check the URL: try {live.url}"


def test_a_self_signed_certificate_is_told_apart(tmp_path: Path, live: Live) -> None:
    import http.server
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{httpd.server_address[1]}"
        server = diagnosis.diagnose(target(live, url=url)).layer("server")
    finally:
        httpd.shutdown()
    assert server.check.evidence["failure"] == "tls"
    assert "certificate is not trusted" in server.check.reason and "SSL_CERT_FILE" in (server.fix or "")


def test_a_server_that_accepts_but_never_answers_times_out(live: Live) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        server = diagnosis.diagnose(target(live, url=url, timeout=0.3)).layer("server")
    assert server.check.evidence["failure"] == "timeout" and "timed out" in server.check.reason


# --- layer 2: the token -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "refused", "said", "fix"),
    [
        ("revoked", "revoked", "was revoked at", "mloncall tokens create NAME"),
        ("expired", "expired", "expired at", "mloncall tokens create NAME"),
        ("gone", "disabled", "principal 'gone' is disabled", "mloncall access enable gone"),
        ("mlo_" + "u" * 43, "unknown", "unknown token", "copy the whole token again"),
    ],
)
def test_a_refused_token_says_why_and_how_to_get_a_good_one(
    live: Live, token: str, refused: str, said: str, fix: str
) -> None:
    result = diagnosis.diagnose(target(live, token=token))
    layer = result.layer("token")
    assert layer.check.evidence["refused"] == refused
    assert said in layer.check.reason and fix in (layer.fix or "")
    assert result.blame is layer and result.exit_code == 6
    assert states(result)["permission"] == "skipped"
    secret = live.tokens.get(token, token)
    assert secret not in json.dumps(result.to_dict())
    assert layer.check.evidence["token"] == secret[:12] + "…"


def test_a_malformed_or_missing_token_is_told_without_leaking_it(live: Live) -> None:
    fragment = live.tokens["alice"][:30]
    layer = diagnosis.diagnose(target(live, token=fragment)).layer("token")
    assert layer.check.evidence["refused"] == "malformed" and "malformed token" in layer.check.reason
    assert fragment not in json.dumps(layer.to_dict())
    missing = diagnosis.diagnose(target(live, token=None)).layer("token")
    assert missing.state == "failed" and "MLONCALL_TOKEN" in missing.check.reason


# --- layer 3: the permission --------------------------------------------------------------------------


def test_a_permission_the_role_lacks_carries_the_explanations_fix(live: Live) -> None:
    result = diagnosis.diagnose(target(live, token="vic", permission="registry:write", model="iris"))
    layer = result.layer("permission")
    assert layer.state == "failed" and result.blame is layer and result.exit_code == 6
    assert "vic may not registry:write on model iris" in layer.check.reason
    assert (layer.fix or "").startswith("mloncall access grant vic ")
    assert "mloncall access request" in (layer.fix or "")
    assert states(result)["token"] == "ok"


def test_without_a_permission_the_roles_are_shown_and_the_layer_skipped(live: Live) -> None:
    result = diagnosis.diagnose(target(live, token="alice"))
    layer = result.layer("permission")
    assert layer.state == "skipped" and layer.check.evidence["roles"] == ["engineer"]
    assert "alice holds engineer" in layer.check.reason and result.exit_code == 0


# --- layer 6: the dashboard login ---------------------------------------------------------------------


def test_the_dashboard_login_is_tried_only_with_a_user_and_a_password(live: Live) -> None:
    assert "no --user" in diagnosis.diagnose(target(live)).layer("login").check.reason
    no_password = diagnosis.diagnose(target(live, user="alice")).layer("login")
    assert no_password.state == "skipped" and "MLONCALL_PASSWORD" in no_password.check.reason
    right = diagnosis.diagnose(target(live, user="alice", password=PASSWORD)).layer("login")
    wrong = diagnosis.diagnose(target(live, user="alice", password="not the password")).layer("login")
    if right.state == "skipped":  # a server without the dashboard's login route
        assert right.check.reason == wrong.check.reason == "this server has no dashboard login"
        return
    assert right.state == "ok"
    assert wrong.state == "failed" and "wrong user name or password" in wrong.check.reason


# --- layer 4: the metadata database -------------------------------------------------------------------


@contextmanager
def postgres_behind_a_relay(home: Path) -> Iterator[tuple[Context, Relay]]:
    import sqlalchemy as sa

    try:
        admin = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            schema = f"t_{uuid.uuid4().hex[:12]}"
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        unavailable(f"PostgreSQL at {PG_URL} unreachable: {str(exc).splitlines()[0]}")
    url = sa.make_url(PG_URL)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    ctx = make_context(home, db_url=f"{relayed}?options=-csearch_path%3D{schema}")
    try:
        yield ctx, relay
    finally:
        relay.close()
        ctx.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.mark.postgres
def test_a_server_whose_database_is_down_blames_the_database_not_the_token(tmp_path: Path) -> None:
    with postgres_behind_a_relay(tmp_path / "home") as (ctx, relay):
        with ctx.db.session() as session:
            access.create_principal(session=session, name="alice", role="engineer")
            secret = access.create_token(session=session, principal_name="alice")[1]
        with live_server(ctx) as url:
            before = diagnosis.diagnose(diagnosis.Target(url=url, token=secret))
            assert states(before)["database"] == "ok" and before.blame is None
            relay.close()
            ctx.close()
            assert httpx.get(f"{url}/healthz", timeout=10).status_code == 503
            result = diagnosis.diagnose(diagnosis.Target(url=url, token=secret, local=ctx.settings))
    s = states(result)
    assert s["server"] == "ok" and "database is down" in result.layer("server").check.reason
    assert (s["token"], s["permission"]) == ("skipped", "skipped")
    database = result.layer("database")
    assert result.blame is database and result.exit_code == 7
    assert "/healthz 503 store_unavailable" in database.check.reason
    assert "connection refused" in database.check.reason.lower()  # the direct try, from this machine
    assert "MLONCALL_DB_URL" in (database.fix or "")


# --- layer 5: the artifact store ----------------------------------------------------------------------


@dataclass
class S3:
    endpoint: str
    bucket: str
    keys: dict[str, tuple[str, str]]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """A moto server with a bucket, a key allowed on it and a key allowed nothing; IAM enforced from then on
    (moto's reset-auth), so a wrong key is refused for real."""
    pytest.importorskip("moto.server")
    import botocore.session

    with moto_server() as (endpoint, _):
        session = botocore.session.get_session()

        def client(service: str) -> Any:
            return session.create_client(
                service, region_name="us-east-1", endpoint_url=endpoint,
                aws_access_key_id="setup", aws_secret_access_key="setup",
            )  # fmt: skip

        bucket = f"b-{uuid.uuid4().hex[:12]}"
        client("s3").create_bucket(Bucket=bucket)
        iam = client("iam")
        keys = {}
        for user, allowed in (("reader", True), ("nobody", False)):
            iam.create_user(UserName=user)
            if allowed:
                policy = {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
                iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
        yield S3(endpoint=endpoint, bucket=bucket, keys=keys)


def with_key(monkeypatch: pytest.MonkeyPatch, key: tuple[str, str]) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key[1])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.mark.s3
def test_s3_with_its_key_lists_the_bucket(live: Live, s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    with_key(monkeypatch, s3.keys["reader"])
    monkeypatch.setenv("MLONCALL_S3_ENDPOINT_URL", s3.endpoint)
    result = diagnosis.diagnose(target(live, artifacts=f"s3://{s3.bucket}/mloncall"))
    layer = result.layer("artifacts")
    assert layer.state == "ok", layer.check.reason
    assert s3.keys["reader"][1] not in json.dumps(result.to_dict())


@pytest.mark.s3
@pytest.mark.parametrize(
    ("key", "bucket", "s3_error", "code", "fix"),
    [
        ("unknown", None, "InvalidAccessKeyId", 6, "rotate the S3 key"),
        ("wrong-secret", None, "SignatureDoesNotMatch", 6, "rotate the S3 key"),
        ("nobody", None, "AccessDenied", 6, "s3:ListBucket"),
        ("reader", "no-such-bucket", "NoSuchBucket", 7, "check the bucket"),
    ],
)
def test_a_refused_s3_key_is_told_apart_from_a_denial_and_a_missing_bucket(
    live: Live,
    s3: S3,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    bucket: str | None,
    s3_error: str,
    code: int,
    fix: str,
) -> None:
    keys = {
        **s3.keys,
        "unknown": ("AKIAUNKNOWNKEY000000", "x" * 40),
        "wrong-secret": (s3.keys["reader"][0], "x" * 40),
    }
    with_key(monkeypatch, keys[key])
    monkeypatch.setenv("MLONCALL_S3_ENDPOINT_URL", s3.endpoint)
    result = diagnosis.diagnose(target(live, artifacts=f"s3://{bucket or s3.bucket}/mloncall"))
    layer = result.layer("artifacts")
    assert layer.state == "failed" and layer.check.evidence["s3_error"] == s3_error
    assert result.blame is layer and result.exit_code == code and fix in (layer.fix or "")
    assert "network failure" not in layer.check.reason
    assert keys[key][1] not in json.dumps(result.to_dict())


@pytest.mark.s3
def test_a_stopped_s3_server_is_a_network_failure_not_a_key_problem(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("moto.server")
    with moto_server() as (endpoint, proc):
        proc.terminate()
        proc.wait(timeout=10)
        with_key(monkeypatch, ("AKIAUNKNOWNKEY000000", "x" * 40))
        monkeypatch.setenv("MLONCALL_S3_ENDPOINT_URL", endpoint)
        result = diagnosis.diagnose(target(live, artifacts="s3://any-bucket/mloncall"))
    layer = result.layer("artifacts")
    assert layer.state == "failed" and layer.check.evidence["failure"] == "refused"
    assert "network failure, not a credential problem" in layer.check.reason
    assert result.exit_code == 7 and "VPN" in (layer.fix or "")


def test_a_missing_artifact_folder_fails_the_artifacts_layer(live: Live, tmp_path: Path) -> None:
    result = diagnosis.diagnose(target(live, artifacts=str(tmp_path / "nowhere")))
    layer = result.layer("artifacts")
    assert layer.state == "failed" and "does not exist" in layer.check.reason
    assert result.blame is layer and result.exit_code == 7


def test_a_non_mloncall_answer_is_named(live: Live, s3: S3) -> None:
    server = diagnosis.diagnose(target(live, url=s3.endpoint)).layer("server")
    assert server.check.evidence["failure"] == "not_mloncall"
    assert "not as an mloncall server" in server.check.reason


# --- what the command is given -------------------------------------------------------------------------


def test_a_bad_url_permission_or_model_is_refused_before_anything_is_tried() -> None:
    for bad in (
        {"url": "ftp://host"},
        {"url": "http://"},
        {"permission": "registry:fly"},
        {"model": "Iris!"},
    ):
        with pytest.raises(InvalidInput):
            diagnosis.Target(**bad)  # type: ignore[arg-type]


def test_only_a_machine_with_settings_is_taken_for_the_installations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert local_installation({}) is None
    found = local_installation({"MLONCALL_HOME": str(tmp_path / "home")})
    assert found is not None and found.home == tmp_path / "home"
