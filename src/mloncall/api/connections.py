"""How long the server waits for a client, and how many it keeps: a clear answer or a clear close, never a hold.

uvicorn's httptools protocol times out only idle keep-alive connections. `GuardedHttpToolsProtocol` adds:

- a header timeout: a request whose headers are not complete in `header_timeout` seconds gets 408 and a close;
- a body timeout: a body not complete `body_timeout` seconds after its headers gets 408 and a close (the
  handler waiting for it sees a disconnect);
- a cap on open connections per worker: beyond `max_connections`, a new connection gets 503 and a close;
- a cap on a request's header bytes: past `max_header_bytes`, 431 and a close. The parser gathers a header
  value by concatenating its pieces, so one client streaming a header of tens of megabytes kept its worker
  busy for seconds and every other request on it waited.

The limits are the `[server]` table's `header_timeout`, `body_timeout`, `keep_alive_timeout`,
`max_connections` and `max_header_bytes` (`MLONCALL_SERVER_<KEY>` overrides a key), read once per worker.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mloncall.core.config import Settings, positive_numbers


@dataclass(frozen=True)
class ServerLimits:
    """Per-connection timeouts (seconds) and the per-worker connection cap."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 1000
    max_header_bytes: int = 64 * 1024

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ServerLimits:
        """The `[server]` table with `MLONCALL_SERVER_*` overrides (`max_body_bytes` is the app's)."""
        return positive_numbers(cls, "server", settings or Settings.load(), read_elsewhere={"max_body_bytes"})


@functools.cache
def limits() -> ServerLimits:
    """This worker's limits, read once."""
    return ServerLimits.from_settings()


def _answer(status: int, reason: str, message: str) -> bytes:
    body = f'{{"error":"{message}","code":"{reason}"}}'.encode()
    head = (
        f"HTTP/1.1 {status} {reason.replace('_', ' ').title()}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


_HEADER_TIMEOUT = _answer(408, "request_timeout", "the request headers were not complete in time")
_BODY_TIMEOUT = _answer(408, "request_timeout", "the request body was not complete in time")
_TOO_MANY = _answer(503, "too_many_connections", "too many open connections: try again shortly")
_HEADERS_TOO_LARGE = _answer(
    431, "request_header_fields_too_large", "the request headers are larger than the server takes"
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body timeouts and a cap on open connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits()
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # the current request's target and headers so far
        self._pending = 0  # bytes received while no head completed: a head still streaming in
        self._heads = 0  # request heads completed on this connection
        self._oversized = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            self._refuse(_TOO_MANY)
            return
        self._arm(self._limits.header_timeout, _HEADER_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(self._limits.header_timeout, _HEADER_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        heads = self._heads
        super().data_received(data)
        if self._heads == heads and (self.cycle is None or self.cycle.response_complete):
            self._pending += len(data)  # no head completed in this piece, no request in progress
        if self._oversized or self._pending > self._limits.max_header_bytes:
            self._disarm()
            self._refuse(_HEADERS_TOO_LARGE)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._heads += 1
        # Refused once this piece is parsed (the request's answer is then dropped for the 431).
        self._oversized = self._head_bytes > self._limits.max_header_bytes
        self._head_bytes = self._pending = 0
        super().on_headers_complete()
        self._arm(self._limits.body_timeout, _BODY_TIMEOUT)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, answer: bytes) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._refuse, answer)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self, answer: bytes) -> None:
        """Answer (unless a response already started on this connection) and close."""
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            if cycle is not None:
                cycle.disconnected = True  # the handler reads a disconnect, and what it sends is dropped
            self.transport.write(answer)
        self.transport.close()
