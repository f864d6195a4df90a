"""The job table on real databases, SQLite and PostgreSQL alike: claims, leases, cancels,
events, the plan as run, retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.job_store import JobStore, StoredEvent
from shared.schemas import MicroChunkReport, MicroChunkResult, TimeSpan
from tests.support.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.url
    job_store = JobStore.connect(OrchestratorSettings(database_url=url).async_database_url)
    await job_store.migrate()
    await job_store.migrate()  # a second start finds the schema current
    try:
        yield job_store
    finally:
        async with job_store.engine.begin() as connection:
            for table in ("micro_results", "chunks", "job_events", "jobs"):
                await connection.exec_driver_sql(f"DELETE FROM {table}")
        await job_store.close()


async def add(store: JobStore, *ids: str) -> None:
    for job_id in ids:
        await store.create(job_id, "owner", "{}", None, None)
        await asyncio.sleep(0.01)  # distinct created_at: claims go oldest first


def micro(start: float) -> MicroChunkResult:
    return MicroChunkResult(micro_chunk=MicroChunkReport(start_sec=start, end_sec=start + 10,
                                                         num_segments=0), segments=[])  # fmt: skip


async def test_two_replicas_claiming_at_once_never_get_the_same_job(store: JobStore) -> None:
    await add(store, "a", "b", "c", "d")
    first, second = await asyncio.gather(store.claim("one", 30, 3), store.claim("two", 30, 3))
    assert not set(first) & set(second)
    later = await store.claim("two", 30, 4)  # a replica that lost a race finds the rest
    assert sorted(first + second + later) == ["a", "b", "c", "d"]


async def test_a_job_whose_claim_lapsed_is_taken_by_another_replica(store: JobStore) -> None:
    await add(store, "a")
    assert await store.claim("dead", 0.2, 1) == ["a"]
    assert await store.claim("alive", 30, 1) == []  # still claimed
    await asyncio.sleep(0.3)
    assert await store.claim("alive", 30, 1) == ["a"]
    row = await store.get("a")
    assert row is not None and row["lease_owner"] == "alive"


async def test_released_jobs_are_queued_again_oldest_first(store: JobStore) -> None:
    await add(store, "a", "b")
    assert await store.claim("one", 30, 2) == ["a", "b"]
    assert await store.release("one") == 2
    assert await store.claim("two", 30, 1) == ["a"]


async def test_cancel_is_immediate_when_queued_and_flagged_when_running(store: JobStore) -> None:
    await add(store, "queued", "running")
    assert await store.cancel_queued("queued")
    row = await store.get("queued")
    assert row is not None and row["status"] == "cancelled"
    assert await store.claim("one", 30, 5) == ["running"]
    assert not await store.cancel_queued("running")
    await store.request_cancel("running")
    assert await store.renew("one", ["running"], 30) == {"running"}


async def test_events_are_numbered_and_read_after_an_id(store: JobStore) -> None:
    await add(store, "a")
    await store.append_events("a", [StoredEvent(i, "segment", f'{{"n": {i}}}') for i in range(5)])
    await store.append_event("a", "cancelled", "{}")
    after = await store.events_after("a", 2)
    assert [e.seq for e in after] == [3, 4, 5] and after[-1].name == "cancelled"


async def test_kept_micro_chunks_come_back_unless_the_span_changed(store: JobStore) -> None:
    await add(store, "a")
    span = TimeSpan(start_sec=0, end_sec=30)
    assert await store.stored_chunk("a", 0, span) == ([], False)
    await store.store_micro("a", 0, 0, micro(0))
    await store.store_micro("a", 0, 1, micro(10))
    assert await store.stored_chunk("a", 0, span) == ([micro(0), micro(10)], False)
    await store.store_micro("a", 0, 2, micro(20))
    await store.finish_chunk("a", 0, 3)
    kept, complete = await store.stored_chunk("a", 0, span)
    assert len(kept) == 3 and complete
    moved = TimeSpan(start_sec=0, end_sec=31)
    assert await store.stored_chunk("a", 0, moved) == ([], False)
    assert await store.stored_chunk("a", 0, moved) == ([], False)


async def test_a_chunk_whose_last_micro_chunk_was_kept_is_complete_without_its_footer(
    store: JobStore,
) -> None:
    """Killed between a chunk's last micro chunk and its footer: the micro chunks tile the
    chunk, so the last one kept says it was complete, and it is not sent to a worker again."""
    await add(store, "a")
    span = TimeSpan(start_sec=0, end_sec=30)
    await store.stored_chunk("a", 0, span)
    for index, start in enumerate((0, 10, 20)):
        await store.store_micro("a", 0, index, micro(start))
    kept, complete = await store.stored_chunk("a", 0, span)
    assert len(kept) == 3 and complete


async def test_retention_deletes_old_finished_jobs_with_everything_they_own(
    store: JobStore,
) -> None:
    await add(store, "old", "new", "running")
    await store.update("old", status="succeeded", finished_at=time.time() - 100)
    await store.update("new", status="failed", finished_at=time.time())
    await store.update("running", status="running")
    await store.append_events("old", [StoredEvent(0, "header", "{}")])
    assert await store.delete_finished_before(time.time() - 50) == [None]
    assert await store.get("old") is None and await store.events_after("old", -1) == []
    assert await store.get("new") is not None and await store.get("running") is not None
