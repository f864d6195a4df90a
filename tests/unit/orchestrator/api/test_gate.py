"""The gate in front of the public API (gate.py), in-process: Host, key, body type and size are
decided before the body is read; event streams drop a reader that stopped reading."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from starlette.types import Message

from services.orchestrator.api.gate import parse_host
from services.orchestrator.app import create_app
from shared.schemas import Segment, TranscribeOutput
from tests.support.asgi import serve
from tests.support.errors import assert_error
from tests.support.orchestrator import EndlessJob, multipart, settings

MB = 1_000_000
TRANSCRIBE = {"media_url": "http://example.invalid/talk.mp3"}


class Body:
    """A request body streamed in 1 MB pieces, counting what the server pulled."""

    def __init__(self, size: int, piece: int = MB, head: bytes = b"") -> None:
        self.size = size
        self.piece = piece
        self.head = head
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.size:
            chunk = (self.head if not self.pulled else b"") + b"x" * self.piece
            chunk = chunk[: self.size - self.pulled]
            self.pulled += len(chunk)
            yield chunk


def json_headers(**extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", **extra}


def test_host_names_parse_with_and_without_ports() -> None:
    assert parse_host("Example.COM.") == ("example.com", None)
    assert parse_host("localhost:8000") == ("localhost", 8000)
    assert parse_host("[::1]:8000") == ("::1", 8000)
    assert parse_host("[::1]") == ("::1", None)
    assert parse_host("::1") == ("::1", None)
    for bad in ("", "a b", "host:", "host:http", "[::1", "[::1]x", "host:99999", "a/b"):
        assert parse_host(bad) is None, bad


def test_a_malformed_allowed_host_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        settings(tmp_path, allowed_hosts="good.example,bad host")
    assert settings(tmp_path, allowed_hosts=" a.example , *").allowed_hosts == ["a.example", "*"]


async def test_a_foreign_host_is_refused_before_the_body_naming_the_setting(
    tmp_path: Path,
) -> None:
    """DNS rebinding: a page whose name now resolves to this server sends its own name."""
    async with serve(create_app(settings(tmp_path))) as client:
        body = Body(10 * MB)
        posted = await client.post(
            "/v1/transcribe", content=body, headers=json_headers(Host="rebind.example")
        )
        listed = await client.get("/v1/jobs", headers={"Host": "rebind.example:8000"})
    for response in (posted, listed):
        assert_error(response, 400, "bad_request", "rebind.example", "ORCHESTRATOR_ALLOWED_HOSTS")
        assert response.json()["error"]["param"] == "Host"
    assert body.pulled == 0


async def test_loopback_and_configured_hosts_are_served_with_or_without_a_port(
    tmp_path: Path,
) -> None:
    app = create_app(settings(tmp_path, allowed_hosts="transcribe.example,10.0.0.5:8000"))
    served = ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000",
              "transcribe.example", "TRANSCRIBE.example:443", "10.0.0.5:8000"]  # fmt: skip
    refused = ["10.0.0.5:9000", "10.0.0.5", "other.example", "localhost.example", "a b"]
    async with serve(app) as client:
        for host in served:
            response = await client.get("/v1/models", headers={"Host": host})
            assert response.status_code == 200, (host, response.text)
        for host in refused:
            response = await client.get("/v1/models", headers={"Host": host})
            assert_error(response, 400, "bad_request", "ORCHESTRATOR_ALLOWED_HOSTS")


async def test_a_star_allows_any_host(tmp_path: Path) -> None:
    async with serve(create_app(settings(tmp_path, allowed_hosts="*"))) as client:
        response = await client.get("/v1/models", headers={"Host": "anything.example"})
    assert response.status_code == 200


async def test_a_page_of_another_site_may_not_use_the_api(tmp_path: Path) -> None:
    """Regression: a multipart form is a CORS-simple request, so any page the user opened could
    post jobs to a keyless local stack (Host: localhost is allowed). Browsers say which page
    sent a request; programs send neither header and are served."""
    app = create_app(settings(tmp_path, allowed_hosts="transcribe.example"))
    form = {"media_url": TRANSCRIBE["media_url"]}
    refused = [
        {"Origin": "https://evil.example"},
        {"Origin": "http://localhost:3000"},  # another program's page on this machine
        {"Origin": "null"},  # a sandboxed frame, a file:// page
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:8000"},
    ]
    served = [
        {},  # curl, the SDKs
        {"Origin": "http://localhost:8000", "Sec-Fetch-Site": "same-origin"},  # our own page
        {"Origin": "http://LOCALHOST:8000"},
        {"Origin": "https://transcribe.example"},  # our page behind a proxy that rewrites Host
    ]
    async with serve(app) as client:
        for headers in refused:
            body = Body(10 * MB)
            response = await client.post(
                "/v1/jobs", content=body, headers=json_headers(Host="localhost:8000", **headers)
            )
            assert_error(response, 403, "cross_site_request", "another site")
            assert body.pulled == 0
            posted = await client.post("/v1/jobs", data=form, headers=headers)
            assert posted.status_code == 403, headers
        for headers in served:
            response = await client.get("/v1/models", headers={"Host": "localhost:8000", **headers})
            assert response.status_code == 200, (headers, response.text)


async def test_health_internal_routes_the_page_and_docs_are_outside_the_gate(
    tmp_path: Path,
) -> None:
    """Probes and chunk workers name the pod or the service (`orchestrator:8000`), not a
    public name, and carry no API key: the gate is for `/v1/` only."""
    app = create_app(settings(tmp_path, api_keys="secret"))
    outside = {"Host": "orchestrator:8000"}
    async with serve(app) as client:
        for path in ("/healthz", "/", "/static/app.js", "/openapi.json", "/docs"):
            response = await client.get(path, headers=outside)
            assert response.status_code == 200, (path, response.text)
        ready = await client.get("/readyz", headers=outside)
        upload = await client.get("/internal/uploads/" + "0" * 32, headers=outside)
    assert ready.status_code in (200, 503)
    for response in (ready, upload):
        assert "ORCHESTRATOR_ALLOWED_HOSTS" not in response.text
        assert "API key" not in response.text


async def test_json_sent_as_text_plain_is_a_415_naming_what_to_send(tmp_path: Path) -> None:
    """`text/plain` is what a cross-site page can post without a CORS preflight."""
    async with serve(create_app(settings(tmp_path))) as client:
        plain = await client.post(
            "/v1/transcribe", content=json.dumps(TRANSCRIBE), headers={"Content-Type": "text/plain"}
        )
        untyped = await client.post("/v1/jobs", content=json.dumps(TRANSCRIBE))
        form = await client.post("/v1/jobs", data={"media_url": TRANSCRIBE["media_url"]})
        openai_json = await client.post("/v1/audio/transcriptions", json={"model": "whisper-1"})
        render_form = await client.post("/v1/render?format=srt", files={"file": ("a.json", b"{}")})
    assert_error(plain, 415, "unsupported_media", "application/json", "not text/plain")
    assert plain.json()["error"]["param"] == "Content-Type"
    assert_error(untyped, 415, "unsupported_media", "no Content-Type")
    assert_error(form, 415, "unsupported_media", "multipart/form-data with a `file`")
    assert_error(openai_json, 415, "unsupported_media", "multipart/form-data", "OpenAI")
    assert_error(render_form, 415, "unsupported_media", "application/json")


async def test_a_body_to_a_path_no_route_has_is_a_404_not_a_415(tmp_path: Path) -> None:
    """`whisperfleet transcribe x.wav --server http://host:8000/v1` (the SDKs' habit) posted a
    form to /v1/v1/jobs and was told to send JSON."""
    async with serve(create_app(settings(tmp_path))) as client:
        form = await client.post("/v1/v1/jobs", files={"file": ("a.wav", b"RIFF")})
        wrong_method = await client.put("/v1/jobs", files={"file": ("a.wav", b"RIFF")})
    assert form.status_code == 404, form.text
    assert wrong_method.status_code == 405, wrong_method.text  # a route: its own answer


async def test_without_a_key_200_mb_get_a_401_before_any_byte_is_read(tmp_path: Path) -> None:
    """The key was a route dependency, and FastAPI reads the body first: a 200 MB body without a
    key was read to its end (61 s) before the 401."""
    app = create_app(settings(tmp_path, api_keys="secret"))
    async with serve(app) as client:
        for path, headers in [
            ("/v1/render?format=srt", json_headers()),
            ("/v1/transcribe", json_headers(**{"Content-Length": str(200 * MB)})),
            ("/v1/audio/transcriptions", {"Content-Type": "multipart/form-data; boundary=x"}),
            ("/v1/jobs", json_headers(Authorization="Bearer wrong")),
        ]:
            body = Body(200 * MB)
            started = time.monotonic()
            response = await client.post(path, content=body, headers=headers)
            elapsed = time.monotonic() - started
            assert_error(response, 401, "invalid_api_key", "API key")
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["connection"] == "close"  # the rest is never read
            assert body.pulled < 200 * MB // 4 and body.pulled == 0, (path, body.pulled)
            assert elapsed < 10, (path, elapsed)  # not read through first (61 s, once)


async def test_the_401_is_the_same_as_before(tmp_path: Path) -> None:
    async with serve(create_app(settings(tmp_path, api_keys="secret"))) as client:
        missing = await client.get("/v1/models")
        wrong = await client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert missing.json() == {
        "error": {
            "message": "this server needs an API key: send 'Authorization: Bearer <key>'",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
            "param": None,
        }
    }
    assert wrong.json()["error"]["message"] == "the API key is not valid"
    assert missing.headers["www-authenticate"] == wrong.headers["www-authenticate"] == "Bearer"


async def test_a_declared_length_over_the_cap_is_a_413_without_reading(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, max_request_kb=1, max_render_mb=1, max_upload_mb=1))
    async with serve(app) as client:
        for path, content_type, setting in [
            ("/v1/transcribe", "application/json", "ORCHESTRATOR_MAX_REQUEST_KB"),
            ("/v1/render?format=srt", "application/json", "ORCHESTRATOR_MAX_RENDER_MB"),
            ("/v1/jobs", "multipart/form-data; boundary=x", "ORCHESTRATOR_MAX_UPLOAD_MB"),
            ("/v1/audio/translations", "multipart/form-data; boundary=x", "MAX_UPLOAD_MB"),
        ]:
            body = Body(3 * MB)
            response = await client.post(
                path,
                content=body,
                headers={"Content-Type": content_type, "Content-Length": str(3 * MB)},
            )
            assert_error(response, 413, "payload_too_large", setting)
            assert body.pulled == 0, path


async def test_a_chunked_body_is_cut_with_a_413_once_it_passes_the_cap(tmp_path: Path) -> None:
    """No Content-Length: counted as it arrives. /v1/render's own body reader would make a 400
    of the failed read; the gate's 413 replaces it."""
    app = create_app(settings(tmp_path, max_request_kb=64, max_render_mb=1, max_upload_mb=1))
    piece = 16 * 1024
    async with serve(app) as client:
        for path, content_type, cap in [
            ("/v1/transcribe", "application/json", 64 * 1024),
            ("/v1/render?format=srt", "application/json", MB),
            # the file alone reaches the media store's cap (1 MB) before the body's (+1 MB)
            ("/v1/transcribe", "multipart/form-data; boundary=b0undary", MB),
        ]:
            head = multipart("b0undary", b"")[:-16] if "multipart" in content_type else b""
            body = Body(50 * MB, piece=piece, head=head)
            response = await client.post(path, content=body, headers={"Content-Type": content_type})
            assert response.request.headers["transfer-encoding"] == "chunked"
            assert_error(response, 413, "payload_too_large")
            assert cap < body.pulled <= cap + piece, (path, body.pulled)
    assert list((tmp_path / "uploads").iterdir()) == []  # the cut upload is gone


async def test_an_upload_to_a_route_with_a_key_is_streamed_to_its_own_cap(tmp_path: Path) -> None:
    """Multipart is held to the upload cap, not to the JSON one."""
    app = create_app(settings(tmp_path, api_keys="k", max_request_kb=1))
    files = {"file": ("talk.wav", b"\0" * 50_000)}
    async with serve(app) as client:
        response = await client.post(
            "/v1/transcribe",
            files=files,
            data={"params": '{"micro_chunk_size_sec": 1000}'},
            headers={"Authorization": "Bearer k"},
        )
    assert_error(response, 422, "invalid_request", "params.micro_chunk_size_sec")


async def test_render_takes_a_transcript_within_its_cap(tmp_path: Path) -> None:
    output = TranscribeOutput(
        segments=[
            Segment(
                start_time_sec=0.0, end_time_sec=1.5, text="Hello.", language="english",
                bcp47_key="en",
            )
        ],
        input_duration_sec=1.5,
        processing_duration_sec=1.0,
        speedup=1.5,
    )  # fmt: skip
    async with serve(create_app(settings(tmp_path))) as client:
        response = await client.post(
            "/v1/render?format=srt", json={"output": output.model_dump(mode="json")}
        )
    assert response.status_code == 200, response.text
    assert "Hello." in response.text


async def test_the_openai_sdk_passes_the_gate(tmp_path: Path) -> None:
    """The official SDK's requests as it sends them (over its own HTTP client, httpx2): the key
    as a bearer token, uploads as multipart. An option we refuse shows the route itself read
    the form."""
    app = create_app(settings(tmp_path, api_keys="sdk-key"))
    async with serve(app), httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http:
        sdk = openai.AsyncOpenAI(
            base_url="http://localhost/v1", api_key="sdk-key", http_client=http, max_retries=0
        )
        models = await sdk.models.list()
        with pytest.raises(openai.BadRequestError) as refused:
            await sdk.audio.transcriptions.create(
                file=("talk.wav", b"\0" * 1000),
                model="whisper-1",
                extra_body={"diarize": "maybe"},
            )
        unkeyed = openai.AsyncOpenAI(
            base_url="http://localhost/v1", api_key="wrong", http_client=http, max_retries=0
        )
        with pytest.raises(openai.AuthenticationError):
            await unkeyed.models.list()
    assert [model.id for model in models.data] == ["base"]
    assert refused.value.param == "diarize"


class SlowSource:
    """Where an upload is kept for every replica; dropping it takes a moment (a database)."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.dropped: list[str] = []

    def read_upload(self, upload_id: str) -> AsyncIterator[bytes]:
        raise AssertionError("not read here")

    async def keep_upload(self, upload_id: str, path: Path) -> None:
        self.kept.append(upload_id)

    async def drop_upload(self, upload_id: str) -> None:
        await asyncio.sleep(0.05)
        self.dropped.append(upload_id)


@pytest.mark.parametrize("leaving", ["stops reading", "disconnects"])
async def test_a_reader_that_stops_reading_is_dropped_and_its_slot_and_upload_freed(
    tmp_path: Path, leaving: str
) -> None:
    """The ASGI server's send blocks once the reader's TCP window is full; after the send
    timeout the stream is dropped: the job's work cancelled, its slot and upload let go. The
    same when the reader disconnects (sse-starlette cancels the stream's scope; the upload's
    copy for the fleet is let go of anyway: regression, its await used to be cut short)."""
    app = create_app(settings(tmp_path, api_keys="k", max_jobs_per_key=1, sse_send_timeout_sec=0.3))
    async with serve(app):
        job = app.state.runner = EndlessJob(app.state.settings, app.state.gate)
        body = multipart("b0undary", b"\0" * 4096)
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/transcribe/stream",
            "raw_path": b"/v1/transcribe/stream", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"localhost"), (b"authorization", b"Bearer k"),
                        (b"content-type", b"multipart/form-data; boundary=b0undary"),
                        (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1), "server": ("localhost", 80),
        }  # fmt: skip
        messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[Message] = []
        window_full = asyncio.Event()

        async def receive() -> Message:
            if messages:
                return messages.pop(0)
            if leaving == "disconnects":
                await window_full.wait()
                return {"type": "http.disconnect"}
            await asyncio.Event().wait()  # connected, silent
            raise AssertionError

        async def send(message: Message) -> None:
            sent.append(message)
            if len(sent) > 3:  # a few events fit in the buffers, then the send blocks
                window_full.set()
                if leaving == "stops reading":
                    await asyncio.Event().wait()

        # The fleet's copy of the upload (PostgreSQL): let go of with an await, which the
        # dropped stream's cancelled scope used to cut short.
        shared = SlowSource()
        app.state.media_store.source = shared
        started = time.monotonic()
        stream = asyncio.create_task(app(scope, receive, send))
        await asyncio.wait_for(window_full.wait(), 5)
        assert list((tmp_path / "uploads").iterdir()) != []  # held while the stream lives
        await asyncio.wait_for(stream, 5)  # dropped, not hanging
        elapsed = time.monotonic() - started
        assert job.work_cancelled.is_set()
        assert job.slots_held_at_cancel == 1  # the work stopped before its slot was let go
        assert list((tmp_path / "uploads").iterdir()) == []
        assert shared.kept and shared.dropped == shared.kept
        assert app.state.gate._running == {}
        assert elapsed < 0.3 + 4.0, elapsed
        # The key's one slot is free again: another job of it is not refused.
        gate = app.state.gate
        async with gate.job_slot(gate.identify("Bearer k")):
            pass
    assert sent[0]["status"] == 200
