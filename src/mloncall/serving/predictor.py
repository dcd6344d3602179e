"""One loaded model version: an ONNX Runtime session from checksum-verified bytes, and its signature."""

from __future__ import annotations

from typing import Any

import numpy as np

from mloncall.core.errors import IntegrityError
from mloncall.registry import service as registry
from mloncall.serving.validation import FeatureSchema
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.db import Database

_OUTPUTS = ["label", "probabilities"]


class Predictor:
    """Scores float32 rows in signature feature order; numpy in, numpy out, no pandas."""

    __slots__ = ("_index_labels", "_run", "classes", "model", "schema", "session", "version")

    def __init__(self, *, model: str, version: int, session: Any, schema: FeatureSchema) -> None:
        self.model = model
        self.version = version
        self.session = session
        self.schema = schema
        self.classes = schema.classes
        # The binding under `InferenceSession.run`: the wrapper re-checks, per call, the input names and
        # graph-capture options that were checked once here (a third of the model's time for one row). A
        # CPU session has no provider to fall back to, the one thing the wrapper adds.
        inner = getattr(session, "_sess", None)
        self._run = inner.run if inner is not None and hasattr(inner, "run") else session.run
        inputs = session.get_inputs()
        outputs = {o.name: o for o in session.get_outputs()}
        if len(inputs) != 1 or inputs[0].name != "input" or set(_OUTPUTS) - outputs.keys():
            raise IntegrityError(
                f"{model}:{version}: the ONNX model must take 'input' and give 'label' and 'probabilities'"
            )
        width = inputs[0].shape[-1] if inputs[0].shape else None
        if isinstance(width, int) and width != len(schema.features):
            raise IntegrityError(
                f"{model}:{version}: the ONNX model takes {width} features, the signature lists "
                f"{len(schema.features)}"
            )
        # A model trained on integer classes outputs their positions; string classes come out as strings.
        self._index_labels = outputs["label"].type != "tensor(string)"

    def predict(self, X: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Labels and class probabilities (float32 [n, n_classes], `classes` order) for float32 rows X."""
        labels, probs = self._run(_OUTPUTS, {"input": X}, None)
        if self._index_labels:
            classes = self.classes
            return [classes[int(i)] for i in labels], probs
        out: list[str] = labels.tolist()
        return out, probs

    def __repr__(self) -> str:
        return f"Predictor({self.model}:{self.version})"


def load_predictor(
    *, db: Database, store: ArtifactStore, model: str, version: int, threads: int = 1
) -> Predictor:
    """Load a version after verifying its ONNX file's checksum, and score one row as a smoke test.

    Raises NotFound for an unknown model or version, IntegrityError for an altered, missing or broken file
    or a signature the model does not match.
    """
    with db.session() as session:
        mv = registry.get_version_or_raise(session=session, name=model, version=version)
        signature = dict(mv.signature or {})
        onnx_session = registry.load_onnx(store=store, model_version=mv, threads=threads)
    schema = FeatureSchema.from_signature(signature, where=f"{model}:{version}")
    predictor = Predictor(model=model, version=version, session=onnx_session, schema=schema)
    probe = np.ascontiguousarray(schema.midpoints()[None, :], dtype=np.float32)
    try:
        labels, probs = predictor.predict(probe)
    except Exception as exc:
        raise IntegrityError(
            f"{model}:{version}: the model fails on a probe row: {str(exc).splitlines()[0]}"
        ) from None
    if probs.shape != (1, len(schema.classes)) or labels[0] not in schema.classes:
        raise IntegrityError(
            f"{model}:{version}: the model's outputs do not match its signature "
            f"(probabilities {list(probs.shape)}, {len(schema.classes)} classes, label {labels[0]!r})"
        )
    return predictor
