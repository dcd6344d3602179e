"""The pre-checks a version passes before it takes traffic, and again before a rollback returns to it:
artifact integrity, signature compatibility with production, and the golden-set smoke test.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from mloncall.core.errors import CheckFailed, IntegrityError, MloncallError
from mloncall.core.outcome import Check, Outcome
from mloncall.registry import service as registry
from mloncall.registry.models import ModelVersion
from mloncall.stores.artifacts import ArtifactStore

#: The golden-set accuracy may trail the version's recorded accuracy by this much before the smoke test fails.
SMOKE_TOLERANCE = 0.02
HOLDOUT_FILE = "holdout.parquet"


def smoke_test(*, store: ArtifactStore, model_version: ModelVersion, tolerance: float) -> Check:
    """Load the verified ONNX model and score its golden set: accuracy within tolerance of the recorded one."""
    import pandas as pd

    from mloncall.registry.formats import onnx_predict

    ref = f"{model_version.model.name}:{model_version.version}"
    try:
        session = registry.load_onnx(store=store, model_version=model_version)
        golden = pd.read_parquet(
            io.BytesIO(registry.read_file(store=store, model_version=model_version, name=HOLDOUT_FILE))
        )
    except Exception as exc:  # any failure to load is the smoke test's verdict, not a crash
        return Check("smoke test", Outcome.FAILED, f"{ref} cannot be loaded: {getattr(exc, 'message', exc)}")
    features = [f["name"] for f in model_version.signature.get("features", [])]
    target = model_version.signature.get("target")
    if golden.empty or not features or target not in golden.columns:
        return Check("smoke test", Outcome.FAILED, f"{ref} has no usable golden set")
    labels, probs = onnx_predict(session, golden[features].to_numpy(np.float64))
    accuracy = float(np.mean(labels.astype(str) == golden[target].astype(str).to_numpy()))
    recorded = float(model_version.metrics.get("accuracy", 0.0))
    sums_ok = bool(np.all(np.isfinite(probs)) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3))
    ok = accuracy + tolerance + 1e-12 >= recorded and sums_ok
    reason = (
        f"golden set of {len(golden)} rows: accuracy {accuracy:.4f} vs recorded {recorded:.4f} "
        f"(tolerance {tolerance})" + ("" if sums_ok else "; probabilities are not a distribution")
    )
    return Check(
        "smoke test",
        Outcome.SUCCESSFUL if ok else Outcome.FAILED,
        reason,
        {"rows": len(golden), "accuracy": accuracy, "recorded": recorded, "tolerance": tolerance},
    )


def signature_check(*, candidate: ModelVersion, production: ModelVersion | None) -> Check:
    """Same features in the same order and the same classes as production: clients need not change."""
    if production is None:
        return Check("signature", Outcome.SUCCESSFUL, "no production version to compare with")
    a = [f["name"] for f in candidate.signature.get("features", [])]
    b = [f["name"] for f in production.signature.get("features", [])]
    ca, cb = candidate.signature.get("classes"), production.signature.get("classes")
    problems = []
    if a != b:
        problems.append(f"features {a} differ from production's {b}")
    if ca != cb:
        problems.append(f"classes {ca} differ from production's {cb}")
    if problems:
        return Check("signature", Outcome.FAILED, "; ".join(problems))
    return Check(
        "signature", Outcome.SUCCESSFUL, f"same {len(a)} features and {len(ca or [])} classes as production"
    )


def prechecks(
    *, store: ArtifactStore, candidate: ModelVersion, production: ModelVersion | None, tolerance: float
) -> list[Check]:
    """Integrity, signature compatibility and the golden-set smoke test, in that order."""
    report = registry.verify(store=store, model_version=candidate)
    checks = [report.check, signature_check(candidate=candidate, production=production)]
    if report.ok:
        checks.append(smoke_test(store=store, model_version=candidate, tolerance=tolerance))
    else:
        checks.append(Check("smoke test", Outcome.FAILED, "not run: the artifacts are not intact"))
    return checks


def stopped_error(message: str, prechecks: list[dict[str, Any]], details: Any = None) -> MloncallError:
    """The error of a deployment its pre-checks stopped: IntegrityError (exit 5) when the artifacts are not
    intact, else CheckFailed; the API and the CLI raise the same one."""
    integrity_failed = any(
        c.get("name") == registry.INTEGRITY_CHECK and c.get("outcome") != Outcome.SUCCESSFUL.label
        for c in prechecks
    )
    error = IntegrityError if integrity_failed else CheckFailed
    return error(message, details=details)
