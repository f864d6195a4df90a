"""Chunk results -> job events in timeline order: pure, no I/O, no tasks.

Macro chunks finish in any order, each streaming its micro chunk results in order. The merger
releases a segment as soon as every earlier segment of the timeline is known:

    chunk 0: r r r . . done          released at once (chunk 0 is the head)
    chunk 1:   r r r done            buffered until chunk 0 is done, then released
    chunk 2: r r                     buffered until chunk 1 is done ...

Every pushed result also yields a progress event (seconds of audio transcribed so far, in any
chunk), and every chunk released in full yields its report (its micro chunks). Chunks are added
as the plan produces them (`add_chunk`); once `plan_complete()` is called and every chunk is
released, the merger is `done`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shared.schemas import (
    ChunkSegment,
    MacroChunkReport,
    MicroChunkResult,
    StreamProgress,
    TimeSpan,
)

MergeEvent = ChunkSegment | StreamProgress | MacroChunkReport


@dataclass
class _Chunk:
    span: TimeSpan
    results: list[MicroChunkResult] = field(default_factory=list)
    finished: bool = False


class OrderedMerger:
    def __init__(
        self,
        duration_sec: float,
        relabel: Callable[[MicroChunkResult], list[ChunkSegment]] | None = None,
    ) -> None:
        """`relabel`: a result's segments as released, called in timeline order (diarization
        labels and splits them); by default they leave as they came."""
        self.duration_sec = duration_sec
        self.relabel = relabel
        self._chunks: list[_Chunk] = []
        self._next = 0  # the earliest chunk not yet released in full
        self._released = 0  # results of that chunk already released
        self._planned = False
        self.done_sec = 0.0
        self.segments = 0
        self.languages: dict[str, None] = {}
        """Language codes in order of first appearance."""
        self.incomplete_clips = 0
        """Micro chunks the model server gave up on in part (`MicroChunkReport.incomplete`)."""

    def add_chunk(self, span: TimeSpan) -> int:
        """Register the next macro chunk of the plan; returns its index."""
        if self._planned:
            raise RuntimeError("the plan is already complete")
        self._chunks.append(_Chunk(span))
        return len(self._chunks) - 1

    def plan_complete(self) -> list[MergeEvent]:
        self._planned = True
        return list(self._release())

    @property
    def done(self) -> bool:
        return self._planned and self._next == len(self._chunks)

    def push(self, index: int, result: MicroChunkResult) -> list[MergeEvent]:
        """A micro chunk result of chunk `index`: what can be released now, then progress."""
        chunk = self._chunks[index]
        if chunk.finished:
            raise RuntimeError(f"chunk {index} already finished")
        chunk.results.append(result)
        self.incomplete_clips += result.micro_chunk.incomplete
        self.done_sec += result.micro_chunk.end_sec - result.micro_chunk.start_sec
        events = list(self._release())
        events.append(
            StreamProgress(
                done_sec=min(self.done_sec, self.duration_sec),
                total_sec=self.duration_sec,
                segments=self.segments,
            )
        )
        return events

    def finish(self, index: int) -> list[MergeEvent]:
        """Chunk `index` has no more results."""
        self._chunks[index].finished = True
        return list(self._release())

    def _release(self) -> list[MergeEvent]:
        events: list[MergeEvent] = []
        while self._next < len(self._chunks):
            chunk = self._chunks[self._next]
            for result in chunk.results[self._released :]:
                segments = self.relabel(result) if self.relabel else result.segments
                for segment in segments:
                    self.languages.setdefault(segment.language)
                    self.segments += 1
                    events.append(segment)
            self._released = len(chunk.results)
            if not chunk.finished:
                break
            events.append(
                MacroChunkReport(
                    start_sec=chunk.span.start_sec,
                    end_sec=chunk.span.end_sec,
                    micro_chunks=[r.micro_chunk for r in chunk.results],
                )
            )
            chunk.results = []  # released: keep no transcripts around for long jobs
            self._next += 1
            self._released = 0
        return events
