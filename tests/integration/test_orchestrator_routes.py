"""The orchestrator's routes in-process (create_app + lifespan over ASGITransport): what is
refused before any worker is asked."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from services.orchestrator.app import create_app
from shared import fleet
from tests.support.asgi import serve
from tests.support.errors import assert_error
from tests.support.media_server import MediaServer
from tests.support.metrics import metric
from tests.support.orchestrator import settings

SECRET = "the-fleet-secret-for-these-tests"


@pytest.fixture(scope="module")
def host(media_dir: Path) -> Iterator[MediaServer]:
    with MediaServer(media_dir) as server:
        yield server


async def test_a_media_url_on_this_machine_is_refused_by_default(
    tmp_path: Path, host: MediaServer
) -> None:
    async with serve(create_app(settings(tmp_path))) as client:
        body = {"media_url": host.url("speech_40s.wav")}
        response = await client.post("/v1/transcribe", json=body)
    assert_error(response, 422, "media_address_refused", "127.0.0.1 (loopback)",
                 "ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS")  # fmt: skip
    assert response.json()["error"]["param"] == "media_url"
    assert host.traffic.requests_by_path.get("/media/speech_40s.wav", 0) == 0


async def test_a_redirect_from_an_allowed_host_to_a_refused_one_is_refused(
    tmp_path: Path, host: MediaServer
) -> None:
    app = create_app(settings(tmp_path, allowed_media_networks=["127.0.0.1/32"]))
    async with serve(app) as client:
        target = "http://127.0.0.2:9/internal/metadata"
        media_url = str(httpx.URL(f"{host.base_url}/redirect", params={"to": target}))
        response = await client.post("/v1/transcribe", json={"media_url": media_url})
    assert_error(response, 422, "media_address_refused", "127.0.0.2 (loopback)")


async def test_only_http_and_https_media_urls_are_taken(tmp_path: Path) -> None:
    async with serve(create_app(settings(tmp_path))) as client:
        response = await client.post("/v1/transcribe", json={"media_url": "file:///etc/passwd"})
    assert_error(response, 422, "invalid_request", "http")


def test_a_malformed_network_list_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CIDR"):
        settings(tmp_path, allowed_media_networks="10.0.0.0/8,bogus")


async def test_with_keys_every_public_endpoint_wants_one_and_health_stays_open(
    tmp_path: Path,
) -> None:
    app = create_app(settings(tmp_path, api_keys="alpha, beta"))
    async with serve(app) as client:
        for method, path in [("POST", "/v1/transcribe"), ("POST", "/v1/transcribe/stream"),
                             ("POST", "/v1/audio/transcriptions"), ("GET", "/v1/models"),
                             ("POST", "/v1/render?format=srt")]:  # fmt: skip
            response = await client.request(method, path, json={})
            assert_error(response, 401, "invalid_api_key", "API key")
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = await client.get("/v1/models", headers={"Authorization": "Bearer gamma"})
        assert_error(wrong, 401, "invalid_api_key", "not valid")
        right = await client.get("/v1/models", headers={"Authorization": "Bearer beta"})
        assert right.status_code == 200
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/")).status_code == 200  # the page, which asks for the key


async def test_keys_can_come_from_a_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# one per line\nfrom-a-file\n\n")
    async with serve(create_app(settings(tmp_path, api_keys_file=keys))) as client:
        ok = await client.get("/v1/models", headers={"Authorization": "Bearer from-a-file"})
        assert ok.status_code == 200
        assert (await client.get("/v1/models")).status_code == 401


async def test_a_key_over_its_job_limit_gets_429_with_retry_after(
    tmp_path: Path, host: MediaServer
) -> None:
    """The slot is held while the job runs: a second job of the same key is refused at once,
    another key's is not (both then fail at the unreachable worker, which is beside the point)."""
    app = create_app(
        settings(tmp_path, api_keys="a,b", max_jobs_per_key=1,
                 allowed_media_networks=["127.0.0.1/32"], worker_retry_attempts=1)
    )  # fmt: skip
    async with serve(app) as client:
        gate = app.state.gate
        async with gate.job_slot(gate.identify("Bearer a")):
            body = {"media_url": host.url("speech_40s.wav")}
            busy = await client.post(
                "/v1/transcribe", json=body, headers={"Authorization": "Bearer a"}
            )
            assert_error(busy, 429, "rate_limit_exceeded", "ORCHESTRATOR_MAX_JOBS_PER_KEY")
            assert int(busy.headers["retry-after"]) >= 1
            other = await client.post(
                "/v1/transcribe", json=body, headers={"Authorization": "Bearer b"}
            )
            assert other.status_code != 429


async def test_media_longer_than_the_cap_is_a_413_naming_the_setting(
    tmp_path: Path, host: MediaServer
) -> None:
    app = create_app(
        settings(tmp_path, max_duration_sec=30, allowed_media_networks=["127.0.0.1/32"])
    )
    async with serve(app) as client:
        response = await client.post(
            "/v1/transcribe", json={"media_url": host.url("speech_40s.wav")}
        )
    assert_error(
        response, 413, "payload_too_large", "at most 30 s", "ORCHESTRATOR_MAX_DURATION_SEC"
    )


async def test_an_oversized_json_body_is_a_413(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, max_request_kb=1))
    async with serve(app) as client:
        body = {"media_url": "http://example.invalid/a.mp3", "params": {"prompt": "x" * 2000}}
        response = await client.post("/v1/transcribe", json=body)
    assert_error(response, 413, "payload_too_large", "ORCHESTRATOR_MAX_REQUEST_KB")


async def test_readiness_reflects_the_workers(tmp_path: Path) -> None:
    """No worker answers at the configured URL: not ready, and the answer says what to check
    (a worker in turn is ready only while a model server is)."""
    async with serve(create_app(settings(tmp_path))) as client:
        for _ in range(50):
            response = await client.get("/readyz")
            if "(check" in response.text:
                break
            await asyncio.sleep(0.05)
    assert response.status_code == 503
    assert "no chunk worker is ready (check ORCHESTRATOR_WORKER_URLS)" in response.json()["detail"]


async def test_a_job_for_a_refused_address_is_refused_at_submit_and_never_queued(
    tmp_path: Path, host: MediaServer
) -> None:
    async with serve(create_app(settings(tmp_path))) as client:
        response = await client.post("/v1/jobs", json={"media_url": host.url("speech_40s.wav")})
        listed = await client.get("/v1/jobs")
    assert_error(response, 422, "media_address_refused", "ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS")
    assert listed.json() == {"object": "list", "data": [], "has_more": False}


async def test_a_webhook_to_a_refused_address_is_refused_at_submit_not_after_the_job(
    tmp_path: Path, host: MediaServer
) -> None:
    """Loopback is refused by this configuration: the webhook would never be delivered."""
    async with serve(create_app(settings(tmp_path))) as client:
        response = await client.post(
            "/v1/jobs",
            json={"media_url": host.url("speech_40s.wav"), "webhook_url": "http://127.0.0.1:9/h"},
        )
        listed = await client.get("/v1/jobs")
    assert_error(response, 422, "media_address_refused", "sends webhooks only to")
    assert response.json()["error"]["param"] == "webhook_url"
    assert listed.json()["data"] == []


async def test_job_lookups_are_404_and_bad_options_422(tmp_path: Path) -> None:
    async with serve(create_app(settings(tmp_path))) as client:
        missing = await client.get("/v1/jobs/job_0123")
        cancel = await client.delete("/v1/jobs/job_0123")
        events = await client.get("/v1/jobs/job_0123/events")
        bad_webhook = await client.post(
            "/v1/jobs", json={"media_url": "https://example.com/a.mp3", "webhook_url": "ftp://x"}
        )
        bad_status = await client.get("/v1/jobs", params={"status": "lost"})
    for response in (missing, cancel, events):
        assert_error(response, 404, "not_found", "job_0123")
    assert_error(bad_webhook, 422, "invalid_request", "webhook_url")
    assert_error(bad_status, 422, "invalid_request", "status")


async def test_jobs_need_the_api_key_and_each_key_sees_only_its_own(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, api_keys=["key-a", "key-b"]))
    async with serve(app) as client:
        anonymous = await client.get("/v1/jobs")
        queue = app.state.job_queue
        await queue.store.create("job_a", app.state.gate.identify("Bearer key-a"), "{}", None, None)
        mine = await client.get("/v1/jobs/job_a", headers={"Authorization": "Bearer key-a"})
        theirs = await client.get("/v1/jobs/job_a", headers={"Authorization": "Bearer key-b"})
        listed = await client.get("/v1/jobs", headers={"Authorization": "Bearer key-b"})
    assert_error(anonymous, 401, "invalid_api_key")
    assert mine.status_code == 200 and mine.json()["id"] == "job_a"
    assert_error(theirs, 404, "not_found")
    assert listed.json()["data"] == []


async def test_a_key_with_its_cap_of_queued_jobs_gets_429_before_its_upload_is_read(
    tmp_path: Path,
) -> None:
    """ORCHESTRATOR_MAX_QUEUED_JOBS_PER_KEY counts queued and running async jobs per key: the
    key at its cap is refused before its body is read (no file lands in the store); another
    key is not."""
    app = create_app(settings(tmp_path, api_keys="a,b", max_queued_jobs_per_key=2))
    async with serve(app) as client:
        queue = app.state.job_queue
        await queue.stop()  # nothing claims: the jobs stay queued
        for job_id in ("job_1", "job_2"):
            await queue.store.create(job_id, app.state.gate.identify("Bearer a"), "{}", None, None)
        full = await client.post(
            "/v1/jobs",
            files={"file": ("a.wav", b"RIFF" + bytes(100_000), "audio/wav")},
            headers={"Authorization": "Bearer a"},
        )
        other = await client.post(
            "/v1/jobs",
            json={"media_url": "http://127.0.0.1:9/a.mp3"},
            headers={"Authorization": "Bearer b"},
        )
    assert_error(full, 429, "rate_limit_exceeded", "2 async jobs",
                 "ORCHESTRATOR_MAX_QUEUED_JOBS_PER_KEY")  # fmt: skip
    assert int(full.headers["retry-after"]) >= 1
    assert list((tmp_path / "uploads").iterdir()) == []
    assert_error(other, 422, "media_address_refused")  # checked, not capped


async def test_an_upload_whose_job_is_refused_at_submit_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    """The media check fails (here: no fleet secret to read the upload back with): the file
    goes with the refusal (Intake.aclose), and no job is written."""
    app = create_app(settings(tmp_path))
    async with serve(app) as client:
        refused = await client.post(
            "/v1/jobs", files={"file": ("a.wav", b"RIFF" + bytes(1000), "audio/wav")}
        )
        listed = await client.get("/v1/jobs")
    assert_error(refused, 503, "not_ready", "ORCHESTRATOR_FLEET_SECRET")
    assert list((tmp_path / "uploads").iterdir()) == []
    assert listed.json()["data"] == []


async def test_a_form_field_of_its_own_is_a_422_naming_it_not_silently_ignored(
    tmp_path: Path,
) -> None:
    """`curl -F file=@de.wav -F language=en` transcribed German: the field was never read. The
    form holds `file` (or `media_url`), `params` (JSON) and, for jobs, `webhook_url`; anything
    else is refused before the job runs, the upload with it."""
    audio = {"file": ("a.wav", b"RIFF" + bytes(1000), "audio/wav")}
    async with serve(create_app(settings(tmp_path))) as client:
        option = await client.post("/v1/transcribe", files=audio, data={"language": "en"})
        typo = await client.post("/v1/jobs", files=audio, data={"langauge": "en"})
        openai = await client.post(
            "/v1/audio/transcriptions", files=audio, data={"model": "x", "langauge": "en"}
        )
    assert_error(option, 422, "invalid_request", "'language'", "params")
    assert option.json()["error"]["param"] == "language"
    assert_error(typo, 422, "invalid_request", "'langauge'", "webhook_url")
    assert_error(openai, 400, "bad_request", "Unrecognized request argument supplied: langauge")
    assert list((tmp_path / "uploads").iterdir()) == []


async def test_a_second_orchestrator_on_one_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    async with serve(create_app(settings(tmp_path))):
        with pytest.raises(RuntimeError, match="SQLite serves one orchestrator") as refused:
            async with serve(create_app(settings(tmp_path))):
                pass
        assert "ORCHESTRATOR_DATABASE_URL=postgresql://" in str(refused.value)
    async with serve(create_app(settings(tmp_path))) as client:  # the first one let go
        assert (await client.get("/healthz")).status_code == 200


async def test_an_upload_is_read_back_with_the_fleet_credential_and_nothing_else(
    tmp_path: Path,
) -> None:
    """`/internal/uploads` is for the fleet: an API key doesn't open it, the fleet secret
    doesn't open the public API, and without a configured secret nothing opens it."""
    secret = "the-fleet-secret-for-these-tests"
    upload = "ab" * 16
    app = create_app(settings(tmp_path, api_keys="alpha", fleet_secret=secret))
    async with serve(app) as client:
        (tmp_path / "uploads" / upload).write_bytes(b"0123456789")
        path = f"/internal/uploads/{upload}"
        for authorization in (None, "Bearer alpha", "Bearer not-the-fleet-secret-at-all"):
            headers = {"Range": "bytes=0-3"}
            if authorization:
                headers["Authorization"] = authorization
            refused = await client.get(path, headers=headers)
            assert_error(refused, 401, "invalid_fleet_credential", "ORCHESTRATOR_FLEET_SECRET")
        read = await client.get(path, headers={**fleet.headers(secret), "Range": "bytes=0-3"})
        assert read.status_code == 206 and read.content == b"0123"
        not_a_key = await client.get("/v1/models", headers=fleet.headers(secret))
        assert_error(not_a_key, 401, "invalid_api_key")

    async with serve(create_app(settings(tmp_path / "unset"))) as client:
        (tmp_path / "unset" / "uploads" / upload).write_bytes(b"0123456789")
        refused = await client.get(f"/internal/uploads/{upload}", headers=fleet.headers(secret))
    assert_error(refused, 401, "invalid_fleet_credential", "set ORCHESTRATOR_FLEET_SECRET")


async def test_an_upload_to_an_orchestrator_without_a_fleet_secret_says_which_setting(
    tmp_path: Path, media_dir: Path
) -> None:
    """Regression: its own read-back was refused by its own gate, and the client, who sent a
    file, was told `media_url answered HTTP 401`."""
    async with serve(create_app(settings(tmp_path))) as client:
        response = await client.post(
            "/v1/transcribe",
            files={"file": ("a.wav", (media_dir / "speech_40s.wav").read_bytes(), "audio/wav")},
        )
    assert_error(response, 503, "not_ready", "ORCHESTRATOR_FLEET_SECRET")
    assert list((tmp_path / "uploads").iterdir()) == []


async def test_an_unknown_format_is_a_422_naming_it_on_every_route_that_renders(
    tmp_path: Path,
) -> None:
    """One enum, one check: `/v1/render` and `/v1/jobs/{id}` take `Format`, so an unknown one
    is refused before the route runs (before a job is even looked up), listing every format."""
    body = {"output": {"segments": [], "input_duration_sec": 1.0,
                       "processing_duration_sec": 1.0, "speedup": 1.0}}  # fmt: skip
    async with serve(create_app(settings(tmp_path))) as client:
        refused = [
            await client.post("/v1/render?format=docx", json=body),
            await client.get("/v1/jobs/job_none?format=docx"),
        ]
        rendered = await client.post("/v1/render?format=vtt", json=body)
    for response in refused:
        assert_error(response, 422, "invalid_request", "diarized_json", "tsv")
        assert response.json()["error"]["param"] == "format"
    assert rendered.status_code == 200 and rendered.text.startswith("WEBVTT")
    assert rendered.headers["content-type"] == "text/vtt; charset=utf-8"


async def test_diarized_json_of_a_transcript_without_speakers_is_a_400_naming_format(
    tmp_path: Path,
) -> None:
    said = {"start_time_sec": 0.0, "end_time_sec": 1.0, "text": " Hi.", "bcp47_key": "en"}
    plain = {"segments": [said],
             "input_duration_sec": 1.0, "processing_duration_sec": 1.0, "speedup": 1.0}  # fmt: skip
    async with serve(create_app(settings(tmp_path))) as client:
        refused = await client.post("/v1/render?format=diarized_json", json={"output": plain})
        diarized = {**plain, "speakers": [], "segments": []}  # diarized, nobody spoke
        rendered = await client.post("/v1/render?format=diarized_json", json={"output": diarized})
    assert_error(refused, 400, "bad_request", "diarize=true")
    assert refused.json()["error"]["param"] == "format"
    assert rendered.status_code == 200 and rendered.json()["segments"] == []


async def test_metrics_are_the_fleets_and_count_incomplete_clips(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, fleet_secret=SecretStr(SECRET)))
    async with serve(app) as client:
        refused = await client.get("/metrics")
        app.state.runner.metrics.incomplete_clips.inc()
        scraped = await client.get("/metrics", headers=fleet.headers(SECRET))
    assert_error(refused, 401, "invalid_fleet_credential", "ORCHESTRATOR_FLEET_SECRET")
    assert scraped.status_code == 200
    assert metric(scraped.text, "orchestrator_incomplete_clips_total") == 1
    assert "/metrics" not in app.openapi()["paths"]
