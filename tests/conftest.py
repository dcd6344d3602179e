"""Shared fixtures: a fresh installation per test on SQLite or PostgreSQL, local folder or S3 (moto server).

A test that needs PostgreSQL or the S3 server is skipped with a visible reason when it cannot be reached;
on CI (CI=true) it fails instead, because there nothing may be skipped.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mloncall.core import clock
from mloncall.core.config import Settings
from mloncall.stores.context import Context

PG_URL = os.environ.get("MLONCALL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail on CI where every service must be there."""
    if ON_CI:
        pytest.fail(f"required service unavailable on CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _wall_clock() -> Iterator[None]:
    yield
    clock.set_clock(None)


@pytest.fixture
def frozen_clock() -> Iterator[clock.FrozenClock]:
    fc = clock.FrozenClock()
    clock.set_clock(fc)
    yield fc
    clock.set_clock(None)


@pytest.fixture(scope="session")
def pg_available() -> str:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} unreachable: {str(exc).splitlines()[0]}"
    return ""


@pytest.fixture
def pg_url(pg_available: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema, dropped afterwards."""
    import sqlalchemy as sa

    if pg_available:
        unavailable(pg_available)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint (moto's server) for the whole session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        unavailable(f"moto server not installed: {exc}")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    yield endpoint
    server.stop()


@pytest.fixture
def s3_root(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server, as an `s3://bucket/prefix` artifact root."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MLONCALL_S3_ENDPOINT_URL", s3_endpoint)
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/mloncall"


def make_context(home: Path, db_url: str | None = None, artifacts: str | None = None) -> Context:
    env = {"MLONCALL_HOME": str(home)}
    if db_url:
        env["MLONCALL_DB_URL"] = db_url
    if artifacts:
        env["MLONCALL_ARTIFACTS"] = artifacts
    ctx = Context.from_settings(Settings.load(env=env))
    ctx.init()
    return ctx


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    """A fresh installation on the embedded defaults: SQLite and a local artifact folder."""
    c = make_context(tmp_path / "home")
    yield c
    c.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Context]:
    """The same test on SQLite and on PostgreSQL."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    c = make_context(tmp_path / "home", db_url=url)
    yield c
    c.close()


@pytest.fixture(params=["local", "s3"])
def any_store_ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Context]:
    """The same test on a local artifact folder and on S3."""
    root = request.getfixturevalue("s3_root") if request.param == "s3" else None
    c = make_context(tmp_path / "home", artifacts=root)
    yield c
    c.close()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for driving the CLI against a fresh home (as a subprocess or with CliRunner)."""
    home = tmp_path / "clihome"
    monkeypatch.setenv("MLONCALL_HOME", str(home))
    monkeypatch.delenv("MLONCALL_DB_URL", raising=False)
    monkeypatch.delenv("MLONCALL_ARTIFACTS", raising=False)
    monkeypatch.delenv("MLONCALL_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return {**os.environ, "MLONCALL_HOME": str(home)}
