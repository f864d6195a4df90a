"""Chunk worker routes: stream a time range's transcript; find the quietest instant in a window."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.chunk_worker.config import ChunkWorkerSettings
from services.chunk_worker.pipeline import ChunkTranscriber
from services.chunk_worker.speakers import Speakers
from shared.api import CancellingStreamingResponse
from shared.errors import InvalidRequestError, UpstreamTimeoutError, WhisperfleetError
from shared.schemas import (
    CHUNK_STREAM,
    ChunkRequest,
    ChunkStreamFooter,
    SilenceRequest,
    SilenceResult,
    SpeakerEmbeddings,
    SpeakerEmbedRequest,
)
from shared.streams import MEDIA_TYPE, StreamWriter

logger = logging.getLogger(__name__)
router = APIRouter(tags=["chunks"])


def _transcriber(request: Request) -> ChunkTranscriber:
    transcriber: ChunkTranscriber = request.app.state.transcriber
    return transcriber


def _settings(request: Request) -> ChunkWorkerSettings:
    settings: ChunkWorkerSettings = request.app.state.settings
    return settings


Transcriber = Annotated[ChunkTranscriber, Depends(_transcriber)]
Settings = Annotated[ChunkWorkerSettings, Depends(_settings)]


def _check_range(start_sec: float, end_sec: float) -> None:
    if end_sec <= start_sec:
        raise InvalidRequestError("end_sec must be greater than start_sec", param="end_sec")


@router.post("/v1/chunks", response_class=CancellingStreamingResponse)
async def transcribe_chunk(
    body: ChunkRequest, request: Request, transcriber: Transcriber, settings: Settings
) -> CancellingStreamingResponse:
    """Transcribe `[start_sec, end_sec)` of the media as a typed stream (`shared.streams`):
    one item per micro chunk in timeline order, then a footer; an error frame if it fails."""
    _check_range(body.start_sec, body.end_sec)
    if body.params.diarize:
        transcriber.speakers.require()  # a 400 now, not a transcript without speakers
    mode = await transcriber.prepare(body)
    deadline = settings.chunk_deadline_sec

    async def frames() -> AsyncIterator[bytes]:
        writer = StreamWriter(CHUNK_STREAM)
        count = 0
        try:
            async with asyncio.timeout(deadline):
                async for result in transcriber.stream(body, mode):
                    count += 1
                    yield writer.item(result)
            yield writer.footer(ChunkStreamFooter(micro_chunks=count))
        except TimeoutError:
            error = UpstreamTimeoutError(f"range took longer than {deadline:g} s")
            yield writer.error(error.body())
        except WhisperfleetError as exc:
            yield writer.error(exc.body())
        except Exception as exc:
            logger.exception("chunk failed")
            yield writer.error(WhisperfleetError(f"chunk worker failed: {exc}").body())

    return CancellingStreamingResponse(frames(), media_type=MEDIA_TYPE)


@router.post("/v1/silence", response_model=SilenceResult)
async def find_silence(body: SilenceRequest, transcriber: Transcriber) -> SilenceResult:
    """The quietest instant in `[start_sec, end_sec)`: where a macro chunk boundary goes."""
    _check_range(body.start_sec, body.end_sec)
    return await transcriber.find_silence(body)


@router.post("/v1/speakers", response_model=SpeakerEmbeddings)
async def embed_speakers(body: SpeakerEmbedRequest, request: Request) -> SpeakerEmbeddings:
    """Voice embeddings of known speakers' reference clips (data URLs of 2-10 s audio), so a
    job can name them; a 400 naming the clip that can't be used."""
    speakers: Speakers = request.app.state.speakers
    return SpeakerEmbeddings(embeddings=await speakers.embed_references(body.references))


@router.get("/metrics", tags=["health"])
async def metrics(request: Request) -> Response:
    """Prometheus metrics: macro chunks by outcome, chunks in progress, clips, audio seconds."""
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")
