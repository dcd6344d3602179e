"""The inference workers of a running `mloncall server`: its runtime file, how many workers it runs, and
changing that number while it serves.

`mloncall server` writes `<home>/run/server.json` (the supervisor's pid, address, workers and their maximum)
and removes it when it stops. A supervised server (more than one worker allowed) runs uvicorn's process
supervisor, which adds a worker on SIGTTIN and retires the newest on SIGTTOU (uvicorn >= 0.30). A new worker
runs the app's startup before it opens the shared socket for accepting, so no request reaches a worker that
is not ready; a retired worker gets SIGTERM, stops accepting and finishes the requests it holds
(`timeout_graceful_shutdown`) before it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloncall.core import clock
from mloncall.core.config import Settings
from mloncall.core.errors import Conflict, InvalidInput, NotFound
from mloncall.core.processes import pid_alive
from mloncall.core.records import Record

RUNTIME_FILE = Path("run") / "server.json"
#: How long a change may take before it is reported as not done (a worker's startup loads every model).
CHANGE_TIMEOUT_S = 60.0
_POLL_S = 0.1


def configured_max_workers(settings: Settings) -> int | None:
    """`[scaling] max_workers`, or None when it is not set."""
    raw = settings.section("scaling").get("max_workers")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 64:
        raise InvalidInput(f"[scaling] max_workers={raw!r} must be a whole number from 1 to 64")
    return raw


@dataclass(frozen=True)
class Runtime(Record):
    """What a running server wrote about itself."""

    pid: int
    host: str
    port: int
    workers: int
    max_workers: int
    supervised: bool
    started_at: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def runtime_path(home: Path) -> Path:
    return home / RUNTIME_FILE


def write_runtime(
    home: Path, *, host: str, port: int, workers: int, max_workers: int, supervised: bool
) -> Path:
    """Record this process as the installation's server (atomically); its path, to remove on exit."""
    path = runtime_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = Runtime(os.getpid(), host, port, workers, max_workers, supervised, clock.now().isoformat())
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data.to_dict()))
    tmp.replace(path)
    return path


def remove_runtime(path: Path) -> None:
    """Remove the runtime file if it is still this process's."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads(path.read_text())["pid"] == os.getpid():
            path.unlink()


def read_runtime(home: Path) -> Runtime:
    """The running server's record; NotFound when no server runs for this installation."""
    path = runtime_path(home)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        found = Runtime(**data)
    except FileNotFoundError:
        raise NotFound(f"no server is running for {home} (start one with `mloncall server`)") from None
    except (ValueError, TypeError) as exc:
        raise NotFound(f"{path} is not a server's runtime file ({exc}): is a server running?") from None
    if not pid_alive(found.pid):
        raise NotFound(f"the server recorded in {path} (pid {found.pid}) is not running any more")
    return found


def worker_pids(supervisor: int) -> list[int]:
    """The supervisor's worker processes (its children but multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid != supervisor:
                continue
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return sorted(found)


@dataclass(frozen=True)
class Change(Record):
    """A change of the worker count: before, asked, after, which pids came and went, how long it took."""

    before: int
    asked: int
    after: int
    started: list[int]
    retired: list[int]
    seconds: float
    max_workers: int


def check_target(workers: int, max_workers: int) -> None:
    """InvalidInput for a worker count the server cannot run."""
    if workers < 1:
        raise InvalidInput(
            f"--workers {workers}: at least 1 (a model with no worker serves nobody; stop the server instead)"
        )
    if workers > max_workers:
        raise InvalidInput(
            f"--workers {workers} is above the configured maximum of {max_workers} "
            "(raise it with `mloncall server --max-workers` or [scaling] max_workers)"
        )


def scale_to(home: Path, workers: int, *, timeout_s: float = CHANGE_TIMEOUT_S) -> Change:
    """Change the running server's workers to `workers` and wait until it runs that many."""
    check_target(workers, 64)  # a count no server runs is refused before looking for the server
    runtime = read_runtime(home)
    check_target(workers, runtime.max_workers)
    if not runtime.supervised:
        raise Conflict(
            f"the server (pid {runtime.pid}) runs one worker without a supervisor: restart it with "
            "`mloncall server --max-workers N` to scale it"
        )
    started_at = time.monotonic()
    before = worker_pids(runtime.pid)
    delta = workers - len(before)
    sig = signal.SIGTTIN if delta > 0 else signal.SIGTTOU
    for _ in range(abs(delta)):
        os.kill(runtime.pid, sig)
        time.sleep(0.6)  # the supervisor reads its signal queue every 0.5 s; one change per read
    deadline = time.monotonic() + timeout_s
    now = worker_pids(runtime.pid)
    while len(now) != workers and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        now = worker_pids(runtime.pid)
    if len(now) != workers:
        raise Conflict(f"the server runs {len(now)} workers {timeout_s:.0f}s after asking for {workers}")
    return Change(
        before=len(before), asked=workers, after=len(now),
        started=sorted(set(now) - set(before)), retired=sorted(set(before) - set(now)),
        seconds=round(time.monotonic() - started_at, 3), max_workers=runtime.max_workers,
    )  # fmt: skip


def current_workers(home: Path) -> int:
    """How many workers the running server has now."""
    runtime = read_runtime(home)
    return len(worker_pids(runtime.pid)) if runtime.supervised else 1
