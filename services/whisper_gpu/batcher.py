"""Dynamic batching across concurrent requests, with backpressure and cancellation.

Every clip request, from any worker and any job, waits in one bounded queue. A scheduler turns
the queue into batches for the model's replicas (`slots`):

    submit() ──► queue (bounded: full = 503 + Retry-After) ──► scheduler ──► slot ──► run_batch()
       ▲            │  expired (504) and abandoned requests                     │   (thread)
       └────────────┴── are removed before they are batched ◄── results ────────┘

A batch holds requests whose options can share one generate call (same task, language,
language allow-list, prompt, temperature), most urgent first. Urgency is arrival time, pushed
back by the clip's position in its media (`position / position_speedup`, capped at half the
queue timeout): the head of every job goes first, which is what a streaming client waits for,
and a clip deep into a long file still can't starve. With a free slot it runs as soon as

- it is full (`max_batch_size`), or
- its oldest request has waited `max_batch_wait_ms`, or
- no batch is running at all (an idle model never waits: no latency tax at low load, and a
  backlog that built up during the last batch goes at once).

While the model is busy, requests pile up and the next batch takes them all at once, so batches
grow with load by themselves; the wait limit matters when `slots` > 1, where it keeps a free slot
from launching a tiny batch while another slot is busy.

A failed batch of several clips is re-run one clip at a time, so a poisoned clip fails alone and
its neighbours still get their transcripts. A running batch whose callers have all gone is told
so (`abandoned`) and stops at its next round instead of computing for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.whisper_gpu.metrics import ModelMetrics
from shared.errors import OverloadedError, UpstreamTimeoutError, WhisperfleetError
from shared.schemas import ClipTranscription, DecodeOptions

logger = logging.getLogger(__name__)

ClipT = TypeVar("ClipT")
RunBatch = Callable[[Sequence[ClipT], DecodeOptions, Callable[[], bool]], list[ClipTranscription]]
"""(clips, options, abandoned) -> one transcription per clip; `abandoned()` turns true once every
caller of the batch has gone, so a long batch can stop early."""


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 8
    max_batch_wait_ms: float = 10.0
    max_queue_size: int = 256
    queue_timeout_sec: float = 120.0
    slots: int = 1
    position_speedup: float = 50.0

    def urgency(self, enqueued_at: float, position_sec: float | None) -> float:
        """Scheduling key: lower runs first."""
        if not position_sec or self.position_speedup <= 0:
            return enqueued_at
        return enqueued_at + min(position_sec / self.position_speedup, self.queue_timeout_sec / 2)


@dataclass(eq=False)
class _Pending(Generic[ClipT]):
    clip: ClipT
    options: DecodeOptions
    future: asyncio.Future[ClipTranscription]
    enqueued_at: float
    urgency: float
    abandoned: bool = False
    """The caller went away after the clip was batched (read from the model's thread)."""

    @property
    def key(self) -> tuple[object, ...]:
        """Clips batch together when they decode alike (`DecodeOptions.batch_key`)."""
        return self.options.batch_key()


class BatchFailedError(WhisperfleetError):
    """The model raised while transcribing this clip."""

    code = "model_error"


class Batcher(Generic[ClipT]):
    """Batches clips (whatever `run_batch` takes: audio, or audio with its features)."""

    def __init__(
        self, run_batch: RunBatch[ClipT], policy: BatchPolicy, metrics: ModelMetrics
    ) -> None:
        self._run_batch = run_batch
        self.policy = policy
        self.metrics = metrics
        self._queue: deque[_Pending[ClipT]] = deque()
        self._wakeup = asyncio.Event()
        self._running = 0
        self._batch_seconds = 1.0  # moving estimate, for Retry-After
        self._scheduler: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        self._scheduler = asyncio.create_task(self._schedule(), name="batch-scheduler")

    async def stop(self) -> None:
        tasks = [t for t in (self._scheduler, *self._batches) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(OverloadedError("server shutting down"))
        self._queue.clear()

    async def submit(
        self, clip: ClipT, options: DecodeOptions, position_sec: float | None = None
    ) -> ClipTranscription:
        """Queue one clip and wait for its transcript; cancelling the wait withdraws it."""
        if len(self._queue) >= self.policy.max_queue_size:
            self.metrics.requests.labels(outcome="rejected").inc()
            raise OverloadedError(
                f"model server queue is full ({self.policy.max_queue_size} clips); retry later",
                retry_after_sec=self._retry_after(),
            )
        now = time.monotonic()
        future = asyncio.get_running_loop().create_future()
        pending = _Pending(clip, options, future, now, self.policy.urgency(now, position_sec))
        self._queue.append(pending)
        self._changed()
        try:
            return await pending.future
        except asyncio.CancelledError:
            if self._withdraw(pending):
                self.metrics.requests.labels(outcome="cancelled").inc()
            else:
                pending.abandoned = True
            raise

    def _withdraw(self, pending: _Pending[ClipT]) -> bool:
        try:
            self._queue.remove(pending)
        except ValueError:
            return False  # already in a batch: its result will simply be dropped
        self._changed()
        return True

    def _changed(self) -> None:
        self.metrics.queue_depth.set(len(self._queue))
        self._wakeup.set()

    def _retry_after(self) -> float:
        batches_ahead = len(self._queue) / self.policy.max_batch_size / self.policy.slots
        return max(1.0, batches_ahead * self._batch_seconds)

    async def _schedule(self) -> None:
        while True:
            self._wakeup.clear()
            self._expire(time.monotonic())
            timeout = None
            while self._running < self.policy.slots and self._queue:
                batch, timeout = self._next_batch(time.monotonic())
                if batch is None:
                    break
                self._launch(batch)
            if self._queue:
                oldest = self._queue[0].enqueued_at + self.policy.queue_timeout_sec
                until_expiry = max(0.0, oldest - time.monotonic())
                timeout = until_expiry if timeout is None else min(timeout, until_expiry)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()

    def _expire(self, now: float) -> None:
        limit = self.policy.queue_timeout_sec
        expired = [p for p in self._queue if now - p.enqueued_at >= limit]
        for pending in expired:
            self._queue.remove(pending)
            self.metrics.requests.labels(outcome="timeout").inc()
            if not pending.future.done():
                pending.future.set_exception(
                    UpstreamTimeoutError(f"clip waited more than {limit:g} s in the model queue")
                )
        if expired:
            self._changed()

    def _next_batch(self, now: float) -> tuple[list[_Pending[ClipT]] | None, float | None]:
        """The batch to run now, or None and how long to wait before one is due."""
        first = min(self._queue, key=lambda p: p.urgency)
        group = sorted((p for p in self._queue if p.key == first.key), key=lambda p: p.urgency)
        group = group[: self.policy.max_batch_size]
        waited = now - min(p.enqueued_at for p in group)
        wait_limit = self.policy.max_batch_wait_ms / 1000
        idle = self._running == 0
        if len(group) >= self.policy.max_batch_size or idle or waited >= wait_limit:
            for pending in group:
                self._queue.remove(pending)
            self._changed()
            return group, None
        return None, wait_limit - waited

    def _launch(self, batch: list[_Pending[ClipT]]) -> None:
        self._running += 1
        task = asyncio.create_task(self._run(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run(self, batch: list[_Pending[ClipT]]) -> None:
        started = time.monotonic()
        try:
            for pending in batch:
                self.metrics.queue_wait.observe(started - pending.enqueued_at)
            self.metrics.batch_size.observe(len(batch))
            results = await self._transcribe(batch)
            elapsed = time.monotonic() - started
            self.metrics.inference.observe(elapsed)
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * elapsed
            for pending, result in zip(batch, results, strict=True):
                self._settle(pending, result)
        finally:
            self._running -= 1
            self._wakeup.set()

    async def _transcribe(
        self, batch: list[_Pending[ClipT]]
    ) -> list[ClipTranscription | Exception]:
        options = batch[0].options

        def abandoned() -> bool:
            return all(p.abandoned for p in batch)

        clips = [p.clip for p in batch]
        try:
            return list(await asyncio.to_thread(self._run_batch, clips, options, abandoned))
        except Exception as exc:
            if len(batch) == 1:
                logger.exception("model failed on a clip")
                return [BatchFailedError(f"the model failed on this clip: {exc}")]
            logger.warning("batch of %d failed (%s); isolating the culprit", len(batch), exc)
        return [result for pending in batch for result in await self._transcribe([pending])]

    def _settle(self, pending: _Pending[ClipT], result: ClipTranscription | Exception) -> None:
        if pending.future.done():  # the caller went away while its clip was running
            self.metrics.requests.labels(outcome="cancelled").inc()
            return
        if isinstance(result, Exception):
            self.metrics.requests.labels(outcome="error").inc()
            pending.future.set_exception(result)
        else:
            self.metrics.requests.labels(outcome="ok").inc()
            pending.future.set_result(result)
