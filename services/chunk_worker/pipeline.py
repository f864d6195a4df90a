"""The chunk worker's core: PCM stream -> micro chunks cut in pauses -> model server -> segments.

Micro chunks leave for the model server the moment they are cut, at most `max_inflight_clips` at
a time; when that many are in flight the worker stops reading FFmpeg's output, so FFmpeg (and the
download) pause too. Memory therefore stays at about `max_inflight_clips` clips however long the
range is.

    FFmpeg stdout ──blocks──> MicroChunker ──chunk──> [semaphore] ──> WhisperClient
                                                                        │
    MicroChunkResult stream <── in cut order, absolute times <──────────┘
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from services.chunk_worker.access import MediaAccess
from services.chunk_worker.media import FetchOptions, MediaFormat, PcmSource, sniff_media
from services.chunk_worker.metrics import WorkerMetrics
from services.chunk_worker.packing import (
    Piece,
    pieces_of,
    sent_spans,
    source_at_packed,
    source_time,
)
from services.chunk_worker.silence import latest_pause, quietest_point
from services.chunk_worker.speakers import Speakers
from shared.aio import cancel_and_wait
from shared.audio import pcm16_to_wav
from shared.clients import WhisperClient
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
from shared.vad import (
    WINDOW_SAMPLES,
    Span,
    VadOptions,
    spans_from_probabilities,
    speech_probabilities,
    speech_seconds,
    speech_spans,
)


@dataclass(frozen=True)
class ClipSpan:
    """Where a micro chunk lies in its range, in samples: all a finished clip needs to keep."""

    offset_samples: int
    num_samples: int
    pieces: tuple[Piece, ...] = ()
    """The stretches of the micro chunk that were sent, in order (packing.py)."""
    speech_sec: float = 0.0


@dataclass(frozen=True)
class MicroChunk:
    index: int
    offset_samples: int
    """First sample's position relative to the start of the requested range."""
    samples: np.ndarray
    speech: list[Span] | None = None
    """Its speech, when the chunker measured it (packing); None: not yet known."""

    @property
    def span(self) -> ClipSpan:
        return ClipSpan(self.offset_samples, len(self.samples))


SpeechScores = Callable[[np.ndarray], np.ndarray]
"""Audio in [-1, 1] (a multiple of `WINDOW_SAMPLES`) -> speech probability per window
(`shared.vad.speech_probabilities`)."""

SCORE_WINDOWS = 64
"""The VAD scores the stream in runs of this many windows (2 s), whatever sizes the blocks
come in: its state starts afresh with each call, so the same audio gets the same spans (and
the same cuts) on every run."""

MAX_SPAN_FACTOR = 2.0
"""A packed micro chunk spans at most this many times the limit of the stream (sparse speech
would otherwise hold ever more audio back)."""


class MicroChunker:
    """Cuts a stream of sample blocks into micro chunks in pauses.

    Without `speech`, a chunk is cut once more than `max_samples` are buffered, in the last
    pause of the buffer's second half (`[max_samples / 2, max_samples]`; the quietest point if
    it has no pause), so chunks are as long as allowed; the rest starts the next chunk.

    With `speech` (the VAD's window scores), the limit is on the chunk's *packed* length, its
    speech end to end (packing.py): the stream is scored as it comes (each window once), and a
    chunk is cut once its speech fills `max_samples`, in the last pause of the stretch whose
    speech fills the limit's second half; at `MAX_SPAN_FACTOR` times the limit of audio it is
    cut whatever it holds. Each chunk carries its speech spans.

    The first chunk may have a smaller maximum (`first_max_samples`: a job's first words come
    back sooner).
    """

    def __init__(
        self,
        max_samples: int,
        smoothing_samples: int,
        first_max_samples: int | None = None,
        speech: SpeechScores | None = None,
    ) -> None:
        self.max_samples = max_samples
        self.smoothing_samples = smoothing_samples
        self._limit = first_max_samples or max_samples  # the next chunk's maximum
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._offset = 0
        self._index = 0
        self._speech = speech
        self._scores = np.zeros(0, dtype=np.float32)
        self._scores_from = 0
        """Stream window index of `_scores[0]`."""

    def feed(self, block: np.ndarray) -> Iterator[MicroChunk]:
        self._pending.append(block)
        self._pending_len += len(block)
        if self._speech is not None:
            yield from self._feed_packed()
            return
        while self._pending_len > self._limit:
            buffer = np.concatenate(self._pending)
            cut = latest_pause(buffer, self._limit // 2, self._limit, self.smoothing_samples)
            yield self._emit(buffer[:cut])
            self._keep(buffer[cut:])

    def finish(self) -> Iterator[MicroChunk]:
        if self._pending_len:
            buffer = np.concatenate(self._pending)
            if self._speech is not None:
                self._score(buffer, final=True)
                yield self._emit(buffer, self._spans(len(buffer)))
            else:
                yield self._emit(buffer)
            self._keep(buffer[len(buffer) :])

    def _feed_packed(self) -> Iterator[MicroChunk]:
        buffer = np.concatenate(self._pending)
        self._score(buffer, final=False)
        while len(buffer) > self._limit:
            spans = self._spans(len(buffer))
            pieces = pieces_of(spans)
            rate = SAMPLE_RATE_HZ
            full = source_at_packed(pieces, self._limit / rate)
            if full is None and len(buffer) < MAX_SPAN_FACTOR * self._limit:
                return  # not enough speech yet
            scored = (self._scores_from + len(self._scores)) * WINDOW_SAMPLES - self._offset
            end = min(len(buffer), scored if full is None else round(full * rate))
            half = source_at_packed(pieces, self._limit / 2 / rate)
            start = end // 2 if half is None else min(round(half * rate), end)
            cut = latest_pause(buffer, start, end, self.smoothing_samples)
            cut = max(cut, 1)
            yield self._emit(buffer[:cut], _clip_spans(spans, cut / rate))
            buffer = buffer[cut:]
            self._keep(buffer)

    def _score(self, buffer: np.ndarray, final: bool) -> None:
        """Score the stream's windows that are complete (all of them when `final`)."""
        assert self._speech is not None
        scored_to = (self._scores_from + len(self._scores)) * WINDOW_SAMPLES - self._offset
        step = SCORE_WINDOWS * WINDOW_SAMPLES
        usable = len(buffer) if final else len(buffer) - (len(buffer) - scored_to) % step
        if usable <= scored_to:
            return
        audio = buffer[scored_to:usable] / 32768.0
        audio = np.pad(audio, (0, -len(audio) % WINDOW_SAMPLES))
        self._scores = np.concatenate([self._scores, self._speech(audio.astype(np.float32))])

    def _spans(self, length: int) -> list[Span]:
        """The speech of the pending audio (its first `length` samples), from the scores."""
        first = self._offset // WINDOW_SAMPLES - self._scores_from
        scores = self._scores[first:]
        shift = (self._offset // WINDOW_SAMPLES * WINDOW_SAMPLES - self._offset) / SAMPLE_RATE_HZ
        duration = len(scores) * WINDOW_SAMPLES / SAMPLE_RATE_HZ
        spans = spans_from_probabilities(scores, duration, VadOptions())
        return _clip_spans([(s + shift, e + shift) for s, e in spans], length / SAMPLE_RATE_HZ)

    def _keep(self, rest: np.ndarray) -> None:
        self._pending, self._pending_len = [rest], len(rest)
        self._limit = self.max_samples
        drop = self._offset // WINDOW_SAMPLES - self._scores_from
        if drop > 0:
            self._scores, self._scores_from = self._scores[drop:], self._scores_from + drop

    def _emit(self, samples: np.ndarray, speech: list[Span] | None = None) -> MicroChunk:
        chunk = MicroChunk(self._index, self._offset, samples, speech)
        self._index += 1
        self._offset += len(samples)
        return chunk


def _clip_spans(spans: list[Span], end_sec: float) -> list[Span]:
    return [(max(0.0, s), min(e, end_sec)) for s, e in spans if e > 0 and s < end_sec]


_Done = tuple[ClipSpan, ClipTranscription | None, list[LocalSpeaker] | None]
"""A finished micro chunk: its span, transcript (None: no speech) and voices (when diarizing)."""


class ChunkTranscriber:
    """Transcribes one time range of a media URL, streaming micro chunk results in order."""

    def __init__(
        self,
        whisper: WhisperClient,
        access: MediaAccess,
        fetch: FetchOptions,
        max_inflight_clips: int,
        metrics: WorkerMetrics,
        speakers: Speakers,
        pack_speech: bool = True,
    ) -> None:
        self.pack_speech = pack_speech
        """Send micro chunks' speech end to end (packing.py); off: first to last speech."""
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
            speech=speech_probabilities if self.pack_speech else None,
        )
        options = params.decode_options()
        slots = asyncio.Semaphore(self.max_inflight_clips)
        sent: asyncio.Queue[asyncio.Task[_Done] | None] = asyncio.Queue()
        in_flight: set[asyncio.Task[_Done]] = set()

        async def send(chunk: MicroChunk) -> _Done:
            # Returns the span, not the chunk: a finished clip waiting for its turn to be
            # yielded must not keep its audio alive (a slow reader would pile it up).
            try:
                speech = chunk.speech
                if speech is None:
                    speech = await asyncio.to_thread(speech_spans, chunk.samples / 32768.0)
                if not speech:  # no speech: the model never sees it (Whisper would invent words)
                    self.metrics.clips_without_speech.inc()
                    return chunk.span, None, [] if params.diarize else None
                pieces = (
                    pieces_of(speech)
                    if self.pack_speech
                    else [Piece(0.0, speech[0][0], speech[-1][1] - speech[0][0])]
                )
                span = replace(
                    chunk.span, pieces=tuple(pieces), speech_sec=round(speech_seconds(speech), 3)
                )
                position = request.start_sec + (
                    chunk.offset_samples / SAMPLE_RATE_HZ + pieces[0].source_sec
                )
                wav = pcm16_to_wav(_sent_audio(chunk.samples, pieces))
                self.metrics.clips.inc()
                transcribing = self.whisper.transcribe_clip(
                    wav, options, position, sent_spans(pieces, speech)
                )
                if not params.diarize:
                    return span, await transcribing, None
                chunk_start = request.start_sec + chunk.offset_samples / SAMPLE_RATE_HZ
                result, voices = await asyncio.gather(
                    transcribing,
                    self.speakers.of_micro_chunk(chunk.samples / 32768.0, chunk_start),
                )
                return span, result, voices
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
                        if len(block):  # cutting (and the VAD when packing) off the loop
                            await dispatch(await asyncio.to_thread(list, chunker.feed(block)))
                    await dispatch(await asyncio.to_thread(list, chunker.finish()))
            finally:
                sent.put_nowait(None)

        producer = asyncio.create_task(produce())
        self.metrics.active_chunks.inc()
        outcome = "cancelled"
        try:
            while (task := await sent.get()) is not None:
                span, transcription, voices = await task
                self.metrics.audio_seconds.inc(span.num_samples / SAMPLE_RATE_HZ)
                if transcription is not None and transcription.incomplete:
                    self.metrics.incomplete_clips.inc()
                result = to_result(request.start_sec, request.end_sec, span, transcription)
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


def _sent_audio(samples: np.ndarray, pieces: list[Piece]) -> np.ndarray:
    """The pieces of a micro chunk's audio, end to end."""
    rate = SAMPLE_RATE_HZ
    return np.concatenate(
        [
            samples[round(p.source_sec * rate) : round((p.source_sec + p.duration_sec) * rate)]
            for p in pieces
        ]
    )


def to_result(
    range_start_sec: float,
    range_end_sec: float,
    span: ClipSpan,
    transcription: ClipTranscription | None,
) -> MicroChunkResult:
    """A micro chunk's segments in absolute time: range start + clip offset + the model's time
    taken back through the sent pieces (None: the micro chunk held no speech and was not
    sent); a clip the model server gave up on in part stays marked (`incomplete`)."""
    chunk_start = range_start_sec + span.offset_samples / SAMPLE_RATE_HZ
    chunk_end = min(chunk_start + span.num_samples / SAMPLE_RATE_HZ, range_end_sec)

    def moved(sent_sec: float) -> float:
        return round(min(chunk_start + source_time(span.pieces, sent_sec), chunk_end), 3)

    segments = []
    for clip_segment in transcription.segments if transcription else []:
        words = None
        if clip_segment.words is not None:
            words = [
                Word(
                    start_sec=moved(w.start_sec),
                    end_sec=moved(w.end_sec),
                    word=w.word,
                    probability=w.probability,
                )
                for w in clip_segment.words
            ]
        segments.append(
            ChunkSegment(
                start_sec=moved(clip_segment.start_sec),
                end_sec=moved(clip_segment.end_sec),
                text=clip_segment.text,
                language=clip_segment.language,
                words=words,
                avg_logprob=clip_segment.avg_logprob,
                compression_ratio=clip_segment.compression_ratio,
                no_speech_prob=clip_segment.no_speech_prob,
            )
        )
    report = MicroChunkReport(
        start_sec=chunk_start,
        end_sec=chunk_end,
        num_segments=len(segments),
        speech_sec=span.speech_sec,
        incomplete=transcription is not None and transcription.incomplete,
    )
    return MicroChunkResult(micro_chunk=report, segments=segments)
