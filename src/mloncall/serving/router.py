"""Per-process routing state, refreshed from the routing table, and the choice of version per request.

A background thread polls one small query every `refresh_seconds`. When anything changed (a routing row's
generation, a production alias), it loads the predictors it needs off the hot path, verifying checksums,
then swaps the whole route map in one assignment, so in-flight requests finish on the predictors they
started with and no request is dropped. The stable version stays loaded while a canary runs: an abort is
a weight change. A version that fails to load is never served; the model keeps serving what it had.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from mloncall.core.errors import IntegrityError, MloncallError, NotFound
from mloncall.registry.models import Alias, Model, ModelVersion
from mloncall.serving.config import ServingConfig
from mloncall.serving.metrics import ServingMetrics
from mloncall.serving.models import Routing
from mloncall.serving.predictor import Predictor, load_predictor
from mloncall.stores.artifacts import ArtifactStore
from mloncall.stores.db import Database

log = logging.getLogger("mloncall.serving.router")

STABLE = "stable"
CANARY = "canary"
EXPLICIT = "explicit"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """What one model serves right now in this process."""

    model: str
    generation: int
    stable: Predictor | None
    canary: Predictor | None
    canary_weight: float
    sticky_key: str | None
    sticky_header: bytes | None
    out_of_range_policy: str
    max_rows: int
    configured_stable: int
    configured_canary: int | None
    configured_weight: float
    source: str
    #: Reorders canary rows into the stable version's feature order for shadow scoring; None = same order.
    shadow_columns: np.ndarray | None = None
    shadow_ok: bool = False
    problems: tuple[str, ...] = field(default_factory=tuple)
    #: per feature, `reject`, `flag` or `impute` (runbook 6's workaround); `imputed` are the last
    feature_policies: dict[str, str] = field(default_factory=dict)
    imputed: frozenset[str] = frozenset()

    @property
    def ready(self) -> bool:
        return self.stable is not None

    def weights(self) -> dict[str, float]:
        """The share of traffic per served version."""
        if self.stable is None:
            return {}
        if self.canary is None or self.canary_weight <= 0:
            return {str(self.stable.version): 1.0}
        return {
            str(self.stable.version): 1.0 - self.canary_weight,
            str(self.canary.version): self.canary_weight,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "source": self.source,
            "stable_version": self.stable.version if self.stable else None,
            "canary_version": self.canary.version if self.canary else None,
            "canary_weight": self.canary_weight,
            "configured": {
                "stable_version": self.configured_stable,
                "canary_version": self.configured_canary,
                "canary_weight": self.configured_weight,
            },
            "sticky_key": self.sticky_key,
            "out_of_range_policy": self.out_of_range_policy,
            "max_rows": self.max_rows,
            "feature_policies": dict(self.feature_policies),
            "problems": list(self.problems),
        }


def public_reason(exc: MloncallError) -> str:
    """Why a version cannot be served, as anonymous clients may read it: the file and what is wrong with it,
    never its path, its hashes or a driver's text (the server log has the whole message)."""
    if isinstance(exc, NotFound):
        return exc.message
    if isinstance(exc, IntegrityError):
        details = exc.details if isinstance(exc.details, dict) else {}
        file = posixpath.basename(str(details.get("file", "")))
        if not file:
            return "its artifacts failed verification"
        return f"artifact {file} is {'altered' if 'actual' in details else 'missing'}"
    return f"{exc.code.replace('_', ' ')} (see the server log)"


def bucket(model: str, key: str) -> float:
    """A fixed position in [0, 1) for a caller's key: the same in every worker, so the caller sticks."""
    digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def choose(route: ModelRoute, sticky: str | None) -> tuple[Predictor, str]:
    """The predictor for one request and its route name; callers check `route.ready` first."""
    canary = route.canary
    weight = route.canary_weight
    if canary is None or weight <= 0.0:
        return route.stable, STABLE  # type: ignore[return-value]
    x = bucket(route.model, sticky) if sticky is not None else random.random()
    if x < weight:
        return canary, CANARY
    return route.stable, STABLE  # type: ignore[return-value]


_Snapshot = tuple[tuple[Any, ...], ...]
Loader = Callable[[str, int], Predictor]


class Router:
    """Routing state of one worker process."""

    def __init__(
        self,
        *,
        db: Database,
        store: ArtifactStore,
        config: ServingConfig,
        metrics: ServingMetrics | None = None,
        loader: Loader | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.config = config
        self.metrics = metrics
        self._loader = loader or self._load_from_registry
        #: Served models by name; replaced whole, never mutated, so readers need no lock.
        self.routes: dict[str, ModelRoute] = {}
        #: Every model name in the registry (to tell 'unknown model' from 'not served').
        self.known: frozenset[str] = frozenset()
        self.ready = False
        self.last_error: str | None = None
        self.last_refresh: float | None = None
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._explicit: OrderedDict[tuple[str, int], Predictor] = OrderedDict()
        self._failed: dict[tuple[str, int], tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- loading ---

    def _load_from_registry(self, model: str, version: int) -> Predictor:
        return load_predictor(
            db=self.db, store=self.store, model=model, version=version, threads=self.config.onnx_threads
        )

    def loaded(self, model: str, version: int) -> Predictor | None:
        """A predictor already in memory for this version (stable, canary or recently asked for), or None."""
        route = self.routes.get(model)
        if route is not None:
            if route.stable is not None and route.stable.version == version:
                return route.stable
            if route.canary is not None and route.canary.version == version:
                return route.canary
        return self._explicit.get((model, version))

    def failure(self, model: str, version: int) -> str | None:
        """Why this version cannot be served, if its last load failed recently."""
        entry = self._failed.get((model, version))
        if entry is None or time.monotonic() - entry[1] > self.config.retry_failed_seconds:
            return None
        return entry[0]

    def load(self, model: str, version: int) -> Predictor:
        """The predictor for an explicitly asked version, loading (and verifying) it if needed.

        Blocking: call it from a worker thread. Raises NotFound, or IntegrityError with the reason.
        """
        found = self.loaded(model, version)
        if found is not None:
            return found
        predictor = self._try_load(model, version)
        with self._lock:
            self._explicit[(model, version)] = predictor
            self._explicit.move_to_end((model, version))
            while len(self._explicit) > self.config.explicit_cache_size:
                self._explicit.popitem(last=False)
        return predictor

    def _try_load(self, model: str, version: int) -> Predictor:
        try:
            predictor = self._loader(model, version)
        except NotFound:
            raise
        except MloncallError as exc:
            with self._lock:
                self._failed[(model, version)] = (public_reason(exc), time.monotonic())
            log.error("%s:%d cannot be served: %s", model, version, exc.message)
            raise
        with self._lock:
            self._failed.pop((model, version), None)
        return predictor

    # --- refreshing ---

    def _query(self) -> _Snapshot:
        stmt = (
            sa.select(
                Model.name,
                Routing.generation,
                Routing.stable_version,
                Routing.canary_version,
                Routing.canary_weight,
                Routing.sticky_key,
                Routing.out_of_range_policy,
                Routing.max_rows,
                ModelVersion.version,
                Routing.feature_policies,
            )
            .select_from(Model)
            .outerjoin(Routing, Routing.model_name == Model.name)
            .outerjoin(Alias, sa.and_(Alias.model_id == Model.id, Alias.name == "production"))
            .outerjoin(ModelVersion, ModelVersion.id == Alias.model_version_id)
            .order_by(Model.name)
        )
        with self.db.engine.connect() as conn:
            return tuple(tuple(row) for row in conn.execute(stmt))

    def _retry_due(self) -> bool:
        if not self._failed:
            return False
        limit = time.monotonic() - self.config.retry_failed_seconds
        return any(at < limit for _, at in self._failed.values())

    def refresh(self) -> bool:
        """Poll the routing table once and apply any change; True if the route map was replaced."""
        with self._refresh_lock:
            try:
                snapshot = self._query()
            except Exception as exc:
                message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if message != self.last_error:
                    log.warning("routing refresh failed, serving the last known routing: %s", message)
                self.last_error = message
                return False
            self.last_error = None
            self.last_refresh = time.monotonic()
            if snapshot == self._snapshot and not self._retry_due():
                return False
            self._apply(snapshot)
            self._snapshot = snapshot
            self.ready = True
            return True

    def _predictor(self, model: str, version: int, current: ModelRoute | None) -> Predictor | str:
        if current is not None:
            for p in (current.stable, current.canary):
                if p is not None and p.version == version:
                    return p
        p = self._explicit.get((model, version))
        if p is not None:
            return p
        failed = self.failure(model, version)
        if failed is not None:
            return failed
        try:
            return self._try_load(model, version)
        except MloncallError as exc:
            return public_reason(exc)

    def _apply(self, snapshot: _Snapshot) -> None:
        routes: dict[str, ModelRoute] = {}
        for row in snapshot:
            name, generation, stable_v, canary_v, weight, sticky, policy, max_rows, production_v = row[:9]
            features = dict(row[9] or {}) if stable_v is not None else {}
            if stable_v is None and production_v is None:
                continue
            current = self.routes.get(name)
            if stable_v is not None:
                source = "routing"
            else:
                source, stable_v, canary_v, weight = "production alias", production_v, None, 0.0
                generation, sticky, policy, max_rows = 0, None, "flag", self.config.default_max_rows
            problems: list[str] = []
            stable: Predictor | None
            loaded = self._predictor(name, stable_v, current)
            if isinstance(loaded, str):
                stable = current.stable if current is not None else None
                problems.append(
                    f"stable version {stable_v} cannot be served: {loaded}"
                    + (f"; still serving version {stable.version}" if stable is not None else "")
                )
            else:
                stable = loaded
            canary: Predictor | None = None
            if canary_v is not None:
                loaded = self._predictor(name, canary_v, current)
                if isinstance(loaded, str):
                    problems.append(
                        f"canary version {canary_v} cannot be served: {loaded}; its traffic goes to stable"
                    )
                else:
                    canary = loaded
            shadow_columns, shadow_ok = None, False
            if stable is not None and canary is not None:
                order = canary.schema.compatible_with(stable.schema)
                if order is not None:
                    shadow_ok = True
                    if not np.array_equal(order, np.arange(len(order))):
                        shadow_columns = order
            routes[name] = ModelRoute(
                model=name,
                generation=generation,
                stable=stable,
                canary=canary,
                canary_weight=float(weight or 0.0) if canary is not None else 0.0,
                sticky_key=sticky,
                sticky_header=sticky.lower().encode("latin-1") if sticky else None,
                out_of_range_policy=policy,
                max_rows=max_rows,
                configured_stable=stable_v,
                configured_canary=canary_v,
                configured_weight=float(weight or 0.0),
                source=source,
                shadow_columns=shadow_columns,
                shadow_ok=shadow_ok,
                problems=tuple(problems),
                feature_policies=features,
                imputed=frozenset(f for f, p in features.items() if p == "impute"),
            )
        previous = self.routes
        self.known = frozenset(row[0] for row in snapshot)
        self.routes = routes  # the atomic swap
        for name, route in routes.items():
            old = previous.get(name)
            if old is None or (old.stable, old.canary, old.canary_weight, old.problems) != (
                route.stable,
                route.canary,
                route.canary_weight,
                route.problems,
            ):
                log.info("routing of %s applied: %s", name, route.describe())
        if self.metrics is not None:
            for name, route in routes.items():
                self.metrics.set_weights(name, route.weights())
            for name in previous.keys() - routes.keys():
                self.metrics.set_weights(name, {})

    # --- background thread ---

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mloncall-router", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.refresh_seconds):
            try:
                self.refresh()
            except Exception:  # never let the poller die: the next tick tries again
                log.exception("routing refresh crashed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
