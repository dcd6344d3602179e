"""Whether something listens at a host's TCP port: asked first, so a slower client is not left to find out."""

from __future__ import annotations

import socket


def unanswered(host: str, port: int, timeout: float) -> str | None:
    """Why no TCP connection to host:port was accepted within `timeout` seconds (the system's words), or
    None when one was."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return str(exc.strerror or exc)
