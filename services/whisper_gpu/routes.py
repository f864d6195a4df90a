"""Model server routes: one clip in, its segments out."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel

from services.whisper_gpu.app import ModelHolder
from shared.api import cancel_on_disconnect, read_capped
from shared.clients import LANGUAGE_HINT_HEADER, POSITION_HEADER, SPEECH_HEADER
from shared.errors import InvalidRequestError, PayloadTooLargeError
from shared.languages import normalize_language
from shared.schemas import ClipTranscription, DecodeOptions
from shared.vad import Span, parse_spans

router = APIRouter(tags=["model"])


class ClipJson(BaseModel):
    """The seed design's JSON body: a base64 WAV."""

    audio_b64: str


def _models(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.models
    return holder


def _speech(
    spans: Annotated[
        str | None,
        Header(
            alias=SPEECH_HEADER,
            description="Where the clip's speech is (`start-end,...` in seconds); "
            "omit and the server runs its own voice activity detection.",
        ),
    ] = None,
) -> list[Span] | None:
    if spans is None:
        return None
    try:
        return parse_spans(spans)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param=SPEECH_HEADER) from exc


def _language_hint(
    code: Annotated[
        str | None,
        Header(
            alias=LANGUAGE_HINT_HEADER,
            description="The language the clip's job has been heard in so far: chosen where "
            "the detection finds it plausible (at least half as likely as its first choice).",
        ),
    ] = None,
) -> str | None:
    if code is None:
        return None
    try:
        return normalize_language(code)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param=LANGUAGE_HINT_HEADER) from exc


async def _read_body(request: Request) -> bytes:
    limit: int = request.app.state.settings.max_body_bytes

    def too_large(declared: int | None) -> PayloadTooLargeError:
        if declared is not None:
            return PayloadTooLargeError(f"body is {declared} bytes; the limit is {limit} bytes")
        return PayloadTooLargeError(f"body exceeds the limit of {limit} bytes")

    body = await read_capped(request, limit, too_large)
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            return base64.b64decode(ClipJson.model_validate_json(body).audio_b64, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise InvalidRequestError(
                'JSON body must be {"audio_b64": <base64 WAV>}', param="audio_b64"
            ) from exc
    return body


@router.post("/v1/clips", response_model=ClipTranscription)
async def transcribe_clip(
    request: Request,
    options: Annotated[DecodeOptions, Query()],
    speech: Annotated[list[Span] | None, Depends(_speech)],
    models: Annotated[ModelHolder, Depends(_models)],
    language_hint: Annotated[str | None, Depends(_language_hint)],
    position: Annotated[
        float | None,
        Header(alias=POSITION_HEADER, ge=0, description="The clip's start within its media."),
    ] = None,
) -> ClipTranscription:
    """Transcribe one clip of at most 30 s (raw audio body, or JSON `{audio_b64}`): every word
    spoken in it, in segments with times relative to the clip. The query string is the
    decoding options (`DecodeOptions`); a bad one is a 422 naming it."""
    body = await _read_body(request)
    clip = await anyio.to_thread.run_sync(models.prepare, body, speech, language_hint)
    return await cancel_on_disconnect(request, models.transcribe(clip, options, position))


@router.get("/metrics", tags=["health"])
async def metrics(models: Annotated[ModelHolder, Depends(_models)]) -> Response:
    """Prometheus metrics: queue depth, batch sizes, queue wait, inference time, outcomes, and
    what the coverage rounds cost (rounds, windows, halving, fallbacks, windows given up)."""
    return Response(models.metrics.render(), media_type="text/plain; version=0.0.4")
