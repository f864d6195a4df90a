"""Where a job's media comes from: a URL in a JSON body, or a file uploaded with the request.

Both end as a `TranscribeRequest`; an upload's `media_url` is where this orchestrator reads
it back (its own URL, with the fleet credential), and `own_upload` tells the job runner to
send the workers its id instead (they read it from `CHUNK_WORKER_ORCHESTRATOR_URLS`) and to
show clients its name. Whoever takes an `Intake` must `aclose()` it when the job ends: that
removes the upload. A synchronous job runs `share()` first and `aclose()` at its end: with
several replicas (PostgreSQL) its upload is kept in the database meanwhile, so a worker whose
read lands on another replica finds it (an async job's goes in with the job, jobs/store.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError
from starlette.requests import Request

from services.orchestrator.jobs.uploads import MediaStore, Upload, UploadForm
from services.orchestrator.transcription.runner import OwnUpload
from shared.api import read_capped
from shared.errors import InvalidRequestError, PayloadTooLargeError, validation_error_body
from shared.schemas import TranscribeParams, TranscribeRequest


@dataclass
class Intake:
    request: TranscribeRequest
    upload: Upload | None
    store: MediaStore

    @property
    def own_upload(self) -> OwnUpload | None:
        """The media as an upload of this orchestrator's (no address rule applies to it)."""
        if self.upload is None:
            return None
        return OwnUpload(self.upload.id, self.upload.filename)

    async def share(self) -> None:
        await self.store.keep_for_request(self.upload)

    async def aclose(self) -> None:
        """The end of the request's hold on its upload (an async job's is the queue's once
        submitted): here and, if kept, in the database."""
        await self.store.release(self.upload)


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def take_request(
    request: Request,
    store: MediaStore,
    max_json_bytes: int,
    body_type: type[TranscribeRequest] = TranscribeRequest,
) -> Intake:
    """`/v1/transcribe` bodies: JSON `{media_url, params}` (at most `max_json_bytes`), or
    multipart with `file` (or `media_url`) and `params` (a JSON string). `body_type` may add
    fields (`/v1/jobs`: `webhook_url`), which a form sends as fields of the same names."""
    if not is_multipart(request):
        try:
            body = body_type.model_validate_json(await read_json_body(request, max_json_bytes))
        except ValidationError as exc:
            raise validation_error_body(exc.errors()) from None
        return Intake(body, None, store)
    form = await store.receive(request)
    try:
        _check_form_fields(form, body_type)
        try:
            params = TranscribeParams.model_validate_json(form.get("params") or "{}")
        except ValidationError as exc:
            errors = [{**e, "loc": ("params", *e["loc"])} for e in exc.errors()]
            raise validation_error_body(errors) from None
        return intake_from_form(form, params, store, body_type)
    except BaseException:
        store.remove(form.upload)
        raise


_FORM_FIELDS = {"file", "media_url", "url", "params"}
"""What a multipart `/v1/transcribe` body holds; `body_type`'s own fields besides."""


def _check_form_fields(form: UploadForm, body_type: type[TranscribeRequest]) -> None:
    """A field the form can't hold is a 422 naming it, as a typo in a JSON body is: a
    decoding option sent as a field of its own (`-F language=en`) would otherwise be ignored."""
    known = _FORM_FIELDS | set(body_type.model_fields)
    for name in form.fields:
        if name in known:
            continue
        where = (
            f"decoding options go inside the `params` field as JSON, e.g. "
            f"-F 'params={{\"{name}\": ...}}'"
            if name in TranscribeParams.model_fields
            else f"the form takes {', '.join(sorted(known - {'params'}))} and params (JSON)"
        )
        raise InvalidRequestError(f"unknown form field {name!r}: {where}", param=name)


async def read_json_body(request: Request, limit: int) -> bytes:
    """A JSON request body, refused with 413 as soon as it passes `limit` bytes."""
    return await read_capped(request, limit, lambda _declared: _too_large(limit))


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the request body is larger than {limit // 1024} KiB (ORCHESTRATOR_MAX_REQUEST_KB); "
        "media goes in a multipart `file` or behind a `media_url`, and a known speaker's "
        "reference clip needs only 2-10 s"
    )


def intake_from_form(
    form: UploadForm,
    params: TranscribeParams,
    store: MediaStore,
    body_type: type[TranscribeRequest] = TranscribeRequest,
) -> Intake:
    """A job from a parsed form: its uploaded file, or its `media_url`/`url` field."""
    url = form.get("media_url") or form.get("url")
    if form.upload is not None and url:
        raise InvalidRequestError("send either a file or a media URL, not both", param="file")
    if form.upload is None and not url:
        raise InvalidRequestError("send a `file` (multipart) or a media URL", param="file")
    if form.upload is not None and form.upload.size == 0:
        raise InvalidRequestError("the uploaded file is empty", param="file")
    media_url = store.url(form.upload) if form.upload is not None else url
    try:
        extra = {
            name: value
            for name in body_type.model_fields
            if name not in TranscribeRequest.model_fields and (value := form.get(name))
        }
        request = body_type(media_url=media_url, params=params, **extra)
    except ValidationError as exc:
        raise validation_error_body(exc.errors()) from None
    return Intake(request, form.upload, store)
