"""Alembic environment: migrations run on the connection `JobStore.migrate` hands over.

New revision: `alembic -c services/orchestrator/jobs/migrations/alembic.ini revision -m "..."`
(then write its upgrade by hand; the tables are in services/orchestrator/jobs/tables.py).
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through JobStore.migrate(), which passes a connection")
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
