"""The chunk worker's routes in-process: only the fleet may call them, media URLs are fetched
under the worker's own address rule (never one a request brings), and uploads are read from an
orchestrator with the fleet credential, the next orchestrator when one can't be reached."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from services.chunk_worker.access import MediaAccess
from services.chunk_worker.app import create_app
from services.chunk_worker.config import ChunkWorkerSettings
from services.stack import free_port
from shared import fleet
from shared.media_host import AddressPolicy
from shared.schemas import CHUNK_STREAM, ClipSegment, ClipTranscription
from shared.streams import StreamReader
from tests.support.asgi import RawCall, serve
from tests.support.errors import assert_error
from tests.support.media_server import MediaServer
from tests.support.metrics import metric

SECRET = "the-fleet-secret-for-these-tests"
UPLOAD = uuid.UUID(int=7).hex
"""An upload id (32 hex digits), served by the fake orchestrator below."""


@pytest.fixture(scope="module")
def host(media_dir: Path) -> Iterator[MediaServer]:
    with MediaServer(media_dir) as server:
        yield server


@pytest.fixture(scope="module")
def orchestrator(
    tmp_path_factory: pytest.TempPathFactory, media_dir: Path
) -> Iterator[MediaServer]:
    """Plays an orchestrator's `/internal/uploads/<id>`: served only with the fleet secret."""
    store = tmp_path_factory.mktemp("store")
    shutil.copy(media_dir / "speech_40s.wav", store / UPLOAD)
    with MediaServer(store, fleet_secret=SECRET) as server:
        yield server


def worker(**values: object) -> ChunkWorkerSettings:
    defaults: dict[str, object] = {
        "whisper_urls": ["http://127.0.0.1:9"],  # never reached by these tests
        "fleet_secret": SecretStr(SECRET),
        "diarization": False,
    }
    return ChunkWorkerSettings.model_validate({**defaults, **values})


def span(**media: str) -> dict[str, object]:
    return {**media, "start_sec": 0, "end_sec": 10}


@pytest.mark.parametrize("authorization", [None, "Bearer not-the-fleet-secret-at-all"])
async def test_without_the_credential_nothing_is_done(
    host: MediaServer, authorization: str | None
) -> None:
    app = create_app(worker(allowed_media_networks="127.0.0.0/8"))
    headers = {"Authorization": authorization} if authorization else {}
    before = host.traffic.requests_by_path.get("/media/speech_40s.wav", 0)
    async with serve(app, headers=headers) as client:
        for method, path in (("POST", "/v1/chunks"), ("POST", "/v1/silence"),
                             ("POST", "/v1/speakers"), ("GET", "/metrics")):  # fmt: skip
            body = span(media_url=host.url("speech_40s.wav")) if method == "POST" else None
            response = await client.request(method, path, json=body)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"]["code"] == "invalid_fleet_credential"
            assert "CHUNK_WORKER_FLEET_SECRET" in response.json()["error"]["message"]
        assert (await client.get("/readyz")).status_code == 503  # open: no model server
    assert host.traffic.requests_by_path.get("/media/speech_40s.wav", 0) == before


async def test_a_request_bringing_its_own_address_rule_is_refused(host: MediaServer) -> None:
    app = create_app(worker())
    async with serve(app, headers=fleet.headers(SECRET)) as client:
        for path in ("/v1/chunks", "/v1/silence"):
            body = {**span(media_url=host.url("speech_40s.wav")), "allowed_networks": ["0.0.0.0/0"]}
            response = await client.post(path, json=body)
            assert response.status_code == 422, response.text
            assert response.json()["error"]["param"] == "allowed_networks"
        both = {**span(media_url=host.url("speech_40s.wav")), "upload_id": UPLOAD}
        response = await client.post("/v1/silence", json=both)
        assert response.status_code == 422
        assert "exactly one of media_url and upload_id" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/chunks", "/v1/silence"])
async def test_the_worker_applies_its_own_address_rule(host: MediaServer, path: str) -> None:
    """The orchestrator may allow loopback; a worker whose own setting refuses it still does."""
    before = host.traffic.requests_by_path.get("/media/speech_40s.wav", 0)
    async with serve(create_app(worker()), headers=fleet.headers(SECRET)) as client:
        refused = await client.post(path, json=span(media_url=host.url("speech_40s.wav")))
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "media_address_refused"
    assert "CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS" in refused.json()["error"]["message"]
    assert host.traffic.requests_by_path.get("/media/speech_40s.wav", 0) == before

    app = create_app(worker(allowed_media_networks="127.0.0.1/32"))
    authorized = host.traffic.authorized_requests
    async with serve(app, headers=fleet.headers(SECRET)) as client:
        allowed = await client.post("/v1/silence", json=span(media_url=host.url("speech_40s.wav")))
    assert allowed.status_code == 200, allowed.text
    assert 0 <= allowed.json()["split_sec"] <= 10
    assert host.traffic.authorized_requests == authorized  # the credential never goes to a host


async def test_an_upload_is_read_from_the_next_orchestrator_with_the_credential(
    orchestrator: MediaServer,
) -> None:
    """Uploads are reached through the credential, not an address rule: this worker refuses
    loopback for media URLs, yet reads the upload from its (loopback) orchestrator."""
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = create_app(worker(orchestrator_urls=f"{down},{orchestrator.base_url}"))
    path = f"/internal/uploads/{UPLOAD}"
    async with serve(app, headers=fleet.headers(SECRET)) as client:
        response = await client.post("/v1/silence", json=span(upload_id=UPLOAD))
        assert response.status_code == 200, response.text
        missing = await client.post("/v1/silence", json=span(upload_id=uuid.UUID(int=8).hex))
    assert 0 <= response.json()["split_sec"] <= 10
    requests = orchestrator.traffic.requests_by_path[path]
    assert requests > 0 and orchestrator.traffic.authorized_requests >= requests
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "upload_id"


async def test_an_orchestrator_gone_after_the_check_costs_the_read_a_reconnect_not_the_job(
    tmp_path: Path, media_dir: Path
) -> None:
    """Regression: the worker read an upload from the orchestrator that had answered its check;
    that one died (a replica killed mid-job) and every retry went to it again, so the job
    failed (502) though the other orchestrator serves the same upload."""
    shutil.copy(media_dir / "speech_40s.wav", tmp_path / UPLOAD)
    data = (tmp_path / UPLOAD).read_bytes()
    path = f"/internal/uploads/{UPLOAD}"
    with MediaServer(tmp_path, fleet_secret=SECRET) as survivor:
        doomed = MediaServer(tmp_path, fleet_secret=SECRET).__enter__()
        access = MediaAccess(
            AddressPolicy.parse([], "CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS"),
            [doomed.base_url, survivor.base_url],
            fleet.headers(SECRET),
            read_timeout_sec=5,
            keep_bytes=0,
        )
        async with access, httpx.AsyncClient() as reader:
            url = await access.upload_url(UPLOAD)
            assert doomed.traffic.requests_by_path[path] == 1  # it answered the check
            doomed.__exit__()  # and dies before the reads
            assert access.uploads is not None
            lease = access.uploads.lease(url)
            response = await reader.get(lease.local_url, headers={"Range": "bytes=0-"})
    assert response.status_code == 206 and response.content == data
    assert survivor.traffic.requests_by_path[path] >= 1


async def test_an_orchestrator_refusing_the_credential_is_a_502_naming_the_setting(
    orchestrator: MediaServer,
) -> None:
    settings = worker(orchestrator_urls=orchestrator.base_url, fleet_secret="another-fleets-secret")
    async with serve(
        create_app(settings), headers=fleet.headers("another-fleets-secret")
    ) as client:
        response = await client.post("/v1/silence", json=span(upload_id=UPLOAD))
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert "refused this worker's fleet credential" in message
    assert "CHUNK_WORKER_FLEET_SECRET" in message and "another-fleets-secret" not in message


async def test_no_reachable_orchestrator_is_a_503_naming_the_setting() -> None:
    down = f"http://127.0.0.1:{free_port()}"
    async with serve(
        create_app(worker(orchestrator_urls=down)), headers=fleet.headers(SECRET)
    ) as c:
        response = await c.post("/v1/silence", json=span(upload_id=UPLOAD))
    assert response.status_code == 503, response.text
    assert "CHUNK_WORKER_ORCHESTRATOR_URLS" in response.json()["error"]["message"]


async def test_diarizing_on_a_worker_that_cannot_is_a_400_before_the_media_is_read(
    host: MediaServer, tmp_path: Path
) -> None:
    """Off, or without its models: a clear 400 naming why, never a transcript without
    speakers."""
    before = host.traffic.requests_by_path.get("/media/speech_40s.wav", 0)
    body = {**span(media_url=host.url("speech_40s.wav")), "params": {"diarize": True}}
    references = {"references": ["data:audio/wav;base64,AAAA"]}
    turned_off = worker(allowed_media_networks="127.0.0.0/8")
    no_models = worker(allowed_media_networks="127.0.0.0/8", diarization=True,
                       models_dir=tmp_path / "empty")  # fmt: skip
    for settings, why in ((turned_off, "CHUNK_WORKER_DIARIZATION"), (no_models, "models")):
        async with serve(create_app(settings), headers=fleet.headers(SECRET)) as client:
            assert_error(await client.post("/v1/chunks", json=body), 400,
                         "diarization_unavailable", why)  # fmt: skip
            assert_error(await client.post("/v1/speakers", json=references), 400,
                         "diarization_unavailable", why)  # fmt: skip
    assert host.traffic.requests_by_path.get("/media/speech_40s.wav", 0) == before


class GivingUp:
    """Plays the model server for the worker's clips: one segment per clip, and every clip
    flagged `incomplete` (windows still open after its last round)."""

    def __init__(self) -> None:
        self.clips = 0

    async def transcribe_clip(self, wav: bytes, options: object, *args: object) -> object:
        self.clips += 1
        segment = ClipSegment(start_sec=0.5, end_sec=1.5, text=" Hello.", language="en")
        return ClipTranscription(segments=[segment], language="en", language_probability=1.0,
                                 duration_sec=2.0, speech_sec=2.0, incomplete=True)  # fmt: skip


async def test_a_clip_the_model_server_gave_up_on_is_marked_and_counted(
    host: MediaServer,
) -> None:
    """`ClipTranscription.incomplete` travels on in the micro chunk's report, its segments in
    absolute time with the internal span names, and the worker counts it."""
    app = create_app(worker(allowed_media_networks="127.0.0.0/8"))
    async with serve(app, headers=fleet.headers(SECRET)) as client:
        app.state.transcriber.whisper = model = GivingUp()
        body = {**span(media_url=host.url("speech_40s.wav")), "start_sec": 20, "end_sec": 30}
        response = await client.post("/v1/chunks", json=body)
        assert response.status_code == 200, response.text
        reader = StreamReader(CHUNK_STREAM, response.aiter_bytes())
        [result] = [item async for item in reader.items()]
        scraped = (await client.get("/metrics")).text
    assert model.clips == 1 and result.micro_chunk.incomplete
    [segment] = result.segments
    assert 20.5 <= segment.start_sec < segment.end_sec <= 30 and segment.language == "en"
    assert metric(scraped, "chunk_worker_incomplete_clips_total") == 1
    assert metric(scraped, "chunk_worker_clips_total") == 1


async def test_a_large_body_with_the_credential_is_read_then_refused_as_a_bad_body() -> None:
    """The other half of tests/unit/shared/test_fleet.py's regression test (a body without the
    credential is refused unread): with it, the same request is read, so the gate is what kept
    the others unread."""
    app = create_app(ChunkWorkerSettings(fleet_secret=SecretStr(SECRET)))
    async with app.router.lifespan_context(app):
        call = await RawCall("/v1/silence", f"Bearer {SECRET}", 3 << 20).run(app)
    assert call.status == 422 and call.pieces_read == 3
