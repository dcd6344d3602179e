"""The inference plane's OpenAPI document, served at `GET /v2/openapi.json`, built from the route table.

Every route of the table is one operation, with every status its handler (and the server around it) can
answer and the error body `{"error": "..."}`; a route missing from `OPERATIONS` fails the build, so the
document cannot drift from what is served.

The document is the installation's, not a generic one: a request is valid only for a model's signature, so
each served model gets its own paths (`/v2/models/iris/infer`, ...) whose bodies name its features, its
row limit, the training range of every feature whose policy rejects out-of-range values, and its classes
(feedback). The templated paths (`/v2/models/{model}/...`) stand for every other model: unknown (404) or
known but not served (503). A schema-valid request for a served model is accepted, with one exception JSON
Schema cannot state: a tensor's `shape` must agree with its `data` (`shape[0]` rows of `data`, every
per-feature input with the same rows); the tensor schemas say so (`x-shape-matches-data`).

Built when the routing changes (the router swaps its route map whole), never on the infer path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mloncall import __version__
from mloncall.core.names import MAX_ID, NAME_PATTERN
from mloncall.serving.asgi import RouteTable
from mloncall.serving.config import ServingConfig
from mloncall.serving.router import ModelRoute, Router
from mloncall.serving.validation import MATRIX_INPUT, MAX_MAGNITUDE

#: An id, a request id or a prediction id: the server bounds prediction ids at 128 characters.
_MAX_PREDICTION_ID = 128
_MAX_FEEDBACK = 10_000
_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON = "application/json"

_MEANING = {
    400: "The request is malformed or does not fit the model's signature; the error names the field",
    404: "No such model or version",
    408: "The request's headers or body were not complete in time (the connection is closed)",
    413: "The request body is over the size limit",
    431: "The request's headers are over the size limit (the connection is closed)",
    415: "The body's content type is not application/json (nor octet-stream where binary tensors are read)",
    503: "The model is not ready or not served, the server is starting, or it has too many connections",
}


#: What the server around the app (`mloncall server`'s connection guard) may answer on any route.
_EVERY_ROUTE = (408, 431, 503)


@dataclass(frozen=True)
class Operation:
    """What one handler answers: its summary, the statuses it refuses with, its success body, its body."""

    summary: str
    errors: tuple[int, ...]
    ok: dict[str, Any]
    body: str | None = None
    ok_type: str = _JSON


def _obj(required: Iterable[str] = (), **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


_STR = {"type": "string"}
_TENSOR_OUT = _obj(
    ["name", "datatype", "shape"],
    name={"type": "string", "enum": ["label", "probabilities"]},
    datatype={"type": "string", "enum": ["BYTES", "FP32"]},
    shape={"type": "array", "items": {"type": "integer", "minimum": 0}},
    data={"type": "array", "items": {"type": ["string", "number"]}},
    parameters=_obj(binary_data_size={"type": "integer", "minimum": 0}),
)
_TENSOR_META = _obj(
    ["name", "datatype", "shape"],
    name=_STR,
    datatype=_STR,
    shape={"type": "array", "items": {"type": "integer"}},
)
_MODEL_META = _obj(
    ["name", "versions", "platform", "inputs", "outputs"],
    name=_STR,
    versions={"type": "array", "items": _STR},
    platform=_STR,
    inputs={"type": "array", "items": _TENSOR_META},
    outputs={"type": "array", "items": _TENSOR_META},
    features={"type": "array", "items": _STR},
    classes={"type": "array", "items": _STR},
    routing={"type": "object"},
)

#: Each handler of the route table, by name: what its operation documents.
OPERATIONS: dict[str, Operation] = {
    "server_metadata": Operation(
        "Server metadata",
        (),
        _obj(
            ["name", "version", "extensions"],
            name=_STR,
            version=_STR,
            extensions={"type": "array", "items": _STR},
        ),
    ),
    "live": Operation("Liveness", (), _obj(["live"], live={"type": "boolean"})),
    "ready": Operation(
        "Readiness: routing loaded and every routed model ready",
        (503,),
        _obj(["ready"], ready={"type": "boolean"}),
    ),
    "model_metadata": Operation("A model's (or one version's) metadata and routing", (404, 503), _MODEL_META),
    "model_ready": Operation(
        "Whether a model (or one version) is ready",
        (404, 503),
        _obj(
            ["name", "ready"], name=_STR, ready={"type": "boolean"}, version=_STR, routing={"type": "object"}
        ),
    ),
    "infer": Operation(
        "Score rows (Open Inference Protocol v2; binary tensors after the JSON header when "
        "`Inference-Header-Content-Length` is sent)",
        (400, 404, 413, 415, 503),
        _obj(
            ["model_name", "model_version", "outputs"],
            model_name=_STR,
            model_version=_STR,
            id=_STR,
            parameters=_obj(prediction_ids=_STR, flags=_STR),
            outputs={"type": "array", "items": _TENSOR_OUT},
        ),
        body="infer",
    ),
    "feedback": Operation(
        "The true labels of earlier predictions, by prediction id",
        (400, 404, 413, 415, 503),
        _obj(["model", "recorded"], model=_STR, recorded={"type": "integer", "minimum": 1}),
        body="feedback",
    ),
    "predict": Operation(
        "Score rows given as objects of feature values (for people)",
        (400, 404, 413, 415, 503),
        _obj(
            ["predictions", "model", "version"],
            model=_STR,
            version={"type": "integer", "minimum": 1},
            predictions={
                "type": "array",
                "items": _obj(
                    ["id", "label", "probabilities", "flags"],
                    id=_STR,
                    label=_STR,
                    probabilities={"type": "object", "additionalProperties": {"type": "number"}},
                    flags={"type": "array", "items": _STR},
                ),
            },
        ),
        body="predict",
    ),
    "metrics_text": Operation("Prometheus text exposition", (), {"type": "string"}, ok_type="text/plain"),
    "openapi": Operation("This document", (), {"type": "object"}),
}


@dataclass(frozen=True)
class Served:
    """What a served model's request bodies must hold."""

    name: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    max_rows: int
    #: per feature, the training range a value must stay within (the features whose policy rejects)
    bounds: dict[str, tuple[float, float]]
    #: features `/predict` may leave out (the policy imputes them)
    imputed: frozenset[str]


def served(route: ModelRoute) -> Served | None:
    """A ready route's request rules; None when it serves nothing."""
    stable = route.stable
    if stable is None:
        return None
    schemas = [p.schema for p in (stable, route.canary) if p is not None]
    classes = sorted({c for s in schemas for c in s.classes})
    bounds: dict[str, tuple[float, float]] = {}
    for f in stable.schema.features:
        if route.feature_policies.get(f, route.out_of_range_policy) != "reject":
            continue
        lo = max(float(s.mins[s.index[f]]) if f in s.index else -math.inf for s in schemas)
        hi = min(float(s.maxs[s.index[f]]) if f in s.index else math.inf for s in schemas)
        bounds[f] = (lo, hi)
    return Served(route.model, stable.schema.features, tuple(classes), route.max_rows, bounds, route.imputed)


# --- request bodies -----------------------------------------------------------------------------------


def _number(bounds: tuple[float, float] | None = None, nullable: bool = False) -> dict[str, Any]:
    lo, hi = bounds if bounds is not None else (-math.inf, math.inf)
    schema: dict[str, Any] = {
        "type": ["number", "null"] if nullable else "number",
        "minimum": max(lo, -MAX_MAGNITUDE),
        "maximum": min(hi, MAX_MAGNITUDE),
    }
    return schema


def _shape(rows: int, width: int | None) -> dict[str, Any]:
    first = {"type": "integer", "minimum": 1, "maximum": rows}
    if width is None:  # one feature: [n] or [n, 1]
        return {"type": "array", "prefixItems": [first, {"const": 1}], "items": False, "minItems": 1}
    return {"type": "array", "prefixItems": [first, {"const": width}], "items": False, "minItems": 2}


_DATATYPE = {"type": "string", "enum": ["FP32", "FP64"]}
_AGREE = "`shape[0]` is the number of rows in `data`"


def _matrix_tensor(m: Served, rows: int, bounds: dict[str, tuple[float, float]]) -> dict[str, Any]:
    width = len(m.features)
    row = {
        "type": "array",
        "prefixItems": [_number(bounds.get(f)) for f in m.features],
        "items": False,
        "minItems": width,
    }
    nested = {"type": "array", "items": row, "minItems": 1, "maxItems": rows}
    forms = [nested]
    if not bounds:  # flat row-major data cannot bound a value by its position
        forms.append({"type": "array", "items": _number(), "minItems": width, "maxItems": rows * width})
    tensor = _obj(
        ["name", "datatype", "shape", "data"],
        name={"const": MATRIX_INPUT},
        datatype=_DATATYPE,
        shape=_shape(rows, width),
        data={"anyOf": forms} if len(forms) > 1 else nested,
    )
    tensor["description"] = f"[n, {width}] rows in feature order ({', '.join(m.features)}); {_AGREE}"
    tensor["x-shape-matches-data"] = True
    return tensor


def _feature_tensor(feature: str, rows: int, bounds: tuple[float, float] | None) -> dict[str, Any]:
    value = _number(bounds)
    one = {"type": "array", "items": value, "minItems": 1, "maxItems": 1}
    tensor = _obj(
        ["name", "datatype", "shape", "data"],
        name={"const": feature},
        datatype=_DATATYPE,
        shape=_shape(rows, None),
        data={
            "anyOf": [
                {"type": "array", "items": value, "minItems": 1, "maxItems": rows},
                {"type": "array", "items": one, "minItems": 1, "maxItems": rows},
            ]
        },
    )
    tensor["x-shape-matches-data"] = True
    return tensor


def infer_body(m: Served, rows: int, bounds: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """One matrix tensor `input`, or one tensor per feature (every feature once, all with the same rows)."""
    per_feature = {
        "type": "array",
        "prefixItems": [_feature_tensor(f, rows, bounds.get(f)) for f in m.features],
        "items": False,
        "minItems": len(m.features),
        "description": "one tensor per feature, in any order (listed here in feature order), same rows each",
    }
    matrix = {
        "type": "array",
        "prefixItems": [_matrix_tensor(m, rows, bounds)],
        "items": False,
        "minItems": 1,
    }
    output = _obj(
        ["name"],
        name={"type": "string", "enum": ["label", "probabilities"]},
        parameters=_obj(binary_data={"type": "boolean"}),
    )
    return _obj(
        ["inputs"],
        id={"type": "string", "maxLength": 256},
        parameters=_obj(binary_data_output={"type": "boolean"}),
        # A model with a feature named `input` reads a tensor of that name as the feature's.
        inputs={"anyOf": [matrix, per_feature]} if MATRIX_INPUT not in m.features else per_feature,
        outputs={"type": "array", "items": output, "maxItems": 2},
    )


def predict_body(models: list[Served], default: str | None) -> dict[str, Any]:
    """`{"model": name, "instances": [{feature: value}]}` for any served model; `model` may be left out for
    the default one (the first by name)."""
    forms = []
    for m in models:
        instance = {
            "type": "object",
            "properties": {f: _number(m.bounds.get(f), nullable=f in m.imputed) for f in m.features},
            "required": [f for f in m.features if f not in m.imputed],
            "additionalProperties": False,
        }
        required = ["instances"] if m.name == default else ["model", "instances"]
        forms.append(
            _obj(
                required,
                model={"const": m.name},
                instances={"type": "array", "items": instance, "minItems": 1, "maxItems": m.max_rows},
            )
        )
    if not forms:
        return _obj(["instances"], model=_STR, instances={"type": "array", "items": {"type": "object"}})
    return forms[0] if len(forms) == 1 else {"anyOf": forms}


def feedback_body(classes: tuple[str, ...] | None) -> dict[str, Any]:
    label = {"type": "string", "enum": list(classes)} if classes else _STR
    item = _obj(
        ["id", "label"], id={"type": "string", "minLength": 1, "maxLength": _MAX_PREDICTION_ID}, label=label
    )
    return _obj(["labels"], labels={"type": "array", "items": item, "minItems": 1, "maxItems": _MAX_FEEDBACK})


def generic_infer_body() -> dict[str, Any]:
    """Any Open Inference Protocol request (the templated paths: a model this server does not serve)."""
    tensor = _obj(
        ["name", "datatype", "shape", "data"],
        name=_STR,
        datatype=_DATATYPE,
        shape={"type": "array", "items": {"type": "integer", "minimum": 0}},
        data={"type": "array"},
        parameters={"type": "object"},
    )
    return _obj(["inputs"], id=_STR, inputs={"type": "array", "items": tensor, "minItems": 1})


# --- the document -------------------------------------------------------------------------------------


def _parameter(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _operation(
    handler: str, method: str, path: str, params: list[dict[str, Any]], body: dict[str, Any] | None
) -> dict[str, Any]:
    spec = OPERATIONS[handler]
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {spec.ok_type: {"schema": spec.ok}}}}
    if handler == "infer":
        responses["200"]["content"]["application/octet-stream"] = {
            "schema": {"type": "string", "format": "binary"}
        }
    for code in sorted({*spec.errors, *_EVERY_ROUTE}):
        responses[str(code)] = {"description": _MEANING[code], "content": {_JSON: {"schema": _ERROR}}}
    op: dict[str, Any] = {
        "operationId": f"{handler}:{method.lower()}:{path}",
        "summary": spec.summary,
        "responses": responses,
    }
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    return op


Handler = Callable[..., Any]


def build(
    routes: RouteTable[Handler], models: list[Served], config: ServingConfig, default: str | None = None
) -> dict[str, Any]:
    """The document for these routes and these served models; `default` is the model `/predict` scores
    when a request names none (the first routed model by name, served or not)."""
    names = [m.name for m in models]
    other_model: dict[str, Any] = {"type": "string", "pattern": NAME_PATTERN}
    if names:
        other_model["not"] = {"enum": names}
    version = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes.routes:
        handler = route.handler.__name__
        method = route.method.lower()
        if handler not in OPERATIONS:
            raise KeyError(f"route {route.method} {route.pattern} ({handler}) is not documented")
        kind = OPERATIONS[handler].body
        if "{model}" not in route.pattern:
            body = predict_body(models, default) if kind == "predict" else None
            paths.setdefault(route.pattern, {})[method] = _operation(handler, method, route.pattern, [], body)
            continue
        explicit = "{version}" in route.pattern
        generic = _body(kind, None, explicit, config, generic=True)
        params = [_parameter("model", other_model)] + ([_parameter("version", version)] if explicit else [])
        paths.setdefault(route.pattern, {})[method] = _operation(
            handler, method, route.pattern, params, generic
        )
        for m in models:
            path = route.pattern.replace("{model}", m.name)
            own = [_parameter("version", version)] if explicit else []
            body = _body(kind, m, explicit, config)
            paths.setdefault(path, {})[method] = _operation(handler, method, path, own, body)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mloncall inference",
            "version": __version__,
            "description": __doc__.split("\n\n", 2)[2] if __doc__ else "",
        },
        "paths": paths,
        "components": {"schemas": {"Error": _obj(["error"], error=_STR)}},
    }


def _body(
    kind: str | None, m: Served | None, explicit: bool, config: ServingConfig, generic: bool = False
) -> dict[str, Any] | None:
    if kind == "infer":
        if m is None:
            return generic_infer_body()
        # An explicit version is scored with the defaults: the server's row limit, no range policy.
        if explicit:
            return infer_body(m, config.default_max_rows, {})
        return infer_body(m, m.max_rows, m.bounds)
    if kind == "feedback":
        return feedback_body(m.classes if m is not None else None)
    return None


def guarded(doc: dict[str, Any], open_paths: frozenset[str]) -> dict[str, Any]:
    """The document of a server whose inference routes need a token (`serving.gate`): a bearer scheme, and
    401 and 403 on every operation but the open ones."""
    doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in doc["paths"].items():
        if path in open_paths:
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}]
            for status, meaning in (
                (401, "No valid token"),
                (403, "The token's principal may not call this"),
            ):
                operation["responses"][str(status)] = {
                    "description": meaning, "content": {_JSON: {"schema": _ERROR}},
                }  # fmt: skip
    return doc


class Document:
    """The document of one worker, rebuilt only when its router swaps in a new route map."""

    def __init__(
        self,
        routes: RouteTable[Handler],
        router: Router,
        config: ServingConfig,
        open_paths: frozenset[str] | None = None,
    ) -> None:
        self.routes = routes
        self.router = router
        self.config = config
        #: With a token gate: the paths it leaves open (None: no gate).
        self.open_paths = open_paths
        self._for: dict[str, ModelRoute] | None = None
        self._body = b""

    def body(self, dumps: Callable[[Any], bytes]) -> bytes:
        current = self.router.routes
        if current is not self._for:
            models = [s for s in (served(r) for _, r in sorted(current.items())) if s is not None]
            default = min(current) if current else None
            doc = build(self.routes, models, self.config, default)
            self._body = dumps(guarded(doc, self.open_paths) if self.open_paths is not None else doc)
            self._for = current
        return self._body
