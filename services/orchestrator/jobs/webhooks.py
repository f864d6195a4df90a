"""Webhooks: an async job's summary POSTed to its `webhook_url` when it succeeds or fails.

Signed like Stripe's and Standard Webhooks': `X-Whisperfleet-Timestamp` (Unix seconds) and
`X-Whisperfleet-Signature: sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` with the
configured secret, so a receiver can check both who sent it and that it is fresh. Sent through
the media-host seam's client, so the address guard applies to webhook URLs as to media URLs.
Retried on connection failures, 429 and 5xx on the schedule of every transfer (`shared.retries`:
after 0, 1, 3, 7 ... s, or the receiver's Retry-After when longer, up to a minute); the outcome
is kept.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import time

import httpx

from shared.errors import WhisperfleetError
from shared.retries import Retries, RetrySchedule
from shared.schemas import WebhookOutcome

TIMESTAMP_HEADER = "X-Whisperfleet-Timestamp"
SIGNATURE_HEADER = "X-Whisperfleet-Signature"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signed: str, max_age_sec: float = 300) -> bool:
    """What a receiver does (and the tests): the signature matches and is recent."""
    fresh = abs(time.time() - float(timestamp)) <= max_age_sec
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), signed)


class _Retry(Exception):
    def __init__(
        self, status_code: int | None, error: str, retry_after_sec: float | None = None
    ) -> None:
        super().__init__(error)
        self.status_code = status_code
        self.error = error
        self.retry_after_sec = retry_after_sec
        """The receiver's Retry-After: the next try waits at least this long."""


def retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds (delta-seconds or an HTTP date); None if absent or
    unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def deliver(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    secret: str | None,
    attempts: int,
    unit_sec: float = 1.0,
) -> WebhookOutcome:
    """POST `body` to `url` until a 2xx (or a 4xx other than 429, which retrying won't fix),
    at most `attempts` times, waiting 0, 1, 3, 7 ... `unit_sec` between tries."""
    schedule = RetrySchedule(attempts, unit_sec=unit_sec, max_delay_sec=60.0)
    tries = 0
    try:
        async for attempt in Retries(schedule, _Retry, what="webhook"):
            with attempt:
                tries += 1
                return await _post(client, url, body, secret, tries)
    except _Retry as failure:
        return WebhookOutcome(
            delivered=False, attempts=tries, status_code=failure.status_code, error=failure.error
        )
    raise AssertionError("unreachable: the tries return or raise")


async def _post(
    client: httpx.AsyncClient, url: str, body: bytes, secret: str | None, tries: int
) -> WebhookOutcome:
    """One POST: its outcome, or `_Retry` when another try may succeed."""
    timestamp = str(int(time.time()))
    headers = {"content-type": "application/json", TIMESTAMP_HEADER: timestamp}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    try:
        # Only the status is wanted: the receiver's body is never read (it could be endless).
        async with client.stream("POST", url, content=body, headers=headers) as response:
            status = response.status_code
            wait = retry_after(response.headers.get("retry-after"))
    except WhisperfleetError as exc:  # refused by the address guard: final
        return WebhookOutcome(delivered=False, attempts=tries, error=exc.message)
    except httpx.HTTPError as exc:
        raise _Retry(None, f"{type(exc).__name__}: {exc}") from exc
    if status == 429 or status >= 500:
        raise _Retry(status, f"HTTP {status}", wait)
    ok = 200 <= status < 300
    return WebhookOutcome(
        delivered=ok, attempts=tries, status_code=status, error=None if ok else f"HTTP {status}"
    )
