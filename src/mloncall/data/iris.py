"""The demo data: scikit-learn's bundled Iris and new Iris-like rows (optionally shifted: drift)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from mloncall.core.errors import InvalidInput

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
TARGET = "species"


def iris_frame() -> pd.DataFrame:
    """The 150 Iris rows: float64 features and the species as a string label (no network needed)."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    df = pd.DataFrame(np.asarray(bunch.data, dtype=np.float64), columns=FEATURES)
    df[TARGET] = pd.array(np.asarray(bunch.target_names)[bunch.target].astype(str).tolist(), dtype="str")
    return df


def corrupted_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of Iris rows with each species relabelled as another: a model trained on it is wrong for every
    class (the bad model of drills, demos and tests)."""
    bad = frame.copy()
    bad[TARGET] = bad[TARGET].map({"setosa": "virginica", "versicolor": "setosa", "virginica": "versicolor"})
    return bad


@lru_cache(maxsize=1)
def _class_gaussians() -> tuple[tuple[str, np.ndarray, np.ndarray], ...]:
    """Per class: its label, feature means and the Cholesky factor of its covariance."""
    df = iris_frame()
    fitted = []
    for label, rows in df.groupby(TARGET, sort=True):
        x = rows[FEATURES].to_numpy(np.float64)
        fitted.append((str(label), x.mean(axis=0), np.linalg.cholesky(np.cov(x, rowvar=False))))
    return tuple(fitted)


def iris_like_samples(n: int, *, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    """n new rows drawn per class from a Gaussian fitted to Iris, classes balanced, deterministic for a seed.

    Values are rounded to 0.1 cm and kept >= 0.1 like real measurements; `shift` then adds a constant to
    the named features (to inject drift).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InvalidInput(f"the number of samples must be a positive integer, got {n!r}")
    shift = dict(shift or {})
    unknown = sorted(set(shift) - set(FEATURES))
    if unknown:
        raise InvalidInput(
            f"cannot shift unknown feature(s) {', '.join(unknown)}; features are {', '.join(FEATURES)}"
        )
    rng = np.random.default_rng(seed)
    classes = _class_gaussians()
    per_class = [n // len(classes) + (1 if i < n % len(classes) else 0) for i in range(len(classes))]
    blocks = [
        mean + rng.standard_normal((k, len(FEATURES))) @ chol.T
        for (_label, mean, chol), k in zip(classes, per_class, strict=True)
    ]
    labels = np.repeat(np.array([label for label, _m, _c in classes]), per_class)
    order = rng.permutation(n)
    x = np.clip(np.round(np.vstack(blocks), 1), 0.1, None)[order]
    for i, name in enumerate(FEATURES):
        x[:, i] += float(shift.get(name, 0.0))
    df = pd.DataFrame(x, columns=FEATURES)
    df[TARGET] = pd.array(labels[order], dtype="str")
    return df
