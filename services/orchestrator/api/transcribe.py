"""Orchestrator routes: our own API (JSON and Server-Sent Events), uploads, rendering."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from services.orchestrator.api.auth import Caller, GateDep
from services.orchestrator.api.deps import ERRORS, Runner, Store, request_body
from services.orchestrator.api.intake import take_request
from services.orchestrator.api.sse import stream_job
from services.orchestrator.transcription.runner import JobEvent, public_event
from shared.aio import finish_shielded
from shared.api import cancel_on_disconnect
from shared.errors import MediaUnavailableError
from shared.formats import Format, render
from shared.schemas import TranscribeOutput, TranscribeRequest

router = APIRouter(tags=["transcription"])

_BODY = request_body(TranscribeRequest)


@router.post(
    "/v1/transcribe",
    response_model=TranscribeOutput,
    responses=ERRORS,
    openapi_extra=_BODY,
)
async def transcribe(
    request: Request, runner: Runner, store: Store, gate: GateDep, who: Caller
) -> TranscribeOutput:
    """Transcribe the media at `media_url`, or an uploaded `file` (multipart); answers when the
    whole transcript is ready."""
    async with gate.job_slot(who):
        intake = await take_request(request, store, runner.settings.max_request_kb * 1024)
        try:
            await intake.share()
            work = runner.run(intake.request, upload=intake.own_upload)
            return await cancel_on_disconnect(request, work)
        finally:
            await finish_shielded(intake.aclose)


@router.post(
    "/v1/transcribe/stream",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
    openapi_extra=_BODY,
)
async def transcribe_stream(
    request: Request, runner: Runner, store: Store, gate: GateDep, who: Caller
) -> EventSourceResponse:
    """Server-Sent Events: `header`, then `segment`s in timeline order as soon as they are
    known, interleaved with `progress`; when diarizing, `speakers` (provisional labels -> final,
    decided over the whole file); then `footer` (the JSON endpoint's totals), or `error`.
    Problems found before the first event (bad URL, no range support, not media) are plain
    HTTP errors, like `/v1/transcribe`'s."""
    held = contextlib.AsyncExitStack()
    await held.enter_async_context(gate.job_slot(who))
    try:
        intake = await take_request(request, store, runner.settings.max_request_kb * 1024)
        held.push_async_callback(intake.aclose)
        await intake.share()
    except BaseException:
        await held.aclose()
        raise
    return await stream_job(request, runner, intake, public_events, held)


async def public_events(
    events: AsyncIterator[JobEvent],
) -> AsyncGenerator[tuple[str, BaseModel], None]:
    """Our stream: every job event a client sees, as the runner names it."""
    async for event in events:
        if (public := public_event(event)) is not None:
            yield public


@router.get("/internal/uploads/{upload_id}", include_in_schema=False)
async def uploaded_media(upload_id: str, request: Request, store: Store) -> Response:
    """An upload of a running job, with range support: how the chunk workers read it (from
    this replica's disk, or the database). Only with the fleet credential
    (`shared.fleet.FleetGate`), never an API key."""
    response = await store.serve(upload_id, request.headers.get("range"))
    if response is None:
        raise MediaUnavailableError("no such upload (its job has ended)", param="upload_id")
    return response


class RenderRequest(BaseModel):
    output: TranscribeOutput
    task: str = "transcribe"


@router.post("/v1/render", responses=ERRORS)
async def render_transcript(
    who: Caller,
    body: RenderRequest,
    format: Format,
    words: bool = False,
) -> Response:
    """A transcript (as `/v1/transcribe` answers it) in another format: txt, srt, vtt, tsv,
    json, verbose_json, diarized_json. The page's downloads come from here, so every format is
    made once."""
    text = render(body.output, format, task=body.task, words=words)
    return Response(text, media_type=format.media_type)
