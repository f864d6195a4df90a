"""The chunk worker's core: PCM stream -> micro chunks cut in pauses -> model server -> segments.

Micro chunks leave for the model server the moment they are cut, at most `max_inflight_clips` at
a time; when that many are in flight the worker stops reading FFmpeg's output, so FFmpeg (and the
download) pause too. Memory therefore stays at about `max_inflight_clips` clips however long the
range is.

    FFmpeg stdout ──blocks──> MicroChunker ──chunk──> [semaphore] ──> ModelServerClient
                                                                        │
    MicroChunkResult stream <── in cut order, absolute times <──────────┘
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from services.chunk_worker.access import MediaAccess
from services.chunk_worker.media import FetchOptions, MediaFormat, PcmSource, sniff_media
from services.chunk_worker.metrics import WorkerMetrics
from services.chunk_worker.silence import latest_pause, quietest_point
from services.chunk_worker.speakers import Speakers
from shared.aio import cancel_and_wait
from shared.audio import pcm16_to_wav
from shared.clients import ModelServerClient
from shared.schemas import (
    SAMPLE_RATE_HZ,
    ChunkRequest,
    ChunkSegment,
    ClipTranscription,
    LocalSpeaker,
    MicroChunkReport,
    MicroChunkResult,
    SilenceRequest,
    SilenceResult,
    Word,
)
from shared.vad import Span, speech_seconds, speech_spans


def cut_to_speech(speech: list[Span]) -> tuple[int, int, list[Span]]:
    """What of a micro chunk is sent, given its speech spans (seconds into it, at least one):
    samples [first, last), from its first speech to its last, and the spans as seconds into
    what is sent (the model server's speech header)."""
    first = int(speech[0][0] * SAMPLE_RATE_HZ)
    last = int(np.ceil(speech[-1][1] * SAMPLE_RATE_HZ))
    shift = first / SAMPLE_RATE_HZ
    return first, last, [(start - shift, end - shift) for start, end in speech]


@dataclass(frozen=True)
class ClipPlacement:
    """Where a micro chunk lies in its range, in samples (not a `TimeSpan`: sample offsets and
    where its speech starts), all a finished clip needs to keep."""

    offset_samples: int
    num_samples: int
    sent_from_samples: int = 0
    """Where the audio sent to the model starts within the micro chunk (its first speech)."""
    speech_sec: float = 0.0


@dataclass(frozen=True)
class MicroChunk:
    index: int
    offset_samples: int
    """First sample's position relative to the start of the requested range."""
    samples: np.ndarray

    @property
    def placement(self) -> ClipPlacement:
        return ClipPlacement(self.offset_samples, len(self.samples))


class MicroChunker:
    """Cuts a stream of sample blocks into chunks of at most `max_samples`, in pauses.

    A chunk is cut once more than `max_samples` are buffered, in the last pause of the buffer's
    second half (`[max_samples / 2, max_samples]`; the quietest point if it has no pause), so
    chunks are as long as allowed; the rest starts the next chunk. The first chunk may have a
    smaller maximum (`first_max_samples`: a job's first words come back sooner).
    """

    def __init__(
        self, max_samples: int, smoothing_samples: int, first_max_samples: int | None = None
    ) -> None:
        self.max_samples = max_samples
        self.smoothing_samples = smoothing_samples
        self._limit = first_max_samples or max_samples  # the next chunk's maximum
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._offset = 0
        self._index = 0

    def feed(self, block: np.ndarray) -> Iterator[MicroChunk]:
        self._pending.append(block)
        self._pending_len += len(block)
        while self._pending_len > self._limit:
            buffer = np.concatenate(self._pending)
            cut = latest_pause(buffer, self._limit // 2, self._limit, self.smoothing_samples)
            yield self._emit(buffer[:cut])
            rest = buffer[cut:]
            self._pending, self._pending_len = [rest], len(rest)
            self._limit = self.max_samples

    def finish(self) -> Iterator[MicroChunk]:
        if self._pending_len:
            yield self._emit(np.concatenate(self._pending))
            self._pending, self._pending_len = [], 0

    def _emit(self, samples: np.ndarray) -> MicroChunk:
        chunk = MicroChunk(self._index, self._offset, samples)
        self._index += 1
        self._offset += len(samples)
        return chunk


_Done = tuple[ClipPlacement, ClipTranscription | None, list[LocalSpeaker] | None]
"""A finished micro chunk: its placement, transcript (None: no speech) and voices (when
diarizing)."""


class ChunkTranscriber:
    """Transcribes one time range of a media URL, streaming micro chunk results in order."""

    def __init__(
        self,
        whisper: ModelServerClient,
        access: MediaAccess,
        fetch: FetchOptions,
        max_inflight_clips: int,
        metrics: WorkerMetrics,
        speakers: Speakers,
    ) -> None:
        self.whisper = whisper
        self.access = access
        self.fetch = fetch
        self.max_inflight_clips = max_inflight_clips
        self.metrics = metrics
        self.speakers = speakers

    async def _open(self, request: ChunkRequest | SilenceRequest) -> tuple[FetchOptions, str]:
        """Fetch options reading through the range proxy for the request's media (a client's
        URL or an upload: `access.py`), and the URL to read."""
        proxy, url = await self.access.source(request)
        return replace(self.fetch, proxy=proxy), url

    async def prepare(self, request: ChunkRequest) -> MediaFormat:
        """Check the media before anything streams, so a bad URL gets a real HTTP status."""
        fetch, url = await self._open(request)
        assert fetch.proxy is not None
        return await sniff_media(fetch.proxy, url)

    async def stream(
        self, request: ChunkRequest, media: MediaFormat | None = None
    ) -> AsyncIterator[MicroChunkResult]:
        """Yield each micro chunk's result as soon as it and every earlier one are done.

        A producer task reads FFmpeg, cuts and dispatches clips (at most `max_inflight_clips`
        in flight); this generator awaits them in cut order. Closing the generator early (the
        client went away) cancels the producer, which kills FFmpeg, and every clip in flight,
        which withdraws them from the model server's queue.
        """
        if media is None:
            media = await self.prepare(request)
        params = request.params
        first = request.first_micro_chunk_sec
        chunker = MicroChunker(
            round(params.micro_chunk_size_sec * SAMPLE_RATE_HZ),
            params.silence_detection_smoothing_num_samples,
            round(first * SAMPLE_RATE_HZ) if first else None,
        )
        options = params.decode_options()
        slots = asyncio.Semaphore(self.max_inflight_clips)
        sent: asyncio.Queue[asyncio.Task[_Done] | None] = asyncio.Queue()
        in_flight: set[asyncio.Task[_Done]] = set()

        async def send(chunk: MicroChunk) -> _Done:
            # Returns the placement, not the chunk: a finished clip waiting for its turn to be
            # yielded must not keep its audio alive (a slow reader would pile it up).
            try:
                speech = await asyncio.to_thread(speech_spans, chunk.samples / 32768.0)
                if not speech:  # no speech: the model never sees it (Whisper would invent words)
                    self.metrics.clips_without_speech.inc()
                    return chunk.placement, None, [] if params.diarize else None
                first, last, shifted = cut_to_speech(speech)
                placement = ClipPlacement(
                    chunk.offset_samples,
                    len(chunk.samples),
                    first,
                    round(speech_seconds(speech), 3),
                )
                position = request.start_sec + (chunk.offset_samples + first) / SAMPLE_RATE_HZ
                wav = pcm16_to_wav(chunk.samples[first:last])
                self.metrics.clips.inc()
                transcribing = self.whisper.transcribe_clip(
                    wav, options, position, shifted, request.language_hint
                )
                if not params.diarize:
                    return placement, await transcribing, None
                chunk_start = request.start_sec + chunk.offset_samples / SAMPLE_RATE_HZ
                heard = (chunk_start + speech[0][0], chunk_start + speech[-1][1])
                result, voices = await asyncio.gather(
                    transcribing,
                    self.speakers.of_micro_chunk(chunk.samples / 32768.0, chunk_start, heard),
                )
                return placement, result, voices
            finally:
                slots.release()

        async def dispatch(chunks: Iterable[MicroChunk]) -> None:
            for chunk in chunks:
                await slots.acquire()
                task = asyncio.create_task(send(chunk))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                sent.put_nowait(task)

        fetch, url = await self._open(request)

        async def produce() -> None:
            source = PcmSource(url, request.start_sec, request.end_sec, media, fetch)
            try:
                # FFmpeg's -t can overshoot by a sample: never let a range reach into the next.
                remaining = source.expected_samples
                async with source:
                    async for block in source.blocks():
                        block, remaining = block[:remaining], remaining - len(block[:remaining])
                        if len(block):
                            await dispatch(chunker.feed(block))
                    await dispatch(chunker.finish())
            finally:
                sent.put_nowait(None)

        producer = asyncio.create_task(produce())
        self.metrics.active_chunks.inc()
        outcome = "cancelled"
        try:
            while (task := await sent.get()) is not None:
                placement, transcription, voices = await task
                self.metrics.audio_seconds.inc(placement.num_samples / SAMPLE_RATE_HZ)
                if transcription is not None and transcription.incomplete:
                    self.metrics.incomplete_clips.inc()
                result = to_result(request.start_sec, request.end_sec, placement, transcription)
                yield result.model_copy(update={"speakers": voices})
            await producer  # FFmpeg's failures surface here
            outcome = "ok"
        except Exception:
            outcome = "error"
            raise
        finally:
            self.metrics.active_chunks.dec()
            self.metrics.chunks.labels(outcome=outcome).inc()
            await cancel_and_wait([producer, *in_flight])

    async def find_silence(self, request: SilenceRequest) -> SilenceResult:
        fetch, url = await self._open(request)
        assert fetch.proxy is not None
        media = await sniff_media(fetch.proxy, url)
        source = PcmSource(url, request.start_sec, request.end_sec, media, fetch)
        async with source:
            samples = np.concatenate([block async for block in source.blocks()])
        split = quietest_point(samples, 0, len(samples), request.smoothing_num_samples)
        return SilenceResult(split_sec=request.start_sec + split / SAMPLE_RATE_HZ)


def to_result(
    range_start_sec: float,
    range_end_sec: float,
    placement: ClipPlacement,
    transcription: ClipTranscription | None,
) -> MicroChunkResult:
    """A micro chunk's segments in absolute time: range start + clip offset + model time
    (None: the micro chunk held no speech and was not sent); a clip the model server gave up
    on in part stays marked (`incomplete`)."""
    chunk_start = range_start_sec + placement.offset_samples / SAMPLE_RATE_HZ
    chunk_end = min(chunk_start + placement.num_samples / SAMPLE_RATE_HZ, range_end_sec)
    sent_start = chunk_start + placement.sent_from_samples / SAMPLE_RATE_HZ
    segments = []
    for clip_segment in transcription.segments if transcription else []:
        words = None
        if clip_segment.words is not None:
            words = [
                Word(
                    start_sec=round(sent_start + w.start_sec, 3),
                    end_sec=round(min(sent_start + w.end_sec, chunk_end), 3),
                    word=w.word,
                    probability=w.probability,
                )
                for w in clip_segment.words
            ]
        segments.append(
            ChunkSegment(
                start_sec=round(sent_start + clip_segment.start_sec, 3),
                end_sec=round(min(sent_start + clip_segment.end_sec, chunk_end), 3),
                text=clip_segment.text,
                language=clip_segment.language,
                words=words,
                avg_logprob=clip_segment.avg_logprob,
                compression_ratio=clip_segment.compression_ratio,
                no_speech_prob=clip_segment.no_speech_prob,
                temperature=clip_segment.temperature,
            )
        )
    report = MicroChunkReport(
        start_sec=chunk_start,
        end_sec=chunk_end,
        num_segments=len(segments),
        speech_sec=placement.speech_sec,
        incomplete=transcription is not None and transcription.incomplete,
    )
    return MicroChunkResult(micro_chunk=report, segments=segments)
