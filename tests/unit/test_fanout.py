"""The merger without HTTP: fake workers finish out of order, output stays in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.fanout import Job, JobRunner
from shared.errors import MediaHostError
from shared.schemas import (
    ChunkRequest,
    MacroChunkReport,
    MicroChunkReport,
    MicroChunkResult,
    Segment,
    StreamFooter,
    StreamHeader,
    StreamProgress,
    TimeSpan,
    TranscribeRequest,
)


def result(start: float, end: float) -> MicroChunkResult:
    segment = Segment(
        start_time_sec=start,
        end_time_sec=end,
        text=f"{start:g}",
        language="english",
        bcp47_key="en",
    )
    report = MicroChunkReport(start_sec=start, end_sec=end, num_segments=1)
    return MicroChunkResult(micro_chunk=report, segments=[segment])


class FakeWorkers:
    """Later chunks answer sooner; chunk `fail_at` raises after its first micro chunk."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.started: dict[float, float] = {}
        self.first_result_at: float | None = None
        self.cancelled = 0

    async def transcribe_chunk(self, request: ChunkRequest) -> AsyncIterator[MicroChunkResult]:
        self.started[request.start_sec] = time.monotonic()
        try:
            await asyncio.sleep(0.02 * (10 - request.start_sec / 10))
            middle = (request.start_sec + request.end_sec) / 2
            if self.first_result_at is None:
                self.first_result_at = time.monotonic()
            yield result(request.start_sec, middle)
            if self.fail_at is not None and request.start_sec == self.fail_at * 10:
                raise MediaHostError("host went away")
            await asyncio.sleep(0.01)
            yield result(middle, request.end_sec)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def job(chunks: int) -> Job:
    spans = [TimeSpan(start_sec=i * 10.0, end_sec=(i + 1) * 10.0) for i in range(chunks)]
    request = TranscribeRequest(media_url="http://host/a.mp3")
    return Job(request, chunks * 10.0, spans, started_at=0.0)


def runner(workers: FakeWorkers, **settings: float) -> JobRunner:
    return JobRunner(
        workers,  # type: ignore[arg-type]
        httpx.AsyncClient(),
        OrchestratorSettings(head_start_sec=0, **settings),  # type: ignore[arg-type]
    )


async def test_segments_come_out_in_timeline_order_whatever_finishes_first() -> None:
    events = [event async for event in runner(FakeWorkers()).events(job(4))]
    assert isinstance(events[0], StreamHeader) and isinstance(events[-1], StreamFooter)
    starts = [e.start_time_sec for e in events if isinstance(e, Segment)]
    assert starts == [0, 5, 10, 15, 20, 25, 30, 35]
    reports = [e for e in events if isinstance(e, MacroChunkReport)]
    assert [r.start_sec for r in reports] == [0, 10, 20, 30]
    progress = [e.done_sec for e in events if isinstance(e, StreamProgress)]
    assert progress == sorted(progress) and progress[-1] == 40
    assert events[-1].num_segments == 8 and events[-1].languages == ["en"]


async def test_progress_is_reported_before_earlier_chunks_release_segments() -> None:
    events = [event async for event in runner(FakeWorkers()).events(job(3))]
    first_segment = next(i for i, e in enumerate(events) if isinstance(e, Segment))
    assert any(isinstance(e, StreamProgress) for e in events[:first_segment])


async def test_a_failing_chunk_fails_the_job_and_cancels_the_others() -> None:
    workers = FakeWorkers(fail_at=3)
    with pytest.raises(MediaHostError, match="went away"):
        [event async for event in runner(workers).events(job(4))]
    await asyncio.sleep(0)
    assert workers.cancelled >= 1


async def test_head_start_lets_the_first_chunk_go_alone() -> None:
    workers = FakeWorkers()
    jobs = JobRunner(
        workers,  # type: ignore[arg-type]
        httpx.AsyncClient(),
        OrchestratorSettings(head_start_sec=5),
    )
    [event async for event in jobs.events(job(3))]
    assert sorted(workers.started) == [0, 10, 20]
    assert workers.first_result_at is not None
    # Chunks 1 and 2 would answer first, but only started once chunk 0 had a result.
    assert min(workers.started[10], workers.started[20]) >= workers.first_result_at
