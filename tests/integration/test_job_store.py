"""The job table on real databases, SQLite and PostgreSQL alike: claims, leases and their
fencing, attempts, fairness across keys and the per-key cap, cancels (and hand-backs of
cancelled jobs), events, the plan as run, uploads kept with their jobs and read back by range,
retention."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.jobs.records import CapReached, JobEnd, Lease, LeaseLost, StoredEvent
from services.orchestrator.jobs.store import JobStore
from services.orchestrator.jobs.tables import UPLOAD_BLOCK_BYTES, jobs, upload_blocks
from shared.schemas import JobStatus, MicroChunkReport, MicroChunkResult, TimeSpan
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
            for table in ("micro_results", "chunks", "job_events", "upload_blocks", "jobs"):
                await connection.exec_driver_sql(f"DELETE FROM {table}")
        await job_store.close()


async def add(store: JobStore, *ids: str, owner: str = "owner") -> None:
    for job_id in ids:
        await store.create(job_id, owner, "{}", None, None)
        await asyncio.sleep(0.01)  # distinct created_at: claims go oldest first


async def claim_one(store: JobStore, instance: str, lease_sec: float = 30) -> Lease:
    claims = await store.claim(instance, lease_sec, 1)
    assert len(claims.leases) == 1, claims
    return claims.leases[0]


async def set_row(store: JobStore, job_id: str, **values: object) -> None:
    """Put a job's row in the state a past run left it in (the store writes only through
    leases and typed ends)."""
    async with store.engine.begin() as connection:
        await connection.execute(jobs.update().where(jobs.c.id == job_id).values(**values))


async def lapse(store: JobStore, job_id: str) -> None:
    """Let a job's lease run out, as it does when its replica dies (no sleep: a loaded machine
    stretched a 0.2 s lease past the next statement)."""
    await set_row(store, job_id, lease_until=0)


def ids(leases: list[Lease]) -> list[str]:
    return [lease.job_id for lease in leases]


def micro(start: float) -> MicroChunkResult:
    return MicroChunkResult(micro_chunk=MicroChunkReport(start_sec=start, end_sec=start + 10,
                                                         num_segments=0), segments=[])  # fmt: skip


async def test_two_replicas_claiming_at_once_never_get_the_same_job(store: JobStore) -> None:
    await add(store, "a", "b", "c", "d")
    first, second = await asyncio.gather(store.claim("one", 30, 3), store.claim("two", 30, 3))
    assert not set(ids(first.leases)) & set(ids(second.leases))
    later = await store.claim("two", 30, 4)  # a replica that lost a race finds the rest
    claimed = ids(first.leases) + ids(second.leases) + ids(later.leases)
    assert sorted(claimed) == ["a", "b", "c", "d"]


async def test_a_job_whose_claim_lapsed_is_taken_by_another_replica(store: JobStore) -> None:
    await add(store, "a")
    started = time.time()
    await claim_one(store, "dead")
    dead = await store.get("a")
    assert dead is not None and dead.lease_until is not None
    assert started + 30 <= dead.lease_until <= time.time() + 30
    assert (await store.claim("alive", 30, 1)).leases == []  # still claimed
    await lapse(store, "a")
    taken = await claim_one(store, "alive")
    row = await store.get("a")
    assert row is not None and row.lease_owner == "alive"
    assert row.lease_token == taken.token


async def test_released_jobs_are_queued_again_oldest_first(store: JobStore) -> None:
    await add(store, "a", "b")
    claims = await store.claim("one", 30, 2)
    assert ids(claims.leases) == ["a", "b"]
    assert (await store.release(claims.leases)).queued == ["a", "b"]
    assert ids((await store.claim("two", 30, 1)).leases) == ["a"]


async def test_cancel_is_immediate_when_queued_and_flagged_when_running(store: JobStore) -> None:
    await add(store, "queued", "running")
    assert await store.cancel_queued("queued")
    row = await store.get("queued")
    assert row is not None and row.status == "cancelled"
    lease = await claim_one(store, "one")
    assert lease.job_id == "running"
    assert not await store.cancel_queued("running")
    await store.request_cancel("running")
    renewal = await store.renew([lease], 30)
    assert renewal.cancel == {"running"} and renewal.lost == set()


async def assert_cancelled_once(store: JobStore, job_id: str, events: list[str]) -> None:
    row = await store.get(job_id)
    assert row is not None
    assert (row.status, row.lease_owner, row.lease_token) == ("cancelled", None, None)
    assert row.finished_at is not None
    log = await store.events_after(job_id, -1)
    assert [(e.seq, e.name) for e in log] == list(enumerate(events))


@pytest.mark.parametrize("hand_back", ["release", "take_back"])
async def test_a_job_handed_back_with_its_cancel_asked_for_ends_cancelled_not_queued(
    store: JobStore, tmp_path: Path, hand_back: str
) -> None:
    """A cancel asked for while its replica stops (SIGTERM: release; or killed and restarted:
    take_back) ends the job there, with its `cancelled` event and without its upload; it used
    to be queued again with the flag set, answered `queued`, then claimed and run until its
    first renewal. The other job handed back with it is queued as before."""
    (tmp_path / "upload").write_bytes(b"media")
    await store.create("a", "o", "{}", "ab" * 16, None, upload_path=tmp_path / "upload")
    await add(store, "b")
    claims = await store.claim("me", 30, 2)
    await store.append_events(claims.leases[0], [StoredEvent(0, "header", "{}")])
    await store.request_cancel("a")
    if hand_back == "release":
        handed = await store.release(claims.leases)
    else:
        handed = await store.take_back("me")
    assert (handed.cancelled, handed.queued) == (["a"], ["b"])
    await assert_cancelled_once(store, "a", ["header", "cancelled"])
    assert await store.upload_size("ab" * 16) is None
    assert await store.active_jobs("o") == 0
    assert ids((await store.claim("other", 30, 5)).leases) == ["b"]


async def test_a_lapsed_job_with_its_cancel_asked_for_is_cancelled_not_claimed(
    store: JobStore,
) -> None:
    """Its replica died after the cancel was asked for: the next claim ends it."""
    await add(store, "a", "b")
    dead = await claim_one(store, "dead")
    await store.request_cancel(dead.job_id)
    await lapse(store, "a")
    claims = await store.claim("alive", 30, 2)
    assert claims.cancelled == ["a"] and ids(claims.leases) == ["b"]
    await assert_cancelled_once(store, "a", ["cancelled"])


async def test_a_replica_never_claims_a_job_it_runs_itself(store: JobStore) -> None:
    """Its renewals failed (a database blip) until its lease lapsed: the job is still its
    own run's, which a second claim would void (two tasks for one job); another replica may
    take it over."""
    await add(store, "a", "b")
    mine = await claim_one(store, "me")
    await lapse(store, "a")
    assert ids((await store.claim("me", 30, 2, exclude=[mine.job_id])).leases) == ["b"]
    assert (await store.renew([mine], 30)).lost == set()  # the next renewal keeps it
    await store.append_events(mine, [StoredEvent(0, "header", "{}")])


# ---- fencing: a replica that lost its lease writes nothing more -----------------------------


async def test_a_stalled_owner_can_write_nothing_once_another_replica_took_the_job(
    store: JobStore,
) -> None:
    """The stalled replica's every write is refused (LeaseLost) and leaves no trace: its events,
    progress, micro chunks, chunk marks, hand-back and final status; its renewal says lost."""
    await add(store, "a")
    stalled = await claim_one(store, "stalled")
    await store.append_events(stalled, [StoredEvent(0, "header", "{}")])
    await lapse(store, "a")
    owner = await claim_one(store, "owner")
    span = TimeSpan(start_sec=0, end_sec=30)
    writes = [
        store.append_events(stalled, [StoredEvent(1, "segment", "{}")], done_sec=99.0),
        store.set_total(stalled, 1.0),
        store.stored_chunk(stalled, 0, span),
        store.store_micro(stalled, 0, 0, micro(0)),
        store.finish_chunk(stalled, 0, 1),
        store.finish(stalled, JobEnd(JobStatus.SUCCEEDED, result="{}"), event=("footer", "{}")),
    ]
    for write in writes:
        with pytest.raises(LeaseLost):
            await write
    assert (await store.release([stalled])).queued == []
    assert (await store.renew([stalled], 30)).lost == {"a"}
    assert (await store.renew([owner], 30)).lost == set()
    row = await store.get("a")
    assert row is not None
    assert (row.status, row.lease_owner, row.done_sec) == ("running", "owner", 0.0)
    assert row.total_sec is None and row.result is None
    assert [e.name for e in await store.events_after("a", -1)] == ["header"]
    # The new owner's writes go on; its chunk is its own.
    assert await store.stored_chunk(owner, 0, span) == ([], False)
    await store.append_events(owner, [StoredEvent(1, "segment", "{}")])


async def test_a_failed_job_is_never_overwritten_by_its_stalled_former_owner(
    store: JobStore,
) -> None:
    await add(store, "a")
    stalled = await claim_one(store, "stalled")
    await lapse(store, "a")
    owner = await claim_one(store, "owner")
    await store.finish(owner, JobEnd(JobStatus.FAILED, error='{"message": "x"}'), ("error", "{}"))
    with pytest.raises(LeaseLost):
        await store.finish(
            stalled, JobEnd(JobStatus.SUCCEEDED, result="{}"), event=("footer", "{}")
        )
    row = await store.get("a")
    assert row is not None and row.status == "failed" and row.result is None
    assert [e.name for e in await store.events_after("a", -1)] == ["error"]


async def test_two_processes_with_one_instance_id_cannot_both_run_a_job(store: JobStore) -> None:
    """The second takes back 'its' jobs at start and claims them again: the first one's lease
    is void from then on."""
    await add(store, "a")
    first = await claim_one(store, "same")
    assert (await store.take_back("same")).queued == ["a"]
    second = await claim_one(store, "same")
    assert second.token != first.token
    with pytest.raises(LeaseLost):
        await store.append_events(first, [StoredEvent(0, "header", "{}")])
    await store.append_events(second, [StoredEvent(0, "header", "{}")])


async def test_a_replica_stopped_in_the_middle_of_a_write_blocks_no_other_claim(
    store: JobStore,
) -> None:
    """PostgreSQL: a transaction left open on a job's row (its replica got SIGSTOP between two
    statements) is skipped by the claims of others instead of making them wait for it."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time by design")
    await add(store, "a", "b")
    async with store.engine.connect() as stalled:
        transaction = await stalled.begin()
        await stalled.execute(sa.text("UPDATE jobs SET updated_at = 0 WHERE id = 'a'"))
        claims = await asyncio.wait_for(store.claim("other", 30, 2), 5)
        assert ids(claims.leases) == ["b"]
        await transaction.rollback()
    assert ids((await store.claim("other", 30, 1)).leases) == ["a"]


async def test_a_transaction_a_stalled_replica_left_open_is_ended_by_the_server(
    postgres: PostgresServer,
) -> None:
    """Skipping a held row is only half: the stalled holder's transaction must end, or its
    job could never be claimed again. The server ends it after `idle_transaction_sec`."""
    url = OrchestratorSettings(database_url=postgres.url).async_database_url
    stalled_store = JobStore.connect(url, idle_transaction_sec=0.5)
    other = JobStore.connect(url)
    try:
        await other.migrate()
        await add(other, "held")
        async with stalled_store.engine.connect() as stalled:
            await stalled.begin()
            await stalled.execute(sa.text("UPDATE jobs SET updated_at = 0 WHERE id = 'held'"))
            assert (await other.claim("other", 30, 1)).leases == []  # held: skipped
            claimed: list[str] = []
            for _ in range(100):  # the server ends it after 0.5 s idle; 10 s at most
                await asyncio.sleep(0.1)
                if claimed := ids((await other.claim("other", 30, 1)).leases):
                    break
            assert claimed == ["held"]
            with pytest.raises(sa.exc.DBAPIError):  # its transaction was ended under it
                await stalled.execute(sa.text("SELECT 1"))
    finally:
        async with other.engine.begin() as connection:
            await connection.exec_driver_sql("DELETE FROM jobs")
        await stalled_store.close()
        await other.close()


# ---- attempts -------------------------------------------------------------------------------


async def test_a_job_that_keeps_stopping_its_orchestrator_fails_and_is_never_claimed_again(
    store: JobStore,
) -> None:
    """Crashed twice (a lapsed lease, a take-back at restart): with two attempts allowed, the
    third claim fails it instead, with an error event that ends its log."""
    await add(store, "bomb", "fine")
    first = await store.claim("one", 30, 1, max_attempts=2)
    assert ids(first.leases) == ["bomb"]
    await store.append_events(first.leases[0], [StoredEvent(0, "header", "{}")])
    await lapse(store, "bomb")  # the replica died
    assert ids((await store.claim("two", 30, 1, max_attempts=2)).leases) == ["bomb"]
    assert (await store.take_back("two")).queued == ["bomb"]  # restarted after a crash
    claims = await store.claim("three", 30, 2, max_attempts=2)
    assert claims.exhausted == ["bomb"] and ids(claims.leases) == ["fine"]
    row = await store.get("bomb")
    assert row is not None and row.status == "failed" and row.lease_owner is None
    assert row.error is not None
    message = json.loads(row.error)["message"]
    assert "stopped its orchestrator 2 times" in message
    assert "ORCHESTRATOR_JOB_MAX_ATTEMPTS" in message
    log = await store.events_after("bomb", -1)
    assert [(e.seq, e.name) for e in log] == [(0, "header"), (1, "error")]
    assert json.loads(log[-1].data)["error"]["message"] == message
    await asyncio.sleep(0.05)
    assert (await store.claim("four", 30, 5, max_attempts=2)).leases == []


async def test_a_graceful_hand_back_is_not_an_attempt(store: JobStore) -> None:
    await add(store, "a")
    for _ in range(3):
        claims = await store.claim("one", 30, 1, max_attempts=1)
        assert ids(claims.leases) == ["a"] and not claims.exhausted
        assert (await store.release(claims.leases)).queued == ["a"]
    row = await store.get("a")
    assert row is not None and row.attempts == 0 and row.status == "queued"


# ---- fairness and the per-key count ---------------------------------------------------------


async def test_claims_go_first_to_the_key_with_the_fewest_running_jobs(store: JobStore) -> None:
    await add(store, "a1", "a2", "a3", "a4", owner="a")
    await add(store, "b1", owner="b")
    await add(store, "a5", owner="a")
    await add(store, "c1", owner="c")
    # Nobody runs anything: a's oldest, then b's and c's (a now runs one), then a's next.
    assert ids((await store.claim("one", 30, 4)).leases) == ["a1", "b1", "c1", "a2"]
    await add(store, "b2", owner="b")
    # a runs 2, b and c 1 each: b's next (c has nothing queued), before a's older jobs.
    assert ids((await store.claim("two", 30, 2)).leases) == ["b2", "a3"]


async def test_queued_and_running_jobs_are_counted_per_key(store: JobStore) -> None:
    await add(store, "a1", "a2", "a3", owner="a")
    await add(store, "b1", owner="b")
    await claim_one(store, "one")
    assert await store.cancel_queued("a3")
    assert (await store.active_jobs("a"), await store.active_jobs("b")) == (2, 1)
    assert await store.active_jobs("nobody") == 0


async def test_a_burst_of_submits_at_the_cap_lets_exactly_one_through(store: JobStore) -> None:
    """Counted and inserted in one transaction under the key's lock: eight submits at once
    with room for one used to count 2 < 3 each and all get in."""
    await add(store, "a1", "a2", owner="a")
    await add(store, "b1", "b2", owner="b")

    async def submit(job_id: str, owner: str) -> bool:
        try:
            await store.create(job_id, owner, "{}", None, None, cap=3)
        except CapReached as exc:
            assert exc.active == 3
            return False
        return True

    burst = [submit(f"a-burst-{n}", "a") for n in range(8)]
    other = [submit(f"b-burst-{n}", "b") for n in range(8)]
    results = await asyncio.gather(*burst, *other)
    assert (sum(results[:8]), sum(results[8:])) == (1, 1)
    assert (await store.active_jobs("a"), await store.active_jobs("b")) == (3, 3)
    assert await submit("c1", "c")  # another key has its own room


# ---- events ---------------------------------------------------------------------------------


async def test_events_are_numbered_and_read_after_an_id(store: JobStore) -> None:
    await add(store, "a")
    lease = await claim_one(store, "one")
    await store.append_events(lease, [StoredEvent(i, "segment", f'{{"n": {i}}}') for i in range(5)])
    await store.finish(lease, JobEnd(JobStatus.CANCELLED), event=("cancelled", "{}"))
    after = await store.events_after("a", 2)
    assert [e.seq for e in after] == [3, 4, 5] and after[-1].name == "cancelled"
    await store.append_event("a", "cancelled", "{}")  # a job's log ends once
    assert len(await store.events_after("a", -1)) == 6


async def test_the_last_event_ids_of_many_jobs_come_in_one_query(store: JobStore) -> None:
    await add(store, "a", "b")
    lease = await claim_one(store, "one")
    await store.append_events(lease, [StoredEvent(i, "segment", "{}") for i in range(3)])
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        seqs = await store.last_event_seqs(["a", "b", "deleted"])
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", count)
    assert seqs == {"a": 2, "b": -1}
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


# ---- the plan as run ------------------------------------------------------------------------


async def test_kept_micro_chunks_come_back_unless_the_span_changed(store: JobStore) -> None:
    await add(store, "a")
    lease = await claim_one(store, "one")
    span = TimeSpan(start_sec=0, end_sec=30)
    assert await store.stored_chunk(lease, 0, span) == ([], False)
    await store.store_micro(lease, 0, 0, micro(0))
    await store.store_micro(lease, 0, 1, micro(10))
    assert await store.stored_chunk(lease, 0, span) == ([micro(0), micro(10)], False)
    await store.store_micro(lease, 0, 2, micro(20))
    await store.finish_chunk(lease, 0, 3)
    kept, complete = await store.stored_chunk(lease, 0, span)
    assert len(kept) == 3 and complete
    moved = TimeSpan(start_sec=0, end_sec=31)
    assert await store.stored_chunk(lease, 0, moved) == ([], False)
    assert await store.stored_chunk(lease, 0, moved) == ([], False)


async def test_a_chunk_whose_last_micro_chunk_was_kept_is_complete_without_its_footer(
    store: JobStore,
) -> None:
    """Killed between a chunk's last micro chunk and its footer: the micro chunks tile the
    chunk, so the last one kept says it was complete, and it is not sent to a worker again."""
    await add(store, "a")
    lease = await claim_one(store, "one")
    span = TimeSpan(start_sec=0, end_sec=30)
    await store.stored_chunk(lease, 0, span)
    for index, start in enumerate((0, 10, 20)):
        await store.store_micro(lease, 0, index, micro(start))
    kept, complete = await store.stored_chunk(lease, 0, span)
    assert len(kept) == 3 and complete


# ---- uploads kept with their jobs -----------------------------------------------------------


async def blocks(store: JobStore) -> int:
    async with store.engine.connect() as connection:
        count = await connection.scalar(sa.select(sa.func.count()).select_from(upload_blocks))
    return int(count or 0)


async def test_an_async_jobs_upload_is_kept_in_postgresql_until_the_job_ends(
    store: JobStore, tmp_path: Path
) -> None:
    """PostgreSQL: the bytes go in with the job (any replica reads them back) and go with its
    end; SQLite (one replica) keeps only the media store's file."""
    media = (tmp_path / "upload").open("wb")
    media.write(bytes(range(256)) * (UPLOAD_BLOCK_BYTES // 256 * 2 + 3))  # 2 blocks and a bit
    media.close()
    upload_id = "ab" * 16
    await store.create("a", "owner", "{}", upload_id, None, upload_path=tmp_path / "upload")
    if not store.keeps_uploads:
        assert await store.upload_size(upload_id) is None and await blocks(store) == 0
        return
    assert await store.upload_size(upload_id) == (tmp_path / "upload").stat().st_size
    assert await blocks(store) == 3
    assert await store.sweep_upload_blocks(time.time() + 1) == 0  # its job has not ended
    lease = await claim_one(store, "one")
    await store.finish(lease, JobEnd(JobStatus.SUCCEEDED, result="{}"))
    assert await blocks(store) == 0 and await store.upload_size(upload_id) is None
    # What a crash left behind (blocks whose job ended without removing them) is swept.
    async with store.engine.begin() as connection:
        await connection.execute(upload_blocks.insert().values(upload_id="cd" * 16, block=0,
                                                               data=b"x"))  # fmt: skip
    assert await store.sweep_upload_blocks(time.time()) == 1


async def read(store: JobStore, upload_id: str, start: int, end: int) -> bytes:
    return b"".join([piece async for piece in store.read_upload(upload_id, start, end)])


async def test_a_range_of_a_kept_upload_is_read_from_the_blocks_that_hold_it(
    store: JobStore, tmp_path: Path
) -> None:
    """Byte for byte the file's, for ranges within a block, across boundaries, in the last
    partial block, and the whole; each block cut in the database, and only the blocks that
    hold the range read."""
    block = UPLOAD_BLOCK_BYTES
    size = 5 * block + 777  # more blocks than one query reads
    media = os.urandom(size)
    (tmp_path / "upload").write_bytes(media)
    upload_id = "ab" * 16
    await store.keep_upload(upload_id, tmp_path / "upload")
    assert await store.upload_size(upload_id) == size
    spans = [
        (0, 1), (0, block), (block - 3, block + 3), (block, 2 * block), (7, size - 7),
        (5 * block, size), (size - 1, size), (2 * block + 5, 2 * block + 6), (0, size),
    ]  # fmt: skip
    for start, end in spans:
        assert await read(store, upload_id, start, end) == media[start:end], (start, end)
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        pieces = [piece async for piece in store.read_upload(upload_id, block - 3, block + 3)]
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", count)
    assert [len(piece) for piece in pieces] == [3, 3]  # two blocks, cut to the range
    assert len([s for s in statements if "upload_blocks" in s]) == 1
    assert await read(store, "cd" * 16, 0, 10) == b""  # kept nowhere
    assert await store.upload_size("cd" * 16) is None


async def test_a_synchronous_jobs_upload_is_kept_until_dropped_and_ages_out_if_left(
    store: JobStore, tmp_path: Path
) -> None:
    """A synchronous request's upload has no job row: the sweep leaves it alone while young
    (the request may still run) and takes it once older than the cutoff (a crash left it)."""
    if not store.keeps_uploads:
        pytest.skip("SQLite keeps no upload blocks")
    (tmp_path / "upload").write_bytes(b"media" * 1000)
    await store.keep_upload("ab" * 16, tmp_path / "upload")
    await store.keep_upload("cd" * 16, tmp_path / "upload")
    assert await read(store, "ab" * 16, 0, 5000) == (tmp_path / "upload").read_bytes()
    assert await store.sweep_upload_blocks(time.time() - 3600) == 0
    await store.drop_upload("ab" * 16)
    assert await store.upload_size("ab" * 16) is None
    assert await store.upload_size("cd" * 16) == 5000
    assert await store.sweep_upload_blocks(time.time() + 1) == 1
    assert await blocks(store) == 0


async def test_a_cancelled_or_exhausted_jobs_upload_blocks_go_too(
    store: JobStore, tmp_path: Path
) -> None:
    if not store.keeps_uploads:
        pytest.skip("SQLite keeps no upload blocks")
    (tmp_path / "upload").write_bytes(b"media")
    await store.create("a", "o", "{}", "ab" * 16, None, upload_path=tmp_path / "upload")
    await store.create("b", "o", "{}", "cd" * 16, None, upload_path=tmp_path / "upload")
    assert await blocks(store) == 2
    assert await store.cancel_queued("a")
    assert await blocks(store) == 1
    await store.claim("one", 30, 1, max_attempts=1)
    await lapse(store, "b")
    assert (await store.claim("two", 30, 1, max_attempts=1)).exhausted == ["b"]
    assert await blocks(store) == 0


# ---- retention ------------------------------------------------------------------------------


async def test_retention_deletes_old_finished_jobs_with_everything_they_own(
    store: JobStore,
) -> None:
    await add(store, "old", "new", "running")
    await set_row(store, "old", status="succeeded", finished_at=time.time() - 100)
    await set_row(store, "new", status="failed", finished_at=time.time())
    await set_row(store, "running", status="running")
    await store.append_event("old", "header", "{}")
    assert await store.delete_finished_before(time.time() - 50) == [None]
    assert await store.get("old") is None and await store.events_after("old", -1) == []
    assert await store.get("new") is not None and await store.get("running") is not None
