"""The control plane's OpenAPI document, told truthfully: every operation lists the statuses it can answer,
each error with the project's error body, and no 422 where the server answers a bad request with 400.

FastAPI documents a 422 validation error on every operation with parameters; this app maps validation errors
to 400 `invalid_input` (`api.app`), so the document says 400. What each operation may answer follows from what
the app does to every request (auth, roles, the NUL check, the body limit, the error mapping) and from the
operation itself (a body, a raw table body, a deployment's pre-checks).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from mloncall.core.errors import CheckFailed


class ErrorBody(BaseModel):
    """Every error the control plane answers."""

    error: str = Field(description="what went wrong, for a person")
    code: str = Field(description="a stable code: invalid_input, not_found, conflict, ...")
    details: Any = Field(default=None, description="structured evidence, when there is some")


_MEANING = {
    400: "Invalid input: a bad parameter, body or reference (`invalid_input`)",
    401: "Missing, unknown, revoked or expired token (`unauthenticated`)",
    403: "The token's role may not do this (`permission_denied`)",
    404: "The named thing does not exist (`not_found`)",
    409: "Conflicts with the stored state, or stored files failed verification (`conflict`, `integrity_error`)",
    413: "The request body is over the limit (`payload_too_large`)",
    415: "The body's content type is not one this route reads (`unsupported_media_type`)",
    422: "A check ran and failed, e.g. a deployment's pre-checks (`check_failed`)",
    503: "The metadata database or the artifact store cannot be reached (`store_unavailable`)",
}
_MUTATING = frozenset({"post", "put", "patch", "delete"})
#: Operations whose checks can fail with CheckFailed (422): (method, path).
CHECKED = frozenset({("post", "/api/v1/models/{name}/deployments")})
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def _statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    codes = {400, 401, 403, 404, 503}
    if method in _MUTATING:
        codes |= {409, 413}
    body = operation.get("requestBody", {}).get("content", {})
    if body:
        codes.add(413)
    if body and "application/json" not in body:
        codes.add(415)  # a raw table body: JSON or anything else but a table is refused
    if (method, path) in CHECKED:
        codes.add(CheckFailed.http_status)
    return codes


def truthful_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with every operation's error statuses and no undocumented answers."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if not path.startswith("/api/"):
                continue
            for code in sorted(_statuses(path, method, operation)):
                responses[str(code)] = {
                    "description": _MEANING[code],
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
    health = doc.get("paths", {}).get("/healthz", {}).get("get")
    if health is not None:
        health["responses"]["503"] = {
            "description": "The metadata database cannot be reached",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    app.openapi_schema = doc
    return doc
