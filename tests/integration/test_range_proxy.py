"""The range proxy over loopback (what FFmpeg reads through): exact bytes, little more fetched
from the origin than was read, the head kept, retries, a host that ignores Range (the origin is
an in-process fake: tests/unit/chunk_worker/test_media.py's Origin)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from services.chunk_worker.range_proxy import RangeProxy
from shared.errors import MediaHostError, MediaUnavailableError, RangeNotSupportedError
from tests.support.media_origin import URL, Origin

FILE = os.urandom(3 << 20)


async def fetch(url: str, first: int, last: int | str = "") -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url, headers={"Range": f"bytes={first}-{last}"})


@asynccontextmanager
async def proxied(origin: Origin, **options: int) -> AsyncIterator[tuple[RangeProxy, str]]:
    async with origin.client() as http, RangeProxy(http, **options) as proxy:
        yield proxy, proxy.lease(URL).local_url


@pytest.mark.parametrize(
    ("first", "last"),
    [(0, 99), (5000, 70_000), (1_000_000, ""), (len(FILE) - 10, ""), (8192, 8192 * 3 - 1)],
)
async def test_proxy_serves_exactly_the_requested_bytes(first: int, last: int | str) -> None:
    async with proxied(Origin(FILE)) as (_, url):
        response = await fetch(url, first, last)
        end = len(FILE) if last == "" else int(last) + 1
        assert response.status_code == 206
        assert response.content == FILE[first:end]
        assert response.headers["content-range"] == f"bytes {first}-{end - 1}/{len(FILE)}"


async def test_proxy_answers_416_past_the_end_and_404_after_release() -> None:
    async with Origin(FILE).client() as http, RangeProxy(http) as proxy:
        lease = proxy.lease(URL)
        response = await fetch(lease.local_url, len(FILE) + 10)
        assert response.status_code == 416
        proxy.release(lease)
        assert (await fetch(lease.local_url, 0, 10)).status_code == 404


async def test_proxy_asks_the_origin_for_little_more_than_is_read() -> None:
    origin = Origin(FILE)
    async with proxied(origin, edge_bytes=0) as (proxy, url):
        first, length = 1_000_000, 1_500_000
        assert (await fetch(url, first, first + length - 1)).content == FILE[first:][:length]
        await proxy.settle()
        assert origin.sent <= length + 2 * proxy.page_bytes
        assert max(last - start + 1 for start, last in origin.requests) <= 1 << 20


async def test_proxy_fetches_little_more_than_an_abandoned_read_took() -> None:
    """FFmpeg probing (Ogg bisection, MP4 header reads) reads a little and hangs up; on its
    own it would have asked the origin for a whole request's worth (1 MiB)."""
    origin = Origin(FILE)
    async with proxied(origin, edge_bytes=0) as (proxy, url):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # as FFmpeg's, via the proxy
        sock.connect(("127.0.0.1", proxy.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        path = url.rsplit("/", 1)[1]
        writer.write(f"GET /{path} HTTP/1.1\r\nRange: bytes=2000000-\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        assert await reader.readexactly(1000) == FILE[2_000_000:2_001_000]
        writer.close()
        await writer.wait_closed()
        await proxy.settle()
        assert origin.sent <= 64 * 1024


async def test_proxy_keeps_the_head_of_a_file_for_the_next_window() -> None:
    origin = Origin(FILE)
    async with origin.client() as http, RangeProxy(http) as proxy:
        for _ in range(3):
            lease = proxy.lease(URL)
            assert (await fetch(lease.local_url, 0, 65535)).content == FILE[:65536]
            proxy.release(lease)
        assert origin.sent <= 65536 + proxy.page_bytes
        assert await proxy.read(URL, 100, 50) == FILE[100:150]
        assert origin.sent <= 65536 + proxy.page_bytes


async def test_proxy_relays_a_missing_file_and_records_it_on_the_lease() -> None:
    async with Origin(FILE, status=404).client() as http, RangeProxy(http) as proxy:
        lease = proxy.lease(URL)
        assert (await fetch(lease.local_url, 0)).status_code == 404
        assert isinstance(lease.error, MediaUnavailableError)


async def test_proxy_retries_a_host_that_drops_then_records_the_failure() -> None:
    origin = Origin(FILE, fail_after=200_000)
    async with origin.client() as http, RangeProxy(http, reconnect_delay_max_sec=0) as proxy:
        lease = proxy.lease(URL)
        with pytest.raises(httpx.HTTPError):
            await fetch(lease.local_url, 0)
        assert isinstance(lease.error, MediaHostError)
        assert "ReadError" in lease.error.message
        retried = [first for first, _ in origin.requests if first <= 200_000 < first + (1 << 20)]
        assert len(retried) >= 2


async def test_proxy_starts_its_retries_afresh_after_each_try_that_got_somewhere() -> None:
    """A host that resets every response after 64 kB: two tries in a row are allowed
    (`reconnect_delay_max_sec=0`), and a run longer than 128 kB needs more, but each try
    delivered pages, so the count starts again and nothing is lost."""
    origin = Origin(FILE, cut_every=65536)
    async with proxied(origin, edge_bytes=0, reconnect_delay_max_sec=0) as (proxy, url):
        first, length = 1_000_000, 1_500_000
        assert (await fetch(url, first, first + length - 1)).content == FILE[first:][:length]
        await proxy.settle()
    longest_run = max(last - start + 1 for start, last in origin.requests)
    assert longest_run > 2 * 65536  # some run was cut more than twice


async def test_proxy_refuses_a_host_that_ignores_range_mid_file() -> None:
    async with Origin(FILE, honour_range=False).client() as http, RangeProxy(http) as proxy:
        lease = proxy.lease(URL)
        assert (await fetch(lease.local_url, 0, 999)).content == FILE[:1000]
        response = await fetch(lease.local_url, 2_000_000)
        assert response.status_code == 502
        assert isinstance(lease.error, RangeNotSupportedError)
