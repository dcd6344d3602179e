"""The control plane's OpenAPI document, told truthfully: every operation lists the statuses it can answer,
each error with the project's error body, and no 422 where the server answers a bad request with 400.

FastAPI documents a 422 validation error on every operation with parameters; this app maps validation errors
to 400 `invalid_input` (`api.app`), so the document says 400. What each operation may answer follows from what
the app does to every request (auth, roles, the NUL check, the body limit, the error mapping) and from the
operation itself (a body, a raw table body, a deployment's pre-checks).

Every operation that creates something (201) links to the operations under the created thing's path, so a
client (and a stateful fuzzer) can follow what it made: an incident's id to its acknowledgement, a dataset
version to its page.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from mloncall.core.errors import CheckFailed, IntegrityError
from mloncall.core.names import NAME_PATTERN


class ErrorBody(BaseModel):
    """Every error the control plane answers."""

    error: str = Field(description="what went wrong, for a person")
    code: str = Field(description="a stable code: invalid_input, not_found, conflict, ...")
    details: Any = Field(default=None, description="structured evidence, when there is some")
    request_id: str = Field(
        description="the request's id, as in the X-Request-ID response header and its audit record"
    )


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
#: Reads that answer 409 integrity_error when what they verify is broken: (method, path).
VERIFYING_READS = frozenset({("get", "/api/v1/audit/verify")})
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
    if (method, path) in VERIFYING_READS:
        codes.add(IntegrityError.http_status)
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
    add_links(doc)
    _name_patterns(doc)
    _no_nul_text(doc)
    health = doc.get("paths", {}).get("/healthz", {}).get("get")
    if health is not None:
        health["responses"]["503"] = {
            "description": "The metadata database cannot be reached",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    app.openapi_schema = doc
    return doc


#: Path parameters that are names (models, datasets, schedules, aliases): the server refuses any other spelling.
_NAME_PARAMETERS = frozenset({"name", "alias", "model"})


def _name_patterns(doc: dict[str, Any]) -> None:
    """State the name grammar on every path parameter that is a name, so a valid-looking name is valid."""
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param.get("in") == "path" and param.get("name") in _NAME_PARAMETERS:
                    param.setdefault("schema", {}).update(pattern=NAME_PATTERN, maxLength=64)


#: Text without NUL: PostgreSQL cannot store one, so every backend is refused one (in a path, a query or a
#: body), and the document says so on every string a client sends.
NO_NUL = "^[^\\u0000]*$"
_NOT_TEXT = frozenset({"date-time", "date", "time", "binary", "uuid"})
#: A time whose year is 2 to 9998: whatever its offset, it stays inside the UTC calendar the database holds.
INSIDE_CALENDAR = r"^(000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9])-"
_SHAPES = frozenset({"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "not"})


def _json_without_nul(depth: int) -> dict[str, Any]:
    """Any JSON value (nested `depth` deep) whose strings and keys hold no NUL: what a free-form field or
    an extra field of a body may hold."""
    text = {"type": "string", "pattern": NO_NUL}
    forms: list[dict[str, Any]] = [text, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]
    if depth > 0:
        inner = _json_without_nul(depth - 1)
        forms.append({"type": "array", "items": inner, "maxItems": 4})
        forms.append(
            {
                "type": "object",
                "additionalProperties": inner,
                "propertyNames": {"pattern": NO_NUL},
                "maxProperties": 4,
            }
        )
    return {"anyOf": forms}


_FREE_JSON = _json_without_nul(2)


def _no_nul_text(doc: dict[str, Any]) -> None:
    """Exclude NUL from every string of every parameter and request body (and from their objects' keys)."""
    components = doc.get("components", {}).get("schemas", {})
    seen: set[str] = set()

    def walk(schema: Any) -> None:
        if isinstance(schema, list):
            for item in schema:
                walk(item)
            return
        if not isinstance(schema, dict):
            return
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen and name in components:
                seen.add(name)
                walk(components[name])
            return
        text = schema.get("type") == "string" and not {"pattern", "enum", "const"} & set(schema)
        if text and schema.get("format") not in _NOT_TEXT:
            schema["pattern"] = NO_NUL
        if schema.get("format") == "date-time":
            schema.setdefault("pattern", INSIDE_CALENDAR)
        if schema.get("type") == "object" or "properties" in schema:
            extra = schema.get("additionalProperties", True)
            if extra is not False:
                schema.setdefault("propertyNames", {"pattern": NO_NUL})
                if extra is True or not _SHAPES & set(extra):
                    schema["additionalProperties"] = _FREE_JSON
        for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems", "not"):
            walk(schema.get(key))
        properties = schema.get("properties", {})
        for name, value in properties.items():
            if isinstance(value, dict) and not _SHAPES & set(value):  # free-form (Any)
                properties[name] = {**value, **_FREE_JSON}
            else:
                walk(value)

    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                walk(param.get("schema"))
            for media in operation.get("requestBody", {}).get("content", {}).values():
                walk(media.get("schema"))


def add_links(doc: dict[str, Any]) -> None:
    """OpenAPI links from each 201 answer to the operations under the created thing's path.

    A parameter the target shares with the creating path is passed through (`$request.path.name`); a new
    one is read from the created body: `{x_id}` from its `id`, `{name}` or `{version}` from the field of that
    name.
    """
    paths: dict[str, dict[str, Any]] = doc.get("paths", {})
    for path, operations in paths.items():
        for operation in operations.values():
            created = operation.get("responses", {}).get("201")
            if created is None:
                continue
            fields = _body_fields(doc, created)
            links: dict[str, Any] = {}
            for target, target_ops in paths.items():
                if _params_under(path, target) is None:
                    continue
                values = {p: _link_value(p, path, fields) for p in _path_params(target)}
                if None in values.values():
                    continue
                for target_method, target_op in target_ops.items():
                    pointer = target.replace("~", "~0").replace("/", "~1")
                    links[target_op["operationId"]] = {
                        "operationRef": f"#/paths/{pointer}/{target_method}",
                        "parameters": values,
                    }
            if links:
                created["links"] = links


def _params_under(source: str, target: str) -> list[str] | None:
    """The new path parameters of a target under the created thing's path, or None."""
    new = [p for p in _path_params(target) if p not in _path_params(source)]
    return new if target.startswith(source.rstrip("/") + "/") and new else None


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _link_value(param: str, source: str, fields: dict[str, str]) -> str | None:
    if param in _path_params(source):
        return f"$request.path.{param}"
    field = "id" if param.endswith("_id") else param
    return f"$response.body#{fields[field]}" if field in fields else None


def _body_fields(doc: dict[str, Any], response: dict[str, Any]) -> dict[str, str]:
    """The created body's fields as JSON pointers: its own first, then those of the objects it holds
    (a created token's `id` is `/token/id`)."""
    top = _properties(doc, response.get("content", {}).get("application/json", {}).get("schema", {}))
    fields = {name: f"/{name}" for name in top}
    for name, schema in top.items():
        for inner in _properties(doc, schema):
            fields.setdefault(inner, f"/{name}/{inner}")
    return fields


def _properties(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = doc["components"]["schemas"].get(ref.rsplit("/", 1)[1], {})
    properties: dict[str, Any] = schema.get("properties", {})
    return properties
