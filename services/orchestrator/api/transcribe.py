"""Orchestrator routes: our own API (JSON and Server-Sent Events), uploads, rendering."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from services.orchestrator.api.auth import Caller, GateDep
from services.orchestrator.api.intake import Intake, take_request
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.jobs.uploads import MediaStore
from services.orchestrator.transcription.runner import JobEvent, JobRunner, public_event
from shared.aio import finish_shielded
from shared.api import cancel_on_disconnect
from shared.errors import ErrorBody, InvalidRequestError, MediaUnavailableError, WhisperfleetError
from shared.formats import FORMATS, MEDIA_TYPES, render
from shared.schemas import (
    TranscribeOutput,
    TranscribeRequest,
)

logger = logging.getLogger(__name__)

router = APIRouter(tags=["transcription"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 413, 415, 422, 502, 503, 504, 507)
}


def request_body(json_model: type[BaseModel], *form_fields: str) -> dict[str, Any]:
    """OpenAPI for a body that is JSON (`json_model`) or multipart: a `file`, or `media_url`,
    with `params` as a JSON string, and `form_fields`."""
    properties: dict[str, Any] = {
        "file": {"type": "string", "format": "binary"},
        "media_url": {"type": "string"},
        "params": {"type": "string", "description": "TranscribeParams as JSON"},
    }
    properties.update({name: {"type": "string"} for name in form_fields})
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": json_model.model_json_schema()},
                "multipart/form-data": {"schema": {"type": "object", "properties": properties}},
            },
        }
    }


_BODY = request_body(TranscribeRequest)


def _jobs(request: Request) -> JobRunner:
    jobs: JobRunner = request.app.state.jobs
    return jobs


def _store(request: Request) -> MediaStore:
    store: MediaStore = request.app.state.media_store
    return store


Jobs = Annotated[JobRunner, Depends(_jobs)]
Store = Annotated[MediaStore, Depends(_store)]


@router.post(
    "/v1/transcribe",
    response_model=TranscribeOutput,
    responses=ERRORS,
    openapi_extra=_BODY,
)
async def transcribe(
    request: Request, jobs: Jobs, store: Store, gate: GateDep, who: Caller
) -> TranscribeOutput:
    """Transcribe the media at `media_url`, or an uploaded `file` (multipart); answers when the
    whole transcript is ready."""
    async with gate.job_slot(who):
        intake = await take_request(request, store, jobs.settings.max_request_kb * 1024)
        try:
            await intake.share()
            work = jobs.run(intake.request, upload=intake.own_upload)
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
    request: Request, jobs: Jobs, store: Store, gate: GateDep, who: Caller
) -> EventSourceResponse:
    """Server-Sent Events: `header`, then `segment`s in timeline order as soon as they are
    known, interleaved with `progress`; when diarizing, `speakers` (provisional labels -> final,
    decided over the whole file); then `footer` (the JSON endpoint's totals), or `error`.
    Problems found before the first event (bad URL, no range support, not media) are plain
    HTTP errors, like `/v1/transcribe`'s."""
    held = contextlib.AsyncExitStack()
    await held.enter_async_context(gate.job_slot(who))
    try:
        intake = await take_request(request, store, jobs.settings.max_request_kb * 1024)
        held.push_async_callback(intake.aclose)
        await intake.share()
    except BaseException:
        await held.aclose()
        raise
    return await event_stream(request, jobs, intake, job_events, held)


async def job_events(events: AsyncIterator[JobEvent]) -> AsyncIterator[tuple[str, BaseModel]]:
    async for event in events:
        if (public := public_event(event)) is not None:
            yield public


async def event_stream(
    request: Request,
    jobs: JobRunner,
    intake: Intake,
    translate: Any,
    held: contextlib.AsyncExitStack,
) -> EventSourceResponse:
    """Prepare the job (errors are plain HTTP answers), then stream `translate(events)` as SSE
    with ids and pings; an error mid-stream is an `error` event. What the job holds (`held`:
    its upload, its job slot) is let go when the stream ends, whatever ends it."""
    try:
        job = await jobs.prepare(intake.request, upload=intake.own_upload)
    except BaseException:
        await held.aclose()
        raise

    async def events() -> AsyncIterator[ServerSentEvent]:
        ids = itertools.count()
        try:
            # Closed explicitly: a stream closed at a `yield` (its reader was dropped) closes
            # only this generator, and the job's tasks must stop before its slot is let go.
            async with (
                contextlib.aclosing(jobs.events(job)) as source,
                contextlib.aclosing(translate(source)) as translated,
            ):
                async for name, data in translated:
                    yield _sse(next(ids), name, data)
        except WhisperfleetError as exc:
            yield _sse(next(ids), "error", exc.body())
        finally:
            await finish_shielded(held.aclose)

    return EventStream(events(), request.app.state.settings)


class EventStream(EventSourceResponse):
    """Server-Sent Events as every event route sends them: a ping every
    `ORCHESTRATOR_SSE_PING_SEC`, and a reader that takes nothing for
    `ORCHESTRATOR_SSE_SEND_TIMEOUT_SEC` (it stopped reading; its TCP window is full) dropped:
    the events generator is closed, which cancels the job and lets go of its slot and upload,
    instead of holding them for as long as the reader stays connected."""

    def __init__(
        self, events: AsyncIterator[ServerSentEvent], settings: OrchestratorSettings
    ) -> None:
        super().__init__(
            events,
            ping=max(1, round(settings.sse_ping_sec)),
            send_timeout=settings.sse_send_timeout_sec,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            logger.warning(
                "dropped an event stream reader that took nothing for %g s "
                "(ORCHESTRATOR_SSE_SEND_TIMEOUT_SEC)",
                self.send_timeout,
            )


def _sse(event_id: int, name: str, data: BaseModel) -> ServerSentEvent:
    return ServerSentEvent(id=str(event_id), event=name, data=data.model_dump_json())


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
    format: Annotated[str, Query(description=f"One of {', '.join(FORMATS)}.")],
    words: bool = False,
) -> Response:
    """A transcript (as `/v1/transcribe` answers it) in another format: txt, srt, vtt, tsv,
    json, verbose_json. The page's downloads come from here, so every format is made once."""
    if format not in FORMATS:
        raise InvalidRequestError(
            f"unknown format {format!r}; use one of {', '.join(FORMATS)}", param="format"
        )
    text = render(body.output, format, task=body.task, words=words)
    return Response(text, media_type=MEDIA_TYPES[format])
