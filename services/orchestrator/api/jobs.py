"""Async jobs (`/v1/jobs`): submit, look up, follow, cancel, list. The work is jobs/queue.py's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from services.orchestrator.api.auth import ANONYMOUS, Caller
from services.orchestrator.api.deps import ERRORS, Queue, Store, request_body
from services.orchestrator.api.intake import take_request
from services.orchestrator.api.sse import respond
from services.orchestrator.jobs.queue import JobQueue
from services.orchestrator.jobs.records import JobRecord
from shared.aio import finish_shielded
from shared.errors import ConflictError, InvalidRequestError, NotFoundError
from shared.formats import Format, render
from shared.schemas import JobInfo, JobList, JobRequest, JobStatus

router = APIRouter(tags=["jobs"])

_BODY = request_body(JobRequest, "webhook_url")


async def _own_job(queue: JobQueue, job_id: str, who: str) -> JobRecord:
    """The job, if the caller may see it (with API keys on, only the key that made it)."""
    row = await queue.store.get(job_id)
    if row is None or (who != ANONYMOUS and row.owner != who):
        raise NotFoundError(f"no job {job_id!r}", param="id")
    return row


@router.post(
    "/v1/jobs",
    status_code=202,
    response_model=JobInfo,
    responses=ERRORS,
    openapi_extra=_BODY,
)
async def submit_job(request: Request, queue: Queue, store: Store, who: Caller) -> JSONResponse:
    """Queue a transcription: the `/v1/transcribe` body (or multipart with `file`), plus an
    optional `webhook_url`. The media is checked first (range support, duration: the same
    4xx as `/v1/transcribe`); then answers at once with the job: follow it at `Location`.
    A key with `ORCHESTRATOR_MAX_QUEUED_JOBS_PER_KEY` jobs queued or running gets 429."""
    await queue.check_room(who)  # before the body: a refused upload is never read
    max_bytes = queue.settings.max_request_kb * 1024
    intake = await take_request(request, store, max_bytes, JobRequest)
    try:
        assert isinstance(intake.request, JobRequest)
        info = await queue.submit(who, intake.request, intake.upload)
    except BaseException:
        await finish_shielded(intake.aclose)
        raise
    return JSONResponse(
        info.model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/jobs/{info.id}"}
    )


@router.get("/v1/jobs", response_model=JobList, responses=ERRORS)
async def list_jobs(
    queue: Queue,
    who: Caller,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[float | None, Query(description="created_at of the last job seen")] = None,
) -> JobList:
    """The caller's jobs, newest first (without their transcripts)."""
    owner = None if who == ANONYMOUS else who
    rows = await queue.store.page(owner, status, limit + 1, before)
    return JobList(
        data=[row.info(with_result=False) for row in rows[:limit]], has_more=len(rows) > limit
    )


@router.get("/v1/jobs/{job_id}", response_model=JobInfo, responses={404: ERRORS[422], **ERRORS})
async def get_job(
    job_id: str,
    queue: Queue,
    who: Caller,
    format: Format | None = None,
    words: bool = False,
) -> Any:
    """Where the job stands; once it succeeded, its transcript (in `format` if given)."""
    row = await _own_job(queue, job_id, who)
    info = row.info()
    if format is None:
        return info
    if info.result is None:
        raise ConflictError(
            f"job {job_id} is {info.status.value}: a transcript exists once it has succeeded",
            param="format",
        )
    params = row.job_request().params
    text = render(info.result, format, task=params.task, words=words, language=params.language)
    return Response(text, media_type=format.media_type)


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
)
async def job_events(
    request: Request,
    job_id: str,
    queue: Queue,
    who: Caller,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """The job's Server-Sent Events from the beginning (the same as `/v1/transcribe/stream`'s,
    and `cancelled` if it is cancelled); with `Last-Event-ID`, from the event after that one,
    also after the job ended."""
    await _own_job(queue, job_id, who)
    after = -1
    if last_event_id is not None:
        if not last_event_id.strip().lstrip("-").isdigit():
            raise InvalidRequestError("Last-Event-ID must be an event id", param="Last-Event-ID")
        after = int(last_event_id)

    return respond(request, queue.events(job_id, after))


@router.delete("/v1/jobs/{job_id}", response_model=JobInfo, responses=ERRORS)
async def cancel_job(job_id: str, queue: Queue, who: Caller) -> JobInfo:
    """Cancel a queued or running job (its work stops everywhere); a finished job is left as
    it is."""
    await _own_job(queue, job_id, who)
    row = await queue.cancel(job_id)
    if row is None:
        raise NotFoundError(f"no job {job_id!r}", param="id")
    return row.info(with_result=False)
