"""The ASGI plumbing under the inference app: its types, the route table, and a mounted app's lifespan.

The route table maps (method, path pattern) to a handler. Patterns are `/`-separated segments, literal or
a `{name}` parameter; a path is matched with one dict lookup per segment, and remembered, so a path seen
before (the same few model paths, request after request) costs one dict lookup. A literal segment
wins over a parameter at the same place (no backtracking). Routes that allow a trailing slash (the default)
match `/v2/models/m/` as `/v2/models/m`, and their first segments are owned: an unmatched path under them
is a 404 rather than a case for the fallback app.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("mloncall.serving.asgi")

H = TypeVar("H")
_MATCHED_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Route(Generic[H]):
    """One (method, pattern)'s handler; `inference` routes count and log their failures."""

    method: str
    pattern: str
    handler: H
    inference: bool


class _Node(Generic[H]):
    __slots__ = ("children", "methods", "param")

    def __init__(self) -> None:
        self.children: dict[str, _Node[H]] = {}
        self.param: _Node[H] | None = None
        self.methods: dict[str, Route[H]] = {}


class RouteTable(Generic[H]):
    """(method, path pattern) -> handler, matched with dict lookups."""

    def __init__(self) -> None:
        self._static: dict[str, dict[str, Route[H]]] = {}
        self._root: _Node[H] = _Node()
        # Paths matched before: a worker sees the same few model paths again and again, so after the first
        # request routing is one dict lookup. Bounded, so a client inventing paths cannot grow it.
        self._matched: dict[str, tuple[dict[str, Route[H]], tuple[str, ...]]] = {}
        #: Every route in the order added (what the OpenAPI document lists).
        self.routes: list[Route[H]] = []

    def add(
        self, method: str, pattern: str, handler: H, *, inference: bool = False, trailing_slash: bool = True
    ) -> None:
        route = Route(method, pattern, handler, inference)
        self.routes.append(route)
        segments = pattern.split("/")[1:]
        if not any(s.startswith("{") for s in segments):
            methods = self._static.setdefault(pattern, {})
            methods[method] = route
            self._matched[pattern] = (methods, ())
        if not trailing_slash:
            return
        node = self._root
        for segment in segments:
            if segment.startswith("{"):
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node = node.children.setdefault(segment, _Node())
        node.methods[method] = route

    def match(self, path: str) -> tuple[dict[str, Route[H]], tuple[str, ...]] | None:
        """The routes of a path by method, and its parameters in pattern order; None when none matches."""
        hit = self._matched.get(path)
        if hit is not None:
            return hit
        node = self._root
        params: list[str] = []
        for segment in path.rstrip("/").split("/")[1:]:
            child = node.children.get(segment)
            if child is None:
                child = node.param
                if child is None:
                    return None
                params.append(segment)
            node = child
        if not node.methods:
            return None
        found = (node.methods, tuple(params))
        if len(self._matched) < _MATCHED_SIZE:
            self._matched[path] = found
        return found

    def owns(self, path: str) -> bool:
        """Whether the path is this table's to answer (even with a 404), rather than the fallback's."""
        if path in self._static:
            return True
        segments = path.rstrip("/").split("/")
        return len(segments) > 1 and segments[1] in self._root.children


class ChildLifespan:
    """Drives another ASGI app's lifespan (startup, then shutdown) from inside ours."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def _main(self) -> None:
        scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        if self.state is not None:
            scope["state"] = self.state
        try:
            await self.app(scope, self._inbox.get, self._outbox.put)
        except BaseException:  # an app without lifespan support raises on the scope: treat as 'no lifespan'
            log.debug("fallback app has no lifespan", exc_info=True)
        finally:
            await self._outbox.put({"type": "lifespan.finished"})

    async def startup(self) -> None:
        self._task = asyncio.create_task(self._main())
        await self._inbox.put({"type": "lifespan.startup"})
        message = await self._outbox.get()
        if message["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the fallback app failed to start: {message.get('message', '')}")
        if message["type"] == "lifespan.finished":
            self._supported = False

    async def shutdown(self) -> None:
        if self._task is None or not self._supported:
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._outbox.get()
        await self._task
