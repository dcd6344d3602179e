"""What live data is compared with: each model version's signature, recorded metrics and training data.

A version's reference is the dataset version it was trained on (`ModelVersion.dataset_version_id`), read
through the data service (checksum verified) and sorted once per feature; the sorted columns are cached per
dataset version, so a monitor evaluated every minute sorts only the current window.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from mloncall.core.errors import MloncallError
from mloncall.data import service as data_service
from mloncall.data.models import DatasetVersion
from mloncall.monitoring.drift_stats import SortedSample
from mloncall.registry import service as registry
from mloncall.registry.models import ModelVersion
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.context import Context

_CACHE_SIZE = 32


@dataclass(frozen=True)
class VersionInfo:
    """What monitors need to know about one model version, detached from any database session."""

    version: int
    features: tuple[str, ...]
    mins: dict[str, float]
    maxs: dict[str, float]
    classes: tuple[str, ...]
    accuracy: float | None
    recall: dict[str, float]
    dataset_version: DatasetVersion | None


@dataclass
class ReferenceData:
    """A version's training data, sorted per feature, with its class balance."""

    name: str
    rows: int
    features: dict[str, SortedSample]
    class_counts: dict[str, int] | None
    error: str | None = None
    missing: bool = False  # True: nothing recorded (inconclusive); False with an error: unreadable


_cache: OrderedDict[tuple[str, int, str], ReferenceData] = OrderedDict()
_lock = threading.Lock()


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def versions_of(*, ctx: Context, model: str) -> dict[int, VersionInfo]:
    """Every registered version of a model; NotFound if the model does not exist."""
    with ctx.db.session() as session:
        return versions_in(session=session, model=model)


def versions_in(*, session: Session, model: str) -> dict[int, VersionInfo]:
    """Every registered version of a model, read in the caller's session; NotFound for an unknown model."""
    found = registry.get_model_or_raise(session=session, name=model)
    return {mv.version: _version_info(session, mv) for mv in found.versions}


def _version_info(session: Session, mv: ModelVersion) -> VersionInfo:
    """A version's signature bounds, recorded metrics and training dataset, read while the session is open."""
    sig = mv.signature or {}
    feats = [f for f in sig.get("features", []) if isinstance(f, dict) and "name" in f]
    metrics = mv.metrics or {}
    per_class = metrics.get("per_class") if isinstance(metrics.get("per_class"), dict) else {}
    recall = {
        str(c): r
        for c, m in (per_class or {}).items()
        if isinstance(m, dict) and (r := _float(m.get("recall"))) is not None
    }
    return VersionInfo(
        version=mv.version,
        features=tuple(str(f["name"]) for f in feats),
        mins={f["name"]: v for f in feats if (v := _float(f.get("min"))) is not None},
        maxs={f["name"]: v for f in feats if (v := _float(f.get("max"))) is not None},
        classes=tuple(str(c) for c in sig.get("classes", []) or []),
        accuracy=_float(metrics.get("accuracy")),
        recall=recall,
        dataset_version=_training_dataset(session, mv),
    )


def _training_dataset(session: Session, mv: ModelVersion) -> DatasetVersion | None:
    """The dataset version the model version was trained on, or None if it records none (or it is gone)."""
    if mv.dataset_version_id is None:
        return None
    try:
        dv = data_service.get_version_by_id_or_raise(
            session=session, dataset_version_id=mv.dataset_version_id
        )
        _ = dv.dataset.name  # load the name while the session is open
    except MloncallError:
        return None
    return dv


def reference_for(*, store: ArtifactStore, info: VersionInfo) -> ReferenceData:
    """The sorted training data of a version (cached per dataset version); `error` says why there is none."""
    dv = info.dataset_version
    if dv is None:
        return ReferenceData(
            name="", rows=0, features={}, class_counts=None, missing=True,
            error=f"version {info.version} records no training dataset, so there is no reference to compare with",
        )  # fmt: skip
    key = (store.root, dv.id, dv.sha256)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    name = f"{dv.dataset.name}:{dv.version}"
    try:
        frame = data_service.read(store=store, dataset_version=dv)
    except MloncallError as exc:
        # not cached: the store may come back, or the file be restored
        return ReferenceData(
            name=name, rows=0, features={}, class_counts=None, error=f"reference {name}: {exc.message}"
        )
    features = {
        str(c): SortedSample.of(frame[c].to_numpy(dtype=np.float64))
        for c in frame.columns
        if c != dv.target and np.issubdtype(frame[c].dtype, np.number)
    }
    counts = None
    if dv.target and dv.target in frame.columns:
        labels, n = np.unique(frame[dv.target].to_numpy(dtype=str), return_counts=True)
        counts = dict(zip(labels.tolist(), n.tolist(), strict=True))
    ref = ReferenceData(name=name, rows=len(frame), features=features, class_counts=counts)
    with _lock:
        _cache[key] = ref
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return ref


def clear_cache() -> None:
    """Forget cached references (tests)."""
    with _lock:
        _cache.clear()
