"""The inference and feedback routes: reading a body, routing to a version, scoring, logging, answering.

`Handlers` adds them to `serving.info.InfoHandlers` (what every route shares, and the read-only routes).
`labels` (inference routes only) say what the request turned out to be, so its failure is counted even when
it fails half way.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mloncall.core import clock
from mloncall.serving.asgi import Receive, Scope
from mloncall.serving.info import JSON, Answer, InfoHandlers, Labels, error
from mloncall.serving.predictor import Predictor
from mloncall.serving.protocol import (
    SYNTHETIC_HEADER,
    infer_response,
    parse_json,
    requested_outputs,
    split_infer_body,
)
from mloncall.serving.router import CANARY, EXPLICIT, ModelRoute, choose
from mloncall.serving.tensors import rows_from_oip
from mloncall.serving.validation import (
    RequestError,
    apply_policies,
    bad,
    kind_of,
    quoted,
    rows_from_instances,
)
from mloncall.stores.predlog import FeedbackBatch

__all__ = ["JSON", "Answer", "Disconnected", "Handlers", "Labels"]

log = logging.getLogger("mloncall.serving.handlers")

OCTETS = b"application/octet-stream"
_ACCEPTED_TYPES = (b"", b"application/json")
_UNKNOWN = "(unknown)"
_MAX_FEEDBACK = 10_000
_MAX_ID = 128
_HUGE = 1e30  # far past any sum of probabilities; NaN compares false with it, so it fails the check too
_error = error
_SYNTHETIC = SYNTHETIC_HEADER.encode()

#: The rejections log's model for a refused request that never said which model it was for (an unreadable
#: /predict body): no model name starts with '_'.
UNKNOWN_MODEL = "_unknown"


def prediction_ids(n: int) -> list[str]:
    """n random (version 4) UUIDs as strings, from one read of the system's random source: what
    `str(uuid.uuid4())` gives, at a third of its cost."""
    raw = os.urandom(16 * n).hex()
    ids = []
    for i in range(0, 32 * n, 32):
        h = raw[i : i + 32]
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}")
    return ids


#: The variant bits of RFC 4122 (10xx) set on the first hex digit of the fourth group.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


@dataclass(slots=True)
class _Scored:
    """One request's answer, before it is encoded."""

    predictor: Predictor
    route: str
    labels: list[str]
    probabilities: np.ndarray
    flags: list[list[str]] | None
    ids: list[str]
    shadow_version: int | None = None
    shadow_labels: list[str] | None = None


class Handlers(InfoHandlers):
    """The inference routes' handlers over one worker's router, prediction log and metrics."""

    # --- inference ---

    async def _body(
        self, scope: Scope, receive: Receive, binary_ok: bool = False
    ) -> tuple[bytes, dict[bytes, bytes]]:
        headers = dict(scope["headers"])
        ctype = headers.get(b"content-type")
        if ctype is not None:
            base = ctype.split(b";", 1)[0].strip().lower()
            if base not in _ACCEPTED_TYPES and not (binary_ok and base == OCTETS):
                raise _error(
                    415,
                    f"content type {ctype.decode('latin-1')!r} is not supported; send application/json",
                    "wrong_content_type",
                    "body",
                )
        limit = self.config.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _error(
                413,
                f"request body of {int(declared)} bytes is over the {limit}-byte limit",
                "body_too_large",
                "body",
            )
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        body: bytes = message.get("body", b"")
        if message.get("more_body"):
            chunks = [body]
            size = len(body)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise Disconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _error(
                        413, f"request body is over the {limit}-byte limit", "body_too_large", "body"
                    )
                chunks.append(chunk)
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
        if len(body) > limit:
            raise _error(
                413,
                f"request body of {len(body)} bytes is over the {limit}-byte limit",
                "body_too_large",
                "body",
            )
        if not body:
            raise _error(400, "the request body is empty; send a JSON object", "empty_body", "body")
        return body, headers

    def _sticky(self, route: ModelRoute | None, headers: dict[bytes, bytes], fields: Any) -> str | None:
        if route is None or route.sticky_key is None:
            return None
        value = headers.get(route.sticky_header)  # type: ignore[arg-type]
        if value is not None:
            return value.decode("latin-1")
        if type(fields) is dict:
            found = fields.get(route.sticky_key)
            if isinstance(found, str | int) and not isinstance(found, bool):
                return str(found)
        return None

    async def infer(
        self, scope: Scope, receive: Receive, params: tuple[str, ...], labels: Labels | None, t0: float
    ) -> Answer:
        """POST /v2/models/{model}[/versions/{version}]/infer: Open Inference Protocol v2."""
        assert labels is not None  # an inference route
        model = params[0]
        version_text = params[1] if len(params) > 1 else None
        route = self.router.routes.get(model)
        labels.model = model if (route is not None or model in self.router.known) else ""
        explicit: Predictor | None = None
        if version_text is not None:
            labels.route = EXPLICIT
            explicit = await self._explicit(model, version_text)
            labels.model = model
            labels.version = str(explicit.version)
        else:
            route = self._route(model)
        body, headers = await self._body(scope, receive, binary_ok=True)
        header_length = headers.get(b"inference-header-content-length")
        doc, binary = split_infer_body(
            body, header_length.decode("latin-1") if header_length is not None else None
        )
        request_id = doc.get("id")
        if request_id is not None and type(request_id) is not str:
            raise bad(f"'id' must be a string, got {kind_of(request_id)}", "wrong_shape", "id")
        if explicit is not None:
            predictor, route_name = explicit, EXPLICIT
        else:
            assert route is not None
            predictor, route_name = choose(route, self._sticky(route, headers, doc.get("parameters")))
            labels.version = str(predictor.version)
            labels.route = route_name
        max_rows = route.max_rows if route is not None else self.config.default_max_rows
        X = rows_from_oip(doc.get("inputs"), predictor.schema, max_rows, binary)
        outputs, binary_out = requested_outputs(doc)
        scored = self._score(predictor, route_name, route, X, lambda r: f"row {r}")
        parameters: dict[str, Any] = {"prediction_ids": ",".join(scored.ids)}
        if scored.flags is not None:
            parameters["flags"] = orjson.dumps(scored.flags).decode()
        out, json_length = infer_response(
            model=model,
            version=predictor.version,
            request_id=request_id,
            labels=scored.labels,
            probabilities=scored.probabilities,
            outputs=outputs,
            binary=binary_out,
            parameters=parameters,
        )
        self._record(
            model,
            scored,
            X,
            t0,
            request_id or _header(headers, b"x-request-id"),
            headers.get(_SYNTHETIC) == b"1",
        )
        if json_length is None:
            return 200, out, JSON, None
        return 200, out, OCTETS, [(b"inference-header-content-length", str(json_length).encode())]

    async def predict(
        self, scope: Scope, receive: Receive, params: tuple[str, ...], labels: Labels | None, t0: float
    ) -> Answer:
        """POST /predict: {"instances": [{feature: value, ...}]} for humans."""
        assert labels is not None  # an inference route
        body, headers = await self._body(scope, receive)
        doc = parse_json(body)
        if type(doc) is not dict:
            raise bad(
                f"the request must be a JSON object with 'instances', got {kind_of(doc)}",
                "wrong_shape",
                "body",
            )
        model = doc.get("model")
        if model is None:
            if not self.router.routes:
                raise _error(503, "no model is being served")
            model = min(self.router.routes)
        elif type(model) is not str:
            raise bad(f"'model' must be a string, got {kind_of(model)}", "wrong_shape", "model")
        route = self.router.routes.get(model)
        labels.model = model if (route is not None or model in self.router.known) else ""
        route = self._route(model)
        if "instances" not in doc:
            raise bad(
                "the request has no 'instances': send {\"instances\": [{feature: value, ...}]}",
                "wrong_shape",
                "instances",
            )
        predictor, route_name = choose(route, self._sticky(route, headers, doc))
        labels.version = str(predictor.version)
        labels.route = route_name
        X = rows_from_instances(doc["instances"], predictor.schema, route.max_rows, route.imputed)
        scored = self._score(predictor, route_name, route, X, lambda r: f"instances[{r}]")
        classes = predictor.classes
        flags = scored.flags
        predictions = [
            {
                "id": pid,
                "label": label,
                "probabilities": dict(zip(classes, row, strict=True)),
                "flags": flags[i] if flags is not None else [],
            }
            for i, (pid, label, row) in enumerate(
                zip(scored.ids, scored.labels, scored.probabilities.tolist(), strict=True)
            )
        ]
        out = orjson.dumps({"predictions": predictions, "model": model, "version": predictor.version})
        self._record(model, scored, X, t0, _header(headers, b"x-request-id"), headers.get(_SYNTHETIC) == b"1")
        return 200, out, JSON, None

    def _score(
        self,
        predictor: Predictor,
        route_name: str,
        route: ModelRoute | None,
        X: np.ndarray,
        row_name: Callable[[int], str],
    ) -> _Scored:
        """Check the training range, predict, shadow-score canary rows with stable."""
        schema = predictor.schema
        X, mask, flags = apply_policies(
            X,
            schema,
            default=route.out_of_range_policy if route is not None else "flag",
            policies=route.feature_policies if route is not None else {},
            row_name=row_name,
        )
        if mask is not None:
            model, version = predictor.model, str(predictor.version)
            for j in np.flatnonzero(mask.any(axis=0)):
                self.metrics.flagged(model, version, schema.features[j], int(mask[:, j].sum()))
        X32 = X.astype(np.float32)
        labels, probs = predictor.predict(X32)
        # NaN or inf anywhere: a sum on Python floats, several times cheaper than numpy's on a few rows
        if not -_HUGE < (sum(probs[0].tolist()) if len(probs) == 1 else float(probs.sum())) < _HUGE:
            r = int(np.flatnonzero(~np.isfinite(probs).all(axis=1))[0])
            raise bad(
                f"{row_name(r)}: the model's probabilities for these values are not finite numbers "
                "(they overflow its arithmetic); send values nearer the training range",
                "not_finite",
                "body",
            )
        ids = prediction_ids(len(labels))
        scored = _Scored(predictor, route_name, labels, probs, flags, ids)
        if route_name == CANARY and route is not None and route.shadow_ok and route.stable is not None:
            stable = route.stable
            try:
                rows = (
                    X32
                    if route.shadow_columns is None
                    else np.ascontiguousarray(X32[:, route.shadow_columns])
                )
                scored.shadow_labels, _ = stable.predict(rows)
                scored.shadow_version = stable.version
            except Exception:  # the answer stands; only the comparison is lost
                log.exception("shadow scoring by %s failed", stable)
        return scored

    def _record(
        self,
        model: str,
        scored: _Scored,
        X: np.ndarray,
        t0: float,
        request_id: str | None,
        synthetic: bool,
    ) -> None:
        """Log the rows and count the request, before the response is sent: nothing served is lost."""
        seconds = time.perf_counter() - t0
        predictor = scored.predictor
        self.prediction_log.record(
            ts=clock.timestamp(),
            model=model,
            version=predictor.version,
            route=scored.route,
            features=predictor.schema.features,
            X=X,
            ids=scored.ids,
            labels=scored.labels,
            probabilities=scored.probabilities,
            latency_ms=seconds * 1000.0,
            flags=scored.flags,
            shadow_version=scored.shadow_version,
            shadow_labels=scored.shadow_labels,
            request_id=request_id,
            synthetic=synthetic,
        )
        self.metrics.served(model, str(predictor.version), scored.route, seconds, scored.labels)

    def failed(
        self, labels: Labels, status: int, message: str, error: RequestError | None, t0: float, scope: Scope
    ) -> None:
        """Count a failed inference request; a refused one goes to the rejections log with its reason and
        field, and once routed to a version it is logged too (its error rate)."""
        reason = error.reason if error is not None else None
        self.metrics.failed(labels.model or _UNKNOWN, labels.version, labels.route, status, reason)
        if error is not None and reason is not None and status < 500:
            self.prediction_log.record_rejection(
                ts=clock.timestamp(),
                model=labels.model or UNKNOWN_MODEL,
                reason=reason,
                field=error.field,
            )
        if labels.version:
            headers = dict(scope["headers"])
            self.prediction_log.record_error(
                ts=clock.timestamp(),
                model=labels.model,
                version=int(labels.version),
                route=labels.route,
                status=status,
                error=message,
                latency_ms=(time.perf_counter() - t0) * 1000.0,
                request_id=_header(headers, b"x-request-id"),
                synthetic=headers.get(_SYNTHETIC) == b"1",
            )

    # --- feedback ---

    async def feedback(
        self, scope: Scope, receive: Receive, params: tuple[str, ...], labels: Labels | None, t0: float
    ) -> Answer:
        """POST /v2/models/{model}/feedback: the true labels of earlier predictions, by prediction id."""
        model = params[0]
        if model not in self.router.known:
            if not self.router.ready:
                raise _error(503, "the server is starting: routing not loaded yet")
            raise _error(404, f"unknown model {quoted(model)}")
        route = self.router.routes.get(model)
        classes: set[str] = set()
        for p in (route.stable, route.canary) if route is not None else ():
            if p is not None:
                classes.update(p.classes)
        if not classes:
            raise _error(503, f"model {quoted(model)} is not served, so its labels cannot be checked")
        body, _ = await self._body(scope, receive)
        doc = parse_json(body)
        items = doc.get("labels") if type(doc) is dict else None
        if type(items) is not list or not items:
            raise bad('send {"labels": [{"id": prediction id, "label": class}, ...]}')
        if len(items) > _MAX_FEEDBACK:
            raise bad(f"{len(items)} labels, more than the limit of {_MAX_FEEDBACK} per request")
        ids: list[str] = []
        values: list[str] = []
        for i, item in enumerate(items):
            if type(item) is not dict:
                raise bad(f"labels[{i}]: expected an object with 'id' and 'label', got {kind_of(item)}")
            pid, label = item.get("id"), item.get("label")
            if type(pid) is not str or not pid or len(pid) > _MAX_ID:
                raise bad(
                    f"labels[{i}].id: expected a prediction id (a non-empty string), got {kind_of(pid)}"
                )
            if type(label) is not str:
                raise bad(f"labels[{i}].label: expected a class name, got {kind_of(label)}")
            if label not in classes:
                expected = ", ".join(sorted(classes))
                raise bad(f"labels[{i}].label: unknown label {label!r}; expected one of {expected}")
            ids.append(pid)
            values.append(label)
        self.prediction_log.record_feedback(
            FeedbackBatch(ts=clock.timestamp(), model=model, ids=ids, labels=values)
        )
        return 200, orjson.dumps({"model": model, "recorded": len(ids)}), JSON, None


class Disconnected(Exception):
    """The client went away before sending its body: nothing to answer."""


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None
