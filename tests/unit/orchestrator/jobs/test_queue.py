"""The job queue's bookkeeping on a real SQLite job table, without workers: cancelling a
queued job, the event log carrying on across a restart, a run that lost its lease stopping
without a trace, renewals retried, a job never claimed twice by its own replica, hand-backs of
cancelled jobs, the per-key cap, and followers woken by one watcher query instead of polling
each."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.responses import StreamingResponse

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.jobs.queue import JobQueue, _Recorder
from services.orchestrator.jobs.records import JobEnd, JobRecord, Lease, Renewal, StoredEvent
from services.orchestrator.jobs.store import JobStore
from services.orchestrator.jobs.uploads import MediaStore, Upload
from services.orchestrator.transcription.runner import Job, OwnUpload
from shared.errors import RateLimitedError
from shared.schemas import (
    JobRequest,
    JobStatus,
    MicroChunkReport,
    MicroChunkResult,
    StreamFooter,
    StreamHeader,
    TranscribeParams,
    TranscribeRequest,
)
from tests.support.waiting import until


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
    assert row is not None and row.status == "cancelled" and row.finished_at
    assert [(e.seq, e.name) for e in events] == [(0, "cancelled")]
    assert not (tmp_path / "uploads" / upload_id).exists()


async def test_resuming_at_or_after_an_ended_jobs_last_event_ends_at_once(
    store: JobStore, tmp_path: Path
) -> None:
    """A client that reconnects with the id of the footer it already has (or a later one) must
    get the end of the stream, not a connection held open by pings forever."""
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)
    await store.create("job_1", "anonymous", "{}", None, None)
    lease = (await store.claim("me", 30, 1)).leases[0]
    await store.append_events(
        lease, [StoredEvent(0, "header", "{}"), StoredEvent(1, "segment", "{}")]
    )
    await store.finish(lease, JobEnd(JobStatus.SUCCEEDED), event=("footer", "{}"))
    settings = OrchestratorSettings(database_url="sqlite://")
    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, None, media, client, settings)  # type: ignore[arg-type]
        async with asyncio.timeout(5):
            resumed = {
                after: [event.name async for event in queue.events("job_1", after)]
                for after in (0, 1, 2, 99)
            }
    assert resumed == {0: ["segment", "footer"], 1: ["footer"], 2: [], 99: []}


async def test_a_resumed_job_writes_only_what_its_first_run_had_not(store: JobStore) -> None:
    await store.create("job_1", "anonymous", "{}", None, None)
    first_run = (await store.claim("me", 30, 1)).leases[0]
    kept = ["header", "progress", "segment", "segment", "progress"]
    progress = iter([10.0, 20.0])
    await store.append_events(first_run, [
        StoredEvent(i, name, json.dumps({"done_sec": next(progress)} if name == "progress" else {}))
        for i, name in enumerate(kept)
    ])  # fmt: skip
    assert (await store.take_back("me")).queued == ["job_1"]  # killed, restarted
    second_run = (await store.claim("me", 30, 1)).leases[0]
    recorder = _Recorder(store, second_run, lambda: None)
    await recorder.load()
    # The second run replays the header, both segments and progress up to 20 s, then goes on.
    replay = [("header", {}), ("progress", {"done_sec": 10.0}), ("segment", {}),
              ("segment", {}), ("progress", {"done_sec": 20.0}), ("segment", {}),
              ("progress", {"done_sec": 30.0}), ("footer", {})]  # fmt: skip
    for name, data in replay:
        await recorder.add(name, json.dumps(data))
    await store.finish(second_run, JobEnd(JobStatus.SUCCEEDED), event=recorder.last)
    log = await store.events_after("job_1", -1)
    assert [(e.seq, e.name) for e in log] == [
        (0, "header"), (1, "progress"), (2, "segment"), (3, "segment"), (4, "progress"),
        (5, "segment"), (6, "progress"), (7, "footer"),
    ]  # fmt: skip
    row = await store.get("job_1")
    assert row is not None and row.done_sec == 30.0


class EndingRunner:
    """A job that ends at once; after its footer it looks at what a follower would see."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.seen_after_the_footer: tuple[list[str], str] | None = None

    def checked(self, request: TranscribeRequest, duration_sec: float, *, upload: Any) -> Any:
        return request

    async def events(self, job: Any, log: Any) -> AsyncIterator[Any]:
        yield StreamHeader(media_url=job.media_url, input_duration_sec=30, macro_chunks=[])
        yield StreamFooter(input_duration_sec=30, processing_duration_sec=1, speedup=30,
                           num_segments=0, languages=[])  # fmt: skip
        row = await self.store.get("job_1")
        assert row is not None
        names = [e.name for e in await self.store.events_after("job_1", -1)]
        self.seen_after_the_footer = (names, row.status)


async def test_a_follower_never_sees_the_footer_while_the_job_still_reads_running(
    store: JobStore, tmp_path: Path
) -> None:
    """A follower (`whisperfleet watch`) reads the job's status as soon as it sees the last
    event: that event and the job's end are one transaction, never the event first."""
    request = JobRequest(media_url="https://example.com/a.mp3")
    await store.create("job_1", "anonymous", request.model_dump_json(), None, None, 30.0)
    settings = OrchestratorSettings(database_url="sqlite://", instance_id="me")
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)
    runner = EndingRunner(store)
    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, runner, media, client, settings)  # type: ignore[arg-type]
        await queue._claim(1)
        await asyncio.wait_for(queue._running["job_1"], 5)
    assert runner.seen_after_the_footer == (["header"], "running")
    row = await store.get("job_1")
    assert row is not None and row.status == "succeeded"
    assert [e.name for e in await store.events_after("job_1", -1)] == ["header", "footer"]


async def test_a_running_job_whose_task_ends_without_a_word_is_still_cancelled(
    store: JobStore, tmp_path: Path
) -> None:
    """A cancel that lands before the job's task reaches its own handling (its first steps
    read the table) must not leave it `running` until the lease lapses."""
    await store.create("job_1", "anonymous", "{}", None, None)
    lease = (await store.claim("me", 30, 1)).leases[0]
    settings = OrchestratorSettings(database_url="sqlite://", instance_id="me")
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)
    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, None, media, client, settings)  # type: ignore[arg-type]
        queue._running["job_1"] = asyncio.create_task(asyncio.sleep(30))  # records nothing
        queue._leases["job_1"] = lease
        row = await queue.cancel("job_1")
        events = [event.name async for event in queue.events("job_1", -1)]
    assert row is not None and row.status == "cancelled" and row.lease_owner is None
    assert events == ["cancelled"]


async def test_cancelling_another_replicas_job_waits_for_it_to_stop(
    store: JobStore, tmp_path: Path
) -> None:
    await store.create("job_1", "anonymous", "{}", None, None)
    lease = (await store.claim("other", 30, 1)).leases[0]
    settings = OrchestratorSettings(database_url="sqlite://", instance_id="me", job_lease_sec=3)
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)

    async def other_replica_stops_it() -> None:
        for _ in range(100):  # its renewals, until one sees the flag
            if (await store.renew([lease], 30)).cancel:
                break
            await asyncio.sleep(0.05)
        await store.finish(lease, JobEnd(JobStatus.CANCELLED), event=("cancelled", "{}"))

    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, None, media, client, settings)  # type: ignore[arg-type]
        other = asyncio.create_task(other_replica_stops_it())
        row = await queue.cancel("job_1")
        await other
    assert row is not None and row.status == "cancelled"


# ---- a replica that lost its lease ----------------------------------------------------------


class PausedRunner:
    """A job that sends its header, then waits for `go` before keeping a micro chunk."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.go = asyncio.Event()

    def checked(self, request: TranscribeRequest, duration_sec: float, *, upload: Any) -> Any:
        return request

    async def events(self, job: Any, log: Any) -> AsyncIterator[Any]:
        yield StreamHeader(media_url=job.media_url, input_duration_sec=30, macro_chunks=[])
        self.started.set()
        await self.go.wait()
        report = MicroChunkReport(start_sec=0, end_sec=10, num_segments=0)
        await log.record(0, 0, MicroChunkResult(micro_chunk=report, segments=[]))
        raise AssertionError("a write after the lease was lost went through")


async def stalled_queue(
    store: JobStore, tmp_path: Path, client: httpx.AsyncClient
) -> tuple[JobQueue, PausedRunner, Lease]:
    """Replica `me` runs job_1 and stalls past its lease; replica `other` takes the job."""
    request = JobRequest(media_url="https://example.com/a.mp3")
    await store.create("job_1", "anonymous", request.model_dump_json(), None, None, 30.0)
    settings = OrchestratorSettings(database_url="sqlite://", instance_id="me", job_lease_sec=2)
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)
    runner = PausedRunner()
    queue = JobQueue(store, runner, media, client, settings)  # type: ignore[arg-type]
    await queue._claim(1)
    await asyncio.wait_for(runner.started.wait(), 5)
    async with store.engine.begin() as connection:  # the lease lapses while `me` stalls
        await connection.exec_driver_sql("UPDATE jobs SET lease_until = 0")
    other = (await store.claim("other", 30, 1)).leases
    assert [lease.job_id for lease in other] == ["job_1"]
    return queue, runner, other[0]


async def assert_untouched_since_the_takeover(store: JobStore) -> None:
    row = await store.get("job_1")
    assert row is not None
    assert (row.status, row.lease_owner, row.error) == ("running", "other", None)
    assert [e.name for e in await store.events_after("job_1", -1)] == ["header"]
    async with store.engine.connect() as connection:
        assert await connection.scalar(sa.text("SELECT count(*) FROM micro_results")) == 0


async def test_a_run_whose_lease_was_taken_stops_at_its_next_write_without_a_trace(
    store: JobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No micro chunk, no `error` event, no `failed` status over the new owner's run."""
    async with httpx.AsyncClient() as client:
        queue, runner, _ = await stalled_queue(store, tmp_path, client)
        task = queue._running["job_1"]
        with caplog.at_level(logging.WARNING):
            runner.go.set()  # the stalled replica wakes up and writes
            await asyncio.wait_for(task, 5)
    assert "job_1: another replica holds it now" in caplog.text
    assert "job_1" not in queue._running
    await assert_untouched_since_the_takeover(store)


async def test_a_renewal_that_finds_the_lease_taken_stops_the_run_without_a_trace(
    store: JobStore, tmp_path: Path
) -> None:
    """A run waiting on its workers writes nothing for a while: the renewal stops it."""
    async with httpx.AsyncClient() as client:
        queue, _, _ = await stalled_queue(store, tmp_path, client)
        task = queue._running["job_1"]
        await queue._renew()
        await asyncio.wait_for(asyncio.shield(task), 5)
        await queue.stop()  # a hand-back now touches nothing either
    assert not task.cancelled()  # it returned: stopped, not shut down
    await assert_untouched_since_the_takeover(store)


# ---- renewals, and a replica's own jobs ------------------------------------------------------


async def running_queue(
    store: JobStore, tmp_path: Path, client: httpx.AsyncClient, **settings: Any
) -> tuple[JobQueue, PausedRunner, Lease]:
    """Replica `me` runs job_1 (its upload in the media store) and waits in it."""
    request = JobRequest(media_url="https://example.com/a.mp3")
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)
    media.sweep()
    (media.root / ("ab" * 16)).write_bytes(b"media")
    await store.create("job_1", "anonymous", request.model_dump_json(), "ab" * 16, None, 30.0)
    config = OrchestratorSettings(database_url="sqlite://", instance_id="me", **settings)
    runner = PausedRunner()
    queue = JobQueue(store, runner, media, client, config)  # type: ignore[arg-type]
    await queue._claim(1)
    await asyncio.wait_for(runner.started.wait(), 5)
    return queue, runner, queue._leases["job_1"]


async def test_a_failed_renewal_is_retried_at_the_next_round_not_a_third_of_a_lease_later(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database blip failed a renewal: the next one used to wait `job_lease_sec / 3` (10 s
    of a 30 s lease), and one more blip let the lease lapse under a running job."""
    renewals: list[float] = []
    renew = store.renew

    async def flaky(leases: list[Lease], lease_sec: float) -> Renewal:
        renewals.append(time.monotonic())
        if len(renewals) == 1:
            raise OSError("the database is unreachable")
        return await renew(leases, lease_sec)

    async with httpx.AsyncClient() as client:
        queue, _, lease = await running_queue(store, tmp_path, client, job_lease_sec=30)
        async with store.engine.begin() as connection:
            await connection.exec_driver_sql("UPDATE jobs SET lease_until = 0")
        monkeypatch.setattr(store, "renew", flaky)
        loop = asyncio.create_task(queue._claim_loop())

        async def renewed() -> JobRecord | None:
            row = await store.get("job_1")
            until = row.lease_until if row is not None else None
            return row if until is not None and until > time.time() + 20 else None

        for _ in range(100):  # 5 s
            if (row := await renewed()) is not None:
                break
            await asyncio.sleep(0.05)
        loop.cancel()
        await queue.stop()
    # a round (1 s) later, a loaded machine allowing; not a third of the lease (10 s)
    assert len(renewals) >= 2 and renewals[1] - renewals[0] < 5, renewals
    assert row is not None and row.lease_token == lease.token


async def test_a_replica_never_claims_a_job_it_is_running(store: JobStore, tmp_path: Path) -> None:
    """Its lease lapsed while its renewals failed: a claim by the same replica used to take
    the job again, a second task beside the first (`_running` overwritten) and the first's
    lease voided."""
    async with httpx.AsyncClient() as client:
        queue, _, lease = await running_queue(store, tmp_path, client)
        task = queue._running["job_1"]
        async with store.engine.begin() as connection:
            await connection.exec_driver_sql("UPDATE jobs SET lease_until = 0")
        try:
            await queue._claim(1)
            assert queue._running == {"job_1": task} and queue._leases["job_1"] == lease
            row = await store.get("job_1")
            assert row is not None and row.lease_token == lease.token and row.attempts == 1
            await queue._renew()
            assert not task.done()
        finally:
            await queue.stop()


async def test_a_job_handed_back_at_sigterm_with_its_cancel_asked_for_ends_cancelled(
    store: JobStore, tmp_path: Path
) -> None:
    """Its cancel was asked for through another replica, and this one stopped before its
    renewal saw it: the job ends `cancelled` with its event and its upload goes, instead of
    being queued again with the flag set (answered `queued`, then claimed and run until the
    next owner's first renewal)."""
    async with httpx.AsyncClient() as client:
        queue, _, _ = await running_queue(store, tmp_path, client)
        await store.request_cancel("job_1")
        await queue.stop()
        row = await store.get("job_1")
        assert row is not None and row.status == "cancelled" and row.lease_owner is None
        events = [event.name async for event in queue.events("job_1", -1)]
    assert events == ["header", "cancelled"]
    assert not (tmp_path / "uploads" / ("ab" * 16)).exists()


async def test_a_cancel_that_meets_a_hand_back_cancels_the_job_queued_again(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job was running when the cancel looked for a queued one, and queued again (its
    replica's SIGTERM) before the cancel flagged it: the answer used to be `queued`, and the
    job ran."""
    await store.create("job_1", "anonymous", "{}", None, None)
    lease = (await store.claim("other", 30, 1)).leases[0]
    settings = OrchestratorSettings(database_url="sqlite://", instance_id="me")
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)
    request_cancel = store.request_cancel

    async def after_a_hand_back(job_id: str) -> JobRecord | None:
        await store.release([lease])
        return await request_cancel(job_id)

    monkeypatch.setattr(store, "request_cancel", after_a_hand_back)
    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, None, media, client, settings)  # type: ignore[arg-type]
        row = await queue.cancel("job_1")
        assert row is not None and row.status == "cancelled"
        events = [event.name async for event in queue.events("job_1", -1)]
    assert events == ["cancelled"]


# ---- submits ----------------------------------------------------------------------------------


class CheckingRunner:
    """Stands in for the runner's media check at submit: records what it was asked to check;
    every media is 30 s long."""

    def __init__(self) -> None:
        self.checked: list[tuple[TranscribeRequest, OwnUpload | None]] = []

    async def prepare(self, request: TranscribeRequest, *, upload: OwnUpload | None) -> Job:
        self.checked.append((request, upload))
        return Job(request, 30.0, 0.0, upload)


async def test_a_job_is_checked_and_run_as_the_same_transcription(
    store: JobStore, tmp_path: Path
) -> None:
    """One conversion of a job's request: what is checked at submit and what the run
    transcribes are the same `TranscribeRequest` (the job's own `webhook_url` left out); an
    upload is read back from this replica, and named by its file."""
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)
    media.sweep()
    upload = Upload("ab" * 16, media.root / ("ab" * 16), 5, "talk.mp3")
    upload.path.write_bytes(b"media")
    params = TranscribeParams(macro_chunk_size_sec=120)
    request = JobRequest(media_url=media.url(upload), params=params, webhook_url="https://a.b/c")
    settings = OrchestratorSettings(database_url="sqlite://", instance_id="me")
    runner = CheckingRunner()
    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, runner, media, client, settings)  # type: ignore[arg-type]
        info = await queue.submit("anonymous", request, upload)
    row = await store.get(info.id)
    assert row is not None and row.total_sec == 30.0 and row.upload_name == "talk.mp3"
    [(checked, own)] = runner.checked
    assert type(checked) is TranscribeRequest and checked.params == params
    assert checked.media_url == media.url(upload) and own == OwnUpload(upload.id, "talk.mp3")
    run_upload = OwnUpload(row.upload_id or "", row.upload_name)
    assert queue.transcription(row.job_request(), run_upload) == checked


async def test_an_upload_kept_in_the_database_leaves_the_receiving_replicas_disk(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every replica reads it from the database, this one too: a file kept here would stay
    when another replica ran the job (nothing here learns of its end)."""
    monkeypatch.setattr(JobStore, "keeps_uploads", property(lambda _: True))
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0, source=store)
    media.sweep()
    upload = Upload("ab" * 16, media.root / ("ab" * 16), 5, "talk.mp3")
    upload.path.write_bytes(b"media")
    settings = OrchestratorSettings(database_url="sqlite://", instance_id="me")
    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, CheckingRunner(), media, client, settings)  # type: ignore[arg-type]
        info = await queue.submit("anonymous", JobRequest(media_url=media.url(upload)), upload)
    assert info.status == "queued" and not upload.path.exists()
    served = await media.serve(upload.id, "bytes=1-3")
    assert isinstance(served, StreamingResponse) and served.status_code == 206
    assert b"".join([p async for p in served.body_iterator]) == b"edi"  # type: ignore[misc]


async def test_a_submit_past_the_keys_cap_is_a_429(store: JobStore, tmp_path: Path) -> None:
    settings = OrchestratorSettings(database_url="sqlite://", max_queued_jobs_per_key=2)
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)
    request = JobRequest(media_url="https://example.com/a.mp3")
    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, CheckingRunner(), media, client, settings)  # type: ignore[arg-type]
        results = await asyncio.gather(
            *(queue.submit("key", request, None) for _ in range(5)), return_exceptions=True
        )
    refused = [r for r in results if isinstance(r, RateLimitedError)]
    assert len(refused) == 3 and "ORCHESTRATOR_MAX_QUEUED_JOBS_PER_KEY" in refused[0].message
    assert refused[0].retry_after_sec == 30


# ---- followers --------------------------------------------------------------------------------


async def test_many_followers_of_another_replicas_job_cost_one_query_per_interval(
    store: JobStore, tmp_path: Path
) -> None:
    """Eight readers of a job another replica runs: while nothing happens, one query for all of
    them every interval (polling each reader cost two queries per reader every 0.5 s, and the
    watcher's first poll used to wake every new reader for nothing); a new event reaches all of
    them, and the job's last event ends every stream."""
    await store.create("job_1", "anonymous", "{}", None, None)
    other = (await store.claim("other", 30, 1)).leases[0]
    settings = OrchestratorSettings(database_url="sqlite://", instance_id="me")
    media = MediaStore(tmp_path / "uploads", "http://127.0.0.1:1", 1 << 20, 0)
    reads: list[str] = []  # the readers' own queries
    polls: list[str] = []  # the watcher's one query for every followed job

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            (polls if "GROUP BY" in statement.upper() else reads).append(statement)

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    async with httpx.AsyncClient() as client:
        queue = JobQueue(store, None, media, client, settings, watch_interval_sec=0.25)  # type: ignore[arg-type]
        watcher = asyncio.create_task(queue.watcher.run())

        async def follow() -> list[str]:
            return [event.name async for event in queue.events("job_1", -1)]

        readers = [asyncio.create_task(follow()) for _ in range(8)]
        # Each reader reads the empty log and its last event, then waits. Waiting for that
        # (not for a fixed time) keeps a loaded machine from counting the first reads.
        await until(lambda: len(reads) >= 16, "every reader's first two queries")
        assert len(reads) == 16, reads
        reads.clear()
        polls.clear()
        await asyncio.sleep(1.0)
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", count)
        assert reads == [], reads
        assert 1 <= len(polls) <= 5, polls
        await store.append_events(other, [StoredEvent(0, "header", "{}")])
        await store.finish(other, JobEnd(JobStatus.SUCCEEDED, result="{}"), event=("footer", "{}"))
        names = await asyncio.wait_for(asyncio.gather(*readers), 5)
        watcher.cancel()
    assert names == [["header", "footer"]] * 8


def test_two_processes_on_one_host_get_distinct_instance_ids_by_default() -> None:
    """Two orchestrators on one host used to share the hostname as their id and hand each
    other's jobs back at start."""
    first, second = (OrchestratorSettings(database_url="sqlite://") for _ in range(2))
    assert first.instance_id != second.instance_id
    assert first.instance_id.startswith(socket.gethostname() + "-")
    assert OrchestratorSettings(instance_id="orchestrator-0").instance_id == "orchestrator-0"
