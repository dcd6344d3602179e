"""A pid is alive while its process runs, and not once it has exited and been reaped."""

from __future__ import annotations

import os
import subprocess
import sys

from mloncall.core.processes import pid_alive


def test_this_process_is_alive_and_an_exited_child_is_not() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)


def _alive_as(uid: int, pid: int) -> bool:
    """pid_alive(pid) asked by a forked child running as `uid` (root may signal every process)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.setuid(uid)
            os.write(write, b"1" if pid_alive(pid) else b"0")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    answer = os.read(read, 1)
    os.close(read)
    return answer == b"1"


def test_a_process_of_another_user_counts_as_alive() -> None:
    # init: signalling it is refused to anyone but root, yet it runs
    assert (_alive_as(65534, 1) if os.geteuid() == 0 else pid_alive(1)) is True
    if os.geteuid() == 0:
        assert _alive_as(65534, os.getpid())  # this (root's) process: refused, and alive
