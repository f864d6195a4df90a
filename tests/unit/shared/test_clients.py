"""The retrying client layer: what is retried, what is not, and where requests go."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import BaseModel

from shared.clients import RetryPolicy, ServiceClient
from shared.errors import (
    InvalidAudioError,
    NotReadyError,
    OverloadedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from shared.replicas import ReplicaPool
from shared.schemas import ChunkStreamFooter, Segment
from shared.streams import StreamTypes, StreamWriter

FAST = RetryPolicy(attempts=3, base_delay_sec=0.001, max_delay_sec=0.01)


def client(handler: httpx.MockTransport, *urls: str, **kwargs: object) -> ServiceClient:
    http = httpx.AsyncClient(transport=handler)
    return ServiceClient(
        http,
        ReplicaPool(list(urls) or ["http://a"]),
        name="peer",
        setting_hint="PEER_URLS",
        retry=kwargs.pop("retry", FAST),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


async def test_503_is_retried_and_then_succeeds() -> None:
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(503, json=OverloadedError("busy").body().model_dump())
        return httpx.Response(200, json={"ok": True})

    response = await client(httpx.MockTransport(handle)).request("POST", "/x")
    assert response.json() == {"ok": True}
    assert len(calls) == 2


async def test_client_errors_are_never_retried() -> None:
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(422, json=InvalidAudioError("too long").body().model_dump())

    with pytest.raises(InvalidAudioError, match="too long"):
        await client(httpx.MockTransport(handle)).request("POST", "/x")
    assert len(calls) == 1


async def test_persistent_overload_surfaces_as_overloaded_after_all_attempts() -> None:
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            503,
            json=OverloadedError("queue full").body().model_dump(),
            headers={"Retry-After": "0"},
        )

    with pytest.raises(OverloadedError):
        await client(httpx.MockTransport(handle)).request("POST", "/x")
    assert len(calls) == FAST.attempts


async def test_connection_refused_names_the_peer_and_the_setting() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(UpstreamUnavailableError, match=r"peer unreachable.*PEER_URLS"):
        await client(httpx.MockTransport(handle)).request("POST", "/x")


async def test_a_restart_shorter_than_the_patience_is_ridden_out() -> None:
    """Refused connections, then 503 not ready, then answers: the call succeeds although it
    took more tries than `attempts`."""
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) <= 4:
            raise httpx.ConnectError("connection refused", request=request)
        if len(calls) <= 6:
            return httpx.Response(503, json=NotReadyError("loading").body().model_dump())
        return httpx.Response(200, json={"ok": True})

    patient = RetryPolicy(attempts=2, base_delay_sec=0.001, max_delay_sec=0.01, patience_sec=5)
    response = await client(httpx.MockTransport(handle), retry=patient).request("POST", "/x")
    assert response.json() == {"ok": True}
    assert len(calls) == 7


async def test_after_the_patience_the_peers_error_surfaces() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    patient = RetryPolicy(attempts=2, base_delay_sec=0.01, max_delay_sec=0.02, patience_sec=0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamUnavailableError, match="unreachable"):
        await client(httpx.MockTransport(handle), retry=patient).request("POST", "/x")
    assert 0.2 <= asyncio.get_running_loop().time() - started < 2


async def test_a_dead_replica_is_skipped_for_a_live_one() -> None:
    served = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "dead":
            raise httpx.ConnectError("refused", request=request)
        served.append(request.url.host)
        return httpx.Response(200, json={})

    peer = client(httpx.MockTransport(handle), "http://dead", "http://live")
    for _ in range(10):
        await peer.request("GET", "/")
    assert served == ["live"] * 10


async def test_deadline_turns_into_a_504() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    peer = client(httpx.MockTransport(handle), deadline_sec=0.05)
    with pytest.raises(UpstreamTimeoutError, match="within"):
        await peer.request("GET", "/")


ITEMS: StreamTypes[Segment, BaseModel, ChunkStreamFooter] = StreamTypes(
    item=Segment, footer=ChunkStreamFooter
)


def stream_body(*items: Segment, footer: bool = True) -> bytes:
    writer = StreamWriter(ITEMS)
    frames = b"".join(writer.item(item) for item in items)
    return frames + (writer.footer(ChunkStreamFooter(micro_chunks=len(items))) if footer else b"")


def seg(start: float) -> Segment:
    return Segment(
        start_time_sec=start, end_time_sec=start + 1, text="x", language="english", bcp47_key="en"
    )


async def test_a_stream_cut_short_resumes_and_skips_what_was_delivered() -> None:
    calls = 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:  # two items, then the worker died (no footer)
            return httpx.Response(200, content=stream_body(seg(0), seg(1), footer=False))
        return httpx.Response(200, content=stream_body(seg(0), seg(1), seg(2)))

    peer = client(httpx.MockTransport(handle))
    got = [item.start_time_sec async for item in peer.stream("/s", seg(0), ITEMS)]
    assert got == [0, 1, 2] and calls == 2


async def test_a_stream_honours_the_deadline_retries_included() -> None:
    """Regression: `stream` used to retry without its deadline (only `request` had one)."""

    async def handle(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)
        return httpx.Response(503, headers={"retry-after": "0"})

    slow_retries = RetryPolicy(attempts=1000, base_delay_sec=0.01, max_delay_sec=0.01)
    peer = client(httpx.MockTransport(handle), retry=slow_retries, deadline_sec=0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamTimeoutError, match=r"within 0\.2 s"):
        [item async for item in peer.stream("/s", seg(0), ITEMS)]
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_pool_sends_each_request_to_the_least_busy_replica() -> None:
    pool = ReplicaPool(["http://a", "http://b", "http://c"])
    async with pool.lease() as first, pool.lease() as second, pool.lease() as third:
        assert {first.url, second.url, third.url} == {"http://a", "http://b", "http://c"}


def test_backoff_honours_retry_after_as_a_floor() -> None:
    policy = RetryPolicy(attempts=3, base_delay_sec=0.01, max_delay_sec=10)
    assert policy.delay(0, retry_after_sec=2.0) >= 2.0
    assert all(0 <= policy.delay(5) <= 0.32 for _ in range(100))
