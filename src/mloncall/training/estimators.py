"""The model side of training: which classifiers there are, the holdout split, and how a fitted one is
scored (accuracy, per-class metrics, confusion) and described (its input signature).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mloncall.core.errors import InvalidInput

ALGORITHMS = ("logistic_regression", "random_forest")
#: Each row's number in its dataset version, carried through the split so a holdout can be found again.
ROW_COLUMN = "__row__"


def build_estimator(algorithm: str, seed: int) -> Any:
    """An unfitted classifier for the algorithm name."""
    if algorithm == "logistic_regression":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    if algorithm == "random_forest":
        return RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
    raise InvalidInput(f"unknown algorithm {algorithm!r}: choose one of {', '.join(ALGORITHMS)}")


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows: truth)."""
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "n": len(y_true),
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": {
            "labels": classes,
            "matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        },
    }


def signature_of(train: pd.DataFrame, schema: dict[str, Any]) -> dict[str, Any]:
    """The input signature: feature names and dtypes, training min/max and quantiles, class labels."""
    features = []
    probs = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    for feat in schema["features"]:
        col = train[feat["name"]].to_numpy(np.float64)
        qs = np.quantile(col, probs)
        features.append(
            {
                "name": feat["name"],
                "dtype": "float64",
                "min": float(col.min()),
                "max": float(col.max()),
                "quantiles": {f"{p:g}": float(q) for p, q in zip(probs, qs, strict=True)},
            }
        )
    return {
        "features": features,
        "classes": list(schema["target"]["classes"]),
        "target": schema["target"]["name"],
    }


def split(frame: pd.DataFrame, target: str, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified train/holdout split; falls back to a plain split when a class is too small to stratify."""
    counts = frame[target].value_counts()
    n_test = int(np.ceil(test_size * len(frame)))
    stratify = frame[target] if counts.min() >= 2 and n_test >= len(counts) else None
    if len(frame) < 2:
        return frame, frame.iloc[0:0]
    train, hold = train_test_split(frame, test_size=test_size, random_state=seed, stratify=stratify)
    return train, hold


def estimator_params(estimator: Any) -> dict[str, Any]:
    """The estimator's plain (JSON-able) hyper-parameters, recorded with the version."""
    params = estimator.get_params(deep=True)
    return {k: v for k, v in params.items() if isinstance(v, str | int | float | bool | type(None))}
