"""The orchestrator's core: check, probe, plan, fan out to the chunk workers, merge in order.

media_url ─> range check ─> duration ─> even grid ─> boundaries moved into pauses
                                                    (one /v1/silence call per boundary,
                                                     all in parallel)
          ─> one /v1/chunks call per macro chunk, at most `max_concurrent_chunks` at once
          ─> segments concatenated in timeline order
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.planner import nominal_boundaries, search_windows, spans_from_boundaries
from services.orchestrator.probe import check_range_support, probe_duration
from shared.aio import cancel_and_wait, gather_bounded
from shared.clients import WorkerClient
from shared.schemas import (
    ChunkRequest,
    MacroChunkReport,
    MicroChunkResult,
    Segment,
    SilenceRequest,
    StreamFooter,
    StreamHeader,
    StreamProgress,
    TimeSpan,
    TranscribeOutput,
    TranscribeParams,
    TranscribeRequest,
)


@dataclass(frozen=True)
class Job:
    """A checked and planned job, ready to run."""

    request: TranscribeRequest
    duration_sec: float
    spans: list[TimeSpan]
    started_at: float


JobEvent = StreamHeader | Segment | StreamProgress | StreamFooter | MacroChunkReport
"""What a running job yields, in order: header; then segments (timeline order), progress and
completed macro chunk reports interleaved; then the footer."""

_DONE = object()


class JobRunner:
    def __init__(
        self, workers: WorkerClient, media_http: httpx.AsyncClient, settings: OrchestratorSettings
    ) -> None:
        self.workers = workers
        self.media_http = media_http
        self.settings = settings

    async def prepare(self, request: TranscribeRequest) -> Job:
        """Range check, duration and plan: everything that can fail before output starts."""
        started = time.perf_counter()
        await check_range_support(self.media_http, request.media_url)
        duration = await asyncio.to_thread(
            probe_duration, request.media_url, self.settings.probe_timeout_sec
        )
        spans = await self.plan(request.media_url, duration, request.params)
        return Job(request, duration, spans, started)

    async def plan(
        self, media_url: str, duration: float, params: TranscribeParams
    ) -> list[TimeSpan]:
        """Macro chunks whose boundaries sit in the quietest point near the even grid."""
        boundaries = nominal_boundaries(duration, params.macro_chunk_size_sec)
        if boundaries and self.settings.boundary_search_sec > 0:
            windows = search_windows(boundaries, duration, self.settings.boundary_search_sec)
            splits = await gather_bounded(
                (
                    self.workers.find_silence(
                        SilenceRequest(
                            media_url=media_url,
                            start_sec=low,
                            end_sec=high,
                            smoothing_num_samples=params.silence_detection_smoothing_num_samples,
                        )
                    )
                    for low, high in windows
                ),
                self.settings.max_concurrent_chunks,
            )
            boundaries = [split.split_sec for split in splits]
        return spans_from_boundaries(duration, boundaries)

    async def events(self, job: Job) -> AsyncIterator[JobEvent]:
        """Run the job, yielding segments in timeline order as soon as all earlier ones are known.

        Every macro chunk streams from a worker into one queue; results of later chunks wait in
        a buffer until every earlier chunk has finished. Closing this generator cancels every
        worker call (and through them FFmpeg and the queued model requests).
        """
        request = job.request
        yield StreamHeader(
            media_url=request.media_url, input_duration_sec=job.duration_sec, macro_chunks=job.spans
        )
        arrivals: asyncio.Queue[tuple[int, MicroChunkResult | object | BaseException]]
        arrivals = asyncio.Queue()
        slots = asyncio.Semaphore(self.settings.max_concurrent_chunks)
        first_heard = asyncio.Event()

        async def head_start(index: int) -> None:
            # The first chunk gets the model to itself for a moment: its first micro chunk is
            # what a streaming client waits for, and nothing else can be shown before it.
            if index > 0 and self.settings.head_start_sec > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.head_start_sec):
                        await first_heard.wait()

        async def run_chunk(index: int, span: TimeSpan) -> None:
            chunk = ChunkRequest(
                media_url=request.media_url,
                start_sec=span.start_sec,
                end_sec=span.end_sec,
                params=request.params,
            )
            try:
                await head_start(index)
                async with slots:
                    async for result in self.workers.transcribe_chunk(chunk):
                        first_heard.set()
                        arrivals.put_nowait((index, result))
                arrivals.put_nowait((index, _DONE))
            except Exception as exc:  # handed to the merger, which raises it
                arrivals.put_nowait((index, exc))
            finally:
                first_heard.set()

        tasks = [asyncio.create_task(run_chunk(i, span)) for i, span in enumerate(job.spans)]
        buffered: list[list[MicroChunkResult]] = [[] for _ in job.spans]
        finished = [False] * len(job.spans)
        next_index = 0  # the earliest macro chunk not yet fully released
        released = 0  # results of that chunk already released
        done_sec = 0.0
        segments = 0
        languages: dict[str, None] = {}
        try:
            while next_index < len(job.spans):
                index, arrival = await arrivals.get()
                if isinstance(arrival, BaseException):
                    raise arrival
                if arrival is _DONE:
                    finished[index] = True
                else:
                    assert isinstance(arrival, MicroChunkResult)
                    buffered[index].append(arrival)
                    micro = arrival.micro_chunk
                    done_sec += micro.end_sec - micro.start_sec
                # Release everything that is now in timeline order.
                while next_index < len(job.spans):
                    for result in buffered[next_index][released:]:
                        for segment in result.segments:
                            languages.setdefault(segment.bcp47_key)
                            segments += 1
                            yield segment
                    released = len(buffered[next_index])
                    if not finished[next_index]:
                        break
                    span = job.spans[next_index]
                    yield MacroChunkReport(
                        start_sec=span.start_sec,
                        end_sec=span.end_sec,
                        micro_chunks=[r.micro_chunk for r in buffered[next_index]],
                    )
                    buffered[next_index] = []
                    next_index += 1
                    released = 0
                if arrival is not _DONE:
                    yield StreamProgress(
                        done_sec=min(done_sec, job.duration_sec),
                        total_sec=job.duration_sec,
                        segments=segments,
                    )
        finally:
            await cancel_and_wait(tasks)
        elapsed = time.perf_counter() - job.started_at
        yield StreamFooter(
            input_duration_sec=job.duration_sec,
            processing_duration_sec=elapsed,
            speedup=job.duration_sec / elapsed if elapsed > 0 else 0.0,
            num_segments=segments,
            languages=list(languages),
        )

    async def run(self, request: TranscribeRequest) -> TranscribeOutput:
        """The whole job as one response: the streamed events, collected."""
        job = await self.prepare(request)
        segments: list[Segment] = []
        chunks: list[MacroChunkReport] = []
        footer: StreamFooter | None = None
        async for event in self.events(job):
            if isinstance(event, Segment):
                segments.append(event)
            elif isinstance(event, MacroChunkReport):
                chunks.append(event)
            elif isinstance(event, StreamFooter):
                footer = event
        assert footer is not None
        return TranscribeOutput(
            segments=segments,
            input_duration_sec=footer.input_duration_sec,
            processing_duration_sec=footer.processing_duration_sec,
            speedup=footer.speedup,
            macro_chunks=chunks,
        )
