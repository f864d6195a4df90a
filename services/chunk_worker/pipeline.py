"""The chunk worker's core: PCM stream -> micro chunks cut in pauses -> model server -> segments.

Micro chunks leave for the model server the moment they are cut, at most `max_inflight_clips` at
a time; when that many are in flight the worker stops reading FFmpeg's output, so FFmpeg (and the
download) pause too. Memory therefore stays at about `max_inflight_clips` clips however long the
range is.

    FFmpeg stdout ──blocks──> MicroChunker ──chunk──> [semaphore] ──> WhisperClient
                                                                        │
    ChunkResult <── in order, offset to absolute time <─────────────────┘
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpx
import numpy as np

from services.chunk_worker.media import FetchOptions, PcmSource, sniff_media
from services.chunk_worker.silence import quietest_point
from shared.aio import first_error
from shared.audio import pcm16_to_wav
from shared.clients import WhisperClient
from shared.languages import language_name
from shared.schemas import (
    SAMPLE_RATE_HZ,
    ChunkRequest,
    ChunkResult,
    ClipOptions,
    ClipTranscription,
    MicroChunkReport,
    Segment,
    SilenceRequest,
    SilenceResult,
)


@dataclass(frozen=True)
class MicroChunk:
    index: int
    offset_samples: int
    """First sample's position relative to the start of the requested range."""
    samples: np.ndarray


class MicroChunker:
    """Cuts a stream of sample blocks into chunks of at most `max_samples`, in pauses.

    A chunk is cut once more than `max_samples` are buffered, at the quietest point of the
    buffer's second half (`[max_samples / 2, max_samples]`); the rest starts the next chunk.
    """

    def __init__(self, max_samples: int, smoothing_samples: int) -> None:
        self.max_samples = max_samples
        self.smoothing_samples = smoothing_samples
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._offset = 0
        self._index = 0

    def feed(self, block: np.ndarray) -> Iterator[MicroChunk]:
        self._pending.append(block)
        self._pending_len += len(block)
        while self._pending_len > self.max_samples:
            buffer = np.concatenate(self._pending)
            cut = quietest_point(
                buffer, self.max_samples // 2, self.max_samples, self.smoothing_samples
            )
            yield self._emit(buffer[:cut])
            rest = buffer[cut:]
            self._pending, self._pending_len = [rest], len(rest)

    def finish(self) -> Iterator[MicroChunk]:
        if self._pending_len:
            yield self._emit(np.concatenate(self._pending))
            self._pending, self._pending_len = [], 0

    def _emit(self, samples: np.ndarray) -> MicroChunk:
        chunk = MicroChunk(self._index, self._offset, samples)
        self._index += 1
        self._offset += len(samples)
        return chunk


class ChunkTranscriber:
    """Transcribes one time range of a media URL."""

    def __init__(
        self,
        whisper: WhisperClient,
        http: httpx.AsyncClient,
        fetch: FetchOptions,
        max_inflight_clips: int,
    ) -> None:
        self.whisper = whisper
        self.http = http
        self.fetch = fetch
        self.max_inflight_clips = max_inflight_clips

    async def transcribe(self, request: ChunkRequest) -> ChunkResult:
        params = request.params
        chunker = MicroChunker(
            round(params.micro_chunk_size_sec * SAMPLE_RATE_HZ),
            params.silence_detection_smoothing_num_samples,
        )
        options = ClipOptions(language=params.language)
        slots = asyncio.Semaphore(self.max_inflight_clips)
        mode = await sniff_media(self.http, request.media_url)
        tasks: list[asyncio.Task[tuple[MicroChunk, ClipTranscription]]] = []

        async def send(chunk: MicroChunk) -> tuple[MicroChunk, ClipTranscription]:
            try:
                wav = pcm16_to_wav(chunk.samples)
                return chunk, await self.whisper.transcribe_clip(wav, options)
            finally:
                slots.release()

        async def dispatch(chunks: Iterable[MicroChunk], group: asyncio.TaskGroup) -> None:
            for chunk in chunks:
                await slots.acquire()
                tasks.append(group.create_task(send(chunk)))

        source = PcmSource(request.media_url, request.start_sec, request.end_sec, mode, self.fetch)
        try:
            async with asyncio.TaskGroup() as group, source:
                async for block in source.blocks():
                    await dispatch(chunker.feed(block), group)
                await dispatch(chunker.finish(), group)
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        return assemble(request.start_sec, [task.result() for task in tasks])

    async def find_silence(self, request: SilenceRequest) -> SilenceResult:
        mode = await sniff_media(self.http, request.media_url)
        source = PcmSource(request.media_url, request.start_sec, request.end_sec, mode, self.fetch)
        async with source:
            samples = np.concatenate([block async for block in source.blocks()])
        split = quietest_point(samples, 0, len(samples), request.smoothing_num_samples)
        return SilenceResult(split_sec=request.start_sec + split / SAMPLE_RATE_HZ)


def assemble(
    range_start_sec: float, results: list[tuple[MicroChunk, ClipTranscription]]
) -> ChunkResult:
    """Micro chunk results (in cut order) as segments in absolute time."""
    segments: list[Segment] = []
    reports: list[MicroChunkReport] = []
    for chunk, transcription in results:
        chunk_start = range_start_sec + chunk.offset_samples / SAMPLE_RATE_HZ
        chunk_end = chunk_start + len(chunk.samples) / SAMPLE_RATE_HZ
        for clip_segment in transcription.segments:
            segments.append(
                Segment(
                    start_time_sec=chunk_start + clip_segment.start_sec,
                    end_time_sec=min(chunk_start + clip_segment.end_sec, chunk_end),
                    text=clip_segment.text,
                    language=language_name(transcription.language),
                    bcp47_key=transcription.language,
                )
            )
        reports.append(
            MicroChunkReport(
                start_sec=chunk_start,
                end_sec=chunk_end,
                num_segments=len(transcription.segments),
            )
        )
    return ChunkResult(segments=segments, micro_chunks=reports)
