"""Regression: FFmpeg hanging up mid-transfer is normal (every window ends that way) and must
not log "Unhandled exception in client_connected_cb ... the handler is closed" (uvloop)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import uvloop

from services.chunk_worker.range_proxy import RangeProxy
from shared.media_host import AddressPolicy, media_client
from tests.support.media_server import MediaServer


async def hang_up_mid_transfer(host: MediaServer, times: int) -> None:
    async with (
        media_client(AddressPolicy.parse(["127.0.0.1"]), 10) as http,
        RangeProxy(http, page_bytes=1024) as proxy,
    ):
        lease = proxy.lease(host.url("speech_40s.flac"))
        for i in range(times):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port, limit=4096)
            writer.write(f"GET /{lease.token} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode())
            await writer.drain()
            await reader.read(2048 * (1 + i % 5))
            writer.close()  # gone, while the proxy still has most of the file to send
            await asyncio.sleep(0.01 * (i % 3))
        await proxy.settle()


def test_a_client_hanging_up_mid_transfer_logs_no_error(
    media_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with MediaServer(media_dir) as host, caplog.at_level(logging.ERROR):
        uvloop.run(hang_up_mid_transfer(host, 30))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
