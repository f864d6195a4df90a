"""intake.py without a server: a form's file or URL becomes the job's request, a JSON body is
held to its cap, and each refusal names the field to fix (a form parsed from a real multipart
body: jobs/test_uploads.py; over the app: test_gate.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.requests import Request

from services.orchestrator.api.intake import intake_from_form, read_json_body, take_request
from services.orchestrator.jobs.uploads import MediaStore, Upload, UploadForm
from shared.errors import InvalidRequestError, PayloadTooLargeError
from shared.schemas import JobRequest, TranscribeParams

MEDIA = "https://media.example/talk.mp3"


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "uploads", "http://orchestrator:8000", 1 << 20, 0)


def upload(store: MediaStore, size: int = 5) -> Upload:
    store.root.mkdir(parents=True, exist_ok=True)
    path = store.root / ("ab" * 16)
    path.write_bytes(b"x" * size)
    return Upload("ab" * 16, path, size, "talk.mp3")


def test_an_uploaded_file_is_read_back_from_this_orchestrator(store: MediaStore) -> None:
    file = upload(store)
    params = TranscribeParams(language="de")
    intake = intake_from_form(UploadForm(file), params, store)
    assert intake.request.media_url == f"http://orchestrator:8000/internal/uploads/{file.id}"
    assert intake.request.params == params
    own = intake.own_upload
    assert own is not None and (own.id, own.filename) == (file.id, "talk.mp3")


@pytest.mark.parametrize("name", ["media_url", "url"])
def test_a_media_url_field_is_the_job_s_media_and_no_upload(store: MediaStore, name: str) -> None:
    intake = intake_from_form(UploadForm(None, {name: [MEDIA]}), TranscribeParams(), store)
    assert str(intake.request.media_url) == MEDIA
    assert intake.upload is None and intake.own_upload is None


@pytest.mark.parametrize(
    ("with_file", "fields", "words"),
    [
        (True, {"media_url": [MEDIA]}, "either a file or a media URL, not both"),
        (False, {}, "send a `file` (multipart) or a media URL"),
        (False, {"media_url": [""]}, "send a `file` (multipart) or a media URL"),
    ],
)
def test_a_form_with_both_or_neither_is_a_422_naming_file(
    store: MediaStore, with_file: bool, fields: dict[str, list[str]], words: str
) -> None:
    form = UploadForm(upload(store) if with_file else None, fields)
    with pytest.raises(InvalidRequestError) as refused:
        intake_from_form(form, TranscribeParams(), store)
    assert refused.value.status_code == 422 and refused.value.param == "file"
    assert words in refused.value.message


def test_an_empty_upload_is_refused(store: MediaStore) -> None:
    with pytest.raises(InvalidRequestError, match="the uploaded file is empty"):
        intake_from_form(UploadForm(upload(store, size=0)), TranscribeParams(), store)


def test_a_body_type_s_own_fields_come_from_the_form_and_are_validated(
    store: MediaStore,
) -> None:
    hook = "https://hooks.example/done"
    form = UploadForm(upload(store), {"webhook_url": [hook], "unrelated": ["x"]})
    intake = intake_from_form(form, TranscribeParams(), store, JobRequest)
    assert isinstance(intake.request, JobRequest) and str(intake.request.webhook_url) == hook
    bad = UploadForm(upload(store), {"webhook_url": ["not a url"]})
    with pytest.raises(InvalidRequestError) as refused:
        intake_from_form(bad, TranscribeParams(), store, JobRequest)
    assert refused.value.param == "webhook_url"


def request_of(body: bytes, pieces: int = 1, content_length: bool = True) -> Request:
    """A Starlette request whose body arrives in `pieces`, as the server would pass it."""
    step = max(1, -(-len(body) // pieces))
    chunks = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    messages: Iterator[dict[str, object]] = iter(
        [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
    )
    headers = [(b"content-type", b"application/json")]
    if content_length:
        headers.append((b"content-length", str(len(body)).encode()))

    async def receive() -> dict[str, object]:
        return next(messages, {"type": "http.disconnect"})

    scope = {"type": "http", "method": "POST", "path": "/v1/transcribe", "headers": headers}
    return Request(scope, receive)


async def test_a_json_body_is_read_whole_up_to_its_cap() -> None:
    body = b'{"media_url": "' + MEDIA.encode() + b'"}'
    assert await read_json_body(request_of(body, pieces=3), len(body)) == body


@pytest.mark.parametrize("content_length", [True, False])
async def test_a_json_body_over_the_cap_is_a_413_saying_where_media_goes(
    content_length: bool,
) -> None:
    """Refused by its declared length before any byte is read, or as soon as it passes."""
    body = b"x" * 4096
    with pytest.raises(PayloadTooLargeError) as refused:
        await read_json_body(request_of(body, pieces=4, content_length=content_length), 1024)
    assert refused.value.status_code == 413
    assert "larger than 1 KiB (ORCHESTRATOR_MAX_REQUEST_KB)" in refused.value.message
    assert "multipart `file` or behind a `media_url`" in refused.value.message


async def test_a_bad_json_body_is_a_422_naming_the_field(store: MediaStore) -> None:
    body = b'{"media_url": "' + MEDIA.encode() + b'", "params": {"temperature": 7}}'
    with pytest.raises(InvalidRequestError) as refused:
        await take_request(request_of(body), store, 1 << 16)
    assert refused.value.param == "params.temperature"
    intake = await take_request(request_of(body.replace(b"7", b"0.2")), store, 1 << 16)
    assert str(intake.request.media_url) == MEDIA and intake.upload is None
