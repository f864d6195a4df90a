"""Checking a media URL before any work starts: range support and duration."""

from __future__ import annotations

import re
from collections.abc import Mapping

import av
import httpx

from shared.errors import MediaHostError, RangeNotSupportedError, UnsupportedMediaError
from shared.media_host import (
    AddressPolicy,
    MediaFile,
    async_transfer_attempts,
    status_error,
    sync_media_client,
    transport_error,
)

_CONTENT_RANGE = re.compile(r"bytes\s+0-0/(\d+|\*)")


async def check_range_support(http: httpx.AsyncClient, url: str) -> int | None:
    """Ensure the host honours HTTP range requests; return the file size when it says.

    One streamed GET of byte 0 (HEAD is unreliable: presigned object-store URLs often refuse it
    and some servers omit Accept-Ranges). 206 means ranges work; 200 means they were ignored.
    `http` is a `shared.media_host` client: the address guard and TLS are its business.
    """
    headers = {"Range": "bytes=0-0", "Accept-Encoding": "identity"}
    try:
        async for attempt in async_transfer_attempts():
            with attempt:
                async with http.stream("GET", url, headers=headers) as response:
                    status = response.status_code
                    content_range = response.headers.get("content-range", "")
    except httpx.HTTPError as exc:
        raise transport_error(exc) from exc
    if status == 206:
        match = _CONTENT_RANGE.match(content_range)
        return int(match.group(1)) if match and match.group(1) != "*" else None
    if status == 200:
        raise RangeNotSupportedError(
            "the media host ignores HTTP range requests (answered 200 to 'Range: bytes=0-0'); "
            "serve the file from a host that supports them, e.g. an object store or nginx",
            param="media_url",
        )
    raise status_error(status)


def _client(
    policy: AddressPolicy, timeout_sec: float, headers: Mapping[str, str] | None
) -> httpx.Client:
    http = sync_media_client(policy, timeout_sec)
    http.headers.update(headers or {})
    return http


def probe_duration(
    url: str, policy: AddressPolicy, timeout_sec: float, headers: Mapping[str, str] | None = None
) -> float:
    """Duration in seconds of the media's audio, read with PyAV (blocking; run in a thread).

    PyAV reads a `MediaFile` (range requests through the media-host seam), never the URL.
    `headers` go with every read (the fleet credential, for the orchestrator's own uploads)."""
    try:
        with (
            _client(policy, timeout_sec, headers) as http,
            av.open(MediaFile(http, url), mode="r", timeout=timeout_sec) as container,
        ):
            audio = container.streams.audio
            if not audio:
                raise UnsupportedMediaError("media_url has no audio stream", param="media_url")
            # The audio stream's own duration first: a container's is its longest stream's, and
            # a video whose audio ends early would otherwise plan a range past the audio.
            duration = None
            if audio[0].duration and audio[0].time_base:
                duration = float(audio[0].duration * audio[0].time_base)
            elif container.duration:
                duration = container.duration / 1_000_000
    except av.error.InvalidDataError as exc:
        raise UnsupportedMediaError(
            "media_url is not an audio or video file FFmpeg can read", param="media_url"
        ) from exc
    except av.error.FFmpegError as exc:
        raise MediaHostError(f"probing media_url failed: {exc}") from exc
    if not duration or duration <= 0:
        raise UnsupportedMediaError(
            "could not determine the duration of media_url (a live stream?)", param="media_url"
        )
    return duration
