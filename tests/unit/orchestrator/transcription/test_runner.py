"""The job runner without HTTP: fake workers finish out of order, output stays in order;
failures and departures cancel everything; the first chunk starts early and alone."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.transcription.runner import (
    HeardLanguages,
    Job,
    JobRunner,
    MediaClients,
    Transcript,
    about_the_upload,
)
from shared.errors import (
    BadRequestError,
    InvalidRequestError,
    MediaHostError,
    UnsupportedMediaError,
)
from shared.media_host import AddressPolicy
from shared.schemas import (
    ChunkRequest,
    ChunkSegment,
    MacroChunkReport,
    MicroChunkReport,
    MicroChunkResult,
    Segment,
    SilenceRequest,
    SilenceResult,
    StreamFooter,
    StreamHeader,
    StreamProgress,
    TranscribeParams,
    TranscribeRequest,
)


def result(start: float, end: float, *, incomplete: bool = False) -> MicroChunkResult:
    segment = ChunkSegment(start_sec=start, end_sec=end, text=f"{start:g}", language="en")
    report = MicroChunkReport(start_sec=start, end_sec=end, num_segments=1, incomplete=incomplete)
    return MicroChunkResult(micro_chunk=report, segments=[segment])


class FakeWorkers:
    """Chunks of 30 s; later chunks answer sooner; chunk `fail_at` raises after its first micro
    chunk, the others wait `hold_sec` before their second; boundary searches answer the
    window's middle (with `searches_wait_for_chunk_0`, those past the first chunk only once
    it started); the second micro chunk of each chunk in `incomplete_at` comes back as the
    model server marks a clip it gave up on in part."""

    def __init__(
        self,
        fail_at: int | None = None,
        searches_wait_for_chunk_0: bool = False,
        incomplete_at: tuple[int, ...] = (),
        hold_sec: float = 0.01,
    ) -> None:
        self.fail_at = fail_at
        self.hold_sec = hold_sec
        self.incomplete_at = incomplete_at
        self.searches_wait_for_chunk_0 = searches_wait_for_chunk_0
        self.chunk_0_started = asyncio.Event()
        self.started: dict[float, float] = {}
        self.requests: list[ChunkRequest] = []
        self.searches_done_at: float | None = None
        self.first_result_at: float | None = None
        self.cancelled = 0

    async def find_silence(self, request: SilenceRequest) -> SilenceResult:
        if self.searches_wait_for_chunk_0 and request.start_sec > 30:
            await self.chunk_0_started.wait()
        self.searches_done_at = time.monotonic()
        return SilenceResult(split_sec=(request.start_sec + request.end_sec) / 2)

    async def transcribe_chunk(self, request: ChunkRequest) -> AsyncIterator[MicroChunkResult]:
        self.started[request.start_sec] = time.monotonic()
        if request.start_sec == 0:
            self.chunk_0_started.set()
        self.requests.append(request)
        try:
            await asyncio.sleep(0.02 * (10 - request.start_sec / 30))
            middle = (request.start_sec + request.end_sec) / 2
            if self.first_result_at is None:
                self.first_result_at = time.monotonic()
            yield result(request.start_sec, middle)
            if self.fail_at is not None and request.start_sec == self.fail_at * 30:
                raise MediaHostError("host went away")
            await asyncio.sleep(self.hold_sec)
            incomplete = request.start_sec // 30 in self.incomplete_at
            yield result(middle, request.end_sec, incomplete=incomplete)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def job(chunks: int) -> Job:
    params = TranscribeParams(macro_chunk_size_sec=30)
    request = TranscribeRequest(media_url="http://host/a.mp3", params=params)
    return Job(request, chunks * 30.0, started_at=0.0)


def runner(workers: FakeWorkers, **settings: float) -> JobRunner:
    return JobRunner(
        workers,  # type: ignore[arg-type]
        MediaClients(httpx.AsyncClient(), AddressPolicy(), httpx.AsyncClient()),
        OrchestratorSettings(**{"head_start_sec": 0, **settings}),  # type: ignore[arg-type]
    )


async def test_segments_come_out_in_timeline_order_whatever_finishes_first() -> None:
    events = [event async for event in runner(FakeWorkers()).events(job(4))]
    assert isinstance(events[0], StreamHeader) and isinstance(events[-1], StreamFooter)
    starts = [e.start_time_sec for e in events if isinstance(e, Segment)]
    assert starts == [0, 15, 30, 45, 60, 75, 90, 105]
    reports = [e for e in events if isinstance(e, MacroChunkReport)]
    assert [r.start_sec for r in reports] == [0, 30, 60, 90]
    progress = [e.done_sec for e in events if isinstance(e, StreamProgress)]
    assert progress == sorted(progress) and progress[-1] == 120
    assert events[-1].num_segments == 8 and events[-1].languages == ["en"]


async def test_segments_leave_the_runner_with_the_public_names_made_once() -> None:
    events = [event async for event in runner(FakeWorkers()).events(job(1))]
    [first, _] = [e for e in events if isinstance(e, Segment)]
    assert json.loads(first.model_dump_json()) == {
        "start_time_sec": 0.0, "end_time_sec": 15.0, "text": "0", "language": "english",
        "bcp47_key": "en", "words": None, "avg_logprob": None, "compression_ratio": None,
        "no_speech_prob": None, "temperature": None, "speaker": None,
        "overlapping_speakers": None,
    }  # fmt: skip


async def test_clips_the_model_server_gave_up_on_are_marked_in_the_answer() -> None:
    """A micro chunk the model server answered `incomplete` is counted in the footer and
    marked in its macro chunk's report (the JSON answer and an async job's result)."""
    transcript = Transcript()
    async for event in runner(FakeWorkers(incomplete_at=(0, 2))).events(job(3)):
        transcript.add(event)
    output = transcript.output()
    flags = [[m.incomplete for m in macro.micro_chunks] for macro in output.macro_chunks]
    assert flags == [[False, True], [False, False], [False, True]]
    assert transcript.footer is not None and transcript.footer.incomplete_clips == 2
    shown = json.loads(output.model_dump_json())["macro_chunks"]
    assert [[m.get("incomplete") for m in macro["micro_chunks"]] for macro in shown] == [
        [None, True],
        [None, None],
        [None, True],
    ]
    assert "incomplete_clips" in transcript.footer.model_dump_json()


async def test_the_orchestrator_counts_incomplete_clips_as_they_arrive_not_as_replayed() -> None:
    """`orchestrator_incomplete_clips_total` counts what the workers sent: a resumed job's
    stored micro chunks (one of them incomplete) are not counted again."""
    jobs = runner(FakeWorkers(incomplete_at=(0, 1)))
    log = MemoryLog({0: ([result(0, 15), result(15, 30, incomplete=True)], True)})
    events = [e async for e in jobs.events(job(2), log)]
    registry = jobs.metrics.registry
    assert registry.get_sample_value("orchestrator_micro_chunks_total") == 2
    assert registry.get_sample_value("orchestrator_incomplete_clips_total") == 1
    assert isinstance(events[-1], StreamFooter) and events[-1].incomplete_clips == 2


async def test_a_job_without_incomplete_clips_says_nothing_of_them() -> None:
    """The public answer stays as it was when every clip was transcribed in full."""
    events = [event async for event in runner(FakeWorkers()).events(job(2))]
    footer = events[-1]
    assert isinstance(footer, StreamFooter) and footer.incomplete_clips == 0
    assert "incomplete" not in footer.model_dump_json()
    reports = [e for e in events if isinstance(e, MacroChunkReport)]
    assert "incomplete" not in "".join(r.model_dump_json() for r in reports)


async def test_progress_is_reported_before_earlier_chunks_release_segments() -> None:
    events = [event async for event in runner(FakeWorkers()).events(job(3))]
    first_segment = next(i for i, e in enumerate(events) if isinstance(e, Segment))
    assert any(isinstance(e, StreamProgress) for e in events[:first_segment])


async def test_a_failing_chunk_fails_the_job_and_cancels_the_others() -> None:
    workers = FakeWorkers(fail_at=3, hold_sec=5.0)  # the others still running when it fails
    with pytest.raises(MediaHostError, match="went away"):
        [event async for event in runner(workers).events(job(4))]
    await asyncio.sleep(0)
    assert workers.cancelled >= 1


async def test_head_start_lets_the_first_chunk_go_alone() -> None:
    workers = FakeWorkers()
    [event async for event in runner(workers, head_start_sec=5).events(job(3))]
    assert sorted(workers.started) == [0, 30, 60]
    assert workers.first_result_at is not None
    # Chunks 1 and 2 would answer first, but only started once chunk 0 had a result.
    assert min(workers.started[30], workers.started[60]) >= workers.first_result_at


async def test_chunks_after_the_head_start_carry_the_language_heard_so_far() -> None:
    """The first chunk has nothing to go on; the later ones start once it has a result, and
    are told the job's language so far (a micro chunk's detection, unsure, picks it)."""
    workers = FakeWorkers()
    [event async for event in runner(workers, head_start_sec=5).events(job(3))]
    hints = {request.start_sec: request.language_hint for request in workers.requests}
    assert hints == {0: None, 30: "en", 60: "en"}


def test_the_language_heard_most_is_the_one_with_most_seconds_of_words() -> None:
    heard = HeardLanguages()
    assert heard.most() is None
    heard.add(result(0, 10))  # 10 s of English
    german = result(10, 14)
    german.segments[0].language = "de"
    heard.add(german)
    heard.add(german)
    heard.add(german)  # 12 s of German
    assert heard.most() == "de"


async def test_the_first_chunk_starts_before_the_plan_is_complete() -> None:
    """The later boundary searches answer only once chunk 0 has started: a runner that waited
    for the whole plan would wait forever."""
    workers = FakeWorkers(searches_wait_for_chunk_0=True)

    async def run() -> None:
        [event async for event in runner(workers).events(job(4))]

    await asyncio.wait_for(run(), timeout=10)
    assert workers.searches_done_at is not None
    assert workers.started[0] <= workers.searches_done_at


async def test_only_the_first_chunk_asks_for_a_short_first_micro_chunk() -> None:
    workers = FakeWorkers()
    [event async for event in runner(workers, first_micro_chunk_sec=8).events(job(3))]
    first = {r.start_sec: r.first_micro_chunk_sec for r in workers.requests}
    assert first == {0: 8, 30: None, 60: None}


class MemoryLog:
    """`ChunkLog` in memory: what a restarted job finds in the job table."""

    def __init__(self, kept: dict[int, tuple[list[MicroChunkResult], bool]]) -> None:
        self.kept = kept
        self.recorded: list[tuple[int, int]] = []
        self.completed: list[int] = []

    async def stored(self, index: int, span: object) -> tuple[list[MicroChunkResult], bool]:
        return self.kept.get(index, ([], False))

    async def record(self, index: int, micro_index: int, result: MicroChunkResult) -> None:
        self.recorded.append((index, micro_index))

    async def complete(self, index: int, micro_count: int) -> None:
        self.completed.append(index)


async def test_a_resumed_job_redoes_no_kept_micro_chunk_and_ends_as_an_uninterrupted_one() -> None:
    uninterrupted = [e async for e in runner(FakeWorkers()).events(job(3))]
    workers = FakeWorkers()
    # Chunk 0 finished before the restart; chunk 1 had its first micro chunk kept.
    log = MemoryLog({0: ([result(0, 15), result(15, 30)], True), 1: ([result(30, 45)], False)})
    resumed = [e async for e in runner(workers).events(job(3), log)]

    def transcript(events: Sequence[object]) -> list[object]:
        return [e for e in events if isinstance(e, Segment | MacroChunkReport)]

    assert transcript(resumed) == transcript(uninterrupted)
    assert sorted(r.start_sec for r in workers.requests) == [30, 60]  # chunk 0 not asked for
    assert sorted(log.recorded) == [(1, 1), (2, 0), (2, 1)]  # only what is new
    assert sorted(log.completed) == [1, 2]


async def test_the_plan_waits_for_the_chunks_so_tasks_dont_pile_up_ahead_of_the_work() -> None:
    """A long job (or a header claiming one) never has more than the running chunks and a few
    queued ones as tasks: the plan waits for chunks to finish before planning more."""
    workers = FakeWorkers()
    most = 0
    original = workers.transcribe_chunk

    async def counting(request: ChunkRequest) -> AsyncIterator[MicroChunkResult]:
        nonlocal most
        most = max(most, len(asyncio.all_tasks()))
        async for item in original(request):
            yield item

    workers.transcribe_chunk = counting  # type: ignore[method-assign]
    events = [e async for e in runner(workers, max_concurrent_chunks=4).events(job(200))]
    assert sum(isinstance(e, MacroChunkReport) for e in events) == 200
    # 4 running + 4 queued chunks, the plan and its 4 searches, the test itself
    assert most <= 4 + 4 + 1 + 4 + 2, most


def test_a_failed_check_of_an_upload_names_the_file_not_a_media_url() -> None:
    error = about_the_upload(
        UnsupportedMediaError("media_url has no audio stream", param="media_url")
    )
    assert (error.param, error.message) == ("file", "the uploaded file has no audio stream")
    other = about_the_upload(BadRequestError("bad language", param="language"))
    assert (other.param, other.message) == ("language", "bad language")


async def test_an_english_only_fleet_refuses_another_language_before_fetching_anything() -> None:
    jobs = runner(FakeWorkers(), model_name="tiny.en")  # type: ignore[arg-type]
    german = TranscribeRequest(
        media_url="http://host/a.mp3", params=TranscribeParams(language="de")
    )
    with pytest.raises(InvalidRequestError) as refused:
        await jobs.prepare(german)  # the media host is never asked: it would fail otherwise
    assert refused.value.param == "language" and "English-only" in refused.value.message
