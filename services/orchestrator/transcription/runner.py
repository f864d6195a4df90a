"""Running a job: check the media, plan, fan out to the chunk workers, merge, report.

    prepare   range check, container, duration, size (everything that can fail before output
              starts: probe.py, under one deadline)
    events    header ─┬─ planning task: macro chunks in order, each as soon as its end is known
                      ├─ one task per macro chunk: POST /v1/chunks, a typed stream of results
                      └─ the merger turns their results into segments in timeline order
              footer

All tasks report into one queue read by `events`, so the merger (planning.py and merger.py are
plain code) is only ever touched by the generator; closing the generator (the client left)
cancels every task, and through them FFmpeg and the queued model requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import numpy as np
from pydantic import BaseModel

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.transcription.merger import OrderedMerger
from services.orchestrator.transcription.planning import (
    nominal_boundaries,
    plan_spans,
    spans_from_boundaries,
)
from services.orchestrator.transcription.probe import probe_media
from services.orchestrator.transcription.speakers import Diarization, JobSpeakers
from shared.aio import cancel_and_wait
from shared.clients import WorkerClient
from shared.diarization.clustering import KnownSpeaker
from shared.errors import NotReadyError, PayloadTooLargeError, WhisperfleetError
from shared.languages import ENGLISH_ONLY, check_languages, is_english_only
from shared.media_host import AddressPolicy
from shared.schemas import (
    ChunkRequest,
    ChunkSegment,
    MacroChunkReport,
    MicroChunkResult,
    Segment,
    SilenceRequest,
    SpeakerEmbedRequest,
    SpeakerTurn,
    StreamFooter,
    StreamHeader,
    StreamProgress,
    TimeSpan,
    TranscribeOutput,
    TranscribeRequest,
)


@dataclass(frozen=True)
class OwnUpload:
    """A job's media when it was uploaded: the workers read it by id from an orchestrator
    (with the fleet credential); clients see it by name, never by where it is read."""

    id: str
    filename: str | None = None

    @property
    def name(self) -> str:
        return f"upload:{self.filename or self.id}"


@dataclass(frozen=True)
class Job:
    """A checked job, ready to run."""

    request: TranscribeRequest
    duration_sec: float
    started_at: float
    upload: OwnUpload | None = None
    """Set when the media is an upload (`request.media_url` is then this orchestrator's own
    read-back URL, which workers and clients never see)."""
    known_speakers: tuple[KnownSpeaker, ...] | None = None
    """The known speakers' voices, once embedded (None: not yet, or none asked for)."""

    @property
    def media(self) -> dict[str, str]:
        """How a chunk or silence request names the media."""
        if self.upload is not None:
            return {"upload_id": self.upload.id}
        return {"media_url": self.request.media_url}

    @property
    def media_name(self) -> str:
        """What clients are shown (the stream's header)."""
        return self.upload.name if self.upload is not None else self.request.media_url


BOUNDARY_SEARCHES_AT_ONCE = 2
"""Boundary searches of one job in flight: enough to keep ahead of the chunks they start, few
enough that the first one (which the first words wait for) doesn't queue behind 20 others."""

JobEvent = StreamHeader | Segment | StreamProgress | MacroChunkReport | Diarization | StreamFooter
"""What a running job yields, in order: header; then segments (timeline order), progress and
completed macro chunk reports interleaved; when diarizing, the final speakers; the footer.
Segments leave as clients see them (`Segment`, made from the merger's `ChunkSegment`s here
and, for the final speakers' segments, in `Transcript`: `Segment.of`, nowhere else)."""

EVENT_NAMES: dict[type, str] = {
    StreamHeader: "header",
    Segment: "segment",
    StreamProgress: "progress",
    StreamFooter: "footer",
}
"""The Server-Sent Event name of each job event a client sees (macro chunk reports stay in the
JSON answer)."""


def public_event(event: JobEvent) -> tuple[str, BaseModel] | None:
    """What a client is sent of a job event (Server-Sent Events, an async job's event log):
    its name and data; None for what stays inside (macro chunk reports)."""
    if isinstance(event, Diarization):
        return "speakers", event.speaker_map
    name = EVENT_NAMES.get(type(event))
    return None if name is None else (name, event)


@dataclass
class Transcript:
    """A job's events collected into the JSON answer."""

    segments: list[Segment] = field(default_factory=list)
    chunks: list[MacroChunkReport] = field(default_factory=list)
    footer: StreamFooter | None = None
    speakers: list[str] | None = None
    speaker_turns: list[SpeakerTurn] | None = None

    def add(self, event: JobEvent) -> None:
        if isinstance(event, Segment):
            self.segments.append(event)
        elif isinstance(event, Diarization):  # labelled again, with the final speakers
            self.segments = [Segment.of(segment) for segment in event.segments]
            self.speakers = event.speaker_map.speakers
            self.speaker_turns = event.turns
        elif isinstance(event, MacroChunkReport):
            self.chunks.append(event)
        elif isinstance(event, StreamFooter):
            self.footer = event

    def output(self) -> TranscribeOutput:
        assert self.footer is not None, "the job has not ended"
        return TranscribeOutput(
            segments=self.segments,
            input_duration_sec=self.footer.input_duration_sec,
            processing_duration_sec=self.footer.processing_duration_sec,
            speedup=self.footer.speedup,
            macro_chunks=self.chunks,
            speakers=self.speakers,
            speaker_turns=self.speaker_turns,
        )


@dataclass
class HeardLanguages:
    """Seconds of words per language in a job's results so far: the most spoken is each
    later macro chunk's `language_hint`, so a micro chunk whose own detection is unsure (a
    sentence or two, an accent, after a long pause) keeps the file's language instead of
    taking a neighbour's (`la` for accented English), while a clear switch still switches.
    Measured against waiting for 30 s of words first (a first micro chunk's language can be a
    wrong guess, carried where later detections are unsure even at 30 s): on the files at hand
    the early hint did better (two Finnish segments of an English file stayed Finnish without
    it; the code-switching file lost 7 sentences instead of 3-4)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, result: MicroChunkResult) -> None:
        for segment in result.segments:
            spoken = segment.end_sec - segment.start_sec
            self.seconds[segment.language] = self.seconds.get(segment.language, 0.0) + spoken

    def most(self) -> str | None:
        return max(self.seconds, key=self.seconds.__getitem__) if self.seconds else None


@dataclass(frozen=True)
class _Planned:
    span: TimeSpan


@dataclass(frozen=True)
class _PlanComplete:
    pass


@dataclass(frozen=True)
class _ChunkDone:
    index: int


_Message = _Planned | _PlanComplete | tuple[int, MicroChunkResult] | _ChunkDone | BaseException


class ChunkLog(Protocol):
    """Where an async job keeps its finished micro chunks (jobs/store.py), so that a job taken
    up again after a restart redoes none of them: stored results are replayed, and a macro
    chunk cut short is asked for again with the micro chunks already stored skipped (a worker
    repeats the same cuts for the same range)."""

    async def stored(self, index: int, span: TimeSpan) -> tuple[list[MicroChunkResult], bool]:
        """The micro chunks stored for macro chunk `index`, and whether it was complete."""
        ...

    async def record(self, index: int, micro_index: int, result: MicroChunkResult) -> None: ...

    async def complete(self, index: int, micro_count: int) -> None: ...


@dataclass(frozen=True)
class MediaClients:
    """The orchestrator's media-host clients: one under the address rule for clients' URLs,
    one for reading its own uploads back (its own URL, with the fleet credential, which a
    client's media host never sees)."""

    public: httpx.AsyncClient
    public_policy: AddressPolicy
    own: httpx.AsyncClient
    fleet_headers: dict[str, str] = field(default_factory=dict)

    def policy_for(self, upload: OwnUpload | None) -> AddressPolicy:
        return AddressPolicy.anywhere() if upload is not None else self.public_policy

    def client_for(self, upload: OwnUpload | None) -> httpx.AsyncClient:
        return self.own if upload is not None else self.public

    def headers_for(self, upload: OwnUpload | None) -> dict[str, str]:
        if upload is None:
            return {}
        if not self.fleet_headers:  # its own read-back would be refused: say why, not a 401
            raise NotReadyError(
                "this orchestrator has no fleet secret, so it can't read uploads back (nor use "
                "the workers): set ORCHESTRATOR_FLEET_SECRET or ORCHESTRATOR_FLEET_SECRET_FILE"
            )
        return self.fleet_headers


class JobRunner:
    def __init__(
        self,
        workers: WorkerClient,
        media: MediaClients,
        settings: OrchestratorSettings,
        metrics: OrchestratorMetrics | None = None,
    ) -> None:
        self.workers = workers
        self.media = media
        self.settings = settings
        self.metrics = metrics or OrchestratorMetrics()
        self.probe_slots = asyncio.Semaphore(settings.max_probes)

    async def prepare(self, request: TranscribeRequest, *, upload: OwnUpload | None = None) -> Job:
        """Range check and duration: what can fail before output starts. `upload`: the media
        is this orchestrator's own (read back at `request.media_url` with the fleet
        credential), not a client's, so no address rule applies."""
        started = time.perf_counter()
        if is_english_only(self.settings.model_name):  # said before the media is even fetched
            options = request.params.decode_options()
            check_languages(options, self.settings.model_name, ENGLISH_ONLY)
        policy = self.media.policy_for(upload)
        try:
            probe = await probe_media(
                self.media.client_for(upload),
                request.media_url,
                policy,
                self.settings.probe_timeout_sec,
                self.settings.probe_deadline_sec,
                self.media.headers_for(upload),
                self.probe_slots,
            )
        except WhisperfleetError as exc:
            raise (about_the_upload(exc) if upload is not None else exc) from None
        duration = probe.duration_sec
        longest = self.settings.max_duration_sec
        if longest and duration > longest:
            raise PayloadTooLargeError(
                f"the media is {duration:.0f} s long; this server takes at most {longest:g} s "
                "(ORCHESTRATOR_MAX_DURATION_SEC)",
                param="media_url" if upload is None else UPLOAD_FIELD,
            )
        job = Job(request, duration, started, upload)
        return await self.with_known_speakers(job)

    async def with_known_speakers(self, job: Job) -> Job:
        """The job with its known speakers' voices embedded (by a chunk worker: the models are
        there); a 400 naming a reference clip that can't be used."""
        params = job.request.params
        if job.known_speakers is not None or not params.known_speaker_references:
            return job
        answer = await self.workers.embed_speakers(
            SpeakerEmbedRequest(references=params.known_speaker_references)
        )
        names = params.known_speaker_names or []
        known = tuple(
            KnownSpeaker(name, np.asarray(embedding, dtype=np.float32))
            for name, embedding in zip(names, answer.embeddings, strict=True)
        )
        return dataclasses.replace(job, known_speakers=known)

    def checked(
        self, request: TranscribeRequest, duration_sec: float, *, upload: OwnUpload | None
    ) -> Job:
        """A job whose media `prepare` checked earlier (an async job, at submit)."""
        return Job(request, duration_sec, time.perf_counter(), upload)

    async def find_boundary(self, job: Job, low: float, high: float) -> float:
        """The quietest instant in `[low, high)`, found by a chunk worker."""
        params = job.request.params
        request = SilenceRequest(
            **job.media,
            start_sec=low,
            end_sec=high,
            smoothing_num_samples=params.silence_detection_smoothing_num_samples,
        )
        return (await self.workers.find_silence(request)).split_sec

    async def events(self, job: Job, log: ChunkLog | None = None) -> AsyncGenerator[JobEvent, None]:
        """Run the job, yielding segments in timeline order as soon as all earlier ones are
        known. The header carries the nominal plan; each macro chunk's final span (its
        boundaries moved into pauses) is in its report. With a `log`, micro chunks are kept
        there as they arrive and those kept earlier are not asked for again."""
        params = job.request.params
        job = await self.with_known_speakers(job)  # an async job's run: not embedded yet
        speakers = JobSpeakers(params, job.known_speakers or ()) if params.diarize else None
        nominal = nominal_boundaries(job.duration_sec, params.macro_chunk_size_sec)
        yield StreamHeader(
            media_url=job.media_name,
            input_duration_sec=job.duration_sec,
            macro_chunks=spans_from_boundaries(job.duration_sec, nominal),
        )
        inbox: asyncio.Queue[_Message] = asyncio.Queue()
        slots = asyncio.Semaphore(self.settings.max_concurrent_chunks)
        # Chunks planned but not finished: the running ones and a few queued to take a free
        # slot at once. The plan waits beyond that, so tasks never pile up ahead of the work.
        unfinished = asyncio.Semaphore(
            self.settings.max_concurrent_chunks + 2 * BOUNDARY_SEARCHES_AT_ONCE
        )
        first_heard = asyncio.Event()
        heard = HeardLanguages()
        merger = OrderedMerger(job.duration_sec, speakers.label if speakers else None)
        tasks: set[asyncio.Task[None]] = set()

        def start(work: Coroutine[Any, Any, None]) -> None:
            task = asyncio.create_task(work)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        start(self._plan(job, inbox, first_heard, unfinished))
        try:
            while not merger.done:
                message = await inbox.get()
                if isinstance(message, BaseException):
                    raise message
                if isinstance(message, _Planned):
                    index = merger.add_chunk(message.span)
                    start(
                        self._run_chunk(
                            job, index, message.span, inbox, slots, first_heard, heard, log
                        )
                    )
                    continue
                if isinstance(message, _PlanComplete):
                    events = merger.plan_complete()
                elif isinstance(message, _ChunkDone):
                    unfinished.release()
                    events = merger.finish(message.index)
                else:
                    events = merger.push(*message)
                for event in events:
                    yield Segment.of(event) if isinstance(event, ChunkSegment) else event
        finally:
            await cancel_and_wait(list(tasks))
        num_segments = merger.segments
        if speakers is not None:
            diarization = await asyncio.to_thread(speakers.finish)
            num_segments = len(diarization.segments)
            yield diarization
        elapsed = time.perf_counter() - job.started_at
        yield StreamFooter(
            input_duration_sec=job.duration_sec,
            processing_duration_sec=elapsed,
            speedup=job.duration_sec / elapsed if elapsed > 0 else 0.0,
            num_segments=num_segments,
            languages=list(merger.languages),
            incomplete_clips=merger.incomplete_clips,
        )

    async def _plan(
        self,
        job: Job,
        inbox: asyncio.Queue[_Message],
        first_heard: asyncio.Event,
        unfinished: asyncio.Semaphore,
    ) -> None:
        async def find(low: float, high: float) -> float:
            return await self.find_boundary(job, low, high)

        try:
            spans = plan_spans(
                job.duration_sec,
                job.request.params.macro_chunk_size_sec,
                self.settings.boundary_search_sec,
                find,
                BOUNDARY_SEARCHES_AT_ONCE,
                after_first=lambda: self._head_start(first_heard),
            )
            async for span in spans:
                await unfinished.acquire()
                inbox.put_nowait(_Planned(span))
            inbox.put_nowait(_PlanComplete())
        except Exception as exc:  # handed to the generator, which raises it
            inbox.put_nowait(exc)

    async def _run_chunk(
        self,
        job: Job,
        index: int,
        span: TimeSpan,
        inbox: asyncio.Queue[_Message],
        slots: asyncio.Semaphore,
        first_heard: asyncio.Event,
        heard: HeardLanguages,
        log: ChunkLog | None = None,
    ) -> None:
        try:
            stored, complete = await log.stored(index, span) if log else ([], False)
            for result in stored:
                first_heard.set()
                heard.add(result)
                inbox.put_nowait((index, result))
            if not complete:
                if index > 0 and not stored:
                    await self._head_start(first_heard)
                count = 0
                async with slots:
                    first_sec = self._first_micro_chunk_sec(job) if index == 0 else None
                    chunk = ChunkRequest(
                        **job.media,
                        start_sec=span.start_sec,
                        end_sec=span.end_sec,
                        params=job.request.params.for_workers(),
                        first_micro_chunk_sec=first_sec,
                        language_hint=heard.most(),  # as heard once this chunk starts
                    )
                    async for result in self.workers.transcribe_chunk(chunk):
                        first_heard.set()
                        count += 1
                        if count <= len(stored):
                            continue  # stored before a restart: already replayed
                        heard.add(result)
                        self.metrics.micro_chunks.inc()
                        if result.micro_chunk.incomplete:
                            self.metrics.incomplete_clips.inc()
                        if log:
                            await log.record(index, count - 1, result)
                        inbox.put_nowait((index, result))
                if log:
                    await log.complete(index, count)
            inbox.put_nowait(_ChunkDone(index))
        except Exception as exc:  # handed to the generator, which raises it
            inbox.put_nowait(exc)
        finally:
            first_heard.set()

    async def _head_start(self, first_heard: asyncio.Event) -> None:
        """The first chunk gets the machine to itself for a moment: its first micro chunk is
        what a streaming client waits for, and nothing can be shown before it. Other chunks and
        the later boundary searches wait for its first result (or `head_start_sec`)."""
        if self.settings.head_start_sec > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.head_start_sec):
                    await first_heard.wait()

    def _first_micro_chunk_sec(self, job: Job) -> float | None:
        """The first words come from the first micro chunk: make it short."""
        wanted = self.settings.first_micro_chunk_sec
        if not wanted:
            return None
        return min(max(wanted, 5.0), job.request.params.micro_chunk_size_sec)

    async def run(
        self, request: TranscribeRequest, *, upload: OwnUpload | None = None
    ) -> TranscribeOutput:
        """The whole job as one response: the streamed events, collected."""
        job = await self.prepare(request, upload=upload)
        transcript = Transcript()
        async for event in self.events(job):
            transcript.add(event)
        return transcript.output()


UPLOAD_FIELD = "file"
"""The form field an upload comes in (every upload route's)."""


def about_the_upload(error: WhisperfleetError) -> WhisperfleetError:
    """A check of an uploaded file's media, told about the file the client sent: it gave no
    `media_url` (the upload is read back at one of this server's own)."""
    if error.param == "media_url":
        error.param = UPLOAD_FIELD
        if error.message.startswith("media_url "):
            error.message = "the uploaded file " + error.message.removeprefix("media_url ")
            error.args = (error.message,)
    return error
