"""The inference plane's token gate: off by default (the inference routes are open), on with
`[serving] require_token = true` or `MLONCALL_SERVING_REQUIRE_TOKEN=1`.

When on, every route but the health probes and `/metrics` needs `Authorization: Bearer mlo_…` of a principal
the policy allows `inference:call` (on the model of the path, when the path names one). A token's answer is
kept for `[serving] token_cache_seconds` (5 s by default), so the hot path reads the database once per token
per interval, not once per request; a revoked token or a removed role stops working within that interval.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mloncall.access import authorize
from mloncall.access import service as access
from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput, PermissionDenied, Unauthenticated
from mloncall.serving.validation import RequestError
from mloncall.stores.db import Database

PERMISSION = "inference:call"
#: Routes a load balancer or Prometheus calls without a token even when the gate is on.
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
_CHALLENGE = [(b"www-authenticate", b"Bearer")]


@dataclass(frozen=True)
class GateSettings:
    require_token: bool = False
    token_cache_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str]) -> GateSettings:
        table = settings.section("serving")
        raw = env.get("MLONCALL_SERVING_REQUIRE_TOKEN", table.get("require_token", False))
        text = str(raw).strip().lower()
        if text not in _TRUE + _FALSE:
            raise InvalidInput(f"serving setting require_token={raw!r} must be true or false")
        ttl_raw = env.get("MLONCALL_SERVING_TOKEN_CACHE_SECONDS", table.get("token_cache_seconds", 5.0))
        try:
            ttl = float(ttl_raw)
        except (TypeError, ValueError):
            raise InvalidInput(f"serving setting token_cache_seconds={ttl_raw!r} must be a number") from None
        if not 0 <= ttl <= 3600:
            raise InvalidInput(f"serving setting token_cache_seconds={ttl_raw!r} must be 0 to 3600 seconds")
        return cls(require_token=text in _TRUE, token_cache_seconds=ttl)


class TokenGate:
    """Checks a request's bearer token against the policy, with a short cache per (token, model)."""

    def __init__(self, db: Database, settings: GateSettings) -> None:
        self.db = db
        self.ttl = settings.token_cache_seconds
        self._seen: dict[tuple[str, str | None], tuple[float, RequestError | None]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def applies(path: str) -> bool:
        return path not in OPEN_PATHS

    async def check(self, scope: Mapping[str, Any], model: str | None) -> None:
        """Nothing when the caller may call; RequestError 401 or 403 with the reason otherwise."""
        secret = _bearer(scope)
        key = (hashlib.sha256(secret.encode()).hexdigest(), model)
        now = time.monotonic()
        with self._lock:
            held = self._seen.get(key)
        if held is None or held[0] <= now:
            refusal = await asyncio.to_thread(self._decide, secret, model)
            with self._lock:
                if len(self._seen) > 10_000:
                    self._seen.clear()
                self._seen[key] = (now + self.ttl, refusal)
            held = (now + self.ttl, refusal)
        if held[1] is not None:
            raise held[1]

    def _decide(self, secret: str, model: str | None) -> RequestError | None:
        try:
            with self.db.session() as session:
                token = access.authenticate_token(session=session, secret=secret)
                authorize.require(
                    session=session,
                    principal=token.principal,
                    permission=PERMISSION,
                    model=model,
                    token=token,
                )
        except Unauthenticated as exc:
            return RequestError(401, exc.message, "unauthenticated", _CHALLENGE)
        except PermissionDenied as exc:
            return RequestError(403, exc.message, "permission_denied")
        return None


def _bearer(scope: Mapping[str, Any]) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise RequestError(401, "malformed Authorization header: expected 'Bearer <token>'",
                                   "unauthenticated", _CHALLENGE)  # fmt: skip
            return secret.strip()
    raise RequestError(401, "this server requires a token on the inference routes: send the header "
                       "'Authorization: Bearer <token>'", "unauthenticated", _CHALLENGE)  # fmt: skip
