"""The migrations make exactly the schema `jobs/tables.py` declares (the tables its queries
use): run on a fresh database, SQLite and PostgreSQL, the tables, their columns (type,
nullability, keys), foreign keys and indexes are compared with the store's `metadata`, by
Alembic's own comparison and by hand. A column added to the store without a migration, or a
migration that drifts from the store, fails here instead of at a replica's first query."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.jobs.records import JobRecord
from services.orchestrator.jobs.store import JobStore
from services.orchestrator.jobs.tables import jobs, metadata
from tests.support.postgres import PostgresServer

Schema = dict[str, dict[str, Any]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    """A fresh database, migrated to the head."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"migrations_{tmp_path.name[-12:].lower()}")
    store = JobStore.connect(OrchestratorSettings(database_url=url).async_database_url)
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _built(connection: Connection) -> Schema:
    """What the database holds, less Alembic's own table."""
    inspector = sa.inspect(connection)
    schema: Schema = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        schema[table] = {
            "columns": {c["name"]: c["nullable"] for c in inspector.get_columns(table)},
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    fk.get("options", {}).get("ondelete", "").upper(),
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (index["name"], tuple(index["column_names"]), bool(index["unique"]))
                for index in inspector.get_indexes(table)
            ),
        }
    return schema


def _declared() -> Schema:
    """The same, from the store's table declarations."""
    schema: Schema = {}
    for name, table in sorted(metadata.tables.items()):
        schema[name] = {
            "columns": {c.name: bool(c.nullable) for c in table.columns},
            "primary_key": [c.name for c in table.primary_key.columns],
            "foreign_keys": sorted(
                (
                    tuple(e.parent.name for e in fk.elements),
                    fk.referred_table.name,
                    (fk.ondelete or "").upper(),
                )
                for fk in table.foreign_key_constraints
            ),
            "indexes": sorted(
                (str(index.name), tuple(c.name for c in index.columns), bool(index.unique))
                for index in table.indexes
            ),
        }
    return schema


async def test_the_migrations_make_exactly_the_tables_the_store_declares(
    migrated: JobStore,
) -> None:
    async with migrated.engine.connect() as connection:
        differences = await connection.run_sync(_differences)
        built = await connection.run_sync(_built)
    assert differences == []
    declared = _declared()
    assert set(built) == set(declared) == {
        "jobs", "job_events", "chunks", "micro_results", "upload_blocks"
    }  # fmt: skip
    for table in declared:
        assert built[table] == declared[table], table


def test_a_job_record_has_a_field_for_every_column_of_the_jobs_table() -> None:
    assert {f.name for f in dataclasses.fields(JobRecord)} == set(jobs.columns.keys())
