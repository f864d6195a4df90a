"""Checking a media URL before any work starts: range support, container and duration.

PyAV reads a `MediaFile` held to the demuxer the first bytes name (`shared.containers`), with
every nested open refused: a playlist or manifest can't make the probe fetch anything.
"""

from __future__ import annotations

import re
from typing import Any

import av
import httpx

from shared.containers import DEMUXER_OPTIONS, SNIFF_BYTES, read_after_tag, sniff_container
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


class NestedOpenRefusedError(UnsupportedMediaError):
    """The data asked FFmpeg to open another URL or file (a playlist's entry, a reference)."""


def _refuse_nested_open(url: str, flags: int, options: dict[str, str]) -> Any:
    """PyAV's `io_open`: FFmpeg opens every URL or file named inside the data through it
    (segments, references); none is ever opened."""
    raise NestedOpenRefusedError(
        "media_url refers to other files or URLs (a playlist or a reference); this server reads "
        "one self-contained file: give the URL of the media itself",
        param="media_url",
    )


def probe_duration(url: str, policy: AddressPolicy, timeout_sec: float) -> float:
    """Duration in seconds of the media's audio, read with PyAV (blocking; run in a thread).

    PyAV reads a `MediaFile` (range requests through the media-host seam), never the URL, with
    the demuxer the first bytes name (`shared.containers`: anything else is a 415) and every
    nested open refused."""
    name = "media"
    try:
        with sync_media_client(policy, timeout_sec) as http:
            media = MediaFile(http, url)
            head = media.read(SNIFF_BYTES) or b""
            tag_end = read_after_tag(head)
            if tag_end is not None:
                media.seek(tag_end)
                head = (media.read(SNIFF_BYTES) or b"").lstrip(b"\x00")
            container = sniff_container(head)
            name = container.name
            media.seek(0)
            with av.open(
                media,
                mode="r",
                format=container.demuxer,
                container_options=DEMUXER_OPTIONS.get(container.demuxer, {}),
                timeout=timeout_sec,
                io_open=_refuse_nested_open,
            ) as opened:
                audio = opened.streams.audio
                if not audio:
                    raise UnsupportedMediaError("media_url has no audio stream", param="media_url")
                # The audio stream's own duration first: a container's is its longest stream's,
                # and a video whose audio ends early would otherwise plan a range past the audio.
                duration = None
                if audio[0].duration and audio[0].time_base:
                    duration = float(audio[0].duration * audio[0].time_base)
                elif opened.duration:
                    duration = opened.duration / 1_000_000
    except av.error.InvalidDataError as exc:
        raise UnsupportedMediaError(
            f"media_url is not a {name} file FFmpeg can read (corrupt or truncated?)",
            param="media_url",
        ) from exc
    except av.error.FFmpegError as exc:
        raise MediaHostError(f"probing media_url failed: {exc}") from exc
    if not duration or duration <= 0:
        raise UnsupportedMediaError(
            "could not determine the duration of media_url (a live stream?)", param="media_url"
        )
    return duration
