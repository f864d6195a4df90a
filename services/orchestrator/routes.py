"""Orchestrator routes: the public API."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.orchestrator.fanout import JobEvent, JobRunner
from shared.api import cancel_on_disconnect
from shared.errors import ErrorBody, WhisperfleetError
from shared.schemas import (
    Segment,
    StreamFooter,
    StreamHeader,
    StreamProgress,
    TranscribeOutput,
    TranscribeRequest,
)

router = APIRouter(tags=["transcription"])

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (413, 415, 422, 502, 503, 504)
}
_EVENT_NAMES: dict[type, str] = {
    StreamHeader: "header",
    Segment: "segment",
    StreamProgress: "progress",
    StreamFooter: "footer",
}


def _jobs(request: Request) -> JobRunner:
    jobs: JobRunner = request.app.state.jobs
    return jobs


Jobs = Annotated[JobRunner, Depends(_jobs)]


@router.post("/v1/transcribe", response_model=TranscribeOutput, responses=_ERRORS)
async def transcribe(body: TranscribeRequest, request: Request, jobs: Jobs) -> TranscribeOutput:
    """Transcribe the media at `media_url`; answers when the whole transcript is ready."""
    return await cancel_on_disconnect(request, jobs.run(body))


@router.post(
    "/v1/transcribe/stream",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
)
async def transcribe_stream(
    body: TranscribeRequest, request: Request, jobs: Jobs
) -> EventSourceResponse:
    """Server-Sent Events: `header`, then `segment`s in timeline order as soon as they are
    known, interleaved with `progress`; then `footer` (the JSON endpoint's totals), or `error`.
    Problems found before the first event (bad URL, no range support, not media) are plain
    HTTP errors, like `/v1/transcribe`'s."""
    job = await jobs.prepare(body)
    ping_sec: float = request.app.state.settings.sse_ping_sec

    async def events() -> AsyncIterator[ServerSentEvent]:
        ids = itertools.count()
        try:
            async for event in jobs.events(job):
                name = _EVENT_NAMES.get(type(event))
                if name is not None:
                    yield _sse(next(ids), name, event)
        except WhisperfleetError as exc:
            yield _sse(next(ids), "error", exc.body())

    return EventSourceResponse(
        events(),
        ping=max(1, round(ping_sec)),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(event_id: int, name: str, data: JobEvent | ErrorBody) -> ServerSentEvent:
    return ServerSentEvent(id=str(event_id), event=name, data=data.model_dump_json())
