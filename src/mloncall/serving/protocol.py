"""Open Inference Protocol v2 REST shapes: parse an infer request (JSON, or JSON plus binary tensors) and
encode the response (label BYTES and probabilities FP32, as JSON data or, when asked, binary)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from mloncall.serving.validation import bad, kind_of

OUTPUT_NAMES = ("label", "probabilities")
#: The request header that marks an inference request as synthetic (a load test's) when it is `1`: its rows
#: are logged with `synthetic` true, and the monitors of the inputs and the labels leave them out.
SYNTHETIC_HEADER = "x-mloncall-synthetic"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def parse_json(body: bytes | memoryview, what: str = "request body") -> Any:
    """The JSON document, or a 400 that says where it is malformed."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad(f"malformed JSON in the {what}: {exc}", "malformed_json", "body") from None


def split_infer_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview | None]:
    """The JSON header and, with the binary tensor extension (`Inference-Header-Content-Length`), the rest."""
    if header_length is None:
        doc = parse_json(body)
        binary = None
    else:
        try:
            size = int(header_length)
        except ValueError:
            raise bad(
                f"Inference-Header-Content-Length {header_length!r} is not a number", "wrong_shape", "body"
            ) from None
        if not 0 < size <= len(body):
            raise bad(
                f"Inference-Header-Content-Length {size} does not fit the {len(body)}-byte body",
                "wrong_shape",
                "body",
            )
        view = memoryview(body)
        doc = parse_json(view[:size], "inference header")
        binary = view[size:]
    if type(doc) is not dict:
        raise bad(f"the inference request must be a JSON object, got {kind_of(doc)}", "wrong_shape", "body")
    return doc, binary


def requested_outputs(doc: dict[str, Any]) -> tuple[tuple[str, ...], frozenset[str]]:
    """Which outputs to return, and which of them in binary form."""
    outputs = doc.get("outputs")
    params = doc.get("parameters")
    binary_all = type(params) is dict and params.get("binary_data_output") is True
    if outputs is None:
        return OUTPUT_NAMES, frozenset(OUTPUT_NAMES) if binary_all else frozenset()
    if type(outputs) is not list:
        raise bad(f"'outputs' must be a list, got {kind_of(outputs)}", "wrong_shape", "outputs")
    names: list[str] = []
    binary: set[str] = set()
    for i, out in enumerate(outputs):
        name = out.get("name") if type(out) is dict else None
        if name not in OUTPUT_NAMES:
            raise bad(
                f"outputs[{i}]: unknown output {name!r}; this model gives 'label' and 'probabilities'",
                "unknown_output",
                "outputs",
            )
        names.append(name)
        p = out.get("parameters")
        if (type(p) is dict and p.get("binary_data") is True) or (
            binary_all and not (type(p) is dict and "binary_data" in p)
        ):
            binary.add(name)
    return tuple(names or OUTPUT_NAMES), frozenset(binary)


def _bytes_tensor(labels: list[str]) -> bytes:
    parts = []
    for s in labels:
        b = s.encode()
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def infer_response(
    *,
    model: str,
    version: int,
    request_id: str | None,
    labels: list[str],
    probabilities: np.ndarray,
    outputs: tuple[str, ...],
    binary: frozenset[str],
    parameters: dict[str, Any],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it."""
    n = len(labels)
    out: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name in outputs:
        if name == "label":
            entry: dict[str, Any] = {"name": "label", "datatype": "BYTES", "shape": [n]}
            if name in binary:
                blob = _bytes_tensor(labels)
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = labels
        else:
            entry = {"name": "probabilities", "datatype": "FP32", "shape": list(probabilities.shape)}
            if name in binary:
                blob = np.ascontiguousarray(probabilities, dtype="<f4").tobytes()
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = probabilities.ravel()
        out.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": out}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = parameters
    header = orjson.dumps(doc, option=_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
