"""The project's one exception hierarchy, mapped once to HTTP status and CLI exit code."""

from __future__ import annotations

from typing import Any


class MloncallError(Exception):
    """Base of every error that is the user's to read: it carries a stable code, a status and an exit code.

    A subclass states its mapping in its header, `class NotFound(MloncallError, code=..., http_status=...,
    exit_code=...)`, so the whole table reads in the class lines below; what it leaves out it inherits.
    """

    code = "error"
    http_status = 500
    exit_code = 1

    def __init_subclass__(
        cls,
        *,
        code: str | None = None,
        http_status: int | None = None,
        exit_code: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if http_status is not None:
            cls.http_status = http_status
        if exit_code is not None:
            cls.exit_code = exit_code

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidInput(MloncallError, code="invalid_input", http_status=400, exit_code=2):
    """What the caller sent is wrong: a bad file, a bad reference, a bad value."""


class NotFound(MloncallError, code="not_found", http_status=404, exit_code=3):
    """The named thing does not exist."""


class Conflict(MloncallError, code="conflict", http_status=409, exit_code=4):
    """The request clashes with the current state (an alias points here, a rollout is running, ...)."""


class IntegrityError(MloncallError, code="integrity_error", http_status=409, exit_code=5):
    """Stored bytes do not match their recorded checksum, or a file is missing or unreadable."""


class Unauthenticated(MloncallError, code="unauthenticated", http_status=401, exit_code=6):
    """No valid credentials were presented."""


class PermissionDenied(MloncallError, code="permission_denied", http_status=403, exit_code=6):
    """The caller is known but not allowed to do this."""


class StoreUnavailable(MloncallError, code="store_unavailable", http_status=503, exit_code=7):
    """The metadata database or the artifact store cannot be reached."""


class ClusterUnavailable(StoreUnavailable, code="cluster_unavailable"):
    """The serving cluster (Ray) does not answer, or did not take the deployment."""


class CheckFailed(MloncallError, code="check_failed", http_status=422, exit_code=1):
    """A gate, verification or acceptance check ran and its verdict is 'failed'."""


INTERNAL_EXIT_CODE = 70
