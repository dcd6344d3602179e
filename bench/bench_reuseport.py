"""Whether each inference worker should have its own listening socket (SO_REUSEPORT), measured side by side
with what `mloncall server` does now (one socket, bound by the supervisor, shared by every worker).

Two worker processes on uvloop answer one small HTTP/1.1 request per connection with their pid, under each
scheme in turn:
- shared: the parent binds and listens once; both workers accept from that one queue (uvicorn's way);
- reuseport: each worker binds its own socket with SO_REUSEPORT; the kernel hashes every new connection to
  one of them.

1. Spread: 10 keep-alive connections opened at once (what `wrk -c 10` does), repeated TRIALS times; the
   figure is how often the split between the two workers was worse than 7+3.
2. Retiring a worker under a stream of new connections (what `mloncall scale` does when it removes one):
   the client opens CONNECTIONS connections as fast as it can, one request each; half way, one worker stops
   accepting and finishes what it holds; RETIRE_ROUNDS times over, with new workers each time. Figure:
   connections refused, reset or never answered (5 s). In the shared scheme a connection waiting in the
   queue is taken by the other worker; in the reuseport scheme the queue belongs to the closing socket, and
   Linux resets what waits in it unless `net.ipv4.tcp_migrate_req` is 1 (printed).

Run: .venv/bin/python bench/bench_reuseport.py
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import uvloop

HOST = "127.0.0.1"
TRIALS = 200
CONNECTIONS = 4000
#: A connection not answered within this counts as lost (it waits in a queue nobody accepts from).
ANSWER_TIMEOUT_S = 5.0
RETIRE_ROUNDS = 10
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


def listener(port: int, reuseport: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((HOST, port))
    sock.listen(2048)  # uvicorn's backlog
    sock.setblocking(False)
    return sock


async def serve(sock: socket.socket, retire: mp.synchronize.Event, ready: mp.synchronize.Event) -> None:
    answer = f"HTTP/1.1 200 OK\r\ncontent-length: {len(str(os.getpid()))}\r\n\r\n{os.getpid()}".encode()
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client is done, or the worker stops
        finally:
            handlers.discard(task)
            writer.close()

    server = await asyncio.start_server(handle, sock=sock)
    ready.set()
    while not retire.is_set():
        await asyncio.sleep(0.005)
    server.close()  # stop accepting, as a retired uvicorn worker does; finish what it holds
    deadline = time.monotonic() + 2.0
    while handlers and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def worker(
    port: int, shared: socket.socket | None, retire: mp.synchronize.Event, ready: mp.synchronize.Event
) -> None:
    sock = shared if shared is not None else listener(port, reuseport=True)
    uvloop.run(serve(sock, retire, ready))


class Pair:
    """Two workers on one port under a scheme; `retire(0)` stops the first one accepting."""

    def __init__(self, scheme: str) -> None:
        ctx = mp.get_context("fork")
        if scheme == "shared":
            shared: socket.socket | None = listener(0, reuseport=False)
            assert shared is not None
            self.port = shared.getsockname()[1]
        else:
            shared = None
            with socket.socket() as probe:  # only picks a free port: a listening probe would join the group
                probe.bind((HOST, 0))
                self.port = probe.getsockname()[1]
        self.retired = [ctx.Event(), ctx.Event()]
        readies = [ctx.Event(), ctx.Event()]
        self.procs = [
            ctx.Process(target=worker, args=(self.port, shared, self.retired[i], readies[i]), daemon=True)
            for i in range(2)
        ]
        for p in self.procs:
            p.start()
        for r in readies:
            r.wait(10)

    def retire(self, i: int) -> None:
        self.retired[i].set()

    def close(self) -> None:
        for e in self.retired:
            e.set()
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()


async def ask(port: int) -> str:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(REQUEST)
        await reader.readuntil(b"\r\n\r\n")
        return (await reader.read(16)).decode()
    finally:
        writer.close()


async def spread(port: int) -> Counter[str]:
    """The split of 10 connections opened at once between the workers, TRIALS times."""
    splits: Counter[str] = Counter()
    for _ in range(TRIALS):
        pids = await asyncio.gather(*(ask(port) for _ in range(10)))
        counts = [*sorted(Counter(pids).values(), reverse=True), 0]
        splits[f"{counts[0]}+{counts[1]}"] += 1
    return splits


async def retiring(pair: Pair) -> tuple[int, int]:
    """Connections that failed, and answered, while one worker retires half way through the stream."""
    failed = answered = 0
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        nonlocal failed, answered
        async with sem:
            try:
                await asyncio.wait_for(ask(pair.port), ANSWER_TIMEOUT_S)
                answered += 1
            except (ConnectionError, OSError, asyncio.IncompleteReadError, TimeoutError):
                failed += 1

    tasks = []
    for i in range(CONNECTIONS):
        if i == CONNECTIONS // 2:
            pair.retire(0)
        tasks.append(asyncio.create_task(one()))
        if i % 64 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    return failed, answered


def migrate_req() -> str:
    path = Path("/proc/sys/net/ipv4/tcp_migrate_req")
    with contextlib.suppress(OSError):
        return path.read_text().strip()
    return "absent (kernel before 5.14)"


def main() -> int:
    if not hasattr(socket, "SO_REUSEPORT"):
        print("this platform has no SO_REUSEPORT: nothing to compare")
        return 0
    print(f"load average at start: {loadavg()}")
    print(f"net.ipv4.tcp_migrate_req = {migrate_req()}")
    results = {}
    for scheme in ("shared", "reuseport"):
        pair = Pair(scheme)
        try:
            splits = uvloop.run(spread(pair.port))
        finally:
            pair.close()
        failed = answered = 0
        for _ in range(RETIRE_ROUNDS):
            pair = Pair(scheme)
            try:
                lost, got = uvloop.run(retiring(pair))
            finally:
                pair.close()
            failed, answered = failed + lost, answered + got
        results[scheme] = (splits, failed, answered)
    print(f"\n1. spread of 10 connections over 2 workers, {TRIALS} trials")
    for scheme, (splits, _, _) in results.items():
        worse = sum(n for s, n in splits.items() if int(s.split("+")[0]) > 7)
        common = ", ".join(f"{s} x{n}" for s, n in splits.most_common(4))
        print(f"  {scheme:10} worse than 7+3 in {worse / TRIALS:6.1%} of trials   ({common})")
    print(
        f"\n2. one of 2 workers retires half way through {CONNECTIONS:,} new connections, {RETIRE_ROUNDS} times"
    )
    for scheme, (_, failed, answered) in results.items():
        print(f"  {scheme:10} {failed:5,} connections refused, reset or not answered, {answered:,} answered")
    shared_worse = sum(n for s, n in results["shared"][0].items() if int(s.split("+")[0]) > 7)
    reuse_worse = sum(n for s, n in results["reuseport"][0].items() if int(s.split("+")[0]) > 7)
    lost_shared, lost_reuse = results["shared"][1], results["reuseport"][1]
    print(
        f"\nverdict: uneven splits {shared_worse} (shared) vs {reuse_worse} (reuseport) of {TRIALS}; "
        f"connections lost when a worker retires {lost_shared} (shared) vs {lost_reuse} (reuseport)"
    )
    print(f"load average at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
