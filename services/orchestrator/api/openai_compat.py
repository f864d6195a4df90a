"""OpenAI's audio API, as the official SDKs send it: transcriptions, translations, models.

    POST /v1/audio/transcriptions   multipart: file (or our `url`), model, language, prompt,
                                    response_format, temperature, timestamp_granularities[],
                                    stream, chunking_strategy, include[],
                                    known_speaker_names[], known_speaker_references[];
                                    ours: diarize, num_speakers, min_speakers, max_speakers
    POST /v1/audio/translations     the same, into English (no language, no stream, no
                                    diarized_json)
    GET  /v1/models                 the served model

Any `model` name maps to the served model. The SDK encodes arrays as `name[]` (repeated) and
objects as `name[key]` form fields; both are read here. An upload is streamed to the media store
and fans out across the chunk workers like a URL; the answer is rendered by `shared.formats`.

Speakers: `response_format=diarized_json` (or `diarize=true`, with any format) diarizes; the
speaker fields need one of them (a 422 naming the field otherwise). Streamed, as OpenAI streams
it: a `transcript.text.delta` per segment as it is transcribed, then one `transcript.text.done`;
with diarized_json each delta names its `segment_id`, and a `transcript.text.segment` per
segment, with its speaker, comes after the last delta: the job's labels are final only once the
whole file is heard (the job's `speakers` event), so none is sent that might change. Those
segments are the non-streamed answer's, ids included: where the final speakers split a streamed
segment at a speaker change, the ids after it are one further on than the deltas'.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from services.orchestrator.api.auth import Caller, GateDep
from services.orchestrator.api.deps import ERRORS, Runner, Settings, Store
from services.orchestrator.api.intake import intake_from_form
from services.orchestrator.api.sse import stream_job
from services.orchestrator.jobs.uploads import UploadForm
from services.orchestrator.transcription.runner import JobEvent
from services.orchestrator.transcription.speakers import Diarization
from shared.aio import finish_shielded
from shared.api import cancel_on_disconnect
from shared.errors import FIELD_TO_FIX, BadRequestError, InvalidRequestError
from shared.formats import Format, diarized_segment, incomplete_clips, render, segment_id
from shared.schemas import ChunkSegment, Segment, StreamFooter, TranscribeParams

router = APIRouter(tags=["OpenAI-compatible"])

_SPEAKER_FIELDS = {
    "known_speaker_names": "known_speaker_names[]",
    "known_speaker_references": "known_speaker_references[]",
    "num_speakers": "num_speakers",
    "min_speakers": "min_speakers",
    "max_speakers": "max_speakers",
}
"""Speaker parameters (TranscribeParams' names) and the form fields they come from."""
_BAD_REQUEST_FIELDS = {"language", "temperature", "prompt"}
"""Fields whose bad values OpenAI answers with 400 (the SDK's BadRequestError); ours are 422s."""
_STREAMED_FORMATS = {Format.JSON, Format.TEXT, Format.DIARIZED_JSON}
"""What `stream=true` can send: OpenAI's text deltas (diarized_json's with segment events)."""
_VAD_KEYS = {"type", "prefix_padding_ms", "silence_duration_ms", "threshold"}


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "whisperfleet"


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


class TextDelta(BaseModel):
    type: str = "transcript.text.delta"
    delta: str


class SegmentTextDelta(TextDelta):
    segment_id: str


class TextSegment(BaseModel):
    """`transcript.text.segment`: a diarized segment (the SDK's `TranscriptionTextSegmentEvent`)."""

    type: str = "transcript.text.segment"
    id: str
    start: float
    end: float
    speaker: str
    text: str


class TextDone(BaseModel):
    type: str = "transcript.text.done"
    text: str
    incomplete_clips: int = Field(0, exclude_if=lambda value: not value)
    """Ours: micro chunks the model server gave up on in part (words may be missing); present
    only when above 0."""


@router.get("/v1/models", response_model=ModelList)
async def models(settings: Settings, who: Caller) -> ModelList:
    """The model this deployment serves (any name in a request maps to it)."""
    return ModelList(data=[ModelCard(id=settings.model_name)])


@router.post("/v1/audio/transcriptions", responses=ERRORS)
async def transcriptions(
    request: Request, runner: Runner, store: Store, gate: GateDep, who: Caller
) -> Any:
    """Transcribe an uploaded `file` (or a media `url`) in OpenAI's request and answer shape."""
    return await _answer(request, runner, store, gate.job_slot(who), task="transcribe")


@router.post("/v1/audio/translations", responses=ERRORS)
async def translations(
    request: Request, runner: Runner, store: Store, gate: GateDep, who: Caller
) -> Any:
    """Translate speech in any language into English text, in OpenAI's shape."""
    return await _answer(request, runner, store, gate.job_slot(who), task="translate")


async def _answer(
    request: Request,
    runner: Runner,
    store: Store,
    slot: contextlib.AbstractAsyncContextManager[None],
    *,
    task: str,
) -> Any:
    held = contextlib.AsyncExitStack()
    await held.enter_async_context(slot)
    try:
        form = await store.receive(request)
        held.push_async_callback(store.release, form.upload)
        options = OpenAIOptions.from_form(form, task=task)
        intake = intake_from_form(form, options.params, store)
        await intake.share()
    except BaseException:
        await held.aclose()
        raise
    if options.stream:
        diarized = options.response_format == Format.DIARIZED_JSON
        return await stream_job(
            request, runner, intake, _segment_events if diarized else _text_events, held
        )
    try:
        work = runner.run(intake.request, upload=intake.own_upload)
        output = await cancel_on_disconnect(request, work)
    finally:
        await finish_shielded(held.aclose)
    text = render(
        output,
        options.response_format,
        task=task,
        words=options.words,
        language=options.params.language,
    )
    gaps = incomplete_clips(output)
    headers = {"X-Whisperfleet-Incomplete-Clips": str(gaps)} if gaps else None
    return Response(text, media_type=options.response_format.media_type, headers=headers)


async def _text_events(
    events: AsyncIterator[JobEvent],
) -> AsyncGenerator[tuple[str, BaseModel], None]:
    """OpenAI's streaming transcription: a delta per segment in timeline order, then done."""
    pieces: list[str] = []
    gaps = 0
    async for event in events:
        if isinstance(event, StreamFooter):
            gaps = event.incomplete_clips
        if isinstance(event, Segment) and event.text.strip():
            delta = event.text.strip() if not pieces else " " + event.text.strip()
            pieces.append(delta)
            yield "transcript.text.delta", TextDelta(delta=delta)
    yield "transcript.text.done", TextDone(text="".join(pieces), incomplete_clips=gaps)


async def _segment_events(
    events: AsyncIterator[JobEvent],
) -> AsyncGenerator[tuple[str, BaseModel], None]:
    """diarized_json streamed: deltas naming their segment as they come; at the end, the
    segments of the job's `speakers` event (final speakers, split where they change: the
    non-streamed answer's segments), then done."""
    pieces: list[str] = []
    final: list[ChunkSegment] = []
    index = -1
    gaps = 0
    async for event in events:
        if isinstance(event, Diarization):  # the job's `speakers` event
            final = event.segments
        if isinstance(event, StreamFooter):
            gaps = event.incomplete_clips
        if not isinstance(event, Segment):
            continue
        index += 1
        if not event.text.strip():
            continue
        delta = event.text.strip() if not pieces else " " + event.text.strip()
        pieces.append(delta)
        yield "transcript.text.delta", SegmentTextDelta(delta=delta, segment_id=segment_id(index))
    for index, segment in enumerate(final):
        if segment.text.strip():
            piece = diarized_segment(index, Segment.of(segment))
            yield "transcript.text.segment", TextSegment.model_validate(piece)
    yield "transcript.text.done", TextDone(text="".join(pieces), incomplete_clips=gaps)


class OpenAIOptions(BaseModel):
    params: TranscribeParams
    response_format: Format
    words: bool
    stream: bool

    @classmethod
    def from_form(cls, form: UploadForm, *, task: str) -> OpenAIOptions:
        _check_fields(form)
        try:
            response_format = Format.parse(form.get("response_format") or Format.JSON)
        except ValueError as exc:
            raise BadRequestError(str(exc), param="response_format") from None
        if response_format == Format.DIARIZED_JSON and task == "translate":
            raise BadRequestError(
                "translations have no diarized_json; diarize with /v1/audio/transcriptions",
                param="response_format",
            )
        granularities = set(form_array(form, "timestamp_granularities"))
        if not granularities <= {"segment", "word"}:
            raise BadRequestError(
                "timestamp_granularities[] takes 'segment' and/or 'word'",
                param="timestamp_granularities[]",
            )
        _check_chunking_strategy(form)
        stream = _boolean(form.get("stream"), "stream")
        if "word" in granularities and (stream or response_format != Format.VERBOSE_JSON):
            # Words cost an alignment pass; only verbose_json has a place for them.
            raise BadRequestError(
                "timestamp_granularities[]=word gives words only in response_format="
                "verbose_json (not streamed); send that, or leave out 'word'",
                param="timestamp_granularities[]",
            )
        if stream and task == "translate":
            raise BadRequestError("translations don't stream; omit stream", param="stream")
        if stream and response_format not in _STREAMED_FORMATS:
            raise BadRequestError(
                "a stream sends text as it is transcribed, so response_format is json, text or "
                f"diarized_json; {response_format} needs the whole transcript: omit stream",
                param="response_format",
            )
        diarize = _boolean(form.get("diarize"), "diarize") or (
            response_format == Format.DIARIZED_JSON
        )
        # The decoding options as the form gives them: TranscribeParams (DecodeOptions) is
        # their one check. A translation's language is ignored, as OpenAI ignores it.
        decoding = {
            name: value
            for name in ("language", "prompt", "temperature")
            if (value := form.get(name)) and not (name == "language" and task == "translate")
        }
        try:
            params = TranscribeParams(
                task="translate" if task == "translate" else "transcribe",
                word_timestamps="word" in granularities,
                diarize=diarize,
                **decoding,
                **_speaker_fields(form, diarize),
            )
        except ValidationError as exc:
            raise _invalid(exc) from None
        return cls(
            params=params,
            response_format=response_format,
            words="word" in granularities,
            stream=stream,
        )


def _speaker_fields(form: UploadForm, diarize: bool) -> dict[str, Any]:
    """The speaker parameters the form gives, as TranscribeParams takes them (its validators
    judge them); `known_speaker_names[]` as the SDK sends it, or without the brackets."""
    values: dict[str, Any] = {}
    for name, field in _SPEAKER_FIELDS.items():
        if field.endswith("[]"):
            if items := form_array(form, name):
                values[name] = items
        elif value := form.get(field):
            values[name] = value
    if values and not diarize:
        field = _SPEAKER_FIELDS[next(iter(values))]
        raise InvalidRequestError(
            f"{field} is for diarization: send response_format=diarized_json or diarize=true",
            param=field,
        )
    return values


_FIELDS = {"file", "url", "media_url", "model", "language", "prompt", "response_format",
           "temperature", "stream", "chunking_strategy", "diarize", *_SPEAKER_FIELDS}  # fmt: skip
_ARRAYS = {"timestamp_granularities", "include", "known_speaker_names", "known_speaker_references"}


def _check_fields(form: UploadForm) -> None:
    """A field the API doesn't have is a 400 naming it, as OpenAI answers one: a misspelt
    option (`langauge`) would otherwise be ignored without a word."""
    for name in form.fields:
        base, bracket, key = name.partition("[")
        if name in _FIELDS or (
            base in _ARRAYS and (not bracket or key[:-1].isdigit() or key == "]")
        ):
            continue
        if base == "chunking_strategy" and bracket and key.endswith("]"):
            continue  # its object's keys, checked with it
        raise BadRequestError(f"Unrecognized request argument supplied: {name}", param=name)


def form_array(form: UploadForm, name: str) -> list[str]:
    """An array field however a client encodes it: `name[]` repeated (the SDKs), `name`
    repeated, or indexed `name[0]`, `name[1]` ... (qs-style encoders), in order."""
    indexed = sorted(
        (int(key[len(name) + 1 : -1]), values)
        for key, values in form.fields.items()
        if key.startswith(name + "[") and key.endswith("]") and key[len(name) + 1 : -1].isdigit()
    )
    return [
        *form.fields.get(name + "[]", []),
        *form.fields.get(name, []),
        *(value for _, values in indexed for value in values),
    ]


def _invalid(exc: ValidationError) -> BadRequestError | InvalidRequestError:
    """An error naming the first offending form field as the client sent it
    (`known_speaker_names[]`); a check across fields names the first field it mentions. A 400
    when that field is one OpenAI answers 400 for (`language`, `temperature`), else a 422."""
    messages: list[str] = []
    first: str | None = None
    for error in exc.errors():
        field: str | None
        location = [str(part) for part in error["loc"]]
        message = str(error["msg"])
        if location:
            field = _SPEAKER_FIELDS.get(location[0], location[0])
            item = f" item {location[1]}" if len(location) > 1 else ""
            message = f"{field}{item}: {message}"
        elif isinstance(named := (error.get("ctx") or {}).get(FIELD_TO_FIX), str):
            field = _SPEAKER_FIELDS.get(named, named)
        else:
            mentioned = [(message.find(name), name) for name in _SPEAKER_FIELDS if name in message]
            field = _SPEAKER_FIELDS[min(mentioned)[1]] if mentioned else None
        first = first or field
        messages.append(message)
    status = BadRequestError if first in _BAD_REQUEST_FIELDS else InvalidRequestError
    return status("; ".join(messages), param=first)


def _boolean(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("false", "0", ""):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise BadRequestError(f"{name} must be true or false", param=name)


def _check_chunking_strategy(form: UploadForm) -> None:
    """`auto`, or a server_vad object (as JSON or as `chunking_strategy[key]` fields): our
    cutter already cuts in pauses, so its settings are accepted and left to it."""
    value = form.get("chunking_strategy")
    strategy: dict[str, Any] = {}
    if value is not None and value != "auto":
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise BadRequestError(
                'chunking_strategy must be \'auto\' or {"type": "server_vad", ...}',
                param="chunking_strategy",
            )
        strategy = parsed
    for name, values in form.fields.items():
        if name.startswith("chunking_strategy[") and name.endswith("]"):
            strategy[name[len("chunking_strategy[") : -1]] = values[-1]
    if strategy and (strategy.get("type") != "server_vad" or not set(strategy) <= _VAD_KEYS):
        raise BadRequestError(
            "chunking_strategy must be 'auto' or {type: 'server_vad', prefix_padding_ms, "
            "silence_duration_ms, threshold}",
            param="chunking_strategy",
        )
