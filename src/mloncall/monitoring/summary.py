"""Per-interval summaries of the prediction log: what every monitor needs from a minute or an hour, stored once.

A summary holds, per model version: rows, failed rows, synthetic rows (a load test's), a latency sketch, and
for the rows of real requests that were answered, the predicted-class counts and, per feature, the missing
and out-of-range counts and a sketch on the version's reference grid (`monitoring.sketches`); and, of the
version's routed requests only (`RoutedSummary`: route stable or canary, so explicit `/versions/{v}` calls
such as smoke tests do not count), what canary analysis and acceptance compare: rows, server errors, a
latency sketch, and of the real requests, predicted classes and those the stable version shadow-scored with
how many it answered differently. Synthetic rows count where the service is judged (rows, errors, latency)
and nowhere the inputs or the answers are: a load test's constant rows are no traffic to judge for drift.
Summaries of neighbouring intervals merge by adding, so a window is the merge of the closed hours and minutes
inside it plus the rows of its ragged edges and of the open minute, summarised on the fly from the log by the
same builder (`monitoring.incremental`).

Files live beside the log: `summaries/model=<m>/date=YYYY-MM-DD/hour=HH/minute=MM.v2.npz` and
`.../hour.v2.npz` (`v2`: with the routed requests; the background pass writes these beside any earlier
`.npz`, which nothing reads any more and retention removes), NumPy archives read with `allow_pickle=False`,
written atomically (temporary name, then rename). A missing or unreadable summary is never an error: the
interval is read from the log instead, and the background pass writes it again.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mloncall.monitoring.drift_stats import PSI_BINS, SortedSample
from mloncall.monitoring.quality import flagged_rows
from mloncall.monitoring.reference import VersionInfo, reference_for
from mloncall.monitoring.sketches import FeatureSketch, LatencySketch, grid_for
from mloncall.monitoring.stats import error_mask, float_column, routed_mask, server_errors, value_counts
from mloncall.monitoring.verdict import by_version
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.predlog import SYNTHETIC, partition, synthetic_mask

SUMMARIES = "summaries"
#: The columns a summary reads from the prediction log (plus every f_ column).
COLUMNS = ["version", "label", "error", "latency_ms", "flags", "route", "status", "shadow_label", SYNTHETIC]


@dataclass
class Grid:
    """What a version's summaries are computed against: its features, bounds and reference grid points."""

    info: VersionInfo | None
    points: dict[str, np.ndarray] = field(default_factory=dict)
    reference: dict[str, SortedSample] = field(default_factory=dict)
    reference_rows: int = 0
    reference_classes: dict[str, int] | None = None
    reference_name: str | None = None
    reference_error: str | None = None
    reference_missing: bool = False


def grids_for(store: ArtifactStore, versions: dict[int, VersionInfo]) -> dict[int | None, Grid]:
    """The grid of every registered version (the reference read once and cached by `reference_for`)."""
    out: dict[int | None, Grid] = {None: Grid(info=None)}
    for v, info in versions.items():
        ref = reference_for(store=store, info=info)
        grid = Grid(info=info, reference_error=ref.error, reference_missing=ref.missing)
        if ref.error is None:
            grid.reference_rows = ref.rows
            grid.reference_classes = ref.class_counts
            grid.reference_name = ref.name
            for f in info.features:
                sample = ref.features.get(f)
                if sample is not None and sample.n:
                    grid.reference[f] = sample
                    grid.points[f] = grid_for(sample, PSI_BINS)
        out[v] = grid
    return out


@dataclass
class RoutedSummary:
    """A version's routed requests in one interval: what canary analysis and acceptance compare."""

    rows: int = 0
    server_errors: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)
    predicted: dict[str, int] = field(default_factory=dict)
    #: requests the stable version also scored (shadow), and those it answered with another class
    shadowed: int = 0
    disagreed: int = 0

    def add(self, rows: pa.Table, synthetic: np.ndarray) -> None:
        """Fold one version's rows in, keeping those the router sent (all of them in a log without routes);
        the answers of synthetic requests (`synthetic`, per row) are not compared."""
        mask = routed_mask(rows)
        if not mask.all():
            rows = rows.filter(pa.array(mask))
            synthetic = synthetic[mask]
        if rows.num_rows == 0:
            return
        self.rows += rows.num_rows
        self.server_errors += server_errors(rows)
        self.latency.add(float_column(rows, "latency_ms"))
        if synthetic.any():
            rows = rows.filter(pa.array(~synthetic))
        if "label" not in rows.column_names:
            return
        label = rows.column("label")
        _add_counts(self.predicted, value_counts(label.drop_null()))
        if "shadow_label" in rows.column_names:
            shadow = rows.column("shadow_label")
            both = pc.and_(pc.is_valid(label), pc.is_valid(shadow))
            self.shadowed += int(pc.sum(pc.cast(both, pa.int64())).as_py() or 0)
            differs = pc.and_(both, pc.fill_null(pc.not_equal(label, shadow), False))
            self.disagreed += int(pc.sum(pc.cast(differs, pa.int64())).as_py() or 0)

    def merge(self, other: RoutedSummary) -> None:
        for name in ("rows", "server_errors", "shadowed", "disagreed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency.merge(other.latency)
        _add_counts(self.predicted, other.predicted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "server_errors": self.server_errors, "latency": _latency_dict(self.latency),
            "predicted": self.predicted, "shadowed": self.shadowed, "disagreed": self.disagreed,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoutedSummary:
        return cls(
            d["rows"],
            d["server_errors"],
            _latency_of(d["latency"]),
            d["predicted"],
            d["shadowed"],
            d["disagreed"],
        )


@dataclass
class VersionSummary:
    """The rows of one version in one interval, summarised."""

    rows: int = 0
    errors: int = 0
    #: rows of synthetic requests (a load test's), failed or answered: in `rows`, `errors` and `latency` only
    synthetic: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)
    predicted: dict[str, int] = field(default_factory=dict)
    #: answered rows of real requests: what the predicted classes and the features are counted over
    served: int = 0
    features: dict[str, FeatureSketch] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    any_missing: int = 0
    flagged: int = 0
    flagged_per_feature: dict[str, int] = field(default_factory=dict)
    recomputed: int = 0
    recomputed_per_feature: dict[str, int] = field(default_factory=dict)
    out_of_range: int = 0
    error_column: bool = False
    routed: RoutedSummary = field(default_factory=RoutedSummary)

    @property
    def real_rows(self) -> int:
        """Rows of real requests, failed or answered (what refused requests are a share of)."""
        return self.rows - self.synthetic

    def add(self, rows: pa.Table, grid: Grid) -> None:
        """Fold one version's rows of one file in."""
        marked = synthetic_mask(rows)
        self.routed.add(rows, marked)
        failed = error_mask(rows)
        self.rows += rows.num_rows
        self.synthetic += int(np.count_nonzero(marked))
        self.error_column = self.error_column or "error" in rows.column_names
        self.errors += int(np.count_nonzero(failed))
        self.latency.add(float_column(rows, "latency_ms"))
        dropped = failed | marked
        served = rows.filter(pa.array(~dropped)) if dropped.any() else rows
        self.served += served.num_rows
        if "label" in served.column_names:
            _add_counts(self.predicted, value_counts(served.column("label").drop_null()))
        self._quality(served, grid)

    def _quality(self, served: pa.Table, grid: Grid) -> None:
        info = grid.info
        n = served.num_rows
        names = info.features if info is not None and info.features else _logged_features(served)
        any_missing = np.zeros(n, dtype=bool)
        recomputed = np.zeros(n, dtype=bool)
        for f in names:
            x = float_column(served, f"f_{f}")
            missing = ~np.isfinite(x)
            self.missing[f] = self.missing.get(f, 0) + int(np.count_nonzero(missing))
            any_missing |= missing
            if f in grid.points and f"f_{f}" in served.column_names:
                sketch = self.features.get(f)
                if sketch is None:
                    sketch = self.features[f] = FeatureSketch.empty(grid.points[f].size)
                sketch.add(grid.points[f], x)
            lo = info.mins.get(f) if info is not None else None
            hi = info.maxs.get(f) if info is not None else None
            if lo is not None and hi is not None:
                with np.errstate(invalid="ignore"):
                    out = (x < lo) | (x > hi)
                self.recomputed_per_feature[f] = self.recomputed_per_feature.get(f, 0) + int(
                    np.count_nonzero(out)
                )
                recomputed |= out
        self.any_missing += int(np.count_nonzero(any_missing))
        flagged, per_feature = flagged_rows(served)
        _add_counts(self.flagged_per_feature, per_feature)
        self.flagged += int(np.count_nonzero(flagged))
        self.recomputed += int(np.count_nonzero(recomputed))
        self.out_of_range += int(np.count_nonzero(flagged | recomputed))

    def merge(self, other: VersionSummary) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency.merge(other.latency)
        self.routed.merge(other.routed)
        self.error_column = self.error_column or other.error_column
        for mine, theirs in (
            (self.predicted, other.predicted),
            (self.missing, other.missing),
            (self.flagged_per_feature, other.flagged_per_feature),
            (self.recomputed_per_feature, other.recomputed_per_feature),
        ):
            _add_counts(mine, theirs)
        for f, sketch in other.features.items():
            if f in self.features:
                self.features[f].merge(sketch)
            else:
                self.features[f] = FeatureSketch(
                    sketch.at.copy(), sketch.between.copy(), sketch.offsets.copy(), sketch.missing,
                    sketch.present, None if sketch.distinct is None else dict(sketch.distinct),
                )  # fmt: skip


#: The counts of a `VersionSummary`, merged by adding.
_COUNTS = ("rows", "errors", "synthetic", "served", "any_missing", "flagged", "recomputed", "out_of_range")


def _latency_dict(sketch: LatencySketch) -> dict[str, Any]:
    return {"zeros": sketch.zeros, "keys": list(sketch.counts), "counts": list(sketch.counts.values())}


def _latency_of(d: dict[str, Any]) -> LatencySketch:
    return LatencySketch(dict(zip((int(k) for k in d["keys"]), d["counts"], strict=True)), d["zeros"])


def _add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def _logged_features(rows: pa.Table) -> tuple[str, ...]:
    return tuple(c[2:] for c in rows.column_names if c.startswith("f_"))


Summary = dict[int | None, VersionSummary]


def summarise(table: pa.Table | None, grids: dict[int | None, Grid], into: Summary | None = None) -> Summary:
    """Fold rows of the prediction log into a summary (per version)."""
    out: Summary = {} if into is None else into
    for version, rows in by_version(table):
        grid = grids.get(version) or Grid(info=None)
        out.setdefault(version, VersionSummary()).add(rows, grid)
    return out


def merge(into: Summary, other: Summary) -> Summary:
    for version, s in other.items():
        if version in into:
            into[version].merge(s)
        else:
            into[version] = VersionSummary()
            into[version].merge(s)
    return into


# --- files -------------------------------------------------------------------------------------------------


#: The summaries' format, in their names: a summary of another format is neither read nor counted as written.
FORMAT = "v2"


def minute_key(model: str, minute: int) -> str:
    return f"{SUMMARIES}/model={model}/{partition(minute // 60)}/minute={minute % 60:02d}.{FORMAT}.npz"


def hour_key(model: str, hour: int) -> str:
    return f"{SUMMARIES}/model={model}/{partition(hour)}/hour.{FORMAT}.npz"


def to_bytes(summary: Summary) -> bytes:
    """A NumPy archive: a JSON header of the counts and one array per feature sketch field."""
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {}
    for version, s in summary.items():
        label = "none" if version is None else str(version)
        header[label] = {
            "rows": s.rows, "errors": s.errors, "synthetic": s.synthetic, "served": s.served,
            "predicted": s.predicted, "missing": s.missing, "any_missing": s.any_missing,
            "flagged": s.flagged,
            "flagged_per_feature": s.flagged_per_feature, "recomputed": s.recomputed,
            "recomputed_per_feature": s.recomputed_per_feature, "out_of_range": s.out_of_range, "error_column": s.error_column,
            "latency": _latency_dict(s.latency), "routed": s.routed.to_dict(),
            "features": {
                f: {"missing": k.missing, "present": k.present,
                    "distinct": None if k.distinct is None else [[v, c] for v, c in k.distinct.items()]}
                for f, k in s.features.items()
            },
        }  # fmt: skip
        for f, k in s.features.items():
            arrays[f"{label}/{f}/at"] = k.at
            arrays[f"{label}/{f}/between"] = k.between
            arrays[f"{label}/{f}/offsets"] = k.offsets
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def from_bytes(data: bytes) -> Summary:
    """A summary written by `to_bytes`; ValueError (or an archive error) when it is not one."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        header = json.loads(archive["header"].tobytes())
        out: Summary = {}
        for label, h in header.items():
            s = VersionSummary(
                rows=h["rows"], errors=h["errors"], served=h["served"], predicted=h["predicted"],
                missing=h["missing"], any_missing=h["any_missing"], flagged=h["flagged"],
                flagged_per_feature=h["flagged_per_feature"], recomputed=h["recomputed"],
                recomputed_per_feature=h["recomputed_per_feature"], out_of_range=h["out_of_range"],
                error_column=h.get("error_column", False), synthetic=h.get("synthetic", 0),
            )  # fmt: skip
            s.latency = _latency_of(h["latency"])
            s.routed = RoutedSummary.from_dict(h["routed"])
            for f, meta in h["features"].items():
                d = meta["distinct"]
                s.features[f] = FeatureSketch(
                    archive[f"{label}/{f}/at"], archive[f"{label}/{f}/between"], archive[f"{label}/{f}/offsets"],
                    meta["missing"], meta["present"], None if d is None else {float(v): int(c) for v, c in d},
                )  # fmt: skip
            out[None if label == "none" else int(label)] = s
    return out


_loaded: OrderedDict[tuple[str, str], Summary] = OrderedDict()
_lock = threading.Lock()
CACHE_SIZE = 256


def load(store: ArtifactStore, key: str) -> Summary | None:
    """A stored summary, or None when it is missing or unreadable (the caller reads the log instead).

    Summaries are written once (again only after being deleted, from the same rows), so the ones read are
    kept in a small cache; a copy is returned because callers merge into what they get."""
    ident = (store.root, key)
    with _lock:
        hit = _loaded.get(ident)
        if hit is not None:
            _loaded.move_to_end(ident)
    if hit is None:
        try:
            hit = from_bytes(store.get_bytes(key))
        except Exception:
            return None
        with _lock:
            _loaded[ident] = hit
            if len(_loaded) > CACHE_SIZE:
                _loaded.popitem(last=False)
    return merge({}, hit)


def clear_cache() -> None:
    with _lock:
        _loaded.clear()
