"""Async jobs: the queue that runs `/v1/jobs` from the job table, surviving restarts.

    submit() ──> jobs row (queued) ──> claim loop (oldest first, `max_running_jobs` at once)
                                         └─> run(): JobRunner.events(job, log=the store)
                                              ├─ every event kept (job_events, numbered)
                                              ├─ every micro chunk kept (micro_results)
                                              └─ result or error, then the webhook

A replica renews its claims every `job_lease_sec / 3`; a replica that died stops renewing, and
another (or itself, restarted: at start it takes back what it ran under its `instance_id`)
claims the job again. A resumed job replays what was kept, so its events carry on where they
stopped: events already kept are not written again (segments and reports come back in the same
order; progress only moves forward). SIGTERM stops claiming and hands running jobs back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.job_store import JobStore, StoredEvent
from services.orchestrator.jobs import EVENT_NAMES, JobRunner, OwnUpload, Transcript
from services.orchestrator.uploads import MediaStore, Upload
from services.orchestrator.webhooks import deliver
from shared.aio import cancel_and_wait
from shared.errors import WhisperfleetError
from shared.schemas import (
    JobInfo,
    JobProgress,
    JobRequest,
    JobStatus,
    MicroChunkResult,
    TimeSpan,
    TranscribeOutput,
    TranscribeRequest,
    WebhookOutcome,
)

logger = logging.getLogger(__name__)

TERMINAL_EVENTS = ("footer", "error", "cancelled")
"""The last event of every job: success, failure, cancellation."""


def _cancelled(job_id: str) -> str:
    """The data of a job's `cancelled` event."""
    return json.dumps({"id": job_id, "status": JobStatus.CANCELLED.value})


def job_info(row: dict[str, Any], with_result: bool = True) -> JobInfo:
    return JobInfo(
        id=row["id"],
        status=JobStatus(row["status"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        progress=JobProgress(done_sec=row["done_sec"], total_sec=row["total_sec"]),
        error=json.loads(row["error"]) if row["error"] else None,
        result=(
            TranscribeOutput.model_validate_json(row["result"])
            if with_result and row["result"]
            else None
        ),
        webhook_url=row["webhook_url"],
        webhook=WebhookOutcome.model_validate_json(row["webhook"]) if row["webhook"] else None,
    )


@dataclass
class _StoreLog:
    """`jobs.ChunkLog` over the job table."""

    store: JobStore
    job_id: str

    async def stored(self, index: int, span: TimeSpan) -> tuple[list[MicroChunkResult], bool]:
        return await self.store.stored_chunk(self.job_id, index, span)

    async def record(self, index: int, micro_index: int, result: MicroChunkResult) -> None:
        await self.store.store_micro(self.job_id, index, micro_index, result)

    async def complete(self, index: int, micro_count: int) -> None:
        await self.store.finish_chunk(self.job_id, index, micro_count)


@dataclass
class _Recorder:
    """Keeps a job's events, once each, across restarts."""

    store: JobStore
    job_id: str
    wake: asyncio.Event
    next_seq: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    """Events kept by earlier runs of this job, by name."""
    kept_done_sec: float = -1.0
    seen: dict[str, int] = field(default_factory=dict)

    async def load(self) -> None:
        seq = -1
        while batch := await self.store.events_after(self.job_id, seq):
            for event in batch:
                self.kept[event.name] = self.kept.get(event.name, 0) + 1
                if event.name == "progress":
                    self.kept_done_sec = json.loads(event.data)["done_sec"]
            seq = batch[-1].seq
        self.next_seq = seq + 1

    async def add(self, name: str, data: str) -> None:
        ordinal = self.seen.get(name, 0)
        self.seen[name] = ordinal + 1
        if name == "progress":
            done = json.loads(data)["done_sec"]
            if done <= self.kept_done_sec:
                return
            self.kept_done_sec = done
            await self.store.update(self.job_id, done_sec=done)
        elif ordinal < self.kept.get(name, 0):
            return  # kept before a restart, and replayed identically
        await self.store.append_events(self.job_id, [StoredEvent(self.next_seq, name, data)])
        self.next_seq += 1
        self.wake.set()


class JobQueue:
    def __init__(
        self,
        store: JobStore,
        runner: JobRunner,
        media_store: MediaStore,
        webhook_client: httpx.AsyncClient,
        settings: OrchestratorSettings,
    ) -> None:
        self.store = store
        self.runner = runner
        self.media_store = media_store
        self.webhook_client = webhook_client
        self.settings = settings
        self.instance = settings.instance_id
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancelling: set[str] = set()
        self._wakes: dict[str, asyncio.Event] = {}
        self._claim_now = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()

    # ---- life

    async def start(self) -> None:
        """Take back what this instance ran when it stopped, and start claiming."""
        taken_back = await self.store.release(self.instance)
        if taken_back:
            logger.info("resuming %d jobs this instance was running", taken_back)
        self._loop_task = asyncio.create_task(self._claim_loop())

    async def stop(self) -> None:
        """Stop claiming; hand running jobs back to the queue (they resume elsewhere or at the
        next start, redoing no finished micro chunk)."""
        if self._loop_task is not None:
            await cancel_and_wait([self._loop_task])
        ids = list(self._running)
        await cancel_and_wait(list(self._running.values()))
        if ids:
            await self.store.release(self.instance, ids)
            logger.info("handed %d running jobs back to the queue", len(ids))
        await asyncio.gather(*self._side_tasks, return_exceptions=True)

    # ---- API

    async def submit(
        self, owner: str, request: JobRequest, upload: Upload | None, duration_sec: float
    ) -> JobInfo:
        job_id = "job_" + secrets.token_hex(12)
        row = await self.store.create(
            job_id,
            owner,
            request.model_dump_json(),
            upload.id if upload is not None else None,
            request.webhook_url,
            duration_sec,
        )
        self._claim_now.set()
        return job_info({**row, "started_at": None, "finished_at": None, "error": None,
                         "result": None, "webhook": None})  # fmt: skip

    async def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Cancel a job: at once if queued or running here; a job another replica runs is
        flagged, and that replica stops it at its next lease renewal (waited for, briefly:
        the answer says `running` if it has not stopped by then)."""
        if await self.store.cancel_queued(job_id):
            await self.store.append_event(job_id, "cancelled", _cancelled(job_id))
            self._wake_readers(job_id)
            row = await self.store.get(job_id)
            if row is not None and row["upload_id"]:
                self.media_store.remove(self.media_store.upload_of(row["upload_id"]))
            return row
        row = await self.store.request_cancel(job_id)
        task = self._running.get(job_id)
        if task is None and row is not None and row["status"] == JobStatus.RUNNING.value:
            # Another replica's job (it stops at its next lease renewal), or ours, stopped by
            # the claim loop in the meantime: wait a little for the outcome.
            deadline = time.monotonic() + self.settings.job_lease_sec / 3 + 2
            while row is not None and row["status"] == JobStatus.RUNNING.value:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
                row = await self.store.get(job_id)
            return row
        if task is not None:
            if job_id not in self._cancelling:  # the claim loop may have seen the flag first
                self._cancelling.add(job_id)
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
            row = await self.store.get(job_id)
            if row is not None and row["status"] == JobStatus.RUNNING.value:
                # Cancelled before its task took its first step: nothing ran to record it.
                self._cancelling.discard(job_id)
                if await self.store.last_event_name(job_id) not in TERMINAL_EVENTS:
                    await self.store.append_event(job_id, "cancelled", _cancelled(job_id))
                await self.store.update(
                    job_id,
                    status=JobStatus.CANCELLED.value,
                    finished_at=time.time(),
                    lease_owner=None,
                    lease_until=None,
                )
                self._wake_readers(job_id)
                row = await self.store.get(job_id)
        return row

    async def events(self, job_id: str, after: int) -> AsyncIterator[StoredEvent]:
        """The job's events after `after`, as they are kept, until its last one."""
        wake = self._wakes.setdefault(job_id, asyncio.Event())
        try:
            while True:
                wake.clear()
                batch = await self.store.events_after(job_id, after)
                for event in batch:
                    yield event
                    after = event.seq
                    if event.name in TERMINAL_EVENTS:
                        return
                if not batch:
                    if await self.store.get(job_id) is None:
                        return  # deleted (retention)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):  # another replica's job: poll
                            await wake.wait()
        finally:
            if job_id not in self._running:
                self._wakes.pop(job_id, None)

    # ---- the claim loop

    async def _claim_loop(self) -> None:
        renew_every = self.settings.job_lease_sec / 3
        last_renew = last_sweep = 0.0
        while True:
            self._claim_now.clear()  # set while this round works: the next round comes at once
            try:
                now = time.monotonic()
                if now - last_renew >= renew_every:
                    last_renew = now
                    flagged = await self.store.renew(
                        self.instance, list(self._running), self.settings.job_lease_sec
                    )
                    for job_id in flagged - self._cancelling:  # cancelled through another replica
                        task = self._running.get(job_id)
                        if task is not None:
                            self._cancelling.add(job_id)
                            task.cancel()
                if now - last_sweep >= 60:
                    last_sweep = now
                    await self._sweep()
                free = self.settings.max_running_jobs - len(self._running)
                if free > 0:
                    for job_id in await self.store.claim(
                        self.instance, self.settings.job_lease_sec, free
                    ):
                        task = asyncio.create_task(self._run(job_id))
                        self._running[job_id] = task
                        task.add_done_callback(functools.partial(self._forget, job_id))
            except Exception:
                logger.exception("the job queue's round failed (its database?); retrying")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._claim_now.wait()

    def _forget(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self._claim_now.set()  # a slot is free: the next queued job starts now
        wake = self._wakes.pop(job_id, None)  # readers hold it and see the job's last event
        if wake is not None:
            wake.set()

    def _wake_readers(self, job_id: str) -> None:
        wake = self._wakes.get(job_id)
        if wake is not None:
            wake.set()

    async def _sweep(self) -> None:
        cutoff = time.time() - self.settings.job_retention_hours * 3600
        for upload_id in await self.store.delete_finished_before(cutoff):
            if upload_id:
                self.media_store.remove(self.media_store.upload_of(upload_id))

    # ---- one job

    async def _run(self, job_id: str) -> None:
        row = await self.store.get(job_id)
        if row is None:
            return
        wake = self._wakes.setdefault(job_id, asyncio.Event())
        recorder = _Recorder(self.store, job_id, wake)
        await recorder.load()
        finished: dict[str, Any]
        try:
            request = JobRequest.model_validate_json(row["request"])
            transcribe = TranscribeRequest(media_url=request.media_url, params=request.params)
            upload = OwnUpload(row["upload_id"]) if row["upload_id"] else None
            if row["total_sec"] is None:  # not checked at submit (a job from an older version)
                job = await self.runner.prepare(transcribe, upload=upload)
                await self.store.update(job_id, total_sec=job.duration_sec)
            else:  # checked at submit: no second probe
                job = self.runner.checked(transcribe, row["total_sec"], upload=upload)
            transcript = Transcript()
            async for event in self.runner.events(job, _StoreLog(self.store, job_id)):
                transcript.add(event)
                name = EVENT_NAMES.get(type(event))
                if name is not None:
                    await recorder.add(name, event.model_dump_json())
            output = transcript.output()
            finished = {
                "status": JobStatus.SUCCEEDED.value,
                "result": output.model_dump_json(),
                "done_sec": output.input_duration_sec,
            }
        except asyncio.CancelledError:
            if job_id not in self._cancelling:
                raise  # shutting down: stop() hands the job back
            await recorder.add("cancelled", _cancelled(job_id))
            finished = {"status": JobStatus.CANCELLED.value}
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, WhisperfleetError)
                else WhisperfleetError("the job failed inside the orchestrator; see its log")
            )
            if not isinstance(exc, WhisperfleetError):
                logger.exception("job %s failed", job_id)
            await recorder.add("error", error.body().model_dump_json())
            finished = {
                "status": JobStatus.FAILED.value,
                "error": error.body().error.model_dump_json(),
            }
        finally:
            self._cancelling.discard(job_id)
        await self.store.update(
            job_id, **finished, finished_at=time.time(), lease_owner=None, lease_until=None
        )
        if row["upload_id"]:
            self.media_store.remove(self.media_store.upload_of(row["upload_id"]))
        if row["webhook_url"] and finished["status"] != JobStatus.CANCELLED.value:
            task = asyncio.create_task(self._notify(job_id, row["webhook_url"]))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def _notify(self, job_id: str, url: str) -> None:
        row = await self.store.get(job_id)
        if row is None:
            return
        body = job_info(row, with_result=False).model_dump_json().encode()
        outcome = await deliver(
            self.webhook_client,
            url,
            body,
            self.settings.webhook_secret,
            self.settings.webhook_attempts,
        )
        await self.store.update(job_id, webhook=outcome.model_dump_json())
