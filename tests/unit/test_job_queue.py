"""The job queue's bookkeeping on a real SQLite job table, without workers: cancelling a
queued job, and the event log carrying on across a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.job_queue import JobQueue, _Recorder
from services.orchestrator.job_store import JobStore, StoredEvent
from services.orchestrator.uploads import MediaStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    job_store = JobStore.connect(f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}")
    await job_store.migrate()
    try:
        yield job_store
    finally:
        await job_store.close()


async def test_cancelling_a_queued_job_ends_its_events_and_removes_its_upload(
    store: JobStore, tmp_path: Path
) -> None:
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)
    media.sweep()
    upload_id = "ab" * 16
    (tmp_path / "uploads" / upload_id).write_bytes(b"media")
    await store.create("job_1", "anonymous", "{}", upload_id, None)
    settings = OrchestratorSettings(database_url="sqlite://")
    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, None, media, client, settings)  # type: ignore[arg-type]
        row = await queue.cancel("job_1")
        events = [event async for event in queue.events("job_1", -1)]
    assert row is not None and row["status"] == "cancelled" and row["finished_at"]
    assert [(e.seq, e.name) for e in events] == [(0, "cancelled")]
    assert not (tmp_path / "uploads" / upload_id).exists()


async def test_a_resumed_job_writes_only_what_its_first_run_had_not(store: JobStore) -> None:
    await store.create("job_1", "anonymous", "{}", None, None)
    kept = ["header", "progress", "segment", "segment", "progress"]
    progress = iter([10.0, 20.0])
    await store.append_events("job_1", [
        StoredEvent(i, name, json.dumps({"done_sec": next(progress)} if name == "progress" else {}))
        for i, name in enumerate(kept)
    ])  # fmt: skip
    recorder = _Recorder(store, "job_1", asyncio.Event())
    await recorder.load()
    # The second run replays the header, both segments and progress up to 20 s, then goes on.
    replay = [("header", {}), ("progress", {"done_sec": 10.0}), ("segment", {}),
              ("segment", {}), ("progress", {"done_sec": 20.0}), ("segment", {}),
              ("progress", {"done_sec": 30.0}), ("footer", {})]  # fmt: skip
    for name, data in replay:
        await recorder.add(name, json.dumps(data))
    log = await store.events_after("job_1", -1)
    assert [(e.seq, e.name) for e in log] == [
        (0, "header"), (1, "progress"), (2, "segment"), (3, "segment"), (4, "progress"),
        (5, "segment"), (6, "progress"), (7, "footer"),
    ]  # fmt: skip
    row = await store.get("job_1")
    assert row is not None and row["done_sec"] == 30.0


async def test_a_running_job_whose_task_ends_without_a_word_is_still_cancelled(
    store: JobStore, tmp_path: Path
) -> None:
    """A cancel that lands before the job's task reaches its own handling (its first steps
    read the table) must not leave it `running` until the lease lapses."""
    await store.create("job_1", "anonymous", "{}", None, None)
    assert await store.claim("me", 30, 1) == ["job_1"]
    settings = OrchestratorSettings(database_url="sqlite://", instance_id="me")
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)
    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, None, media, client, settings)  # type: ignore[arg-type]
        queue._running["job_1"] = asyncio.create_task(asyncio.sleep(30))  # records nothing
        row = await queue.cancel("job_1")
        events = [event.name async for event in queue.events("job_1", -1)]
    assert row is not None and row["status"] == "cancelled" and row["lease_owner"] is None
    assert events == ["cancelled"]


async def test_cancelling_another_replicas_job_waits_for_it_to_stop(
    store: JobStore, tmp_path: Path
) -> None:
    await store.create("job_1", "anonymous", "{}", None, None)
    assert await store.claim("other", 30, 1) == ["job_1"]
    settings = OrchestratorSettings(database_url="sqlite://", instance_id="me", job_lease_sec=3)
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)

    async def other_replica_stops_it() -> None:
        for _ in range(100):  # its renewals, until one sees the flag
            if await store.renew("other", ["job_1"], 30):
                break
            await asyncio.sleep(0.05)
        await store.update("job_1", status="cancelled", lease_owner=None)

    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, None, media, client, settings)  # type: ignore[arg-type]
        other = asyncio.create_task(other_replica_stops_it())
        row = await queue.cancel("job_1")
        await other
    assert row is not None and row["status"] == "cancelled"
