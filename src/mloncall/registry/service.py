"""The model registry: register versions with checksummed safe artifacts, resolve references, move aliases,
verify integrity, load models (always verified first)."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, selectinload

from mloncall.core import clock
from mloncall.core.errors import Conflict, IntegrityError, InvalidInput, NotFound
from mloncall.core.names import ModelRef, check_name
from mloncall.core.outcome import Check, Outcome
from mloncall.registry import formats
from mloncall.registry.models import Alias, AliasEvent, ArtifactFile, Model, ModelVersion
from mloncall.registry.schemas import ModelVersionOut
from mloncall.stores.artifacts import ArtifactStore, StoredFile, staged
from mloncall.stores.db import Database, find_one, find_one_or_raise, on_commit

ONNX_FILE = "model.onnx"
SKOPS_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
RESERVED_ALIASES = ("production", "canary", "previous")


# --- reading ---------------------------------------------------------------------------------------------


def get_model_or_raise(*, session: Session, name: str) -> Model:
    """The model called name; NotFound names it otherwise."""
    return find_one_or_raise(session, Model, what="model", name=name)


def list_models(*, session: Session) -> Sequence[Model]:
    """Every model with its versions and aliases."""
    stmt = (
        sa.select(Model)
        .options(selectinload(Model.versions), selectinload(Model.aliases))
        .order_by(Model.name)
    )
    return session.scalars(stmt).all()


def get_version_or_raise(*, session: Session, name: str, version: int) -> ModelVersion:
    """One version of a model; NotFound says whether the model or the version is missing."""
    model = get_model_or_raise(session=session, name=name)
    mv = find_one(session, ModelVersion, model_id=model.id, version=version)
    if mv is None:
        raise NotFound(f"model {name!r} has no version {version} (never registered, or deleted)")
    return mv


def get_alias(*, session: Session, name: str, alias: str) -> Alias | None:
    model = get_model_or_raise(session=session, name=name)
    return session.scalars(
        sa.select(Alias).where(Alias.model_id == model.id, Alias.name == alias)
    ).one_or_none()


def get_alias_or_raise(*, session: Session, name: str, alias: str) -> Alias:
    """One alias of a model; NotFound says whether the model or the alias is missing."""
    current = get_alias(session=session, name=name, alias=alias)
    if current is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    return current


def aliases_of(*, session: Session, model_version: ModelVersion) -> list[str]:
    """The alias names that point at this version."""
    rows = session.scalars(sa.select(Alias.name).where(Alias.model_version_id == model_version.id))
    return sorted(rows)


def version_out(*, session: Session, store: ArtifactStore, model_version: ModelVersion) -> ModelVersionOut:
    """A version as the API answers it: with its aliases and where its artifacts are."""
    aliases = aliases_of(session=session, model_version=model_version)
    return ModelVersionOut.of(model_version, aliases=aliases, artifact_root=store.root)


def resolve(*, session: Session, ref: ModelRef | str) -> ModelVersion:
    """The version a reference names: `NAME:V`, `NAME@ALIAS`, or `NAME` (its production version, else latest)."""
    ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
    if ref.version is not None:
        return get_version_or_raise(session=session, name=ref.name, version=ref.version)
    if ref.alias is not None:
        return get_alias_or_raise(session=session, name=ref.name, alias=ref.alias).model_version
    alias = get_alias(session=session, name=ref.name, alias="production")
    if alias is not None:
        return alias.model_version
    model = get_model_or_raise(session=session, name=ref.name)
    if not model.versions:
        raise NotFound(f"model {ref.name!r} has no versions")
    return model.versions[-1]


def alias_history(*, session: Session, name: str, alias: str | None = None) -> Sequence[AliasEvent]:
    """Every alias move of a model, oldest first."""
    model = get_model_or_raise(session=session, name=name)
    stmt = sa.select(AliasEvent).where(AliasEvent.model_id == model.id)
    if alias:
        stmt = stmt.where(AliasEvent.alias == alias)
    return session.scalars(stmt.order_by(AliasEvent.id)).all()


# --- registering -----------------------------------------------------------------------------------------


@dataclass
class NewVersion:
    """Everything a version is registered with, besides its estimator."""

    name: str
    algorithm: str
    feature_names: list[str]
    class_labels: list[str]
    signature: dict[str, Any]
    metrics: dict[str, Any]
    params: dict[str, Any]
    lineage: dict[str, Any]
    created_by: str
    description: str = ""
    tags: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    dataset_version_id: int | None = None
    extra_files: dict[str, bytes] = field(default_factory=dict)


def check_onnx_parity(onnx_bytes: bytes, estimator: Any, X_val: np.ndarray) -> None:
    """Refuse unless the ONNX model predicts exactly the labels scikit-learn predicts on the validation rows."""
    if len(X_val) == 0:
        raise InvalidInput("cannot register: the validation set is empty, so ONNX parity cannot be checked")
    session = formats.onnx_session(onnx_bytes)
    onnx_labels, _ = formats.onnx_predict(session, X_val)
    sk_labels = np.asarray(estimator.predict(X_val))
    differ = np.flatnonzero(onnx_labels.astype(str) != sk_labels.astype(str))
    if differ.size:
        raise InvalidInput(
            f"cannot register: the ONNX model disagrees with scikit-learn on {differ.size} of {len(X_val)} "
            f"validation rows (first at row {int(differ[0])})",
            details={"rows": differ[:20].tolist()},
        )


def register_version(
    *, db: Database, store: ArtifactStore, estimator: Any, X_val: np.ndarray, new: NewVersion
) -> ModelVersion:
    """Register a fitted estimator as the next version of a model.

    The ONNX conversion must agree with scikit-learn on X_val. Files are written (atomically, checksummed)
    under the staging prefix first, where no reader looks; the version row is inserted next, and only once
    it has committed are the files moved to the prefix it names. A failure before the commit removes the
    staged files; a crash leaves them for `mloncall gc`. Concurrent registrations get distinct numbers.
    """
    check_name(new.name, "model name")
    onnx_bytes = formats.to_onnx(estimator, len(new.feature_names))
    check_onnx_parity(onnx_bytes, estimator, X_val)
    prefix = f"models/{new.name}/{clock.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
    payload = {ONNX_FILE: onnx_bytes, SKOPS_FILE: formats.to_skops(estimator), **new.extra_files}
    try:
        written = {n: _stage(store, f"{prefix}/{n}", data) for n, data in payload.items()}
        manifest = {
            "model": new.name,
            "files": {n: {"sha256": f.sha256, "size": f.size} for n, f in sorted(written.items())},
        }
        written[MANIFEST_FILE] = _stage(
            store, f"{prefix}/{MANIFEST_FILE}", json.dumps(manifest, indent=2, sort_keys=True).encode()
        )
        mv = _insert_version(db=db, prefix=prefix, written=written, new=new)
    except BaseException:
        store.delete_prefix(staged(prefix))
        raise
    store.promote(prefix)
    return mv


def _stage(store: ArtifactStore, key: str, data: bytes) -> StoredFile:
    """Write data under the staging prefix; the StoredFile names its real key, as the row records it."""
    return dataclasses.replace(store.put_bytes(staged(key), data), key=key)


def claimed_artifacts(*, session: Session) -> set[str]:
    """Every version folder a row names (what `gc` keeps)."""
    return set(session.scalars(sa.select(ModelVersion.artifact_prefix)))


def _insert_version(*, db: Database, prefix: str, written: dict[str, Any], new: NewVersion) -> ModelVersion:
    attempts = 20
    for attempt in range(attempts):
        try:
            with db.session() as session:
                model = find_one(session, Model, name=new.name)
                if model is None:
                    model = Model(name=new.name, created_at=clock.now(), created_by=new.created_by)
                    session.add(model)
                    session.flush()
                latest = session.scalar(
                    sa.select(sa.func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
                )
                mv = ModelVersion(
                    model_id=model.id,
                    version=(latest or 0) + 1,
                    artifact_prefix=prefix,
                    algorithm=new.algorithm,
                    description=new.description,
                    tags=new.tags,
                    params=new.params,
                    metrics=new.metrics,
                    signature=new.signature,
                    lineage=new.lineage,
                    gate=new.gate,
                    dataset_version_id=new.dataset_version_id,
                    created_at=clock.now(),
                    created_by=new.created_by,
                )
                mv.files = [
                    ArtifactFile(name=n, key=f.key, sha256=f.sha256, size=f.size)
                    for n, f in sorted(written.items())
                ]
                session.add(mv)
                session.flush()
                session.refresh(mv, ["model", "files"])
                return mv
        except (SAIntegrityError, OperationalError) as exc:
            reason = str(exc.orig)
            if isinstance(exc, SAIntegrityError) and "unique" not in reason.lower():
                raise InvalidInput(f"cannot register {new.name!r}: {reason.splitlines()[0]}") from None
            # Another registration took this number (or the model name) first, or SQLite was busy: retry.
            if attempt == attempts - 1:
                raise Conflict(f"could not allocate a version number for {new.name!r}: {reason}") from None
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


# --- aliases ---------------------------------------------------------------------------------------------


def set_alias(
    *, session: Session, name: str, alias: str, version: int, actor: str, reason: str = ""
) -> AliasEvent:
    """Point alias at a version and record the move."""
    check_name(alias, "alias")
    if alias == "latest":
        raise InvalidInput("'latest' is not an alias: it always means the newest version")
    mv = get_version_or_raise(session=session, name=name, version=version)
    current = get_alias(session=session, name=name, alias=alias)
    from_version = current.model_version.version if current is not None else None
    if current is None:
        session.add(
            Alias(
                model_id=mv.model_id,
                name=alias,
                model_version_id=mv.id,
                updated_at=clock.now(),
                updated_by=actor,
            )
        )
    else:
        current.model_version_id = mv.id
        current.model_version = mv
        current.updated_at = clock.now()
        current.updated_by = actor
    event = AliasEvent(
        model_id=mv.model_id,
        alias=alias,
        from_version=from_version,
        to_version=mv.version,
        at=clock.now(),
        actor=actor,
        reason=reason,
    )
    session.add(event)
    session.flush()
    return event


def remove_alias(*, session: Session, name: str, alias: str, actor: str, reason: str = "") -> AliasEvent:
    """Remove an alias and record the move."""
    current = get_alias_or_raise(session=session, name=name, alias=alias)
    event = AliasEvent(
        model_id=current.model_id,
        alias=alias,
        from_version=current.model_version.version,
        to_version=None,
        at=clock.now(),
        actor=actor,
        reason=reason,
    )
    session.delete(current)
    session.add(event)
    session.flush()
    return event


def delete_version(*, session: Session, store: ArtifactStore, name: str, version: int) -> None:
    """Delete a version and, once that commits, its files; refused while an alias points at it."""
    mv = get_version_or_raise(session=session, name=name, version=version)
    pointing = aliases_of(session=session, model_version=mv)
    if pointing:
        raise Conflict(
            f"{name}:{version} cannot be deleted: alias(es) {', '.join(pointing)} point at it; move them first"
        )
    prefix = mv.artifact_prefix
    session.delete(mv)
    session.flush()
    on_commit(session, lambda: store.delete_prefix(prefix))


# --- integrity -------------------------------------------------------------------------------------------


#: The name of the check `verify` reports (a deployment's first pre-check).
INTEGRITY_CHECK = "artifact integrity"


@dataclass
class FileCheck:
    name: str
    key: str
    expected: str
    actual: str | None
    size: int
    recorded: bool = True  # False: in the version's folder, but no record names it

    @property
    def status(self) -> str:
        if not self.recorded:
            return "unexpected"
        if self.actual is None:
            return "missing"
        return "ok" if self.actual == self.expected else "altered"


@dataclass
class VerifyReport:
    """Every file of a version, recomputed against its recorded checksum."""

    ref: str
    files: list[FileCheck]
    seconds: float

    @property
    def check(self) -> Check:
        bad = [f for f in self.files if f.status != "ok"]
        if not bad:
            return Check(INTEGRITY_CHECK, Outcome.SUCCESSFUL, f"all {len(self.files)} files intact")
        return Check(
            INTEGRITY_CHECK,
            Outcome.FAILED,
            "; ".join(f"{f.name} {f.status}" for f in bad),
            {"bad": [f.name for f in bad]},
        )

    @property
    def ok(self) -> bool:
        return self.check.passed

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def verify(*, store: ArtifactStore, model_version: ModelVersion) -> VerifyReport:
    """Recompute every file's sha256 and compare it with the record, and the manifest file with the records."""
    start = time.perf_counter()
    checks = [
        FileCheck(f.name, f.key, f.sha256, store.sha256_of(f.key), f.size)
        for f in sorted(model_version.files, key=lambda f: f.name)
    ]
    manifest = next((f for f in model_version.files if f.name == MANIFEST_FILE), None)
    if manifest is not None and store.sha256_of(manifest.key) == manifest.sha256:
        listed = json.loads(store.get_bytes(manifest.key))["files"]
        recorded = {f.name: f.sha256 for f in model_version.files if f.name != MANIFEST_FILE}
        for fname, entry in listed.items():
            if recorded.get(fname) != entry["sha256"]:
                checks.append(
                    FileCheck(f"{MANIFEST_FILE}:{fname}", manifest.key, entry["sha256"], "mismatch", 0)
                )
    checks.extend(_unexpected_files(store=store, model_version=model_version))
    ref = f"{model_version.model.name}:{model_version.version}"
    return VerifyReport(ref=ref, files=checks, seconds=time.perf_counter() - start)


def _unexpected_files(*, store: ArtifactStore, model_version: ModelVersion) -> list[FileCheck]:
    """Files in the version's folder that no record names: a version is exactly its recorded files."""
    recorded = {f.key for f in model_version.files}
    prefix = model_version.artifact_prefix
    return [
        FileCheck(key.removeprefix(f"{prefix}/"), key, "", store.sha256_of(key), 0, recorded=False)
        for key in store.list(prefix)
        if key not in recorded
    ]


def _file(model_version: ModelVersion, name: str) -> ArtifactFile:
    for f in model_version.files:
        if f.name == name:
            return f
    raise IntegrityError(
        f"{model_version.model.name}:{model_version.version} has no recorded file {name!r}",
        details={"file": name},
    )


def read_file(*, store: ArtifactStore, model_version: ModelVersion, name: str) -> bytes:
    """A version's file, verified against its recorded checksum."""
    f = _file(model_version, name)
    return store.read_verified(f.key, f.sha256)


def load_onnx(*, store: ArtifactStore, model_version: ModelVersion, threads: int = 1) -> Any:
    """An ONNX Runtime session for the version, built from bytes whose checksum was just verified."""
    return formats.onnx_session(read_file(store=store, model_version=model_version, name=ONNX_FILE), threads)


def load_estimator(*, store: ArtifactStore, model_version: ModelVersion) -> Any:
    """The version's scikit-learn object from its verified skops file."""
    return formats.from_skops(read_file(store=store, model_version=model_version, name=SKOPS_FILE))
