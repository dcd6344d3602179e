"""What the machine is doing besides the workers: CPU busy share (from /proc/stat), the load average, the
processes that use the most CPU outside the server, and requests queued on the server's port (bytes waiting
in accepted connections, from /proc/net/tcp). The evidence for "adding workers did not lower latency"."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The busy share of every core from which the CPU counts as saturated for a latency objective: a server
#: queues requests well before 100% (at 85% of two cores, a request more often than not waits for a core).
SATURATED = 0.85

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _process_ticks() -> dict[int, tuple[str, int, int]]:
    """pid -> (name, ppid, utime+stime) of every process readable."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2 :].split()
        out[int(entry.name)] = (name, int(rest[1]), int(rest[11]) + int(rest[12]))
    return out


@dataclass
class CpuSample:
    """A baseline to measure CPU use from."""

    at: float
    busy: int
    total: int
    procs: dict[int, tuple[str, int, int]]

    @classmethod
    def take(cls) -> CpuSample:
        busy, total = _cpu_times()
        return cls(time.monotonic(), busy, total, _process_ticks())


def contention(since: CpuSample, *, server_pids: set[int]) -> dict[str, Any]:
    """CPU use since `since`: the machine's busy share, the server's and the top other processes' (in cores)."""
    now = CpuSample.take()
    seconds = max(1e-3, now.at - since.at)
    busy_share = (now.busy - since.busy) / max(1, now.total - since.total)
    cores = os.cpu_count() or 1
    used: dict[int, float] = {}
    for pid, (name, _ppid, ticks) in now.procs.items():
        before = since.procs.get(pid)
        if before is not None and before[0] == name:
            used[pid] = (ticks - before[2]) / _TICKS / seconds
    server = sum(v for p, v in used.items() if p in server_pids)
    client = used.get(os.getpid(), 0.0)  # this process: the load generator, when a load test measured
    others = sorted(
        ((v, p) for p, v in used.items() if p not in server_pids and p != os.getpid() and v > 0.01),
        reverse=True,
    )
    return {
        "cpu_busy_share": round(busy_share, 3),
        "cores": cores,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "server_cores": round(server, 3),
        "client_cores": round(client, 3),
        "other_cores": round(sum(v for v, _ in others), 3),
        "top_others": [{"pid": p, "name": now.procs[p][0], "cores": round(v, 3)} for v, p in others[:5]],
    }


def explain_no_gain(evidence: dict[str, Any]) -> str:
    """Why adding workers did not lower latency, from the contention evidence."""
    busy = evidence.get("cpu_busy_share", 0.0)
    others = evidence.get("other_cores", 0.0)
    if busy >= SATURATED and others >= 0.5:
        top = ", ".join(
            f"{o['name']} ({o['pid']}) {o['cores']:.2f}" for o in evidence.get("top_others", [])[:3]
        )
        return f"the machine's CPU is saturated ({busy:.0%} busy) and other processes use {others:.2f} cores: {top}"
    client = evidence.get("client_cores", 0.0)
    if busy >= SATURATED and client >= 0.5:
        return (
            f"the machine's CPU is saturated ({busy:.0%} busy) and the load generator itself uses {client:.2f} "
            f"cores of {evidence.get('cores')}: run the load test from another machine"
        )
    if busy >= SATURATED:
        return (
            f"the machine's CPU is saturated ({busy:.0%} busy) by the server itself: more workers cannot run"
        )
    return (
        f"the CPU has room ({busy:.0%} busy): the bottleneck is outside the workers "
        "(the client, the prediction log writer or the database)"
    )


def queued_requests(port: int) -> int:
    """Accepted connections to `port` with bytes waiting to be read: requests no worker has taken yet."""
    hex_port = f"{port:04X}"
    waiting = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, queues = parts[1], parts[3], parts[4]
            if local.rsplit(":", 1)[1] == hex_port and state == "01":  # ESTABLISHED on the server's side
                rx = int(queues.split(":")[1], 16)
                waiting += rx > 0
    return waiting
