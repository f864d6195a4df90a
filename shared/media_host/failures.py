"""A media host's failures: which a new try may not meet, and how each reads as our error."""

from __future__ import annotations

import httpx

from shared.errors import (
    MediaHostError,
    MediaUnavailableError,
    UpstreamTimeoutError,
    WhisperfleetError,
)
from shared.media_host.connections import MAX_REDIRECTS
from shared.retries import Retries, RetrySchedule

TRANSFER_RETRIES = RetrySchedule(attempts=4)
"""A range request the host cut is tried again after 0, 1 and 3 s (FFmpeg's reconnects)."""
DROPPED = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
"""Failures another try may not meet. A timeout is not one of them: a host that sent nothing
for the whole timeout is given up on (504), or a slow host would hold a job for minutes."""


def transfer_retries(schedule: RetrySchedule = TRANSFER_RETRIES) -> Retries:
    """`for attempt in transfer_retries(): with attempt: ...` (or `async for`): one transfer,
    tried again while the host drops it (the last failure is re-raised as it was)."""
    return Retries(schedule, DROPPED, what="media host")


def status_error(status: int) -> WhisperfleetError:
    """The error for a media host's non-2xx answer."""
    if 400 <= status < 500:
        return MediaUnavailableError(
            f"media_url answered HTTP {status}; check that the URL is correct and readable",
            param="media_url",
        )
    return MediaHostError(f"the media host answered HTTP {status}")


def transport_error(exc: Exception) -> WhisperfleetError:
    """The error for a failed connection or transfer (a refused address passes through)."""
    if isinstance(exc, WhisperfleetError):
        return exc
    if isinstance(exc, httpx.TooManyRedirects):
        return MediaUnavailableError(
            f"media_url redirects more than {MAX_REDIRECTS} times", param="media_url"
        )
    if isinstance(exc, httpx.UnsupportedProtocol):
        return MediaUnavailableError(
            "media_url (or a redirect) is not an http:// or https:// URL", param="media_url"
        )
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(
            f"the media host sent nothing for {_timeout_of(exc)} ({type(exc).__name__}); "
            "check that media_url is served promptly",
            param="media_url",
        )
    return MediaHostError(
        f"could not read from the media host ({type(exc).__name__}: {exc or 'failed'})"
    )


def _timeout_of(exc: httpx.TimeoutException) -> str:
    """'30 s': the limit the failed request ran under (httpx keeps it on the request)."""
    kind = {httpx.ConnectTimeout: "connect", httpx.WriteTimeout: "write"}.get(type(exc), "read")
    try:
        limit = exc.request.extensions.get("timeout", {}).get(kind)
    except RuntimeError:  # raised without a request
        limit = None
    return f"{limit:g} s" if isinstance(limit, int | float) else "too long"
