"""Slow clients get a clear answer or a clear close, never a hold: raw sockets against a live server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.api.live import live_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-server")]

#: Short limits, so a held connection shows within the test's patience (WAIT, far above them).
LIMITS = {
    "MLONCALL_SERVER_HEADER_TIMEOUT": "1",
    "MLONCALL_SERVER_BODY_TIMEOUT": "1",
    "MLONCALL_SERVER_KEEP_ALIVE_TIMEOUT": "1",
    "MLONCALL_SERVER_MAX_CONNECTIONS": "8",
}
WAIT = 15.0


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    from tests.conftest import make_context

    ctx = make_context(tmp_path_factory.mktemp("timeouts") / "home")
    with live_server(ctx, **LIMITS) as url:
        parts = urlsplit(url)
        assert parts.hostname and parts.port
        yield parts.hostname, parts.port
    ctx.close()


def _connect(address: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(address, timeout=WAIT)
    return s


def _read_until_close(s: socket.socket) -> bytes:
    """Everything the server sends until it closes; a socket timeout (a hold) fails the test."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            pytest.fail(f"the server held the connection open; got {data[:200]!r}")
        except ConnectionResetError:  # closed while the client's bytes were unread: a close all the same
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("path", ["/predict", "/api/v1/models/iris/deployments"])
def test_a_body_shorter_than_declared_gets_408_and_a_close(address: tuple[str, int], path: str) -> None:
    with _connect(address) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 5000\r\n\r\n".encode()
            + b'{"inst'
            + b"a"
        )
        answer = _read_until_close(s)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"code":"request_timeout"' in answer


def test_headers_that_never_end_get_408_and_a_close(address: tuple[str, int]) -> None:
    with _connect(address) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        answer = _read_until_close(s)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_an_idle_keep_alive_connection_is_closed(address: tuple[str, int]) -> None:
    with _connect(address) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_until_close(s)  # the answer, then the close once idle
    assert answer.startswith(b"HTTP/1.1 200") and b'{"live":true}' in answer


def test_many_slow_connections_do_not_all_stay_open(address: tuple[str, int]) -> None:
    slow = [_connect(address) for _ in range(30)]
    try:
        for s in slow:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{")
        answers = [_read_until_close(s) for s in slow]
    finally:
        for s in slow:
            s.close()
    # Every connection ended (none held); beyond the cap of 8 they were refused, not timed out later.
    timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408")]
    assert len(timed_out) <= 8, [a[:40] for a in answers]
    assert all(a.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")) or not a for a in answers), answers
