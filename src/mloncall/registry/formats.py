"""Safe model formats: ONNX for serving, skops for the scikit-learn object. Nothing here unpickles."""

from __future__ import annotations

from typing import Any

import numpy as np

from mloncall.core.errors import IntegrityError, InvalidInput

#: skops may load only types from these packages; anything else in a file is refused.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.", "collections.", "scipy.")


def to_onnx(estimator: Any, n_features: int) -> bytes:
    """Convert a fitted scikit-learn classifier to ONNX with a float32 [n, n_features] input `input`.

    Outputs are `label` (one per row) and `probabilities` (a plain [n, n_classes] tensor, no zipmap).
    """
    from skl2onnx import to_onnx as _skl_to_onnx  # heavy imports stay off the CLI's start-up path
    from skl2onnx.common.data_types import FloatTensorType

    try:
        model = _skl_to_onnx(
            estimator,
            initial_types=[("input", FloatTensorType([None, n_features]))],
            options={"zipmap": False},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    except Exception as exc:
        raise InvalidInput(f"the model cannot be converted to ONNX: {exc}") from None
    renames = {model.graph.output[0].name: "label", model.graph.output[1].name: "probabilities"}
    for node in model.graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
    for out in model.graph.output:
        out.name = renames.get(out.name, out.name)
    data: bytes = model.SerializeToString()
    return data


def onnx_session(data: bytes, threads: int = 1) -> Any:
    """An ONNX Runtime session from verified bytes; a file that is not ONNX raises IntegrityError."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise IntegrityError(f"the ONNX model cannot be loaded: {str(exc).splitlines()[0]}") from None


def onnx_predict(session: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and class probabilities for rows X."""
    labels, probs = session.run(["label", "probabilities"], {"input": np.ascontiguousarray(X, np.float32)})
    return np.asarray(labels), np.asarray(probs)


def to_skops(estimator: Any) -> bytes:
    import skops.io as sio

    data: bytes = sio.dumps(estimator)
    return data


def from_skops(data: bytes) -> Any:
    """Load a scikit-learn object, trusting only scikit-learn, numpy and scipy types."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise IntegrityError(f"the skops file cannot be read: {exc}") from None
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise IntegrityError(f"the skops file holds types that are not trusted: {', '.join(refused)}")
    try:
        return sio.loads(data, trusted=untrusted)
    except Exception as exc:
        raise IntegrityError(f"the skops file cannot be loaded: {exc}") from None
