"""The orchestrator's core: check, probe, plan, fan out to the chunk workers, merge in order.

media_url ─> range check ─> duration ─> even grid ─> boundaries moved into pauses
                                                    (one /v1/silence call per boundary,
                                                     all in parallel)
          ─> one /v1/chunks call per macro chunk, at most `max_concurrent_chunks` at once
          ─> segments concatenated in timeline order
"""

from __future__ import annotations

import asyncio
import time

import httpx

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.planner import nominal_boundaries, search_windows, spans_from_boundaries
from services.orchestrator.probe import check_range_support, probe_duration
from shared.aio import gather_bounded
from shared.clients import WorkerClient
from shared.schemas import (
    ChunkRequest,
    ChunkResult,
    MacroChunkReport,
    SilenceRequest,
    TimeSpan,
    TranscribeOutput,
    TranscribeParams,
    TranscribeRequest,
)


class JobRunner:
    def __init__(
        self, workers: WorkerClient, media_http: httpx.AsyncClient, settings: OrchestratorSettings
    ) -> None:
        self.workers = workers
        self.media_http = media_http
        self.settings = settings

    async def probe(self, media_url: str) -> float:
        """Duration of the media, after checking that its host supports range requests."""
        await check_range_support(self.media_http, media_url)
        return await asyncio.to_thread(probe_duration, media_url, self.settings.probe_timeout_sec)

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

    async def transcribe_spans(
        self, media_url: str, spans: list[TimeSpan], params: TranscribeParams
    ) -> list[ChunkResult]:
        return await gather_bounded(
            (
                self.workers.transcribe_chunk(
                    ChunkRequest(
                        media_url=media_url,
                        start_sec=span.start_sec,
                        end_sec=span.end_sec,
                        params=params,
                    )
                )
                for span in spans
            ),
            self.settings.max_concurrent_chunks,
        )

    async def run(self, request: TranscribeRequest) -> TranscribeOutput:
        started = time.perf_counter()
        duration = await self.probe(request.media_url)
        spans = await self.plan(request.media_url, duration, request.params)
        results = await self.transcribe_spans(request.media_url, spans, request.params)
        elapsed = time.perf_counter() - started
        return TranscribeOutput(
            segments=[segment for result in results for segment in result.segments],
            input_duration_sec=duration,
            processing_duration_sec=elapsed,
            speedup=duration / elapsed if elapsed > 0 else 0.0,
            macro_chunks=[
                MacroChunkReport(
                    start_sec=span.start_sec, end_sec=span.end_sec, micro_chunks=result.micro_chunks
                )
                for span, result in zip(spans, results, strict=True)
            ],
        )
