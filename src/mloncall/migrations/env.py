"""Alembic environment: uses the engine handed over by mloncall, never a URL from an ini file."""

from __future__ import annotations

from alembic import context

from mloncall.migrations.tables import metadata

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
