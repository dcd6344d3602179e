"""The paced client: open-loop load on a schedule of due times, over keep-alive HTTP/1.1 connections.

Each connection sends a prebuilt request at the times it is given (the schedule's times dealt round-robin).
A request that falls due while its connection still waits for the previous answer is timed from when it was
due, not from when it could be written: a stall counts for every request it delayed (no coordinated
omission, the flaw of closed-loop tools such as wrk). Its latency from the write, as wrk counts, is kept
beside it. The schedule is finite and every wait is bounded by the request timeout, so a run stops by itself.

A connection the server closes before answering (a worker retired by `mloncall scale` closes its idle
keep-alive connections) is reopened and the request sent again once, as HTTP clients do for a request that
got no byte back; that is counted (`resent`). Any other failure, a non-2xx answer or a timeout is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

#: At most this many requests in one run (a schedule longer than this is refused before it starts).
MAX_REQUESTS = 2_000_000


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a prebuilt request and reads one answer back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, timeout: float = 5.0) -> Connection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer)

    @property
    def local_port(self) -> int:
        port: int = self.writer.get_extra_info("sockname")[1]
        return port

    async def call(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        start = lower.index(b"content-length:") + 15
        length = int(head[start : head.index(b"\r\n", start)])
        body = await self.reader.readexactly(length)
        if b"connection: close" in lower:
            self.writer.close()
        return int(head[9:12]), body

    @property
    def closed(self) -> bool:
        return self.writer.is_closing() or self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


def raw_request(host: str, port: int, path: str, body: bytes, headers: Sequence[str] = ()) -> bytes:
    """A POST of `body` as HTTP/1.1 bytes, built once and sent as often as the schedule says."""
    extra = "".join(f"{h}\r\n" for h in headers)
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class Sample:
    """One request: when it was due (seconds from the start), its latency from then and from its write."""

    due_s: float
    latency_ms: float
    sent_latency_ms: float
    status: int
    #: "" for an answer, else "timeout" or the failure's text.
    error: str = ""


@dataclass
class PacedLoad:
    """Open-loop load: the request sent at each due time of `schedule` (seconds from the start)."""

    host: str
    port: int
    request: bytes
    schedule: Sequence[float]
    connections: int = 20
    timeout_s: float = 5.0
    samples: list[Sample] = field(default_factory=list)
    resent: int = 0
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    elapsed_s: float = 0.0
    #: Called with (answer time from perf_counter, body) for each 2xx answer, when given.
    on_answer: Callable[[float, bytes], None] | None = None
    started_at: float = 0.0

    async def open_connections(self) -> list[Connection]:
        """The connections the load is spread over (a subclass may choose which worker each lands on)."""
        return [await Connection.open(self.host, self.port, self.timeout_s) for _ in range(self.connections)]

    async def run(self) -> None:
        if len(self.schedule) > MAX_REQUESTS:
            raise ValueError(f"{len(self.schedule)} requests is more than one run sends ({MAX_REQUESTS})")
        conns = await self.open_connections()
        n = len(conns)
        # No cyclic collection while the load runs: a full one walks the caller's heap and the samples so far,
        # and each connection's next send waited it out (tens of ms, counted as the server's latency). The
        # run is bounded (MAX_REQUESTS), so what it leaves in cycles waits until it ends.
        collecting = gc.isenabled()
        gc.collect()
        gc.disable()
        try:
            self.started_at = start = time.perf_counter() + 0.05
            await asyncio.gather(
                *(
                    self._connection(conn, [start + t for t in self.schedule[i::n]])
                    for i, conn in enumerate(conns)
                )
            )
            self.elapsed_s = time.perf_counter() - start
        finally:
            if collecting:
                gc.enable()

    async def _reopen(self, conn: Connection) -> Connection:
        conn.close()
        return await Connection.open(self.host, self.port, self.timeout_s)

    async def _connection(self, conn: Connection, dues: list[float]) -> None:
        try:
            for due in dues:
                if self.stopped.is_set():
                    break
                now = time.perf_counter()
                if now < due:
                    await asyncio.sleep(due - now)
                    sent = time.perf_counter()
                else:
                    sent = due  # it waited for the previous answer on this connection: that wait counts
                conn = await self._one(conn, due, sent)
        finally:
            conn.close()

    async def _one(self, conn: Connection, due: float, sent: float) -> Connection:
        start = self.started_at
        written = time.perf_counter()
        try:
            if conn.closed:
                conn = await self._reopen(conn)
            try:
                status, body = await asyncio.wait_for(conn.call(self.request), self.timeout_s)
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
                self.resent += 1  # closed before any byte of an answer: the server never took it
                conn = await self._reopen(conn)
                status, body = await asyncio.wait_for(conn.call(self.request), self.timeout_s)
        except TimeoutError:
            self.samples.append(Sample(due - start, _ms(sent), _ms(written), 0, "timeout"))
            with contextlib.suppress(OSError, TimeoutError):
                conn = await self._reopen(conn)
            return conn
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.samples.append(
                Sample(due - start, _ms(sent), _ms(written), 0, f"{type(exc).__name__}: {exc}")
            )
            with contextlib.suppress(OSError, TimeoutError):
                conn = await self._reopen(conn)
            return conn
        answered = time.perf_counter()
        error = "" if 200 <= status < 300 else f"HTTP {status}: {body[:200]!r}"
        self.samples.append(Sample(due - start, _ms(sent, answered), _ms(written, answered), status, error))
        if not error and self.on_answer is not None:
            self.on_answer(answered, body)
        return conn


def _ms(since: float, until: float | None = None) -> float:
    return ((until if until is not None else time.perf_counter()) - since) * 1000.0
