from __future__ import annotations

import pytest
import sqlalchemy as sa

from mloncall.core.errors import IntegrityError, InvalidInput, NotFound
from mloncall.stores.context import Context


def test_migrations_create_every_table(any_ctx: Context) -> None:
    tables = set(sa.inspect(any_ctx.db.engine).get_table_names())
    assert {
        "models",
        "model_versions",
        "model_version_files",
        "model_aliases",
        "datasets",
        "audit_log",
    } <= tables
    any_ctx.db.migrate()  # idempotent


def test_store_roundtrip_and_verified_read(any_store_ctx: Context) -> None:
    store = any_store_ctx.store
    f = store.put_bytes("a/b/file.bin", b"hello")
    assert store.get_bytes("a/b/file.bin") == b"hello"
    assert store.read_verified("a/b/file.bin", f.sha256) == b"hello"
    assert store.list("a") == ["a/b/file.bin"]
    store.put_bytes("a/b/file.bin", b"hellO")
    with pytest.raises(IntegrityError, match="altered"):
        store.read_verified("a/b/file.bin", f.sha256)
    store.delete("a/b/file.bin")
    with pytest.raises(IntegrityError, match="missing"):
        store.read_verified("a/b/file.bin", f.sha256)
    with pytest.raises(NotFound):
        store.get_bytes("a/b/file.bin")


def test_store_rejects_escaping_keys(ctx: Context) -> None:
    for key in ["../x", "/abs", "a//b", "a/../../b", ""]:
        with pytest.raises(InvalidInput):
            ctx.store.put_bytes(key, b"x")


def test_migrations_match_the_models(any_ctx: Context) -> None:
    """Every table change has its Alembic migration: autogenerate finds nothing left to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from mloncall.migrations.tables import metadata

    with any_ctx.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
