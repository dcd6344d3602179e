"""The store layers of `mloncall access diagnose`: the metadata database (as the server sees it, and directly on
the installation's machine) and the artifact store, reached from this machine with its own credentials."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mloncall.access.diagnose_layer import Layer, failed, passed, skipped
from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput, StoreUnavailable, Unauthenticated
from mloncall.stores.db import Database, safe_url

#: S3 error codes that mean the key itself is wrong or stale, as opposed to a key that may not do this.
BAD_KEY_CODES = frozenset(
    {
        "InvalidAccessKeyId", "ExpiredToken", "SignatureDoesNotMatch", "InvalidToken",
        "TokenRefreshRequired", "InvalidClientTokenId", "AuthorizationHeaderMalformed",
    }
)  # fmt: skip
DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "403"})
MISSING_CODES = frozenset({"NoSuchBucket", "404"})
_SETTINGS_ENV = ("MLONCALL_HOME", "MLONCALL_DB_URL", "MLONCALL_CONFIG", "MLONCALL_ARTIFACTS")


def local_installation(env: Mapping[str, str] | None = None) -> Settings | None:
    """This machine's settings if they name an installation (an mloncall variable, `./mloncall.toml`, or the
    default home holding a database); None on a machine that only talks to a server."""
    env = os.environ if env is None else env
    settings = Settings.load(env=env)
    if any(env.get(name) for name in _SETTINGS_ENV) or settings.config_file is not None:
        return settings
    return settings if (settings.home / "mloncall.db").is_file() else None


# --- database -----------------------------------------------------------------------------------------


def _direct(local: Settings) -> tuple[bool, str, dict[str, Any]]:
    """(reachable, what was found, evidence) for the database this machine's settings name."""
    evidence: dict[str, Any] = {"db_url": safe_url(local.db_url)}
    db: Database | None = None
    try:
        db = Database(local.db_url)
        if not db.initialised():
            return False, f"no mloncall installation at {safe_url(local.db_url)}", evidence
    except (StoreUnavailable, InvalidInput) as exc:
        return False, exc.message, evidence
    finally:
        if db is not None:
            db.dispose()
    return True, f"this machine reaches {safe_url(local.db_url)}", evidence


def check_database(health_status: int | None, local: Settings | None, server_up: bool) -> Layer:
    """Layer 4: the server's `/healthz` (503 `store_unavailable`: its database is down) and, on the
    installation's machine, the database its settings name, connected to directly."""
    direct = _direct(local) if local is not None else None
    evidence: dict[str, Any] = {"healthz": health_status, **(direct[2] if direct else {})}
    code = StoreUnavailable.exit_code
    if server_up and health_status == 503:
        also = f"; {direct[1]}" if direct else ""
        return failed(
            "database",
            f"the server cannot reach its metadata database (/healthz 503 store_unavailable){also}",
            "on the installation's machine: check that the database runs and accepts connections at "
            "MLONCALL_DB_URL, and the server's log for the driver's reason",
            code,
            **evidence,
        )
    if direct is not None and not direct[0]:
        return failed(
            "database",
            f"this machine's settings cannot reach the database: {direct[1]}",
            "check MLONCALL_DB_URL and MLONCALL_HOME here (`mloncall init` creates an installation)",
            code,
            **evidence,
        )
    if server_up:
        also = f"; {direct[1]}" if direct else ""
        return passed("database", f"the server reaches its metadata database{also}", **evidence)
    if direct is not None:
        return passed("database", f"{direct[1]} (the server was not asked: see server)", **evidence)
    return skipped("database", "the server is not reachable (see server) and no installation is here")


# --- artifacts ----------------------------------------------------------------------------------------


def check_artifacts(root: str | None, *, timeout: float, endpoint: str | None = None) -> Layer:
    """Layer 5: the artifact store, reached from here: a folder exists, is readable and writable; an S3
    bucket lists with this machine's credentials."""
    if root is None:
        return skipped(
            "artifacts", "no artifact store named here: pass --artifacts URL or set MLONCALL_ARTIFACTS"
        )
    if root.startswith("s3://"):
        return _check_s3(
            root, timeout=timeout, endpoint=endpoint or os.environ.get("MLONCALL_S3_ENDPOINT_URL")
        )
    if "://" in root and not root.startswith("file://"):
        return skipped("artifacts", f"{root}: only local folders and s3:// stores are diagnosed", root=root)
    return _check_folder(Path(root.removeprefix("file://")))


def _check_folder(path: Path) -> Layer:
    evidence: dict[str, Any] = {"root": str(path)}
    code = StoreUnavailable.exit_code
    if not path.exists():
        return failed(
            "artifacts",
            f"{path} does not exist",
            "check MLONCALL_ARTIFACTS (or --artifacts)",
            code,
            **evidence,
        )
    if not path.is_dir():
        return failed(
            "artifacts",
            f"{path} is not a folder",
            "check MLONCALL_ARTIFACTS (or --artifacts)",
            code,
            **evidence,
        )
    fix = f"give this user read and write access to {path} (`chmod u+rwx {path}`) or use its owner's account"
    try:
        evidence["entries"] = len(os.listdir(path))
    except OSError as exc:
        return failed("artifacts", f"{path} is not readable: {exc.strerror}", fix, code, **evidence)
    probe = path / f".diagnose-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return failed("artifacts", f"{path} is not writable: {exc.strerror}", fix, code, **evidence)
    return passed("artifacts", f"{path} exists, is readable and writable", **evidence)


def _key_shown(key: str) -> str:
    return f"{key[:4]}…{key[-4:]}" if len(key) > 12 else "…"


def _check_s3(root: str, *, timeout: float, endpoint: str | None) -> Layer:
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    parts = urlsplit(root)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    evidence: dict[str, Any] = {"root": root, "bucket": bucket, "endpoint": endpoint}
    session = botocore.session.get_session()
    credentials = session.get_credentials()
    if credentials is None:
        return failed(
            "artifacts", "no S3 credentials on this machine",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) to your key",
            Unauthenticated.exit_code, **evidence,
        )  # fmt: skip
    evidence["access_key"] = _key_shown(credentials.access_key or "")
    client = session.create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=session.get_config_variable("region") or "us-east-1",
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
    )
    try:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except ClientError as exc:
        return _s3_refused(exc.response, evidence)
    except NoCredentialsError:
        return failed(
            "artifacts",
            "no S3 credentials on this machine",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            Unauthenticated.exit_code,
            **evidence,
        )
    except BotoCoreError as exc:
        return _s3_unreachable(exc, endpoint or "the S3 endpoint", evidence)
    finally:
        client.close()
    evidence["keys_seen"] = listed.get("KeyCount", 0)
    return passed("artifacts", f"bucket {bucket} lists with key {evidence['access_key']}", **evidence)


def _s3_refused(response: Mapping[str, Any], evidence: dict[str, Any]) -> Layer:
    error = response.get("Error", {})
    code = str(error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    message = error.get("Message") or code
    evidence = {**evidence, "s3_error": code}
    key, bucket = evidence["access_key"], evidence["bucket"]
    if code in BAD_KEY_CODES:
        return failed(
            "artifacts", f"S3 refuses key {key} ({code}): {message}",
            "your S3 key is invalid or expired: ask an admin to rotate the S3 key (or renew your session)",
            Unauthenticated.exit_code, **evidence,
        )  # fmt: skip
    if code in DENIED_CODES:
        return failed(
            "artifacts", f"key {key} may not list bucket {bucket} ({code})",
            f"ask an admin to allow this key s3:ListBucket, s3:GetObject and s3:PutObject on {bucket}",
            Unauthenticated.exit_code, **evidence,
        )  # fmt: skip
    if code in MISSING_CODES:
        return failed(
            "artifacts", f"bucket {bucket} does not exist ({code})",
            "check the bucket in MLONCALL_ARTIFACTS (and MLONCALL_S3_ENDPOINT_URL)",
            StoreUnavailable.exit_code, **evidence,
        )  # fmt: skip
    return failed(
        "artifacts", f"S3 answered {code}: {message}", "check the store's URL and your key",
        StoreUnavailable.exit_code, **evidence,
    )  # fmt: skip


def _s3_unreachable(exc: Exception, endpoint: str, evidence: dict[str, Any]) -> Layer:
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    causes: list[BaseException] = [exc]
    inner = getattr(exc, "kwargs", {}).get("error")
    if isinstance(inner, BaseException):
        causes.append(inner)
    while causes[-1].__cause__ or causes[-1].__context__:
        nxt = causes[-1].__cause__ or causes[-1].__context__
        if nxt is None or len(causes) > 8:
            break
        causes.append(nxt)
    text = " ".join(str(c) for c in causes)
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError) or "timed out" in text:
        kind, reason = "timeout", f"timed out reaching {endpoint}"
    elif any(isinstance(c, socket.gaierror) for c in causes) or "resolve" in text or "not known" in text:
        kind, reason = "dns", f"cannot resolve the S3 endpoint {endpoint}"
    elif any(isinstance(c, ConnectionRefusedError) for c in causes) or "refused" in text:
        kind, reason = "refused", f"connection refused by {endpoint}"
    else:
        kind, reason = "network", f"cannot reach {endpoint}: {exc}"
    return failed(
        "artifacts", f"network failure, not a credential problem: {reason}",
        "check the S3 endpoint (MLONCALL_S3_ENDPOINT_URL), the VPN and any proxy",
        StoreUnavailable.exit_code, **evidence, failure=kind,
    )  # fmt: skip
