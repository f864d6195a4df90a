"""What the routes share: typed dependencies (the job runner, the media store, the job queue, from
the app's state) and the OpenAPI of their errors and bodies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel

from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.jobs.queue import JobQueue
from services.orchestrator.jobs.uploads import MediaStore
from services.orchestrator.transcription.runner import JobRunner
from shared.errors import ErrorBody

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


def _settings(request: Request) -> OrchestratorSettings:
    settings: OrchestratorSettings = request.app.state.settings
    return settings


def _runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.runner
    return runner


def _store(request: Request) -> MediaStore:
    store: MediaStore = request.app.state.media_store
    return store


def _queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.job_queue
    return queue


Settings = Annotated[OrchestratorSettings, Depends(_settings)]
Runner = Annotated[JobRunner, Depends(_runner)]
Store = Annotated[MediaStore, Depends(_store)]
Queue = Annotated[JobQueue, Depends(_queue)]
