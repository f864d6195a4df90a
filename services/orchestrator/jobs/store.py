"""The job table: async jobs, their events and finished micro chunks, in SQLite or PostgreSQL
(the tables: tables.py; what is handed out: records.py).

SQLAlchemy Core (async: aiosqlite, asyncpg); the schema is made by Alembic migrations
(`migrations/`), run at start. Every write is one short transaction, and a claim is a
conditional UPDATE, so several replicas can share one PostgreSQL database without locks; the
one exception is a key's cap of active jobs, counted and inserted under a lock per key (`create`).

Fencing: each claim draws a random `lease_token`, and every write of a running job (events,
progress, micro chunks, finished chunks, the final status, a hand-back) first updates the job's
row on the condition that it still carries that token, in the same transaction; when it does
not, the transaction is rolled back and `LeaseLost` raised. A replica that stalled past its
lease while another took the job over therefore stops at its next write without touching the
job: no duplicate event, no status written over its new owner's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
import zlib
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Collection, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.orchestrator.jobs.records import (
    FINISHED,
    TERMINAL_EVENTS,
    CapReached,
    Claims,
    HandBack,
    JobEnd,
    JobRecord,
    Lease,
    LeaseLost,
    Renewal,
    StoredEvent,
    cancelled_event,
    exhausted_error,
)
from services.orchestrator.jobs.sqlite import sqlite_path, sqlite_pragmas
from services.orchestrator.jobs.tables import (
    UPLOAD_BLOCK_BYTES,
    chunks,
    job_events,
    jobs,
    micro_results,
    upload_blocks,
)
from shared.schemas import (
    JobStatus,
    MicroChunkResult,
    TimeSpan,
    WebhookOutcome,
)

MIGRATIONS = Path(__file__).parent / "migrations"
_BLOCKS_PER_READ = 4
_CAP_LOCKS = 7402320
"""The advisory lock namespace of the per-key caps (the migrations' lock is a one-key lock,
another key space)."""


def _migrate(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _held(lease: Lease) -> sa.ColumnElement[bool]:
    return sa.and_(
        jobs.c.id == lease.job_id,
        jobs.c.lease_token == lease.token,
        jobs.c.status == JobStatus.RUNNING.value,
    )


def _unlocked(job_id: str) -> sa.ColumnElement[bool]:
    """The job, unless another transaction holds its row (PostgreSQL: SKIP LOCKED): a replica
    stopped in the middle of a write must not block the others' claims."""
    free = sa.select(jobs.c.id).where(jobs.c.id == job_id).with_for_update(skip_locked=True)
    return jobs.c.id.in_(free.scalar_subquery())


def _upload_of(job_ids: sa.ColumnElement[bool]) -> sa.Delete:
    """Delete the upload blocks of the jobs that `job_ids` selects."""
    return upload_blocks.delete().where(
        upload_blocks.c.upload_id.in_(sa.select(jobs.c.upload_id).where(job_ids))
    )


def _active(owner: str) -> sa.Select[Any]:
    return sa.select(sa.func.count()).where(
        jobs.c.owner == owner,
        jobs.c.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
    )


class JobStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._creating = asyncio.Lock()
        """SQLite's per-key cap: one orchestrator per file, so one lock in it is enough."""

    @classmethod
    def connect(cls, url: str, idle_transaction_sec: float | None = None) -> JobStore:
        """`idle_transaction_sec` (PostgreSQL): the server ends a transaction of ours left idle
        this long (its replica stalled mid-write, e.g. SIGSTOP), releasing the job's row: the
        claims of others skip a held row, so a stalled holder must not hold it forever."""
        if url.startswith("sqlite"):
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(url, connect_args={"timeout": 30})
            sa.event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        else:
            settings = {}
            if idle_transaction_sec:
                timeout_ms = str(max(1, round(idle_transaction_sec * 1000)))
                settings["idle_in_transaction_session_timeout"] = timeout_ms
            engine = create_async_engine(
                url, pool_pre_ping=True, connect_args={"server_settings": settings}
            )
        return cls(engine)

    @property
    def keeps_uploads(self) -> bool:
        """Uploads of async jobs go into the database (PostgreSQL: every replica reads it);
        with SQLite (one replica) the media store's file is enough."""
        return self.engine.dialect.name == "postgresql"

    async def migrate(self) -> None:
        """Bring the schema up to date (Alembic); replicas starting together take turns
        (PostgreSQL: an advisory lock; SQLite: the app's single-writer lock, `single_writer`)."""
        async with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(sa.text("SELECT pg_advisory_xact_lock(7402319)"))
            await connection.run_sync(_migrate)

    async def close(self) -> None:
        await self.engine.dispose()

    # ---- jobs

    async def create(
        self,
        job_id: str,
        owner: str,
        request_json: str,
        upload_id: str | None,
        webhook_url: str | None,
        total_sec: float | None = None,
        upload_path: Path | None = None,
        upload_name: str | None = None,
        cap: int = 0,
    ) -> JobRecord:
        """A queued job. With `upload_path` and a database that keeps uploads, the upload's
        bytes are written in the same transaction: the job never exists without its media.
        `upload_name`: the uploaded file's name, what the job's events show for it.
        `cap` (0: none): CapReached, with nothing written, if `owner` has that many queued and
        running jobs; counted and inserted in one transaction that holds the owner's lock
        (PostgreSQL: an advisory lock per key; SQLite: this process's), so a burst of submits
        cannot pass it."""
        now = time.time()
        record = JobRecord(
            id=job_id,
            status=JobStatus.QUEUED,
            created_at=now,
            updated_at=now,
            owner=owner,
            request=request_json,
            upload_id=upload_id,
            upload_name=upload_name[:255] if upload_name else None,
            webhook_url=webhook_url,
            total_sec=total_sec,
        )
        postgresql = self.engine.dialect.name == "postgresql"
        serialised = self._creating if cap and not postgresql else contextlib.nullcontext()
        async with serialised, self.engine.begin() as connection:
            if upload_id is not None and upload_path is not None and self.keeps_uploads:
                await _write_blocks(connection, upload_id, upload_path)
            if cap:  # last: the key's lock is held only from here to the commit
                if postgresql:
                    key = zlib.crc32(owner.encode()) - (1 << 31)  # a signed 32-bit int
                    await connection.execute(
                        sa.select(sa.func.pg_advisory_xact_lock(_CAP_LOCKS, key))
                    )
                active = int(await connection.scalar(_active(owner)) or 0)
                if active >= cap:
                    raise CapReached(active)
            values = {**dataclasses.asdict(record), "status": record.status.value}
            await connection.execute(jobs.insert().values(**values))
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(jobs.select().where(jobs.c.id == job_id))).first()
        return JobRecord.of(row) if row else None

    async def page(
        self, owner: str | None, status: JobStatus | None, limit: int, before: float | None
    ) -> list[JobRecord]:
        """Newest first; `before`: created_at of the last job of the previous page."""
        query = jobs.select().order_by(jobs.c.created_at.desc()).limit(limit)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        if status is not None:
            query = query.where(jobs.c.status == status.value)
        if before is not None:
            query = query.where(jobs.c.created_at < before)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [JobRecord.of(row) for row in rows]

    async def active_jobs(self, owner: str) -> int:
        """The owner's queued and running jobs (the per-key cap, before a body is read)."""
        async with self.engine.connect() as connection:
            return int(await connection.scalar(_active(owner)) or 0)

    async def keep_webhook(self, job_id: str, outcome: WebhookOutcome) -> None:
        """A finished job's webhook delivery: an unfenced write, since no lease guards a job
        that has ended."""
        async with self.engine.begin() as connection:
            await connection.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(updated_at=time.time(), webhook=outcome.model_dump_json())
            )

    async def unfinished_uploads(self) -> set[str]:
        query = sa.select(jobs.c.upload_id).where(
            jobs.c.upload_id.is_not(None), jobs.c.status.not_in([s.value for s in FINISHED])
        )
        async with self.engine.connect() as connection:
            return {row[0] for row in (await connection.execute(query)).all()}

    # ---- claims

    async def claim(
        self,
        instance: str,
        lease_sec: float,
        limit: int,
        max_attempts: int = 3,
        exclude: Collection[str] = (),
    ) -> Claims:
        """Up to `limit` jobs for `instance`: queued ones, and running ones whose owner stopped
        renewing its claim (it died). Fair across owners: the next job is always the oldest of
        the owner with the fewest running jobs, so one key's hundred queued jobs don't make
        another's wait. A job already claimed `max_attempts` times without finishing is failed
        instead, with an `error` event, and never claimed again; one whose cancel was asked for
        is cancelled instead. `exclude`: the jobs the caller runs, never claimed again by it
        (a lease that lapsed while its renewals failed is still its own run's)."""
        now = time.time()
        claimable = sa.or_(
            jobs.c.status == JobStatus.QUEUED.value,
            sa.and_(jobs.c.status == JobStatus.RUNNING.value, jobs.c.lease_until < now),
        )
        if exclude:
            claimable = sa.and_(claimable, jobs.c.id.not_in(list(exclude)))
        place = (
            sa.func.row_number()
            .over(partition_by=jobs.c.owner, order_by=(jobs.c.created_at, jobs.c.id))
            .label("place")
        )
        inner = (
            sa.select(
                jobs.c.id,
                jobs.c.owner,
                jobs.c.created_at,
                jobs.c.attempts,
                jobs.c.cancel_requested,
                place,
            )
            .where(claimable)
            .subquery()
        )
        oldest_per_owner = (
            sa.select(
                inner.c.id,
                inner.c.owner,
                inner.c.created_at,
                inner.c.attempts,
                inner.c.cancel_requested,
            )
            .where(inner.c.place <= limit)
            .order_by(inner.c.created_at, inner.c.id)
        )
        busy = (
            sa.select(jobs.c.owner, sa.func.count())
            .where(jobs.c.status == JobStatus.RUNNING.value, jobs.c.lease_until >= now)
            .group_by(jobs.c.owner)
        )
        async with self.engine.connect() as connection:
            running: dict[str, int] = defaultdict(int)
            running.update({row[0]: int(row[1]) for row in await connection.execute(busy)})
            waiting: dict[str, deque[tuple[float, str, int, bool]]] = defaultdict(deque)
            for job_id, owner, created, attempts, cancel in await connection.execute(
                oldest_per_owner
            ):
                waiting[owner].append((created, job_id, int(attempts), bool(cancel)))
        claims = Claims()
        while waiting and len(claims.leases) < limit:
            # The owner with the fewest running jobs; ties: the oldest waiting job.
            owner = min(waiting, key=lambda o: (running[o], waiting[o][0]))
            _, job_id, attempts, cancel = waiting[owner].popleft()
            if not waiting[owner]:
                del waiting[owner]
            if cancel:
                if await self._end_unclaimed(job_id, claimable, JobStatus.CANCELLED):
                    claims.cancelled.append(job_id)
                continue
            if attempts >= max_attempts:
                if await self._end_unclaimed(job_id, claimable, JobStatus.FAILED, max_attempts):
                    claims.exhausted.append(job_id)
                continue
            lease = Lease(job_id, instance, secrets.token_hex(16))
            async with self.engine.begin() as connection:
                result = await connection.execute(
                    jobs.update()
                    .where(_unlocked(job_id), claimable)
                    .values(
                        status=JobStatus.RUNNING.value,
                        lease_owner=instance,
                        lease_token=lease.token,
                        lease_until=now + lease_sec,
                        attempts=jobs.c.attempts + 1,
                        started_at=sa.func.coalesce(jobs.c.started_at, now),
                        updated_at=now,
                    )
                )
            if result.rowcount == 1:
                claims.leases.append(lease)
                running[owner] += 1
        return claims

    async def _end_unclaimed(
        self,
        job_id: str,
        claimable: sa.ColumnElement[bool],
        status: JobStatus,
        max_attempts: int = 0,
    ) -> bool:
        """End a claimable job instead of claiming it: `cancelled` (its cancel was asked for)
        or `failed` (its attempts ran out), with its last event; its upload's blocks go."""
        now = time.time()
        condition: sa.ColumnElement[bool]
        if status == JobStatus.CANCELLED:
            condition = jobs.c.cancel_requested.is_(True)
            values: dict[str, Any] = {}
            event = ("cancelled", cancelled_event(job_id))
        else:
            condition = jobs.c.attempts >= max_attempts
            error = exhausted_error(max_attempts)
            values = {"error": error.body().error.model_dump_json()}
            event = ("error", error.body().model_dump_json())
        async with self.engine.begin() as connection:
            result = await connection.execute(
                jobs.update()
                .where(_unlocked(job_id), claimable, condition)
                .values(
                    status=status.value,
                    finished_at=now,
                    updated_at=now,
                    lease_owner=None,
                    lease_token=None,
                    lease_until=None,
                    **values,
                )
            )
            if result.rowcount != 1:
                return False
            await _append_last(connection, job_id, *event)
            await connection.execute(_upload_of(jobs.c.id == job_id))
        return True

    async def renew(self, leases: Sequence[Lease], lease_sec: float) -> Renewal:
        """Extend these claims; which of them were cancelled, and which were lost."""
        renewal = Renewal()
        if not leases:
            return renewal
        tokens = [lease.token for lease in leases]
        mine = sa.and_(jobs.c.lease_token.in_(tokens), jobs.c.status == JobStatus.RUNNING.value)
        async with self.engine.begin() as connection:
            await connection.execute(
                jobs.update().where(mine).values(lease_until=time.time() + lease_sec)
            )
            rows = (
                await connection.execute(sa.select(jobs.c.id, jobs.c.cancel_requested).where(mine))
            ).all()
        held = {row[0] for row in rows}
        renewal.cancel = {row[0] for row in rows if row[1]}
        renewal.lost = {lease.job_id for lease in leases} - held
        return renewal

    async def release(self, leases: Sequence[Lease]) -> HandBack:
        """Hand these running jobs back to the queue (a graceful stop): the claim did not fail,
        so it does not count as an attempt. Fenced: a lease another replica took touches
        nothing. A job whose cancel was asked for ends `cancelled` instead."""
        if not leases:
            return HandBack()
        held = jobs.c.lease_token.in_([lease.token for lease in leases])
        attempts = sa.case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0)
        return await self._hand_back(held, attempts)

    async def take_back(self, instance: str) -> HandBack:
        """At start: queue again what `instance` was running when it stopped without handing
        its jobs back (killed, crashed, out of memory): those claims count as attempts. A job
        whose cancel was asked for ends `cancelled` instead."""
        return await self._hand_back(jobs.c.lease_owner == instance)

    async def _hand_back(
        self, held: sa.ColumnElement[bool], attempts: sa.ColumnElement[int] | None = None
    ) -> HandBack:
        """Running jobs that `held` selects back to the queue (`attempts`: the count to set,
        default unchanged), or cancelled where a cancel was asked for."""
        now = time.time()
        running = sa.and_(held, jobs.c.status == JobStatus.RUNNING.value)
        handed = HandBack()
        async with self.engine.begin() as connection:
            # The rows first, as every write does: a cancel asked for from now on waits for
            # this transaction (and then finds the job no longer running), one asked for
            # before is seen below.
            await connection.execute(jobs.update().where(running).values(updated_at=now))
            rows = await connection.execute(
                sa.select(jobs.c.id, jobs.c.cancel_requested).where(running).order_by(jobs.c.id)
            )
            for job_id, cancel in rows.all():
                (handed.cancelled if cancel else handed.queued).append(job_id)
            unclaimed = {"lease_owner": None, "lease_token": None, "lease_until": None}
            if handed.cancelled:
                ids = jobs.c.id.in_(handed.cancelled)
                await connection.execute(
                    jobs.update()
                    .where(ids)
                    .values(status=JobStatus.CANCELLED.value, finished_at=now, **unclaimed)
                )
                for job_id in handed.cancelled:
                    await _append_last(connection, job_id, "cancelled", cancelled_event(job_id))
                await connection.execute(_upload_of(ids))
            if handed.queued:
                await connection.execute(
                    jobs.update()
                    .where(jobs.c.id.in_(handed.queued))
                    .values(
                        status=JobStatus.QUEUED.value,
                        **unclaimed,
                        **({} if attempts is None else {"attempts": attempts}),
                    )
                )
        return handed

    async def cancel_queued(self, job_id: str) -> bool:
        """Cancel a job that is waiting; False if it is not (running, finished, unknown)."""
        now = time.time()
        async with self.engine.begin() as connection:
            result = await connection.execute(  # the job's row first, as every write does
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.QUEUED.value)
                .values(status=JobStatus.CANCELLED.value, finished_at=now, updated_at=now)
            )
            if result.rowcount != 1:
                return False
            await connection.execute(_upload_of(jobs.c.id == job_id))
        return True

    async def request_cancel(self, job_id: str) -> JobRecord | None:
        """Flag a running job for its owner, which stops it at its next lease renewal."""
        async with self.engine.begin() as connection:
            await connection.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value)
                .values(cancel_requested=True, updated_at=time.time())
            )
        return await self.get(job_id)

    # ---- writes of a running job: fenced by its lease

    @contextlib.asynccontextmanager
    async def _holding(self, lease: Lease, **values: Any) -> AsyncIterator[AsyncConnection]:
        """A transaction that goes on only while `lease` still holds its job (first statement:
        the job's row, updated with `values`); LeaseLost, with nothing written, otherwise."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                jobs.update().where(_held(lease)).values(updated_at=time.time(), **values)
            )
            if result.rowcount != 1:
                raise LeaseLost(lease)
            yield connection

    async def set_total(self, lease: Lease, total_sec: float) -> None:
        """The media's length, for a running job that was not checked at submit."""
        async with self._holding(lease, total_sec=total_sec):
            pass

    async def append_events(
        self, lease: Lease, events: Sequence[StoredEvent], done_sec: float | None = None
    ) -> None:
        """Keep events (and the progress they carry) of a job this replica runs."""
        values = {} if done_sec is None else {"done_sec": done_sec}
        async with self._holding(lease, **values) as connection:
            if events:
                await connection.execute(
                    job_events.insert(),
                    [{"job_id": lease.job_id, "seq": e.seq, "name": e.name, "data": e.data}
                     for e in events],
                )  # fmt: skip

    async def finish(self, lease: Lease, end: JobEnd, event: tuple[str, str] | None = None) -> None:
        """The job's end: its status (and result or error), `event` after its last unless that
        was terminal already; its claim and its upload's blocks go."""
        async with self._holding(
            lease,
            status=end.status.value,
            finished_at=time.time(),
            lease_owner=None,
            lease_token=None,
            lease_until=None,
            **end.columns(),
        ) as connection:
            if event is not None:
                await _append_last(connection, lease.job_id, *event)
            await connection.execute(_upload_of(jobs.c.id == lease.job_id))

    async def append_event(self, job_id: str, name: str, data: str) -> None:
        """One event after the job's last (a job nobody runs: cancelled while queued)."""
        async with self.engine.begin() as connection:
            await _append_last(connection, job_id, name, data)

    async def events_after(self, job_id: str, seq: int, limit: int = 1000) -> list[StoredEvent]:
        query = (
            sa.select(job_events.c.seq, job_events.c.name, job_events.c.data)
            .where(job_events.c.job_id == job_id, job_events.c.seq > seq)
            .order_by(job_events.c.seq)
            .limit(limit)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [StoredEvent(row[0], row[1], row[2]) for row in rows]

    async def last_event(self, job_id: str) -> StoredEvent | None:
        """The job's last event (None: none yet, or no such job)."""
        query = (
            sa.select(job_events.c.seq, job_events.c.name, job_events.c.data)
            .where(job_events.c.job_id == job_id)
            .order_by(job_events.c.seq.desc())
            .limit(1)
        )
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else StoredEvent(row[0], row[1], row[2])

    async def last_event_seqs(self, job_ids: Collection[str]) -> dict[str, int]:
        """The last event id of each job (-1: none yet), in one query; a deleted job is
        missing from the answer."""
        query = (
            sa.select(jobs.c.id, sa.func.coalesce(sa.func.max(job_events.c.seq), -1))
            .select_from(jobs.outerjoin(job_events, job_events.c.job_id == jobs.c.id))
            .where(jobs.c.id.in_(list(job_ids)))
            .group_by(jobs.c.id)
        )
        async with self.engine.connect() as connection:
            return {row[0]: int(row[1]) for row in await connection.execute(query)}

    # ---- the plan as run

    async def stored_chunk(
        self, lease: Lease, index: int, span: TimeSpan
    ) -> tuple[list[MicroChunkResult], bool]:
        """The micro chunks of macro chunk `index` stored earlier, and whether it finished.
        Planned differently this time (another span): nothing is reused, and it is forgotten."""
        job_id = lease.job_id
        async with self._holding(lease) as connection:
            row = (
                await connection.execute(
                    chunks.select().where(chunks.c.job_id == job_id, chunks.c.chunk_index == index)
                )
            ).first()
            if row is None:
                await connection.execute(
                    chunks.insert().values(
                        job_id=job_id,
                        chunk_index=index,
                        start_sec=span.start_sec,
                        end_sec=span.end_sec,
                    )
                )
                return [], False
            same = (
                abs(row.start_sec - span.start_sec) < 1e-6
                and abs(row.end_sec - span.end_sec) < 1e-6
            )
            if not same:
                await connection.execute(
                    micro_results.delete().where(
                        micro_results.c.job_id == job_id, micro_results.c.chunk_index == index
                    )
                )
                await connection.execute(
                    chunks.update()
                    .where(chunks.c.job_id == job_id, chunks.c.chunk_index == index)
                    .values(start_sec=span.start_sec, end_sec=span.end_sec, micro_count=None)
                )
                return [], False
            rows = (
                await connection.execute(
                    sa.select(micro_results.c.data)
                    .where(micro_results.c.job_id == job_id, micro_results.c.chunk_index == index)
                    .order_by(micro_results.c.micro_index)
                )
            ).all()
        results = [MicroChunkResult.model_validate_json(r[0]) for r in rows]
        # Micro chunks tile their macro chunk: one that reaches its end was the last, even if
        # the worker's footer (which marks the chunk complete) never arrived.
        reaches_end = bool(results) and results[-1].micro_chunk.end_sec >= span.end_sec - 1e-3
        counted = row.micro_count is not None and row.micro_count == len(results)
        return results, counted or reaches_end

    async def store_micro(
        self, lease: Lease, index: int, micro_index: int, result: MicroChunkResult
    ) -> None:
        async with self._holding(lease) as connection:
            await connection.execute(
                micro_results.insert().values(
                    job_id=lease.job_id,
                    chunk_index=index,
                    micro_index=micro_index,
                    data=result.model_dump_json(),
                )
            )

    async def finish_chunk(self, lease: Lease, index: int, micro_count: int) -> None:
        async with self._holding(lease) as connection:
            await connection.execute(
                chunks.update()
                .where(chunks.c.job_id == lease.job_id, chunks.c.chunk_index == index)
                .values(micro_count=micro_count)
            )

    # ---- uploads kept in the database

    async def upload_size(self, upload_id: str) -> int | None:
        """The size of an upload kept in the database (None: none kept), from its last block
        alone (every other one is full)."""
        query = (
            sa.select(upload_blocks.c.block, sa.func.length(upload_blocks.c.data))
            .where(upload_blocks.c.upload_id == upload_id)
            .order_by(upload_blocks.c.block.desc())
            .limit(1)
        )
        async with self.engine.connect() as connection:
            last = (await connection.execute(query)).first()
        return None if last is None else int(last[0]) * UPLOAD_BLOCK_BYTES + int(last[1])

    async def read_upload(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `[start, end)` of an upload kept in the database, from the blocks that hold
        them only, a few blocks per query, each cut in the database (a 4 KiB read moves 4 KiB,
        not a MiB). Ends early if the upload is dropped meanwhile."""
        size = UPLOAD_BLOCK_BYTES
        block = start // size
        last = (end - 1) // size
        offset = sa.cast(upload_blocks.c.block, sa.BigInteger) * size
        first_byte = sa.case((offset < start, start - offset), else_=0)
        after_last = sa.case((offset + size > end, end - offset), else_=size)
        piece = sa.func.substr(
            upload_blocks.c.data,
            sa.cast(first_byte + 1, sa.Integer),
            sa.cast(after_last - first_byte, sa.Integer),
        )
        while block <= last:
            upto = min(block + _BLOCKS_PER_READ - 1, last)
            query = (
                sa.select(upload_blocks.c.block, piece)
                .where(
                    upload_blocks.c.upload_id == upload_id,
                    upload_blocks.c.block.between(block, upto),
                )
                .order_by(upload_blocks.c.block)
            )
            async with self.engine.connect() as connection:
                rows = (await connection.execute(query)).all()
            for number, data in rows:
                if number != block:
                    return  # a block is missing: the upload was dropped
                yield bytes(data)
                block += 1
            if block <= upto:
                return

    async def keep_upload(self, upload_id: str, path: Path) -> None:
        """Keep a synchronous job's upload for every replica, for the life of its request
        (`drop_upload` at its end; an async job's goes in with the job, `create`)."""
        async with self.engine.begin() as connection:
            await _write_blocks(connection, upload_id, path)

    async def drop_upload(self, upload_id: str) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                upload_blocks.delete().where(upload_blocks.c.upload_id == upload_id)
            )

    async def sweep_upload_blocks(self, written_before: float) -> int:
        """Delete the blocks of uploads no unfinished job needs (what a crash left), written
        before `written_before`: a synchronous job's upload has no job row, and is left alone
        for as long as such a request may run."""
        needed = sa.select(jobs.c.upload_id).where(
            jobs.c.upload_id.is_not(None), jobs.c.status.not_in([s.value for s in FINISHED])
        )
        async with self.engine.begin() as connection:
            result = await connection.execute(
                upload_blocks.delete().where(
                    upload_blocks.c.upload_id.not_in(needed),
                    upload_blocks.c.created_at < written_before,
                )
            )
        return int(result.rowcount)

    # ---- retention

    async def delete_finished_before(self, cutoff: float) -> list[str | None]:
        """Delete finished jobs older than `cutoff` with everything they own; their uploads."""
        old = sa.and_(jobs.c.status.in_([s.value for s in FINISHED]), jobs.c.finished_at < cutoff)
        async with self.engine.begin() as connection:
            rows = (
                await connection.execute(sa.select(jobs.c.id, jobs.c.upload_id).where(old))
            ).all()
            ids = [row[0] for row in rows]
            if ids:
                await connection.execute(_upload_of(jobs.c.id.in_(ids)))
                for table in (job_events, micro_results, chunks):
                    await connection.execute(table.delete().where(table.c.job_id.in_(ids)))
                await connection.execute(jobs.delete().where(jobs.c.id.in_(ids)))
        return [row[1] for row in rows]


async def _append_last(connection: AsyncConnection, job_id: str, name: str, data: str) -> None:
    """`name` after the job's last event, unless that one ended the job already."""
    last = (
        await connection.execute(
            sa.select(job_events.c.seq, job_events.c.name)
            .where(job_events.c.job_id == job_id)
            .order_by(job_events.c.seq.desc())
            .limit(1)
        )
    ).first()
    if last is not None and last[1] in TERMINAL_EVENTS:
        return
    seq = -1 if last is None else int(last[0])
    await connection.execute(
        job_events.insert().values(job_id=job_id, seq=seq + 1, name=name, data=data)
    )


async def _write_blocks(connection: AsyncConnection, upload_id: str, path: Path) -> None:
    now = time.time()
    with path.open("rb") as file:  # read in a thread: a 2 GB upload is 2,000 disk reads
        block = 0
        while data := await asyncio.to_thread(file.read, UPLOAD_BLOCK_BYTES):
            await connection.execute(
                upload_blocks.insert().values(
                    upload_id=upload_id, block=block, data=data, created_at=now
                )
            )
            block += 1
