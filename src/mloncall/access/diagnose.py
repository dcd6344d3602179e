"""`mloncall access diagnose`: runbook 7's "confirm / check authentication" steps, layer by layer, from the
engineer's own machine.

Each layer is a `Check` with its evidence; the first layer that fails (in the order below) takes the blame
and carries the fix. A layer that cannot be judged because an earlier one failed is `skipped` and says why;
layers that do not depend on it still run (the artifact store is reached directly from this machine, the
database is asked of the server and, on the installation's machine, directly).

    server -> token -> permission -> database -> artifacts -> login

Nothing here prints or parses command lines: `diagnose(Target(...))` returns the ordered layers.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from mloncall.access.diagnose_layer import Layer, failed, passed, skipped
from mloncall.access.diagnose_stores import check_artifacts, check_database
from mloncall.access.permissions import check_permission
from mloncall.access.service import TOKEN_PREFIX
from mloncall.core import clock
from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput, PermissionDenied, StoreUnavailable, Unauthenticated
from mloncall.core.names import check_name
from mloncall.core.outcome import Check, Outcome

#: Where `mloncall server` listens unless told otherwise.
DEFAULT_URL = "http://127.0.0.1:8000"
LAYERS = ("server", "token", "permission", "database", "artifacts", "login")
#: As the service shows a token: `mlo_` and 8 characters, enough to find it in `mloncall tokens list`.
_SHOWN = len(TOKEN_PREFIX) + 8
#: The shape `access.service.authenticate_token` accepts; checked here first so a pasted fragment is told
#: apart without asking the server.
_SECRET = re.compile(r"^" + re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}$")
_NEW_TOKEN = "ask an admin for a new token: `mloncall tokens create {who}`"
_DB_DOWN = "the server cannot {what} while its metadata database is down (see the database layer)"


@dataclass(frozen=True)
class Target:
    """What to diagnose: the server and the credentials the engineer uses, and this machine's settings."""

    url: str = DEFAULT_URL
    token: str | None = None
    permission: str | None = None
    model: str | None = None
    user: str | None = None
    password: str | None = None
    #: The artifact store to reach from here (a folder or `s3://bucket/prefix`); None: not checked.
    artifacts: str | None = None
    #: This machine's settings when it holds the installation (its database is then tried directly).
    local: Settings | None = None
    timeout: float = 5.0

    def __post_init__(self) -> None:
        check_server_url(self.url)
        if self.permission is not None:
            check_permission(self.permission)
        if self.model is not None:
            check_name(self.model, "model name")
        if self.timeout <= 0:
            raise InvalidInput("the timeout must be longer than 0")


@dataclass
class Diagnosis:
    """The layers in order; the first that failed is to blame."""

    url: str
    layers: list[Layer] = field(default_factory=list)

    @property
    def checks(self) -> list[Check]:
        return [layer.check for layer in self.layers]

    @property
    def blame(self) -> Layer | None:
        return next((layer for layer in self.layers if layer.check.outcome >= Outcome.ERROR), None)

    @property
    def exit_code(self) -> int:
        blamed = self.blame
        return 0 if blamed is None else blamed.exit_code

    def layer(self, name: str) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)

    def to_dict(self) -> dict[str, Any]:
        blamed = self.blame
        return {
            "server": self.url,
            "ok": blamed is None,
            "blame": blamed.name if blamed else None,
            "fix": blamed.fix if blamed else None,
            "exit_code": self.exit_code,
            "layers": [layer.to_dict() for layer in self.layers],
        }


def check_server_url(url: str) -> str:
    """Return url if it is an http(s) URL with a host; InvalidInput otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"invalid server URL {url!r}: use http://HOST:PORT or https://HOST")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise InvalidInput(f"invalid server URL {url!r}: the port must be 1-65535") from None
    return url


def shown(secret: str) -> str:
    """A token as it may be shown: its lookup prefix only, never the secret."""
    if _SECRET.match(secret):
        return secret[:_SHOWN] + "…"
    return f"{secret[: len(TOKEN_PREFIX)]}… ({len(secret)} characters)"


def diagnose(target: Target) -> Diagnosis:
    """Every layer, in order, each with its outcome and evidence."""
    out = Diagnosis(url=target.url.rstrip("/"))
    with httpx.Client(base_url=out.url, timeout=target.timeout, follow_redirects=False) as client:
        server, health = check_server(client, out.url)
        up = server.check.passed
        token, whoami = check_token(client, target.token, up)
        permission = check_permission_layer(client, target, whoami)
        database = check_database(health.status_code if health else None, target.local, up)
        artifacts = check_artifacts(target.artifacts, timeout=target.timeout)
        login = check_login(client, target, up)
    out.layers = [server, token, permission, database, artifacts, login]
    return out


# --- server -------------------------------------------------------------------------------------------


def _connect_failure(exc: httpx.HTTPError, url: str) -> tuple[str, str, str]:
    """(kind, reason, fix) for a request that got no HTTP answer."""
    host = urlsplit(url).hostname or url
    causes: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 8:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        what = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for an answer"
        return "timeout", f"timed out {what} to {url}", "check the URL, the VPN and any firewall in between"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "dns", f"cannot resolve host {host!r}", "check the host name in the URL, and the VPN or DNS"
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes):
        detail = next(str(c) for c in causes if isinstance(c, ssl.SSLCertVerificationError))
        return (
            "tls",
            f"TLS: the server's certificate is not trusted ({detail})",
            "use the installation's CA bundle (SSL_CERT_FILE) or ask whoever runs the server for it",
        )
    if any(isinstance(c, ssl.SSLError) for c in causes):
        detail = next(str(c) for c in causes if isinstance(c, ssl.SSLError))
        plain = url.replace("https://", "http://", 1)
        return (
            "tls",
            f"TLS handshake failed ({detail}): the port may speak plain HTTP",
            f"check the URL: try {plain}" if url.startswith("https://") else "check the URL",
        )
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return (
            "refused",
            f"connection refused: nothing listens at {url}",
            "check the URL and port, and that `mloncall server` runs there",
        )
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol", f"{url} does not speak HTTP: {exc}", "check the URL (http or https, and the port)"
    return "network", f"cannot reach {url}: {exc or type(exc).__name__}", "check the URL and the VPN"


def check_server(client: httpx.Client, url: str) -> tuple[Layer, httpx.Response | None]:
    """Layer 1: an mloncall server answers `/healthz` at url (its database may still be down)."""
    try:
        response = client.get("/healthz")
    except httpx.HTTPError as exc:
        kind, reason, fix = _connect_failure(exc, url)
        return failed("server", reason, fix, StoreUnavailable.exit_code, url=url, failure=kind), None
    evidence: dict[str, Any] = {"url": url, "healthz": response.status_code}
    body = _json(response)
    mloncall = (response.status_code == 200 and body.get("status") == "ok") or (
        response.status_code == 503 and body.get("code") == "store_unavailable"
    )
    if not mloncall:
        sample = response.text[:80].strip() or "(empty body)"
        return failed(
            "server",
            f"{url} answered /healthz with {response.status_code} {sample!r}, not as an mloncall server",
            "check the URL: another service answers there (a proxy, a login page, another port)",
            StoreUnavailable.exit_code,
            **evidence,
            failure="not_mloncall",
        ), None
    note = "" if response.status_code == 200 else " (its metadata database is down: see database)"
    return passed("server", f"mloncall answers at {url}{note}", **evidence), response


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(response: httpx.Response) -> str:
    return str(_json(response).get("error") or response.text[:200] or response.status_code)


# --- token --------------------------------------------------------------------------------------------

#: The server's 401 messages (`access.service.authenticate_token`, the API's bearer check) by kind.
_REFUSALS = (
    ("missing bearer token", "missing"),
    ("malformed", "malformed"),
    ("not an mloncall token", "malformed"),
    ("unknown token", "unknown"),
    ("was revoked", "revoked"),
    ("expired at", "expired"),
    ("is disabled", "disabled"),
)


def _token_fix(kind: str, message: str) -> str:
    if kind == "disabled":
        who = re.search(r"principal '([^']+)'", message)
        return f"ask an admin to enable you again: `mloncall access enable {who.group(1) if who else 'NAME'}`"
    if kind in ("malformed", "unknown"):
        return "copy the whole token again (MLONCALL_TOKEN), or " + _NEW_TOKEN.format(who="NAME")
    return _NEW_TOKEN.format(who="NAME")


def check_token(
    client: httpx.Client, token: str | None, server_up: bool
) -> tuple[Layer, dict[str, Any] | None]:
    """Layer 2: a token is given, well-formed, and the server takes it (`/api/v1/whoami`)."""
    code = Unauthenticated.exit_code
    if not token:
        return failed(
            "token", "no token: pass --token or set MLONCALL_TOKEN", _NEW_TOKEN.format(who="NAME"), code
        ), None
    evidence: dict[str, Any] = {"token": shown(token)}
    if not _SECRET.match(token):
        why = f"malformed token {shown(token)}: {TOKEN_PREFIX!r} and 43 characters of A-Z, a-z, 0-9, _ or -"
        return failed("token", why, _token_fix("malformed", ""), code, **evidence, refused="malformed"), None
    if not server_up:
        return skipped("token", "the server is not reachable (see server)", **evidence), None
    try:
        response = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        return _lost("token", exc, evidence), None
    if response.status_code == 200:
        return _token_ok(_json(response), evidence), _json(response)
    if response.status_code == 401:
        message = _error(response)
        kind = next((k for text, k in _REFUSALS if text in message), "refused")
        return failed(
            "token", f"the server refuses the token: {message}", _token_fix(kind, message), code,
            **evidence, refused=kind,
        ), None  # fmt: skip
    if response.status_code == 503:
        return skipped("token", _DB_DOWN.format(what="check tokens"), **evidence), None
    return _unexpected("token", response, evidence), None


def _token_ok(body: dict[str, Any], evidence: dict[str, Any]) -> Layer:
    info = body.get("token") or {}
    evidence.update(
        principal=body.get("name"),
        kind=body.get("kind"),
        roles=body.get("roles", []),
        teams=body.get("teams", []),
        expires_at=info.get("expires_at"),
    )
    if info.get("permissions") or info.get("model"):
        evidence.update(limited_to=info.get("permissions"), model=info.get("model"))
    reason = f"token {evidence['token']} of {body.get('name')} ({body.get('kind')}) is valid"
    expires = _parse_time(info.get("expires_at"))
    if expires is None:
        return passed("token", reason + " and never expires", **evidence)
    left = expires - clock.now()
    soon = " (soon: rotate it with `mloncall tokens rotate ID`)" if left < dt.timedelta(days=1) else ""
    return passed("token", f"{reason} until {expires:%Y-%m-%d %H:%M} UTC{soon}", **evidence)


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _lost(name: str, exc: httpx.HTTPError, evidence: dict[str, Any]) -> Layer:
    return Layer(
        Check(name, Outcome.ERROR, f"the server stopped answering: {exc or type(exc).__name__}", evidence),
        fix="run the diagnosis again; if it persists, check the server's log",
        exit_code=StoreUnavailable.exit_code,
    )


def _unexpected(name: str, response: httpx.Response, evidence: dict[str, Any]) -> Layer:
    evidence = {**evidence, "status": response.status_code}
    return Layer(
        Check(name, Outcome.ERROR, f"unexpected answer {response.status_code}: {_error(response)}", evidence),
        fix="check the server's log for this request",
        exit_code=1,
    )


# --- permission ---------------------------------------------------------------------------------------


def check_permission_layer(client: httpx.Client, target: Target, whoami: dict[str, Any] | None) -> Layer:
    """Layer 3: the token's principal may do `--permission` (on `--model`): the server's explanation."""
    if whoami is None:
        return skipped("permission", "needs a token the server has accepted (see token)")
    roles = whoami.get("roles", [])
    if target.permission is None:
        held = ", ".join(roles) or "no role of its own"
        teams = f" (teams: {', '.join(whoami['teams'])})" if whoami.get("teams") else ""
        return skipped(
            "permission",
            f"no --permission given: {whoami.get('name')} holds {held}{teams}; "
            "pass --permission P [--model M] to check what you tried",
            roles=roles,
        )
    params = {"permission": target.permission, **({"model": target.model} if target.model else {})}
    try:
        response = client.get(
            "/api/v1/access/explain", params=params, headers={"Authorization": f"Bearer {target.token}"}
        )
    except httpx.HTTPError as exc:
        return _lost("permission", exc, dict(params))
    if response.status_code == 503:
        return skipped("permission", _DB_DOWN.format(what="decide"), **params)
    if response.status_code != 200:
        return _unexpected("permission", response, dict(params))
    why = _json(response)
    evidence = {
        **params,
        "decided_by": why.get("decided_by"),
        "via": why.get("via", []),
        "reasons": why.get("reasons", []),
        "workaround": why.get("workaround"),
    }
    where = f" on model {target.model}" if target.model else ""
    if why.get("allowed"):
        return passed("permission", f"{why.get('principal')} may {target.permission}{where}", **evidence)
    reasons = why.get("reasons") or ["denied"]
    fix = why.get("fix") or why.get("workaround") or "ask an admin: `mloncall access explain` says why"
    if why.get("fix") and why.get("workaround"):
        fix += f" (for now: {why['workaround']})"
    return failed(
        "permission",
        f"{why.get('principal')} may not {target.permission}{where}: {reasons[-1]}",
        fix,
        PermissionDenied.exit_code,
        **evidence,
    )


# --- login --------------------------------------------------------------------------------------------


def check_login(client: httpx.Client, target: Target, server_up: bool) -> Layer:
    """Layer 6: the dashboard login takes `--user` and the password (`POST /api/v1/login`)."""
    if target.user is None:
        return skipped("login", "no --user given: the dashboard login is not tried")
    evidence = {"user": target.user}
    if not target.password:
        return skipped(
            "login", "no password: set MLONCALL_PASSWORD, or run in a terminal to be asked", **evidence
        )
    if not server_up:
        return skipped("login", "the server is not reachable (see server)", **evidence)
    try:
        response = client.post("/api/v1/login", json={"name": target.user, "password": target.password})
    except httpx.HTTPError as exc:
        return _lost("login", exc, evidence)
    if response.status_code == 200:
        return passed(
            "login", f"{_json(response).get('name', target.user)} logs in to the dashboard", **evidence
        )
    if response.status_code in (404, 405):
        return skipped("login", "this server has no dashboard login", **evidence)
    if response.status_code == 503:
        return skipped("login", _DB_DOWN.format(what="check passwords"), **evidence)
    if response.status_code == 401 and "bearer" in _error(response).lower():
        return Layer(
            Check(
                "login",
                Outcome.ERROR,
                f"the login route itself asks for a token: {_error(response)}",
                evidence,
            ),
            fix="the server's login route is misconfigured: report it to whoever runs the server",
            exit_code=1,
        )
    if response.status_code == 401:
        return failed(
            "login",
            f"the dashboard refuses {target.user}: {_error(response)}",
            "check the user name and the password; if it is lost, ask an admin to set a new one",
            Unauthenticated.exit_code,
            **evidence,
        )
    return _unexpected("login", response, evidence)
