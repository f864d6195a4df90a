"""probe.py without a host: the range check's answers read from an in-process transport, and
the size-against-duration check (PyAV over a real loopback host, drips and deadlines:
tests/integration/test_probe.py)."""

from __future__ import annotations

import httpx
import pytest

from services.orchestrator.transcription.probe import (
    MIN_BITRATE_BPS,
    check_declared_duration,
    check_range_support,
)
from shared.errors import (
    CorruptMediaError,
    MediaHostError,
    MediaUnavailableError,
    RangeNotSupportedError,
    WhisperfleetError,
)

URL = "https://media.example/talk.mp3"


async def range_check(status: int, content_range: str | None = None) -> int | None:
    asked: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        headers = {"Content-Range": content_range} if content_range else {}
        return httpx.Response(status, headers=headers, content=b"x")

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        try:
            return await check_range_support(http, URL)
        finally:
            (request,) = asked  # one GET of byte 0, never HEAD, never retried on an answer
            assert request.method == "GET" and request.headers["range"] == "bytes=0-0"
            assert request.headers["accept-encoding"] == "identity"


@pytest.mark.parametrize(
    ("content_range", "size"),
    [("bytes 0-0/123456", 123456), ("bytes 0-0/*", None), (None, None)],
)
async def test_a_206_passes_with_the_size_when_the_host_says_it(
    content_range: str | None, size: int | None
) -> None:
    assert await range_check(206, content_range) == size


async def test_a_200_is_a_host_ignoring_ranges_saying_what_to_use() -> None:
    with pytest.raises(RangeNotSupportedError) as refused:
        await range_check(200)
    assert refused.value.param == "media_url"
    assert "ignores HTTP range requests" in refused.value.message
    assert "object store or nginx" in refused.value.message


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, MediaUnavailableError), (404, MediaUnavailableError), (502, MediaHostError)],
)
async def test_other_answers_are_named_by_their_status(
    status: int, error: type[WhisperfleetError]
) -> None:
    with pytest.raises(error, match=f"HTTP {status}"):
        await range_check(status)


def test_a_duration_the_size_cannot_hold_is_a_forged_header() -> None:
    size = 1_000_000  # 8 Mbit
    check_declared_duration(8e6 / MIN_BITRATE_BPS, size)  # exactly the lowest bitrate: kept
    with pytest.raises(CorruptMediaError) as refused:
        check_declared_duration(1e9, size)
    assert refused.value.status_code == 422 and refused.value.param == "media_url"
    assert "lasts 1000000000 s" in refused.value.message and "forged" in refused.value.message


@pytest.mark.parametrize(("duration", "size"), [(1e9, None), (0.0, 10)])
def test_an_unknown_size_or_no_duration_is_not_judged(duration: float, size: int | None) -> None:
    check_declared_duration(duration, size)
