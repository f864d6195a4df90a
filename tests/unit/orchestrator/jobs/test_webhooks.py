"""Webhooks: the signature a receiver checks, retries, and the address guard."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import itertools
import time
from collections.abc import AsyncIterator

import httpx

from services.orchestrator.app import NETWORKS_SETTING
from services.orchestrator.jobs.webhooks import deliver, retry_after, signature, verify
from shared.media_host import AddressPolicy, media_client


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body, timestamp = b'{"id": "job_1"}', str(int(time.time()))
    expected = hmac.new(b"s3cret", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature("s3cret", timestamp, body) == f"sha256={expected}"
    assert verify("s3cret", timestamp, body, f"sha256={expected}")
    assert not verify("s3cret", timestamp, body + b" ", f"sha256={expected}")  # tampered
    assert not verify("other", timestamp, body, f"sha256={expected}")
    stale = str(int(time.time()) - 3600)
    assert not verify("s3cret", stale, body, signature("s3cret", stale, body))  # replayed


async def test_5xx_is_retried_and_a_4xx_is_final() -> None:
    answers = [503, 204]
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answers.pop(0) if answers else 410)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        outcome = await deliver(client, "https://hooks.example/x", b"{}", "k", 5, 0.001)
        assert outcome.delivered and outcome.attempts == 2 and outcome.status_code == 204
        assert "x-whisperfleet-signature" in seen[-1].headers
        gone = await deliver(client, "https://hooks.example/x", b"{}", None, 5, 0.001)
    assert not gone.delivered and gone.attempts == 1 and gone.error == "HTTP 410"
    assert "x-whisperfleet-signature" not in seen[-1].headers  # no secret, no signature


async def test_retries_wait_on_the_transfers_schedule() -> None:
    """0, 1, 3 units between tries (`shared.retries`), as every retried transfer."""
    sent_at: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent_at.append(time.monotonic())
        return httpx.Response(503 if len(sent_at) < 4 else 204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        outcome = await deliver(client, "https://hooks.example/x", b"{}", "k", 4, 0.5)
    assert outcome.delivered and outcome.attempts == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent_at)]
    # 0, 0.5 and 1.5 s; each bound half a unit or more from its wait, for a loaded machine
    assert gaps[0] < 0.5 <= gaps[1] < 1.5 <= gaps[2]


async def test_a_webhook_to_a_refused_address_is_not_sent_and_says_why() -> None:
    async with media_client(AddressPolicy.parse([], NETWORKS_SETTING), 5) as client:
        outcome = await deliver(client, "http://127.0.0.1:9/hook", b"{}", "k", 5, 0.001)
    assert not outcome.delivered and outcome.attempts == 1
    assert outcome.error is not None and "ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS" in outcome.error


async def test_an_unreachable_receiver_is_given_up_after_the_attempts() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        outcome = await deliver(client, "https://hooks.example/x", b"{}", "k", 3, 0.001)
    assert not outcome.delivered and outcome.attempts == 3
    assert outcome.error is not None and "ConnectError" in outcome.error


async def test_a_receivers_endless_answer_is_not_read() -> None:
    """Only the status counts: a receiver answering with an endless body can't fill memory."""
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 65536
            assert sent < 16 << 20, "the receiver's answer was read"
            yield bytes(65536)

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        outcome = await deliver(client, "https://hooks.example/x", b"{}", "k", 1, 0.001)
    assert outcome.delivered and outcome.status_code == 200
    assert sent <= 65536


async def test_a_receivers_retry_after_is_waited_for_not_ignored() -> None:
    """429 with Retry-After: 1 waits a second, not the schedule's 0 for a first retry."""
    sent_at: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent_at.append(time.monotonic())
        if len(sent_at) == 1:
            return httpx.Response(429, headers={"Retry-After": "1"})
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        outcome = await deliver(client, "https://hooks.example/x", b"{}", "k", 3, 0.001)
    assert outcome.delivered and outcome.attempts == 2
    assert sent_at[1] - sent_at[0] >= 1.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(None) is None and retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (retry_after(later) or 0) <= 30
    assert retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
