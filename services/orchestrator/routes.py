"""Orchestrator routes: the public API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from services.orchestrator.fanout import JobRunner
from shared.errors import ErrorBody
from shared.schemas import TranscribeOutput, TranscribeRequest

router = APIRouter(tags=["transcription"])

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (413, 415, 422, 502, 503, 504)
}


def _jobs(request: Request) -> JobRunner:
    jobs: JobRunner = request.app.state.jobs
    return jobs


Jobs = Annotated[JobRunner, Depends(_jobs)]


@router.post("/v1/transcribe", response_model=TranscribeOutput, responses=_ERRORS)
async def transcribe(body: TranscribeRequest, jobs: Jobs) -> TranscribeOutput:
    """Transcribe the media at `media_url`; answers when the whole transcript is ready."""
    return await jobs.run(body)
