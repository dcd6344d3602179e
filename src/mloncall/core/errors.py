"""The project's one exception hierarchy, mapped once to HTTP status and CLI exit code."""

from __future__ import annotations

from typing import Any


class MloncallError(Exception):
    """Base of every error that is the user's to read: it carries a stable code, a status and an exit code."""

    code = "error"
    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidInput(MloncallError):
    """What the caller sent is wrong: a bad file, a bad reference, a bad value."""

    code = "invalid_input"
    http_status = 400
    exit_code = 2


class NotFound(MloncallError):
    """The named thing does not exist."""

    code = "not_found"
    http_status = 404
    exit_code = 3


class Conflict(MloncallError):
    """The request clashes with the current state (an alias points here, a rollout is running, ...)."""

    code = "conflict"
    http_status = 409
    exit_code = 4


class IntegrityError(MloncallError):
    """Stored bytes do not match their recorded checksum, or a file is missing or unreadable."""

    code = "integrity_error"
    http_status = 409
    exit_code = 5


class Unauthenticated(MloncallError):
    """No valid credentials were presented."""

    code = "unauthenticated"
    http_status = 401
    exit_code = 6


class PermissionDenied(MloncallError):
    """The caller is known but not allowed to do this."""

    code = "permission_denied"
    http_status = 403
    exit_code = 6


class StoreUnavailable(MloncallError):
    """The metadata database or the artifact store cannot be reached."""

    code = "store_unavailable"
    http_status = 503
    exit_code = 7


class CheckFailed(MloncallError):
    """A gate, verification or acceptance check ran and its verdict is 'failed'."""

    code = "check_failed"
    http_status = 422
    exit_code = 1


INTERNAL_EXIT_CODE = 70
