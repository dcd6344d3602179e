"""The dashboard's login: a token or a password (argon2id) into a signed session cookie, a CSRF token on
every form, a rate limit on login attempts, and `may` for hiding what a principal may not use.

The cookie is signed with the installation's dashboard secret (`[web] secret`, else a file in the home
created once): it carries the principal's name, the token id it logged in with (so a narrowed token stays
narrowed), the CSRF token and the id of its session on the server (`access.sessions`), which a logout ends:
a copy of the cookie taken before then logs nobody in afterwards. It is HttpOnly, SameSite=Strict, and
Secure when the request came over TLS.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from mloncall.access import authorize, grants, sessions
from mloncall.access import service as access
from mloncall.access.models import ApiToken, Principal
from mloncall.core.errors import Unauthenticated
from mloncall.stores.context import Context

COOKIE = "mloncall_session"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    """A page asked for without a valid session: the app answers with a redirect to the login page."""


class CsrfRefused(Exception):
    """A form posted without its session's CSRF token: refused with 403."""


def _secret(ctx: Context) -> str:
    configured = ctx.settings.section("web").get("secret")
    if configured:
        return str(configured)
    path = Path(ctx.settings.home) / "dashboard-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _serializer(ctx: Context) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(ctx), salt="mloncall-dashboard")


@dataclass
class WebUser:
    """Who is logged in, with the CSRF token of their session and the token they logged in with."""

    principal: Principal
    csrf: str
    token: ApiToken | None = None
    _decisions: dict[tuple[str, str | None], bool] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.principal.name


def issue_cookie(session: Session, ctx: Context, *, principal: Principal, token_id: int | None) -> str:
    """Start a session of principal on the server and return its signed cookie value."""
    session_id = sessions.start(
        session=session, principal=principal, lifetime=dt.timedelta(seconds=SESSION_SECONDS)
    )
    data = {"n": principal.name, "t": token_id, "c": secrets.token_urlsafe(24), "s": session_id}
    return _serializer(ctx).dumps(data)


def end_session(session: Session, ctx: Context, request: Request) -> None:
    """End the request's session on the server (a logout): its cookie, and every copy of it, stops working."""
    data = read_cookie(ctx, request.cookies.get(COOKIE))
    if data is not None and isinstance(data.get("s"), str):
        sessions.end(session=session, session_id=data["s"])


def read_cookie(ctx: Context, value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        data = _serializer(ctx).loads(value, max_age=SESSION_SECONDS)
    except BadSignature:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("n"), str) else None


def session_user(session: Session, ctx: Context, request: Request) -> WebUser:
    """The logged-in principal of this request; LoginRequired if there is no valid session."""
    data = read_cookie(ctx, request.cookies.get(COOKIE))
    if data is None or not isinstance(data.get("s"), str):
        raise LoginRequired()
    principal = access.get_principal(session=session, name=data["n"])
    if principal is None or principal.disabled:
        raise LoginRequired()
    live = sessions.get_active(session=session, session_id=data["s"])
    if live is None or live.principal_id != principal.id:
        raise LoginRequired()
    token = None
    if data.get("t") is not None:
        token = session.get(ApiToken, int(data["t"]))
        if token is None or access.token_status(token) != "active":
            raise LoginRequired()
    return WebUser(principal=principal, csrf=str(data["c"]), token=token)


def may(session: Session, user: WebUser, permission: str, model: str | None = None) -> bool:
    """Whether the page should show a button that needs permission (the server checks again on post)."""
    key = (permission, model)
    if key not in user._decisions:
        allowed, _, _ = authorize.decide(
            session=session, principal=user.principal, permission=permission, model=model, token=user.token
        )
        user._decisions[key] = allowed
    return user._decisions[key]


def require(session: Session, user: WebUser, permission: str, model: str | None = None) -> None:
    """PermissionDenied (403) with the access domain's explanation unless user may do permission; a use of a
    break-glass grant is counted on the grant, as the API's `allow` counts it."""
    grant = authorize.require(
        session=session, principal=user.principal, permission=permission, model=model, token=user.token
    )
    if grant is not None:
        grants.record_use(session=session, request_id=grant)


def check_csrf(user: WebUser, sent: str | None) -> None:
    if not sent or not secrets.compare_digest(sent, user.csrf):
        raise CsrfRefused()


def login(session: Session, *, name: str, password: str, token: str) -> tuple[Principal, int | None]:
    """The principal a password or a token names, and the token id; Unauthenticated otherwise."""
    if token.strip():
        row = access.authenticate_token(session=session, secret=token.strip())
        return row.principal, row.id
    if not name.strip() or not password:
        raise Unauthenticated("give a user name and password, or a token")
    return access.check_password(session=session, name=name.strip(), password=password), None


class LoginLimiter:
    """At most `attempts` failed logins per client address in `window_s`; then 429 until the window clears."""

    def __init__(self, attempts: int = 10, window_s: float = 300.0) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._recent(key, time.monotonic())) >= self.attempts

    def failed(self, key: str) -> None:
        with self._lock:
            self._recent(key, time.monotonic()).append(time.monotonic())

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
