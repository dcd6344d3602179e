"""Registering dataset versions on SQLite and PostgreSQL, local and S3: dedupe, integrity, races, lookups."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from mloncall.core.errors import IntegrityError, InvalidInput, NotFound
from mloncall.data import files, iris, validation
from mloncall.data import profile as profiling
from mloncall.data import service as data
from mloncall.data.models import Dataset, DatasetVersion
from mloncall.data.schemas import DatasetRead, DatasetVersionRead
from mloncall.data.validation import DataValidationError
from mloncall.stores.context import Context
from tests.data.samples import GOOD_ROWS, csv_text

Write = Callable[[str, "str | bytes"], Path]


def register_frame(ctx: Context, frame: pd.DataFrame, name: str = "iris", **kwargs: Any) -> DatasetVersion:
    schema = validation.infer_schema(frame, target=iris.TARGET)
    return data.register(
        db=ctx.db,
        store=ctx.store,
        name=name,
        df=validation.validate(frame, schema=schema),
        schema=schema,
        source=kwargs.pop("source", "test"),
        created_by="tester",
        **kwargs,
    )


def count_rows(ctx: Context) -> tuple[int, int]:
    with ctx.db.session() as session:
        datasets = session.scalar(sa.select(sa.func.count()).select_from(Dataset)) or 0
        versions = session.scalar(sa.select(sa.func.count()).select_from(DatasetVersion)) or 0
    return datasets, versions


def test_register_records_snapshot_schema_and_profile(any_ctx: Context) -> None:
    dv = register_frame(any_ctx, iris.iris_frame(), source="scikit-learn bundled Iris")
    # usable after its unit of work closed
    assert (dv.dataset.name, dv.version, dv.row_count) == ("iris", 1, 150)
    assert dv.key.startswith(f"datasets/iris/{dv.content_hash[:16]}") and dv.key.endswith(".parquet")
    assert dv.target == "species" and dv.source == "scikit-learn bundled Iris" and dv.created_by == "tester"
    assert dv.schema["target"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert dv.profile["row_count"] == 150 and set(dv.profile["features"]) == set(iris.FEATURES)
    assert dv.content_hash == profiling.content_hash(iris.iris_frame(), schema=dv.schema)
    assert any_ctx.store.sha256_of(dv.key) == dv.sha256
    assert len(any_ctx.store.get_bytes(dv.key)) == dv.size
    with any_ctx.db.session() as session:
        stored = data.resolve(session=session, ref="iris")
        assert stored.profile == dv.profile and stored.schema == dv.schema and stored.parents == []


def test_same_content_is_not_registered_twice(any_ctx: Context) -> None:
    first = register_frame(any_ctx, iris.iris_frame())
    again = register_frame(any_ctx, iris.iris_frame(), source="another path")
    assert (again.id, again.version, again.source) == (first.id, 1, "test")
    assert again.dataset.name == "iris"
    assert count_rows(any_ctx) == (1, 1)
    assert any_ctx.store.list("datasets") == [first.key]


def test_new_content_gets_the_next_version_with_its_parents(any_ctx: Context) -> None:
    v1 = register_frame(any_ctx, iris.iris_frame())
    more = pd.concat([iris.iris_frame(), iris.iris_like_samples(30, seed=1)], ignore_index=True)
    v2 = register_frame(any_ctx, more, parents=[v1.id])
    assert (v2.version, v2.row_count, v2.parents) == (2, 180, [v1.id])
    other = register_frame(any_ctx, iris.iris_like_samples(60, seed=2), name="fresh")
    assert other.version == 1  # numbering is per dataset
    with any_ctx.db.session() as session:
        assert data.resolve(session=session, ref="iris").version == 2
        assert data.resolve(session=session, ref="iris:1").id == v1.id
        assert data.resolve(session=session, ref="iris:v2").id == v2.id
        assert data.get_version_by_id_or_raise(session=session, dataset_version_id=v1.id).version == 1
        listed = data.list_datasets(session=session)
        assert [(d.name, [v.version for v in d.versions]) for d in listed] == [
            ("fresh", [1]),
            ("iris", [1, 2]),
        ]
        shown = DatasetRead.model_validate(listed[1]).model_dump(mode="json", by_alias=True)
    assert shown["latest_version"] == 2 and shown["versions"][1]["ref"] == "iris:2"
    assert shown["versions"][1]["schema"]["target"]["name"] == "species"


def test_unknown_parents_are_refused_before_anything_is_written(ctx: Context) -> None:
    with pytest.raises(NotFound, match="parent dataset version id"):
        register_frame(ctx, iris.iris_frame(), parents=[12345])
    assert count_rows(ctx) == (0, 0)
    assert ctx.store.list("datasets") == []


def test_read_returns_the_registered_rows(any_store_ctx: Context) -> None:
    frame = iris.iris_like_samples(500, seed=4)
    dv = register_frame(any_store_ctx, frame)
    back = data.read(store=any_store_ctx.store, dataset_version=dv)
    pd.testing.assert_frame_equal(back, frame)
    assert profiling.content_hash(back, schema=dv.schema) == dv.content_hash


def test_read_detects_a_flipped_byte(any_store_ctx: Context) -> None:
    store = any_store_ctx.store
    dv = register_frame(any_store_ctx, iris.iris_frame())
    raw = bytearray(store.get_bytes(dv.key))
    raw[len(raw) // 2] ^= 0x01
    store.put_bytes(dv.key, bytes(raw))
    with pytest.raises(IntegrityError, match="altered") as info:
        data.read(store=store, dataset_version=dv)
    assert info.value.details["file"] == dv.key


def test_read_detects_a_missing_snapshot(any_store_ctx: Context) -> None:
    dv = register_frame(any_store_ctx, iris.iris_frame())
    any_store_ctx.store.delete(dv.key)
    with pytest.raises(IntegrityError, match="missing"):
        data.read(store=any_store_ctx.store, dataset_version=dv)


def test_nothing_is_registered_from_a_failing_file(any_ctx: Context, write: Write) -> None:
    path = write("bad.csv", csv_text(*GOOD_ROWS, "5.0,abc,1.4,0.2,setosa", "5.0,3.0,,0.2,setosa"))
    schema = validation.infer_schema(iris.iris_frame(), target="species")
    with pytest.raises(DataValidationError) as info:
        data.register(
            db=any_ctx.db,
            store=any_ctx.store,
            name="iris",
            df=files.read_table(path),
            schema=schema,
            source=str(path),
            created_by="tester",
        )
    assert [(f.row, f.column) for f in info.value.failures] == [(5, "sepal_width"), (6, "petal_length")]
    assert count_rows(any_ctx) == (0, 0)
    assert any_ctx.store.list("datasets") == []


@contextmanager
def failing_flushes() -> Iterator[None]:
    """Make every flush with pending rows fail, as a database error would."""

    def boom(session: Session, *_args: Any) -> None:
        raise RuntimeError("injected database failure")

    sa.event.listen(Session, "before_flush", boom)
    try:
        yield
    finally:
        sa.event.remove(Session, "before_flush", boom)


def test_a_failed_insert_leaves_no_snapshot_behind(any_store_ctx: Context) -> None:
    with failing_flushes(), pytest.raises(RuntimeError, match="injected"):
        register_frame(any_store_ctx, iris.iris_frame())
    assert count_rows(any_store_ctx) == (0, 0)
    assert any_store_ctx.store.list("datasets") == []
    dv = register_frame(any_store_ctx, iris.iris_frame())  # and the next attempt works
    assert dv.version == 1 and any_store_ctx.store.list("datasets") == [dv.key]


def test_racing_registrations_get_distinct_versions_and_share_equal_content(any_ctx: Context) -> None:
    frames = [iris.iris_like_samples(40, seed=s) for s in range(5)] + [iris.iris_frame()] * 3
    barrier = threading.Barrier(len(frames))
    results: list[DatasetVersion | BaseException] = [RuntimeError("not run")] * len(frames)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = register_frame(any_ctx, frames[i])
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    versions = [r for r in results if isinstance(r, DatasetVersion)]
    assert sorted({v.version for v in versions}) == [1, 2, 3, 4, 5, 6]
    assert len({v.id for v in versions[5:]}) == 1  # the three identical frames: one version
    assert count_rows(any_ctx) == (1, 6)
    assert sorted(any_ctx.store.list("datasets")) == sorted({v.key for v in versions})


def test_lookups_say_what_is_missing(any_ctx: Context) -> None:
    register_frame(any_ctx, iris.iris_frame())
    register_frame(any_ctx, iris.iris_like_samples(20, seed=3))
    with any_ctx.db.session() as session:
        with pytest.raises(NotFound, match=r"dataset 'iris' has no version 9 \(its versions are 1, 2\)"):
            data.resolve(session=session, ref="iris:9")
        with pytest.raises(NotFound, match="dataset 'nope' does not exist"):
            data.resolve(session=session, ref="nope")
        with pytest.raises(NotFound, match="dataset 'nope' does not exist"):
            data.get_dataset_or_raise(session=session, name="nope")
        with pytest.raises(NotFound, match="dataset version id 999 does not exist"):
            data.get_version_by_id_or_raise(session=session, dataset_version_id=999)
        with pytest.raises(InvalidInput, match="datasets have no aliases"):
            data.resolve(session=session, ref="iris@production")
        with pytest.raises(InvalidInput, match="positive integer"):
            data.resolve(session=session, ref="iris:0")
        with pytest.raises(InvalidInput, match="invalid dataset name"):
            data.resolve(session=session, ref="Not A Name")
        assert data.resolve(session=session, ref="iris:latest").version == 2
        dv = data.get_version_or_raise(session=session, name="iris", version=1)
        assert data.ref_of(dv) == "iris:1"
        assert DatasetVersionRead.of(dv, with_profile=True).profile == dv.profile


def test_register_refuses_a_bad_dataset_name(ctx: Context) -> None:
    with pytest.raises(InvalidInput, match="invalid dataset name 'Iris Data'"):
        register_frame(ctx, iris.iris_frame(), name="Iris Data")


def test_register_from_a_csv_file_end_to_end(ctx: Context, write: Write) -> None:
    path = write("iris.csv", iris.iris_frame().to_csv(index=False))
    raw = files.read_table(path)
    schema = validation.infer_schema(raw, target="species")
    dv = data.register(
        db=ctx.db,
        store=ctx.store,
        name="iris-csv",
        df=validation.validate(raw, schema=schema),
        schema=schema,
        source=str(path),
        created_by="tester",
    )
    assert dv.content_hash == register_frame(ctx, iris.iris_frame(), name="iris-parquet").content_hash
    snapshot = pd.read_parquet(io.BytesIO(ctx.store.get_bytes(dv.key)))
    assert list(snapshot.columns) == [*iris.FEATURES, iris.TARGET] and len(snapshot) == 150
