"""The second probe with raw sockets against a live server: heads too large, chunked bodies that stall,
a 100-continue with no body, a request both chunked and sized; each a clear answer and a close."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.live import live_server
from tests.api.test_timeouts import LIMITS, WAIT, _read_until_close

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-server")]


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    from tests.conftest import make_context

    ctx = make_context(tmp_path_factory.mktemp("probe2-live") / "home")
    with live_server(ctx, **LIMITS, MLONCALL_SERVER_MAX_HEADER_BYTES="8192") as url:
        parts = urlsplit(url)
        assert parts.hostname and parts.port
        yield parts.hostname, parts.port
    ctx.close()


def _exchange(address: tuple[str, int], data: bytes) -> bytes:
    with socket.create_connection(address, timeout=WAIT) as s:
        s.sendall(data)
        return _read_until_close(s)


def test_a_head_past_the_limit_is_431_and_the_worker_keeps_serving(address: tuple[str, int]) -> None:
    # Was no limit: the parser concatenates a header value's pieces, so one client streaming a header of
    # tens of megabytes held its worker for seconds, every other request on it waiting.
    answers: list[int] = []

    def others() -> None:
        with httpx.Client(base_url=f"http://{address[0]}:{address[1]}", timeout=WAIT) as c:
            answers.extend(c.get("/v2/health/live").status_code for _ in range(5))

    with socket.create_connection(address, timeout=WAIT) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
        thread = threading.Thread(target=others)
        thread.start()
        try:
            for _ in range(64):
                s.sendall(b"a" * 4096)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while the client still wrote: what should happen
        answer = _read_until_close(s)
        thread.join()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert answers == [200] * 5


def test_many_small_headers_past_the_limit_are_431(address: tuple[str, int]) -> None:
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(2000))
    answer = _exchange(address, head + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431") and b"request_header_fields_too_large" in answer, answer[:200]


def test_a_head_under_the_limit_with_a_body_over_it_is_served(address: tuple[str, int]) -> None:
    body = b'{"instances": [' + b",".join([b'{"a": 1}'] * 2000) + b"]}"  # 20 kB: the body is not the head
    head = (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    )
    answer = _exchange(address, head.encode() + b"\r\nConnection: close\r\n\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]  # no model served: not a 431


@pytest.mark.parametrize(
    "request_bytes",
    [
        # a chunked body whose next chunk never comes
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
        b'\r\n\r\n5\r\n{"ins\r\n',
        # asks to continue, is told to, and sends nothing
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
        b'POST /api/v1/incidents HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"title": ',
    ],
)
def test_a_body_that_stalls_after_it_began_gets_408(address: tuple[str, int], request_bytes: bytes) -> None:
    answer = _exchange(address, request_bytes)
    assert b"HTTP/1.1 408" in answer and b'"code":"request_timeout"' in answer, answer[:200]


def test_a_request_both_chunked_and_sized_is_refused(address: tuple[str, int]) -> None:
    answer = _exchange(
        address,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
