"""Why a stage failed, in one of six classes, each with the fix to try; and which errors are transient.

A transient error (a timeout, a connection refused by S3 or the database) is retried with backoff; a
deterministic one (a missing file, a bad row) is not, since trying again would fail the same way.
"""

from __future__ import annotations

import enum
import socket
from typing import Any

from mloncall.core.errors import MloncallError, StoreUnavailable


class FailureClass(enum.StrEnum):
    MISSING_SOURCE = "missing_source"
    UNREADABLE_SOURCE = "unreadable_source"
    SCHEMA_MISMATCH = "schema_mismatch"
    CHECK_FAILURE = "check_failure"
    TRANSFORMATION_ERROR = "transformation_error"
    LOAD_FAILURE = "load_failure"


#: The fix to try for each class (`{pipeline}` and `{stage}` filled in).
FIXES: dict[FailureClass, str] = {
    FailureClass.MISSING_SOURCE: (
        "the source is not there: check the upstream job delivered it (path, bucket, query) and that "
        "the declaration points at it, then `mloncall pipeline rerun {pipeline} --from-failed`"
    ),
    FailureClass.UNREADABLE_SOURCE: (
        "the source is empty, truncated or corrupted: ask its owner to deliver it again (the changed "
        "file means a full `mloncall pipeline run {pipeline}`)"
    ),
    FailureClass.SCHEMA_MISMATCH: (
        "the source's columns differ from the schema: map a renamed column under `rename:` of stage "
        "{stage}, or have the upstream restore it, then re-run from the failed stage"
    ),
    FailureClass.CHECK_FAILURE: (
        "rows break the declared checks: look at the failing rows, fix them upstream or change the "
        "check if the data is right, then re-run"
    ),
    FailureClass.TRANSFORMATION_ERROR: (
        "a transform raised on the rows listed: declare what they need (an alias, a unit) in stage "
        "{stage}, or fix the rows upstream; with no row listed, correct the step's arguments (its columns, "
        "units, strategy) in stage {stage}; then `mloncall pipeline rerun {pipeline} --from-failed`"
    ),
    FailureClass.LOAD_FAILURE: (
        "the new dataset version could not be written: check the database and the artifact store "
        "(`mloncall access diagnose`), then `mloncall pipeline rerun {pipeline} --from-failed`"
    ),
}


class StageFailure(Exception):
    """A stage's deterministic failure: its class, what is wrong, and the evidence (offending rows...)."""

    def __init__(self, failure: FailureClass, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.details = details or {}


class TransientError(Exception):
    """An error worth retrying (the endpoint may answer next time); the last one fails the stage."""

    def __init__(self, failure: FailureClass, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


def fix_for(failure: FailureClass | str, *, pipeline: str, stage: str) -> str:
    return FIXES[FailureClass(failure)].format(pipeline=pipeline, stage=stage)


_TRANSIENT_NAMES = {
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ClientConnectorError", "ServerDisconnectedError", "ServerTimeoutError", "OperationalError",
}  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """A timeout or a refused or dropped connection, by S3 (botocore, aiohttp) or a database."""
    if isinstance(exc, StoreUnavailable):
        return True
    if isinstance(exc, MloncallError):
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | ConnectionError | socket.timeout | socket.gaierror):
            return True
        if type(current).__name__ in _TRANSIENT_NAMES:
            return _connection_like(current)
        current = current.__cause__ or current.__context__
    return False


def _connection_like(exc: BaseException) -> bool:
    """A database's OperationalError is transient only when it is about reaching the server."""
    if type(exc).__name__ != "OperationalError":
        return True
    text = str(exc).lower()
    return any(w in text for w in ("connect", "timeout", "timed out", "refused", "unreachable", "closed"))
