"""The orchestrator's routes in-process (create_app + lifespan over ASGITransport): what is
refused before any worker is asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.orchestrator.app import create_app
from services.orchestrator.config import OrchestratorSettings
from tests.support.asgi import serve
from tests.support.media_server import MediaServer


def settings(tmp_path: Path, **values: object) -> OrchestratorSettings:
    return OrchestratorSettings(
        worker_urls=["http://127.0.0.1:9"],  # never reached by these tests
        upload_dir=tmp_path / "uploads",
        **values,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def host(media_dir: Path) -> Iterator[MediaServer]:
    with MediaServer(media_dir) as server:
        yield server


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    for word in words:
        assert word in error["message"], error


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
