"""Hostile media through the orchestrator's routes in-process (create_app + lifespan): a forged
duration, a playlist, a dripping host. Each harms one request, quickly, and leaves no job.

The media host is 127.0.0.1 (allowed by configuration); the host playlists point at is
127.0.0.2 (refused) and records every request it gets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.orchestrator.app import create_app
from services.orchestrator.config import OrchestratorSettings
from tests.support.asgi import serve
from tests.support.errors import assert_error
from tests.support.hostile_media import MANIFESTS
from tests.support.media_server import MediaServer
from tests.support.waiting import until

FORGED = "forged_duration_1e9s.webm"


def settings(tmp_path: Path, **values: object) -> OrchestratorSettings:
    return OrchestratorSettings(
        worker_urls=["http://127.0.0.1:9"],  # never reached by these tests
        upload_dir=tmp_path / "uploads",
        database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        allowed_media_networks=["127.0.0.1/32"],
        **values,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def host(media_dir: Path) -> Iterator[MediaServer]:
    with MediaServer(media_dir) as server:
        yield server


def test_the_duration_cap_is_48_hours_unless_set() -> None:
    assert OrchestratorSettings().max_duration_sec == 172_800
    assert OrchestratorSettings(max_duration_sec=0).max_duration_sec == 0  # off, explicitly


@pytest.mark.parametrize("cap", [172_800.0, 0.0])
async def test_a_forged_duration_is_a_422_in_seconds_and_no_job_is_made(
    tmp_path: Path, host: MediaServer, cap: float
) -> None:
    """A WebM whose header says 1e9 s: once a 60 s hang and 1.17 GB of plan; now refused at
    the check, cap or no cap (the size can't hold that duration), sync and async alike."""
    app = create_app(settings(tmp_path, max_duration_sec=cap))
    body = {"media_url": host.url(FORGED)}
    async with serve(app) as client:
        started = time.monotonic()
        response = await client.post("/v1/transcribe", json=body)
        sync_sec = time.monotonic() - started
        assert_error(response, 422, "corrupt_media", "1000000000 s", "forged")
        submitted = await client.post("/v1/jobs", json=body)
        assert_error(submitted, 422, "corrupt_media", "forged")
        jobs = await client.get("/v1/jobs")
    assert sync_sec < 5
    assert jobs.status_code == 200 and jobs.json()["data"] == []


async def test_media_over_48_hours_is_a_413_by_default(tmp_path: Path, host: MediaServer) -> None:
    """Honest about its size but long: the cap (checked the same way with a lower one here)."""
    app = create_app(settings(tmp_path, max_duration_sec=30))
    async with serve(app) as client:
        response = await client.post("/v1/jobs", json={"media_url": host.url("speech_40s.wav")})
        jobs = await client.get("/v1/jobs")
    assert_error(response, 413, "payload_too_large", "ORCHESTRATOR_MAX_DURATION_SEC")
    assert jobs.json()["data"] == []


@pytest.mark.parametrize("name", sorted(MANIFESTS))
async def test_a_playlist_is_a_415_naming_it_and_nothing_it_names_is_fetched(
    tmp_path: Path, hostile: MediaServer, refused: MediaServer, name: str
) -> None:
    async with serve(create_app(settings(tmp_path))) as client:
        response = await client.post("/v1/transcribe", json={"media_url": hostile.url(name)})
    assert_error(response, 415, "unsupported_media", MANIFESTS[name], "media itself")
    for ffmpegs_words in ("Invalid data", "Error opening", "segment", refused.base_url):
        assert ffmpegs_words not in response.text  # our words, not FFmpeg's
    assert refused.traffic.requests_by_path == {}


async def test_abandoned_requests_to_a_dripping_host_hold_up_no_later_job(
    tmp_path: Path, host: MediaServer
) -> None:
    """Clients give up on a host that drips a byte a second; their probes end by the deadline
    (504 naming it) and a normal request meanwhile is checked at once."""
    app = create_app(settings(tmp_path, probe_deadline_sec=3, max_duration_sec=30))
    drip = {"media_url": host.url("speech_40s.wav", route="drip")}
    async with serve(app) as client:
        started = time.monotonic()
        dripping = [
            asyncio.create_task(client.post("/v1/transcribe", json=drip)) for _ in range(12)
        ]
        await until(lambda: host.traffic.dripping >= 12, "every dripping request reading")
        # 204 s, over this app's 30 s cap: answered once its check is done, with no worker.
        normal = await client.post(
            "/v1/transcribe", json={"media_url": host.url("speech_200s.mp3")}
        )
        behind = [task for task in dripping if task.done()]  # none: it did not wait for them
        answers = await asyncio.gather(*dripping)
        ended_sec = time.monotonic() - started
    assert_error(normal, 413, "payload_too_large", "204 s")
    assert behind == []
    for answer in answers:
        assert_error(answer, 504, "upstream_timeout", "ORCHESTRATOR_PROBE_DEADLINE_SEC")
    assert ended_sec < 3 + 3.0  # the deadline, not a byte a second of the file
