"""The chunk worker's routes in-process: it applies the address rule it is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.chunk_worker.app import create_app
from services.chunk_worker.config import ChunkWorkerSettings
from tests.support.asgi import serve
from tests.support.media_server import MediaServer


@pytest.fixture(scope="module")
def host(media_dir: Path) -> Iterator[MediaServer]:
    with MediaServer(media_dir) as server:
        yield server


@pytest.mark.parametrize("path", ["/v1/chunks", "/v1/silence"])
async def test_the_worker_refuses_media_outside_the_networks_it_is_sent(
    host: MediaServer, path: str
) -> None:
    app = create_app(ChunkWorkerSettings(whisper_urls=["http://127.0.0.1:9"]))
    body = {"media_url": host.url("speech_40s.wav"), "start_sec": 0, "end_sec": 10}
    async with serve(app) as client:
        refused = await client.post(path, json={**body, "allowed_networks": []})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "media_address_refused"
        allowed = await client.post("/v1/silence", json={**body, "allowed_networks": ["127.0.0.1"]})
        assert allowed.status_code == 200, allowed.text
        assert 0 <= allowed.json()["split_sec"] <= 10
