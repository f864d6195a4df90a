"""Server-Sent Events, the one way every event route answers (`/v1/transcribe/stream`, OpenAI's
streamed transcription, `/v1/jobs/{id}/events`): numbered events, a ping, a reader that stopped
reading dropped.

    respond(request, events)    numbered events as they come (an async job's log, as kept)
    stream_job(...)             a job run for this request: prepared first (what fails there is
                                a plain HTTP answer), then its events, translated for the route
                                (ours, OpenAI's) and numbered from 0; an error mid-stream is an
                                `error` event; what the job holds is let go when the stream ends
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from fastapi import Request
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from services.orchestrator.api.intake import Intake
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.jobs.records import StoredEvent
from services.orchestrator.transcription.runner import JobEvent, JobRunner
from shared.aio import finish_shielded
from shared.errors import WhisperfleetError

logger = logging.getLogger(__name__)

Translate = Callable[[AsyncIterator[JobEvent]], AsyncGenerator[tuple[str, BaseModel], None]]
"""A route's view of a job's events: the (name, data) it sends for them."""


class EventStream(EventSourceResponse):
    """Server-Sent Events with a ping every `ORCHESTRATOR_SSE_PING_SEC`, and a reader that
    takes nothing for `ORCHESTRATOR_SSE_SEND_TIMEOUT_SEC` (it stopped reading; its TCP window
    is full) dropped: the events generator is closed, which cancels the job and lets go of its
    slot and upload, instead of holding them for as long as the reader stays connected."""

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


def respond(request: Request, events: AsyncGenerator[StoredEvent, None]) -> EventStream:
    """`events` as Server-Sent Events: each one's number is its id (what `Last-Event-ID`
    resumes after), its data JSON."""

    async def sent() -> AsyncIterator[ServerSentEvent]:
        # Closed explicitly: a stream closed at a `yield` (its reader was dropped) closes only
        # this generator, and `events` must stop (a job's tasks) before what it holds goes.
        async with contextlib.aclosing(events) as source:
            async for event in source:
                yield ServerSentEvent(id=str(event.seq), event=event.name, data=event.data)

    return EventStream(sent(), request.app.state.settings)


async def stream_job(
    request: Request,
    runner: JobRunner,
    intake: Intake,
    translate: Translate,
    held: contextlib.AsyncExitStack,
) -> EventStream:
    """Prepare the job (errors are plain HTTP answers), then stream `translate(events)`; an
    error mid-stream is an `error` event. What the job holds (`held`: its upload, its job
    slot) is let go when the stream ends, whatever ends it."""
    try:
        job = await runner.prepare(intake.request, upload=intake.own_upload)
    except BaseException:
        await held.aclose()
        raise

    async def events() -> AsyncGenerator[StoredEvent, None]:
        ids = itertools.count()
        try:
            async with (
                contextlib.aclosing(runner.events(job)) as source,
                contextlib.aclosing(translate(source)) as translated,
            ):
                async for name, data in translated:
                    yield StoredEvent(next(ids), name, data.model_dump_json())
        except WhisperfleetError as exc:
            yield StoredEvent(next(ids), "error", exc.body().model_dump_json())
        finally:
            await finish_shielded(held.aclose)

    return respond(request, events())
