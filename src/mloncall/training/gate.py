"""The retraining gate: the challenger against the champion on rows neither has seen (runbook 2).

`gate_verdict` is the rule (accuracy at least the champion's, no class's recall dropping by more than a
margin, and on the champion's own held-out rows no more than a margin behind); `judge_challenger` scores
both models and applies it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mloncall.registry import service as registry
from mloncall.registry.models import ModelVersion
from mloncall.stores.context import Context
from mloncall.training.estimators import ROW_COLUMN, evaluate


def gate_verdict(
    *,
    challenger: dict[str, Any],
    champion: dict[str, Any],
    champion_ref: str,
    recall_margin: float,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pass only if accuracy is at least the champion's and no class's recall drops by more than the margin.

    `reference` (optional) holds both accuracies on the champion's own held-out rows, whose labels were
    trusted before: new rows with wrong labels also poison their own holdout, so only these rows reveal
    them. There the challenger may trail by at most `reference["margin"]`.
    """
    reasons = []
    if (
        reference is not None
        and reference["challenger"] + reference["margin"] + 1e-12 < reference["champion"]
    ):
        reasons.append(
            f"on {champion_ref}'s own {reference['n']} held-out rows accuracy {reference['challenger']:.4f} "
            f"trails {reference['champion']:.4f} by more than {reference['margin']:.3f} (are the new labels right?)"
        )
    if challenger["accuracy"] + 1e-12 < champion["accuracy"]:
        reasons.append(f"accuracy {challenger['accuracy']:.4f} < production's {champion['accuracy']:.4f}")
    drops = {}
    for cls, cm in champion["per_class"].items():
        drop = cm["recall"] - challenger["per_class"].get(cls, {"recall": 0.0})["recall"]
        drops[cls] = drop
        if drop > recall_margin + 1e-12:
            reasons.append(f"recall of {cls!r} drops by {drop:.3f} (> margin {recall_margin:.3f})")
    verdict = "fail" if reasons else "pass"
    if not reasons:
        reasons.append(
            f"accuracy {challenger['accuracy']:.4f} >= production's {champion['accuracy']:.4f} and no class's "
            f"recall drops by more than {recall_margin:.3f}"
        )
    return {
        "verdict": verdict,
        "reason": "; ".join(reasons),
        "champion": {
            "ref": champion_ref,
            "accuracy": champion["accuracy"],
            "per_class": champion["per_class"],
        },
        "challenger": {"accuracy": challenger["accuracy"], "per_class": challenger["per_class"]},
        "recall_margin": recall_margin,
        "recall_drops": drops,
        "eval_rows": challenger["n"],
        "reference": reference,
    }


def judge_challenger(
    *,
    ctx: Context,
    champion: ModelVersion,
    estimator: Any,
    hold: pd.DataFrame,
    champion_rows: set[int],
    schema: dict[str, Any],
    recall_margin: float,
    reference_margin: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The challenger's metrics on the evaluation rows, and its gate verdict against the champion's."""
    from mloncall.registry.formats import onnx_predict

    features = [f["name"] for f in schema["features"]]
    classes = list(schema["target"]["classes"])
    X_hold = hold[features].to_numpy(np.float64)
    y_hold = hold[schema["target"]["name"]].to_numpy(str)
    challenger_pred = estimator.predict(X_hold)
    challenger_metrics = evaluate(y_hold, challenger_pred, classes)
    champion_session = registry.load_onnx(store=ctx.store, model_version=champion)
    champion_pred = onnx_predict(champion_session, X_hold)[0]
    champion_metrics = evaluate(y_hold, champion_pred, classes)
    on_reference = hold[ROW_COLUMN].isin(champion_rows).to_numpy()
    reference = None
    if on_reference.any():
        reference = {
            "n": int(on_reference.sum()),
            "challenger": float(np.mean(challenger_pred[on_reference].astype(str) == y_hold[on_reference])),
            "champion": float(np.mean(champion_pred[on_reference].astype(str) == y_hold[on_reference])),
            "margin": reference_margin,
        }
    gate = gate_verdict(
        challenger=challenger_metrics,
        champion=champion_metrics,
        champion_ref=f"{champion.model.name}:{champion.version}",
        recall_margin=recall_margin,
        reference=reference,
    )
    return challenger_metrics, gate
