"""Datasets: register content-hashed versions and read them back from their snapshots.

A dataset version is a Parquet snapshot in the artifact store with its sha256, the schema it was validated
against (`data.validation`) and the reference profile (`data.profile`) later monitoring compares live data
with. Nothing is registered from data that fails validation.
"""

from __future__ import annotations

import dataclasses
import io
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session, selectinload

from mloncall.core import clock
from mloncall.core.errors import Conflict, IntegrityError, InvalidInput, NotFound
from mloncall.core.names import MAX_ID, check_name, parse_id
from mloncall.data.files import first_line
from mloncall.data.models import Dataset, DatasetVersion
from mloncall.data.profile import content_hash, profile
from mloncall.data.schemas import DatasetSchema
from mloncall.data.validation import infer_schema, validate
from mloncall.stores.artifacts import ArtifactStore, staged
from mloncall.stores.db import Database, find_one, find_one_or_raise, get_or_raise

# --- reading the catalogue -------------------------------------------------------------------------------


def get_dataset_or_raise(*, session: Session, name: str) -> Dataset:
    """The dataset called name; NotFound names it otherwise."""
    return find_one_or_raise(session, Dataset, what="dataset", name=name)


def list_datasets(*, session: Session) -> Sequence[Dataset]:
    """Every dataset with its versions, by name."""
    stmt = (
        sa.select(Dataset)
        .options(selectinload(Dataset.versions).selectinload(DatasetVersion.dataset))
        .order_by(Dataset.name)
    )
    return session.scalars(stmt).all()


def get_version_or_raise(*, session: Session, name: str, version: int) -> DatasetVersion:
    """One version of a dataset; NotFound says whether the dataset or the version is missing."""
    dataset = get_dataset_or_raise(session=session, name=name)
    dv = find_one(session, DatasetVersion, dataset_id=dataset.id, version=version)
    if dv is None:
        known = [v.version for v in dataset.versions]
        which = f"its versions are {', '.join(map(str, known))}" if known else "it has no versions"
        raise NotFound(f"dataset {name!r} has no version {version} ({which})")
    return dv


def get_version_by_id_or_raise(*, session: Session, dataset_version_id: int) -> DatasetVersion:
    """A dataset version by its id (as models and parents record it)."""
    return get_or_raise(session, DatasetVersion, dataset_version_id, what="dataset version id")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """`NAME`, `NAME:latest` (None: the newest) or `NAME:VERSION` as (name, version)."""
    text = (ref or "").strip()
    if "@" in text:
        raise InvalidInput(
            f"invalid dataset reference {text!r}: datasets have no aliases; use NAME or NAME:VERSION"
        )
    name, sep, version = text.partition(":")
    check_name(name, "dataset name")
    if not sep or version == "latest":
        return name, None
    number = parse_id(version.removeprefix("v"))
    if number is None:
        raise InvalidInput(
            f"invalid dataset reference {text!r}: the version must be a positive integer up to {MAX_ID}"
        )
    return name, number


def resolve(*, session: Session, ref: str) -> DatasetVersion:
    """The version a reference names: `NAME` (the latest) or `NAME:VERSION`."""
    name, version = parse_ref(ref)
    if version is not None:
        return get_version_or_raise(session=session, name=name, version=version)
    dataset = get_dataset_or_raise(session=session, name=name)
    if not dataset.versions:
        raise NotFound(f"dataset {name!r} has no versions")
    return dataset.versions[-1]


def ref_of(dataset_version: DatasetVersion) -> str:
    """`NAME:VERSION` of a version whose dataset is loaded."""
    return f"{dataset_version.dataset.name}:{dataset_version.version}"


# --- registering -----------------------------------------------------------------------------------------


def register(
    *,
    db: Database,
    store: ArtifactStore,
    name: str,
    df: pd.DataFrame,
    schema: dict[str, Any],
    source: str,
    created_by: str,
    parents: list[int] | None = None,
) -> DatasetVersion:
    """Register df as the next version of dataset `name`, or return the version that already has its content.

    df is validated against the schema (types, nulls, columns, labels; ranges are the caller's policy) so
    nothing bad is stored. The Parquet snapshot is written atomically under the staging prefix first, the row
    inserted in its own unit of work, and the snapshot moved to the key the row names once that committed;
    a failure removes the staged snapshot, and racing registrations get distinct numbers.
    """
    check_name(name, "dataset name")
    spec = DatasetSchema.parse(schema)
    parent_ids = _check_parent_ids(parents)
    clean = validate(df, schema=schema, source=source, range_margin=None)
    digest = content_hash(clean, schema=schema)
    with db.session() as session:
        existing = _version_with_hash(session=session, name=name, digest=digest)
        if existing is not None:
            return existing
        _require_parents(session=session, parent_ids=parent_ids)
    reference = profile(clean, schema=schema)
    buffer = io.BytesIO()
    clean.to_parquet(buffer, engine="pyarrow", index=False, compression="zstd")
    # A fresh suffix per attempt: a racing registration of the same content never overwrites or deletes ours.
    key = f"datasets/{name}/{digest[:16]}-{uuid.uuid4().hex[:8]}.parquet"
    stored = dataclasses.replace(store.put_bytes(staged(key), buffer.getvalue()), key=key)
    try:
        dv, created = _insert_version(
            db=db,
            values={
                "content_hash": digest,
                "row_count": len(clean),
                "key": stored.key,
                "sha256": stored.sha256,
                "size": stored.size,
                "target": spec.target.name if spec.target is not None else None,
                "schema": spec.model_dump(mode="json"),
                "profile": reference,
                "source": source,
                "parents": parent_ids,
                "created_by": created_by,
            },
            name=name,
        )
    except BaseException:
        store.delete(staged(key))
        raise
    if created:
        store.promote(key)  # visible only now that its row has committed
    else:
        store.delete(staged(key))
    return dv


def claimed_artifacts(*, session: Session) -> set[str]:
    """Every snapshot a row names (what `gc` keeps)."""
    return set(session.scalars(sa.select(DatasetVersion.key)))


def register_rows(
    *, db: Database, store: ArtifactStore, name: str, raw: pd.DataFrame, target: str, origin: str, **how: Any
) -> tuple[DatasetVersion, pd.DataFrame]:
    """Infer a schema for raw rows (`target` is the label column), validate them against it and register
    them as in `register` (`how` holds its `source`, `created_by`, `parents`); `origin` names the rows in
    error messages. Returns the version and the validated rows."""
    schema = infer_schema(raw, target=target, source=origin)
    frame = validate(raw, schema=schema, source=origin, range_margin=None)
    return register(db=db, store=store, name=name, df=frame, schema=schema, **how), frame


def _check_parent_ids(parents: list[int] | None) -> list[int]:
    ids = list(parents or [])
    bad = [p for p in ids if isinstance(p, bool) or not isinstance(p, int)]
    if bad:
        raise InvalidInput(f"dataset parents must be dataset version ids (integers), got {bad!r}")
    return list(dict.fromkeys(ids))


def _require_parents(*, session: Session, parent_ids: list[int]) -> None:
    if not parent_ids:
        return
    found = set(session.scalars(sa.select(DatasetVersion.id).where(DatasetVersion.id.in_(parent_ids))))
    missing = [p for p in parent_ids if p not in found]
    if missing:
        raise NotFound(f"parent dataset version id(s) {', '.join(map(str, missing))} do not exist")


def _version_with_hash(*, session: Session, name: str, digest: str) -> DatasetVersion | None:
    stmt = (
        sa.select(DatasetVersion)
        .join(Dataset)
        .where(Dataset.name == name, DatasetVersion.content_hash == digest)
        .options(selectinload(DatasetVersion.dataset))
    )
    return session.scalars(stmt).one_or_none()


def _insert_version(*, db: Database, values: dict[str, Any], name: str) -> tuple[DatasetVersion, bool]:
    """Insert the next version in its own unit of work; (existing, False) if the content won a race first."""
    attempts = 20
    for attempt in range(attempts):
        try:
            with db.session() as session:
                existing = _version_with_hash(session=session, name=name, digest=values["content_hash"])
                if existing is not None:
                    return existing, False
                dataset = find_one(session, Dataset, name=name)
                if dataset is None:
                    dataset = Dataset(name=name, created_at=clock.now(), created_by=values["created_by"])
                    session.add(dataset)
                    session.flush()
                latest = session.scalar(
                    sa.select(sa.func.max(DatasetVersion.version)).where(
                        DatasetVersion.dataset_id == dataset.id
                    )
                )
                dv = DatasetVersion(
                    dataset_id=dataset.id, version=(latest or 0) + 1, created_at=clock.now(), **values
                )
                session.add(dv)
                session.flush()
                session.refresh(dv, ["dataset"])
                return dv, True
        except SAIntegrityError as exc:
            # Another registration took this number, this content or the dataset name first: look again.
            if attempt == attempts - 1:
                raise Conflict(
                    f"could not allocate a version number for dataset {name!r}: {exc.orig}"
                ) from None
            time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    raise AssertionError("unreachable")


def read(*, store: ArtifactStore, dataset_version: DatasetVersion) -> pd.DataFrame:
    """The version's rows from its snapshot, after checking the bytes against the recorded sha256."""
    data = store.read_verified(dataset_version.key, dataset_version.sha256)
    try:
        df = pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    except Exception as exc:
        raise IntegrityError(
            f"dataset snapshot {store.url(dataset_version.key)} cannot be parsed: {first_line(exc)}",
            details={"file": dataset_version.key},
        ) from None
    spec = DatasetSchema.parse(dataset_version.schema)
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise IntegrityError(
            f"dataset snapshot {store.url(dataset_version.key)} lacks column(s) {', '.join(missing)}",
            details={"file": dataset_version.key},
        )
    out = df[spec.columns].copy()
    for name in spec.feature_names:
        out[name] = out[name].astype(np.float64)
    if spec.target is not None:
        out[spec.target.name] = out[spec.target.name].astype("str")
    return out
