"""Alembic migrations, run by `Database.migrate()` (from `mloncall init` and at server start).

This package sits outside the floors: Alembic loads `env.py` by path, and `tables` imports every domain's
tables so that autogenerate and the schema test see the whole metadata. No floor imports it.
"""
