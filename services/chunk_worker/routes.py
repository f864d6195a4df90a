"""Chunk worker routes: transcribe a time range; find the quietest instant in a window."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from services.chunk_worker.pipeline import ChunkTranscriber
from shared.errors import InvalidRequestError, UpstreamTimeoutError
from shared.schemas import ChunkRequest, ChunkResult, SilenceRequest, SilenceResult

router = APIRouter(tags=["chunks"])


def _transcriber(request: Request) -> ChunkTranscriber:
    transcriber: ChunkTranscriber = request.app.state.transcriber
    return transcriber


Transcriber = Annotated[ChunkTranscriber, Depends(_transcriber)]


def _check_range(start_sec: float, end_sec: float) -> None:
    if end_sec <= start_sec:
        raise InvalidRequestError("end_sec must be greater than start_sec", param="end_sec")


@router.post("/v1/chunks", response_model=ChunkResult)
async def transcribe_chunk(
    body: ChunkRequest, request: Request, transcriber: Transcriber
) -> ChunkResult:
    """Transcribe `[start_sec, end_sec)` of the media; segments in absolute time, in order."""
    _check_range(body.start_sec, body.end_sec)
    deadline: float = request.app.state.settings.chunk_deadline_sec
    try:
        async with asyncio.timeout(deadline):
            return await transcriber.transcribe(body)
    except TimeoutError:
        raise UpstreamTimeoutError(f"range took longer than {deadline:g} s") from None


@router.post("/v1/silence", response_model=SilenceResult)
async def find_silence(body: SilenceRequest, transcriber: Transcriber) -> SilenceResult:
    """The quietest instant in `[start_sec, end_sec)`: where a macro chunk boundary goes."""
    _check_range(body.start_sec, body.end_sec)
    return await transcriber.find_silence(body)
