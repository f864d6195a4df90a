"""The job table: async jobs, their events and finished micro chunks, in SQLite or PostgreSQL.

    jobs            one row per job: request, status, progress, result or error, the claim
                    (`lease_owner`, `lease_until`) of the replica running it, webhook outcome
    job_events      every event the job produced, numbered from 0 (the SSE ids)
    chunks          the plan as run: each macro chunk's span, `micro_count` once it finished
    micro_results   each micro chunk's result as it arrived: what a resumed job does not redo

SQLAlchemy Core (async: aiosqlite, asyncpg); the schema is made by Alembic migrations
(`migrations/`), run at start. Every write is one short transaction, and a claim is a
conditional UPDATE, so several replicas can share one PostgreSQL database without locks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.schemas import JobStatus, MicroChunkResult, TimeSpan

MIGRATIONS = Path(__file__).parent / "migrations"
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

metadata = sa.MetaData()


def _job_id() -> sa.Column[str]:
    """The key column of every table a job owns: deleted with the job."""
    return sa.Column(
        "job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )


jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("upload_id", sa.String(64)),
    sa.Column("webhook_url", sa.Text),
    sa.Column("webhook", sa.Text),
    sa.Column("done_sec", sa.Float, nullable=False, default=0.0),
    sa.Column("total_sec", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_until", sa.Float),
)
job_events = sa.Table(
    "job_events",
    metadata,
    _job_id(),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)
chunks = sa.Table(
    "chunks",
    metadata,
    _job_id(),
    sa.Column("chunk_index", sa.Integer, primary_key=True),
    sa.Column("start_sec", sa.Float, nullable=False),
    sa.Column("end_sec", sa.Float, nullable=False),
    sa.Column("micro_count", sa.Integer),
)
micro_results = sa.Table(
    "micro_results",
    metadata,
    _job_id(),
    sa.Column("chunk_index", sa.Integer, primary_key=True),
    sa.Column("micro_index", sa.Integer, primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    name: str
    data: str


def _migrate(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class JobStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def connect(cls, url: str) -> JobStore:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(url, connect_args={"timeout": 30})
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(url, pool_pre_ping=True)
        return cls(engine)

    async def migrate(self) -> None:
        """Bring the schema up to date (Alembic); replicas starting together take turns."""
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
    ) -> dict[str, Any]:
        now = time.time()
        row = {
            "id": job_id,
            "status": JobStatus.QUEUED.value,
            "created_at": now,
            "updated_at": now,
            "owner": owner,
            "request": request_json,
            "upload_id": upload_id,
            "webhook_url": webhook_url,
            "done_sec": 0.0,
            "total_sec": total_sec,
            "cancel_requested": False,
        }
        async with self.engine.begin() as connection:
            await connection.execute(jobs.insert().values(**row))
        return row

    async def get(self, job_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(jobs.select().where(jobs.c.id == job_id))).first()
        return dict(row._mapping) if row else None

    async def page(
        self, owner: str | None, status: JobStatus | None, limit: int, before: float | None
    ) -> list[dict[str, Any]]:
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
        return [dict(row._mapping) for row in rows]

    async def update(self, job_id: str, **values: Any) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                jobs.update().where(jobs.c.id == job_id).values(updated_at=time.time(), **values)
            )

    async def unfinished_uploads(self) -> set[str]:
        query = sa.select(jobs.c.upload_id).where(
            jobs.c.upload_id.is_not(None), jobs.c.status.not_in([s.value for s in FINISHED])
        )
        async with self.engine.connect() as connection:
            return {row[0] for row in (await connection.execute(query)).all()}

    # ---- claims

    async def claim(self, instance: str, lease_sec: float, limit: int) -> list[str]:
        """Up to `limit` jobs for `instance`, oldest first: queued ones, and running ones whose
        owner stopped renewing its claim (it died)."""
        now = time.time()
        claimable = sa.or_(
            jobs.c.status == JobStatus.QUEUED.value,
            sa.and_(jobs.c.status == JobStatus.RUNNING.value, jobs.c.lease_until < now),
        )
        async with self.engine.connect() as connection:
            candidates = (
                await connection.execute(
                    sa.select(jobs.c.id).where(claimable).order_by(jobs.c.created_at).limit(limit)
                )
            ).all()
        claimed = []
        for (job_id,) in candidates:
            async with self.engine.begin() as connection:
                result = await connection.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id, claimable)
                    .values(
                        status=JobStatus.RUNNING.value,
                        lease_owner=instance,
                        lease_until=now + lease_sec,
                        started_at=sa.func.coalesce(jobs.c.started_at, now),
                        updated_at=now,
                    )
                )
            if result.rowcount == 1:
                claimed.append(job_id)
        return claimed

    async def renew(self, instance: str, job_ids: Sequence[str], lease_sec: float) -> set[str]:
        """Extend this instance's claims; the ids of those whose cancel was requested."""
        if not job_ids:
            return set()
        now = time.time()
        mine = sa.and_(jobs.c.id.in_(job_ids), jobs.c.lease_owner == instance)
        async with self.engine.begin() as connection:
            await connection.execute(jobs.update().where(mine).values(lease_until=now + lease_sec))
            rows = await connection.execute(
                sa.select(jobs.c.id).where(mine, jobs.c.cancel_requested.is_(True))
            )
            return {row[0] for row in rows.all()}

    async def release(self, instance: str, job_ids: Sequence[str] = ()) -> int:
        """Hand this instance's running jobs (all, or `job_ids`) back to the queue."""
        condition = sa.and_(
            jobs.c.lease_owner == instance, jobs.c.status == JobStatus.RUNNING.value
        )
        if job_ids:
            condition = sa.and_(condition, jobs.c.id.in_(job_ids))
        async with self.engine.begin() as connection:
            result = await connection.execute(
                jobs.update()
                .where(condition)
                .values(status=JobStatus.QUEUED.value, lease_owner=None, lease_until=None)
            )
        return int(result.rowcount)

    async def cancel_queued(self, job_id: str) -> bool:
        """Cancel a job that is waiting; False if it is not (running, finished, unknown)."""
        now = time.time()
        async with self.engine.begin() as connection:
            result = await connection.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.QUEUED.value)
                .values(status=JobStatus.CANCELLED.value, finished_at=now, updated_at=now)
            )
        return int(result.rowcount) == 1

    async def request_cancel(self, job_id: str) -> dict[str, Any] | None:
        """Flag a running job for its owner, which stops it at its next lease renewal."""
        async with self.engine.begin() as connection:
            await connection.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value)
                .values(cancel_requested=True, updated_at=time.time())
            )
        return await self.get(job_id)

    # ---- events

    async def append_events(self, job_id: str, events: Sequence[StoredEvent]) -> None:
        if not events:
            return
        rows = [{"job_id": job_id, "seq": e.seq, "name": e.name, "data": e.data} for e in events]
        async with self.engine.begin() as connection:
            await connection.execute(job_events.insert(), rows)

    async def append_event(self, job_id: str, name: str, data: str) -> None:
        """One event after the job's last (a job nobody runs: cancelled while queued)."""
        async with self.engine.begin() as connection:
            last = await connection.scalar(
                sa.select(sa.func.max(job_events.c.seq)).where(job_events.c.job_id == job_id)
            )
            seq = -1 if last is None else int(last)
            await connection.execute(
                job_events.insert().values(job_id=job_id, seq=seq + 1, name=name, data=data)
            )

    async def last_event_name(self, job_id: str) -> str | None:
        query = (
            sa.select(job_events.c.name)
            .where(job_events.c.job_id == job_id)
            .order_by(job_events.c.seq.desc())
            .limit(1)
        )
        async with self.engine.connect() as connection:
            name = await connection.scalar(query)
        return str(name) if name is not None else None

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

    # ---- the plan as run

    async def stored_chunk(
        self, job_id: str, index: int, span: TimeSpan
    ) -> tuple[list[MicroChunkResult], bool]:
        """The micro chunks of macro chunk `index` stored earlier, and whether it finished.
        Planned differently this time (another span): nothing is reused, and it is forgotten."""
        async with self.engine.begin() as connection:
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
        self, job_id: str, index: int, micro_index: int, result: MicroChunkResult
    ) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                micro_results.insert().values(
                    job_id=job_id,
                    chunk_index=index,
                    micro_index=micro_index,
                    data=result.model_dump_json(),
                )
            )

    async def finish_chunk(self, job_id: str, index: int, micro_count: int) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                chunks.update()
                .where(chunks.c.job_id == job_id, chunks.c.chunk_index == index)
                .values(micro_count=micro_count)
            )

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
                for table in (job_events, micro_results, chunks):
                    await connection.execute(table.delete().where(table.c.job_id.in_(ids)))
                await connection.execute(jobs.delete().where(jobs.c.id.in_(ids)))
        return [row[1] for row in rows]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer; foreign keys on (SQLite's default is off)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
