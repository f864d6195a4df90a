"""Async jobs: the queue that runs `/v1/jobs` from the job table, surviving restarts.

    submit() ──> jobs row (queued; the key's cap) ──> claim loop (fair across keys,
                                                      `max_running_jobs` at once)
                                         └─> run(lease): JobRunner.events(job, log=the store)
                                              ├─ every event kept (job_events, numbered)
                                              ├─ every micro chunk kept (micro_results)
                                              └─ result or error, then the webhook
    followers ──> events(): read the log, woken by the run here or by the EventWatcher

A replica renews its claims every `job_lease_sec / 3` (a failed renewal is retried at the next
round, a second later); a replica that died stops renewing, and another (or itself, restarted
under the same `instance_id`: at start it takes back what it ran) claims the job again; a
running replica never claims a job it runs. A resumed job replays what was kept, so its
events carry on where they stopped: events already kept are not written again (segments and
reports come back in the same order; progress only moves forward). Every write names the
claim's lease: a replica that stalled past its lease stops the job at its next write or
renewal (`LeaseLost`) and writes nothing more. A job whose claims keep ending without a word
(it crashes its orchestrator) fails after `job_max_attempts`. SIGTERM stops claiming and hands
running jobs back, which is not an attempt; one whose cancel was asked for ends `cancelled`
there instead of waiting again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

import httpx

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.jobs.event_watch import EventWatcher
from services.orchestrator.jobs.records import (
    TERMINAL_EVENTS,
    CapReached,
    HandBack,
    JobEnd,
    JobRecord,
    Lease,
    LeaseLost,
    StoredEvent,
    cancelled_event,
)
from services.orchestrator.jobs.store import JobStore
from services.orchestrator.jobs.uploads import MediaStore, Upload
from services.orchestrator.jobs.webhooks import deliver
from services.orchestrator.transcription.runner import (
    JobRunner,
    OwnUpload,
    Transcript,
    public_event,
)
from shared.aio import cancel_and_wait
from shared.errors import RateLimitedError, WhisperfleetError
from shared.media_host import AddressPolicy, check_destination
from shared.schemas import (
    JobInfo,
    JobRequest,
    JobStatus,
    MicroChunkResult,
    TimeSpan,
    TranscribeRequest,
)

logger = logging.getLogger(__name__)

ORPHAN_UPLOAD_SEC = 48 * 3600.0
"""Upload blocks without an unfinished job are a synchronous request's (which keeps them for
its life and drops them at its end) until they are this old: then a crash left them."""

__all__ = ["TERMINAL_EVENTS", "JobQueue"]


def _cap_error(active: int) -> RateLimitedError:
    return RateLimitedError(
        f"{active} async jobs of this key are queued or running, the most allowed "
        "(ORCHESTRATOR_MAX_QUEUED_JOBS_PER_KEY); retry when one has finished",
        retry_after_sec=30,
    )


@dataclass
class _StoreLog:
    """`runner.ChunkLog` over the job table, every write fenced by the run's lease."""

    store: JobStore
    lease: Lease

    async def stored(self, index: int, span: TimeSpan) -> tuple[list[MicroChunkResult], bool]:
        return await self.store.stored_chunk(self.lease, index, span)

    async def record(self, index: int, micro_index: int, result: MicroChunkResult) -> None:
        await self.store.store_micro(self.lease, index, micro_index, result)

    async def complete(self, index: int, micro_count: int) -> None:
        await self.store.finish_chunk(self.lease, index, micro_count)


@dataclass
class _Recorder:
    """Keeps a job's events, once each, across restarts."""

    store: JobStore
    lease: Lease
    wake: Callable[[], None]
    next_seq: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    """Events kept by earlier runs of this job, by name."""
    kept_done_sec: float = -1.0
    seen: dict[str, int] = field(default_factory=dict)
    last: tuple[str, str] | None = None
    """The job's terminal event, held back: it is kept with the job's end in one transaction,
    so no follower sees it while the job still reads `running`."""

    async def load(self) -> None:
        seq = -1
        while batch := await self.store.events_after(self.lease.job_id, seq):
            for event in batch:
                self.kept[event.name] = self.kept.get(event.name, 0) + 1
                if event.name == "progress":
                    self.kept_done_sec = json.loads(event.data)["done_sec"]
            seq = batch[-1].seq
        self.next_seq = seq + 1

    async def add(self, name: str, data: str) -> None:
        if name in TERMINAL_EVENTS:
            self.last = (name, data)
            return
        ordinal = self.seen.get(name, 0)
        self.seen[name] = ordinal + 1
        done_sec = None
        if name == "progress":
            done_sec = json.loads(data)["done_sec"]
            if done_sec <= self.kept_done_sec:
                return
            self.kept_done_sec = done_sec
        elif ordinal < self.kept.get(name, 0):
            return  # kept before a restart, and replayed identically
        event = StoredEvent(self.next_seq, name, data)
        await self.store.append_events(self.lease, [event], done_sec=done_sec)
        self.next_seq += 1
        self.wake()


class JobQueue:
    def __init__(
        self,
        store: JobStore,
        runner: JobRunner,
        media_store: MediaStore,
        webhook_client: httpx.AsyncClient,
        settings: OrchestratorSettings,
        watch_interval_sec: float = 0.5,
        webhook_policy: AddressPolicy | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.media_store = media_store
        self.webhook_client = webhook_client
        self.webhook_policy = webhook_policy
        """The address rule of `webhook_client`, checked at submit too (None: only there)."""
        self.settings = settings
        self.instance = settings.instance_id
        self._running: dict[str, asyncio.Task[None]] = {}
        self._leases: dict[str, Lease] = {}
        self._cancelling: set[str] = set()
        self._lost: set[str] = set()
        """Jobs stopped here because another replica holds them now."""
        self._finishing: set[str] = set()
        self.watcher = EventWatcher(store, self._running.__contains__, watch_interval_sec)
        self._claim_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()

    # ---- life

    async def start(self) -> None:
        """Take back what this instance ran when it stopped, and start claiming."""
        taken_back = await self.store.take_back(self.instance)
        if taken_back.queued:
            logger.info("resuming %d jobs this instance was running", len(taken_back.queued))
        await self._handed_back(taken_back)
        self._tasks = [
            asyncio.create_task(self._claim_loop()),
            asyncio.create_task(self.watcher.run()),
        ]

    async def stop(self) -> None:
        """Stop claiming; hand running jobs back to the queue (they resume elsewhere or at the
        next start, redoing no finished micro chunk)."""
        await cancel_and_wait(self._tasks)
        leases = [self._leases[job_id] for job_id in self._running if job_id in self._leases]
        await cancel_and_wait(list(self._running.values()))
        if leases:
            handed = await self.store.release(leases)  # fenced: a lost job is not touched
            logger.info("handed %d running jobs back to the queue", len(handed.queued))
            await self._handed_back(handed)
        await asyncio.gather(*self._side_tasks, return_exceptions=True)

    async def _handed_back(self, handed: HandBack) -> None:
        """Jobs whose cancel was asked for end at a hand-back, not queued again."""
        for job_id in handed.cancelled:
            logger.info("job %s: cancelled at its hand-back (its cancel was asked for)", job_id)
            row = await self.store.get(job_id)
            if row is not None:
                self._ended(row)

    # ---- API

    async def check_room(self, owner: str) -> None:
        """429 when the key (without keys: everyone) has its cap of queued and running jobs:
        early, before a body is read; `submit` counts again, atomically with its insert."""
        cap = self.settings.max_queued_jobs_per_key
        if cap:
            active = await self.store.active_jobs(owner)
            if active >= cap:
                raise _cap_error(active)

    async def submit(self, owner: str, request: JobRequest, upload: Upload | None) -> JobInfo:
        """Check the media now (a bad URL or file is a 4xx here, not a failed job later: range
        support, duration, the same as `/v1/transcribe`), then queue the job."""
        own = OwnUpload(upload.id, upload.filename) if upload is not None else None
        if request.webhook_url is not None and self.webhook_policy is not None:
            await check_destination(  # the rule delivery applies, before any work
                self.webhook_policy,
                str(request.webhook_url),
                param="webhook_url",
                doing="sends webhooks only to",
            )
        job = await self.runner.prepare(self.transcription(request, own), upload=own)
        job_id = "job_" + secrets.token_hex(12)
        try:
            row = await self.store.create(
                job_id,
                owner,
                request.model_dump_json(),
                upload.id if upload is not None else None,
                request.webhook_url,
                job.duration_sec,
                upload_path=upload.path if upload is not None else None,
                upload_name=upload.filename if upload is not None else None,
                cap=self.settings.max_queued_jobs_per_key,
            )
        except CapReached as exc:
            raise _cap_error(exc.active) from None
        if upload is not None and self.store.keeps_uploads:
            # In the database now, where every replica reads it, this one included: a file
            # kept here would outlive its job if another replica ran it.
            self.media_store.remove(upload)
        self._claim_now.set()
        return row.info()

    def transcription(self, request: JobRequest, upload: OwnUpload | None) -> TranscribeRequest:
        """What the job transcribes: its request less the job's own fields (`webhook_url`);
        an upload is read back from this replica (the one that took it may be gone)."""
        fields = {name: getattr(request, name) for name in TranscribeRequest.model_fields}
        if upload is not None:
            fields["media_url"] = self.media_store.url_of(upload.id)
        return TranscribeRequest(**fields)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a job: at once if queued or running here; a job another replica runs is
        flagged, and that replica stops it at its next lease renewal (waited for, briefly:
        the answer says `running` if it has not stopped by then)."""
        if await self.store.cancel_queued(job_id):
            return await self._cancelled_while_queued(job_id)
        row = await self.store.request_cancel(job_id)
        if row is not None and row.status == JobStatus.QUEUED:
            # Handed back between the two (a replica's SIGTERM): it waits again, cancel it so.
            if await self.store.cancel_queued(job_id):
                return await self._cancelled_while_queued(job_id)
            row = await self.store.get(job_id)
        task = self._running.get(job_id)
        lease = self._leases.get(job_id)
        if task is None and row is not None and row.status == JobStatus.RUNNING:
            # Another replica's job (it stops at its next lease renewal), or ours, stopped by
            # the claim loop in the meantime: wait a little for the outcome.
            deadline = time.monotonic() + self.settings.job_lease_sec / 3 + 2
            while row is not None and row.status == JobStatus.RUNNING:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
                row = await self.store.get(job_id)
            return row
        if task is not None and lease is not None:
            if job_id not in self._cancelling:  # the claim loop may have seen the flag first
                self._cancelling.add(job_id)
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
            row = await self.store.get(job_id)
            if row is not None and row.lease_token == lease.token:
                # Cancelled before its task took its first step: nothing ran to record it.
                self._cancelling.discard(job_id)
                with contextlib.suppress(LeaseLost):
                    event = ("cancelled", cancelled_event(job_id))
                    await self.store.finish(lease, JobEnd(JobStatus.CANCELLED), event=event)
                row = await self.store.get(job_id)
                if row is not None:
                    self._ended(row)
        return row

    async def _cancelled_while_queued(self, job_id: str) -> JobRecord | None:
        await self.store.append_event(job_id, "cancelled", cancelled_event(job_id))
        row = await self.store.get(job_id)
        if row is not None:
            self._ended(row)
        return row

    async def events(self, job_id: str, after: int) -> AsyncGenerator[StoredEvent, None]:
        """The job's events after `after`, as they are kept, until its last one. Woken by the
        run on this replica, or by the watcher's one query for jobs others run. A client that
        resumes at or after the last event of a job that has ended gets nothing and the end at
        once (it would otherwise wait for an event that never comes, pinged forever)."""
        with self.watcher.watch(job_id) as watch:
            while True:
                woken = watch.woken  # taken before reading: a wake from now on is not lost
                batch = await self.store.events_after(job_id, after)
                for event in batch:
                    yield event
                    after = event.seq
                    if event.name in TERMINAL_EVENTS:
                        return
                if not batch:
                    if watch.gone:
                        return  # deleted (retention)
                    last = await self.store.last_event(job_id)
                    watch.saw(-1 if last is None else last.seq)
                    if last is not None and last.seq > after:
                        continue  # written since the read above: read them
                    if last is not None and last.name in TERMINAL_EVENTS:
                        return  # resumed at or after the end
                    await woken.wait()

    # ---- the claim loop

    async def _claim_loop(self) -> None:
        renew_every = self.settings.job_lease_sec / 3
        last_renew = last_sweep = 0.0
        while True:
            self._claim_now.clear()  # set while this round works: the next round comes at once
            try:
                now = time.monotonic()
                if now - last_renew >= renew_every:
                    await self._renew()
                    last_renew = now  # only once renewed: a failed renewal is retried next round
                if now - last_sweep >= 60:
                    last_sweep = now
                    await self._sweep()
                free = self.settings.max_running_jobs - len(self._running)
                if free > 0:
                    await self._claim(free)
            except Exception:
                logger.exception("the job queue's round failed (its database?); retrying")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._claim_now.wait()

    async def _renew(self) -> None:
        renewal = await self.store.renew(list(self._leases.values()), self.settings.job_lease_sec)
        for job_id in renewal.lost:
            task = self._running.get(job_id)
            if task is None or task.done() or job_id in self._finishing:
                continue  # it ended (its own write says whether it still held the job)
            logger.warning(
                "job %s: another replica holds it now (this one stalled past "
                "ORCHESTRATOR_JOB_LEASE_SEC, or shares its ORCHESTRATOR_INSTANCE_ID); "
                "stopped here without writing",
                job_id,
            )
            self._lost.add(job_id)
            task.cancel()
        for job_id in renewal.cancel - self._cancelling:  # cancelled through another replica
            task = self._running.get(job_id)
            if task is not None:
                self._cancelling.add(job_id)
                task.cancel()

    async def _claim(self, free: int) -> None:
        claims = await self.store.claim(
            self.instance,
            self.settings.job_lease_sec,
            free,
            self.settings.job_max_attempts,
            exclude=list(self._running),  # ours, even if a lease lapsed while renewals failed
        )
        for lease in claims.leases:
            task = asyncio.create_task(self._run(lease))
            self._running[lease.job_id] = task
            self._leases[lease.job_id] = lease
            task.add_done_callback(functools.partial(self._forget, lease.job_id))
        for job_id in claims.exhausted:
            logger.warning(
                "job %s failed: it stopped its orchestrator %d times (ORCHESTRATOR_JOB_MAX_"
                "ATTEMPTS)",
                job_id,
                self.settings.job_max_attempts,
            )
            row = await self.store.get(job_id)
            if row is not None:
                self._ended(row)
        for job_id in claims.cancelled:
            row = await self.store.get(job_id)
            if row is not None:
                self._ended(row)
        if claims.exhausted or claims.cancelled:
            self._claim_now.set()  # their places go to the next jobs at once

    def _forget(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self._running.get(job_id) is not task:
            return  # a later claim of the same job runs now
        del self._running[job_id]
        self._leases.pop(job_id, None)
        self._lost.discard(job_id)
        self._claim_now.set()  # a slot is free: the next queued job starts now
        self.watcher.wake(job_id)  # readers see its last event, or poll for its next owner

    async def _sweep(self) -> None:
        cutoff = time.time() - self.settings.job_retention_hours * 3600
        for upload_id in await self.store.delete_finished_before(cutoff):
            if upload_id:
                self.media_store.remove(upload_id)
        if self.store.keeps_uploads:
            await self.store.sweep_upload_blocks(time.time() - ORPHAN_UPLOAD_SEC)

    # ---- one job

    async def _run(self, lease: Lease) -> None:
        job_id = lease.job_id
        try:
            row = await self.store.get(job_id)
            if row is None:
                return
            recorder = _Recorder(self.store, lease, functools.partial(self.watcher.wake, job_id))
            await recorder.load()
            end = await self._outcome(row, lease, recorder)
            self._finishing.add(job_id)
            await self.store.finish(lease, end, event=recorder.last)
            row = dataclasses.replace(row, status=end.status)
        except LeaseLost:
            if job_id not in self._lost:
                logger.warning(
                    "job %s: another replica holds it now (this one stalled past "
                    "ORCHESTRATOR_JOB_LEASE_SEC, or shares its ORCHESTRATOR_INSTANCE_ID); "
                    "stopped here at its next write, which was not made",
                    job_id,
                )
            return
        finally:
            self._cancelling.discard(job_id)
            self._finishing.discard(job_id)
        self._ended(row)

    async def _outcome(self, row: JobRecord, lease: Lease, recorder: _Recorder) -> JobEnd:
        """Run the job, keeping its events; its final status and what goes with it."""
        job_id = lease.job_id
        try:
            upload = OwnUpload(row.upload_id, row.upload_name) if row.upload_id else None
            transcribe = self.transcription(row.job_request(), upload)
            if row.total_sec is None:  # not checked at submit (a job from an older version)
                job = await self.runner.prepare(transcribe, upload=upload)
                await self.store.set_total(lease, job.duration_sec)
            else:  # checked at submit: no second probe
                job = self.runner.checked(transcribe, row.total_sec, upload=upload)
            transcript = Transcript()
            async for event in self.runner.events(job, _StoreLog(self.store, lease)):
                transcript.add(event)
                if (public := public_event(event)) is not None:
                    await recorder.add(public[0], public[1].model_dump_json())
            output = transcript.output()
            return JobEnd(
                JobStatus.SUCCEEDED,
                result=output.model_dump_json(),
                done_sec=output.input_duration_sec,
            )
        except LeaseLost:
            raise
        except asyncio.CancelledError:
            if job_id in self._lost:
                raise LeaseLost(lease) from None
            if job_id not in self._cancelling:
                raise  # shutting down: stop() hands the job back
            await recorder.add("cancelled", cancelled_event(job_id))
            return JobEnd(JobStatus.CANCELLED)
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, WhisperfleetError)
                else WhisperfleetError("the job failed inside the orchestrator; see its log")
            )
            if not isinstance(exc, WhisperfleetError):
                logger.exception("job %s failed", job_id)
            await recorder.add("error", error.body().model_dump_json())
            return JobEnd(JobStatus.FAILED, error=error.body().error.model_dump_json())

    def _ended(self, row: JobRecord) -> None:
        """After a job's end is written (`row` as it ended), whatever ended it: its readers
        woken, its upload removed (if it is still here: one handed to the database was removed
        at submit, and `_sweep` removes those of jobs it deletes), its webhook called (not for
        a cancel: the canceller knows)."""
        self.watcher.wake(row.id)
        if row.upload_id:
            self.media_store.remove(row.upload_id)
        if row.webhook_url and row.status != JobStatus.CANCELLED:
            task = asyncio.create_task(self._notify(row.id, row.webhook_url))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def _notify(self, job_id: str, url: str) -> None:
        row = await self.store.get(job_id)
        if row is None:
            return
        body = row.info(with_result=False).model_dump_json().encode()
        outcome = await deliver(
            self.webhook_client,
            url,
            body,
            self.settings.webhook_secret,
            self.settings.webhook_attempts,
        )
        await self.store.keep_webhook(job_id, outcome)
