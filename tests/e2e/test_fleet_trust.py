"""Trust inside the fleet, on real processes: internal routes want the fleet credential, a
worker fetches media under its own address rule, and uploads are reached through the
credential (never shown to clients by where the fleet reads them)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack import LOCAL_NETWORKS, LocalStack
from shared import fleet
from tests.support.media_server import MediaServer
from tests.support.sse import parse_sse
from tests.support.stack import start_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def strict_workers(
    tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path
) -> Iterator[LocalStack]:
    """The orchestrator may fetch from this machine; its one worker may not (its own rule)."""
    running = start_stack(
        tmp_path_factory.mktemp("trust"),
        model_cache_dir,
        workers=1,
        ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS=LOCAL_NETWORKS,
        CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS="",
    )
    try:
        yield running
    finally:
        running.stop()


def sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    return [(event.name, event.data) for event in parse_sse(response.iter_lines())]


def test_workers_and_the_model_server_refuse_callers_without_the_credential(
    strict_workers: LocalStack, media_server: MediaServer
) -> None:
    worker = strict_workers.service("chunk_worker_0").url
    model = strict_workers.service("whisper_gpu").url
    media = media_server.url("speech_40s.wav")
    before = media_server.traffic.requests_by_path.get("/media/speech_40s.wav", 0)
    body = {"media_url": media, "start_sec": 0, "end_sec": 10}
    for headers in ({}, {"Authorization": "Bearer not-the-fleet-secret-at-all"}):
        calls = [
            httpx.post(f"{worker}/v1/chunks", json=body, headers=headers, timeout=30),
            httpx.post(f"{worker}/v1/silence", json=body, headers=headers, timeout=30),
            httpx.get(f"{worker}/metrics", headers=headers, timeout=30),
            httpx.post(f"{model}/v1/clips", content=b"RIFF", headers=headers, timeout=30),
            httpx.get(f"{model}/metrics", headers=headers, timeout=30),
        ]
        for response in calls:
            assert response.status_code == 401, (response.url, response.text)
            assert response.json()["error"]["code"] == "invalid_fleet_credential"
    assert media_server.traffic.requests_by_path.get("/media/speech_40s.wav", 0) == before
    with_it = fleet.headers(strict_workers.fleet_secret)
    assert httpx.get(f"{model}/metrics", headers=with_it, timeout=30).status_code == 200


def test_a_worker_refuses_media_its_own_rule_refuses_though_the_orchestrator_allows_it(
    strict_workers: LocalStack, media_server: MediaServer
) -> None:
    body = {"media_url": media_server.url("speech_40s.wav"), "params": {"language": "en"}}
    response = httpx.post(f"{strict_workers.url}/v1/transcribe", json=body, timeout=120)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "media_address_refused"
    assert "CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS" in error["message"]


def test_an_upload_is_read_through_the_credential_and_never_shown_by_its_internal_url(
    strict_workers: LocalStack, media_dir: Path
) -> None:
    """The worker refuses this machine for media URLs, yet reads uploads from its loopback
    orchestrator: with the credential, not by an address rule. While the job runs, the
    read-back answers the credential and nothing else; the job's events name the upload."""
    stack = strict_workers
    uploads = Path(stack.env["ORCHESTRATOR_UPLOAD_DIR"])
    with (media_dir / "speech_200s.mp3").open("rb") as file:
        submitted = httpx.post(
            f"{stack.url}/v1/jobs",
            files={"file": ("talk.mp3", file, "audio/mpeg")},
            data={"params": json.dumps({"language": "en", "macro_chunk_size_sec": 60})},
            timeout=60,
        )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    [stored] = list(uploads.iterdir())
    read_back = f"{stack.url}/internal/uploads/{stored.name}"
    ranged = {"Range": "bytes=0-15"}
    credential = {**ranged, **fleet.headers(stack.fleet_secret)}
    assert httpx.get(read_back, headers=credential).status_code == 206  # it is there
    for headers in (ranged, {**ranged, "Authorization": "Bearer not-the-fleet-secret-at-all"}):
        refused = httpx.get(read_back, headers=headers)
        assert refused.status_code == 401, refused.text
        assert stack.fleet_secret not in refused.text
    assert httpx.get(read_back, headers=credential).status_code == 206  # and still there

    deadline = time.monotonic() + 240
    while (info := httpx.get(f"{stack.url}/v1/jobs/{job_id}").json())["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, "the upload job did not finish"
        time.sleep(0.5)
    assert info["status"] == "succeeded", info["error"]
    with httpx.stream("GET", f"{stack.url}/v1/jobs/{job_id}/events", timeout=60) as response:
        events = sse(response)
    header = next(data for name, data in events if name == "header")
    assert header["media_url"] == "upload:talk.mp3"  # its name, not where it is read
    assert all("/internal/" not in json.dumps(data) for _, data in events)
    assert list(uploads.iterdir()) == []


def test_a_streamed_upload_is_named_by_its_file_name(
    strict_workers: LocalStack, media_dir: Path
) -> None:
    with (
        (media_dir / "speech_40s.wav").open("rb") as file,
        httpx.stream(
            "POST",
            f"{strict_workers.url}/v1/transcribe/stream",
            files={"file": ("my talk.wav", file, "audio/wav")},
            data={"params": json.dumps({"language": "en"})},
            timeout=120,
        ) as response,
    ):
        assert response.status_code == 200
        events = sse(response)
    assert events[0] == ("header", {**events[0][1], "media_url": "upload:my talk.wav"})
    assert events[-1][0] == "footer"
    assert all("/internal/" not in json.dumps(data) for _, data in events)
