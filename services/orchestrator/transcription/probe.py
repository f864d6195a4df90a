"""Checking a media URL before any work starts: range support, container, duration, size.

    probe_media  one deadline over all of it ─┬─ check_range_support (async, one GET)
                                              └─ probe_duration in a thread of its own: PyAV
                                                 reads a `MediaFile` under the same deadline,
                                                 held to the sniffed demuxer

Every read waits at most the time left, so a host that drips a byte every few seconds costs
one thread until the deadline, never a thread of a shared pool: a few of them can't delay
anyone else's probe. A duration the file's size can't hold is a forged or corrupt header
(`check_declared_duration`), refused before a plan is made for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import av
import httpx

from shared.containers import SNIFF_BYTES, pyav_options, read_after_tag, sniff_container
from shared.errors import (
    CorruptMediaError,
    MediaHostError,
    OverloadedError,
    RangeNotSupportedError,
    UnsupportedMediaError,
)
from shared.media_host import (
    AddressPolicy,
    Deadline,
    MediaFile,
    status_error,
    sync_media_client,
    transfer_retries,
    transport_error,
)

T = TypeVar("T")

_CONTENT_RANGE = re.compile(r"bytes\s+0-0/(\d+|\*)")
DEADLINE_SETTING = "ORCHESTRATOR_PROBE_DEADLINE_SEC"
SLOTS_SETTING = "ORCHESTRATOR_MAX_PROBES"
MIN_BITRATE_BPS = 100.0
"""The lowest average bitrate a real recording has. Speech codecs go down to Codec2's 700
bit/s; silence under DTX costs less but never nothing: AMR's file format takes a byte per
20 ms frame even for no data (400 bit/s; 600 s of AMR-NB noise with DTX measured 653 bit/s),
and WebRTC's Opus DTX sends a packet every 400 ms, about 200 bit/s with its container. A
declared duration whose implied average is below 100 bit/s (12.5 bytes a second, 45 KB an
hour), 4x under all of these, is a header that lies: a 300 KB file claiming 1e9 s is at
0.0024 bit/s."""


@dataclass(frozen=True)
class Probe:
    size_bytes: int | None
    """The file's size as the range check's Content-Range said (None: not said)."""
    duration_sec: float


async def check_range_support(http: httpx.AsyncClient, url: str) -> int | None:
    """Ensure the host honours HTTP range requests; return the file size when it says.

    One streamed GET of byte 0 (HEAD is unreliable: presigned object-store URLs often refuse it
    and some servers omit Accept-Ranges). 206 means ranges work; 200 means they were ignored.
    `http` is a `shared.media_host` client: the address guard and TLS are its business.
    """
    headers = {"Range": "bytes=0-0", "Accept-Encoding": "identity"}
    try:
        async for attempt in transfer_retries():
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


def probe_duration(
    url: str,
    policy: AddressPolicy,
    timeout_sec: float,
    deadline: Deadline | None = None,
    headers: Mapping[str, str] | None = None,
) -> float:
    """Duration in seconds of the media's audio, read with PyAV (blocking; run in a thread).

    PyAV reads a `MediaFile` (range requests through the media-host seam), never the URL, with
    the demuxer the first bytes name (`shared.containers`: anything else is a 415) and every
    nested open refused. With a `deadline`, no read waits past it (504 naming the setting).
    `headers` go with every read (the fleet credential, for the orchestrator's own uploads)."""
    name = "media"
    try:
        with sync_media_client(policy, timeout_sec, deadline) as http:
            http.headers.update(headers or {})
            media = MediaFile(http, url, deadline=deadline)
            head = media.read(SNIFF_BYTES) or b""
            tag_end = read_after_tag(head)
            if tag_end is not None:
                media.seek(tag_end)
                head = (media.read(SNIFF_BYTES) or b"").lstrip(b"\x00")
            container = sniff_container(head)
            name = container.name
            media.seek(0)
            left = timeout_sec if deadline is None else max(0.001, deadline.cap(timeout_sec))
            with av.open(
                media,
                mode="r",
                timeout=left,
                **pyav_options(container),
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
        # A file of known size says it lasts nothing (a WAV header with no samples); one of
        # unknown size and no duration is most often a live stream.
        found = (
            "holds no audio (it lasts 0 s)" if media.size else "has no duration (a live stream?)"
        )
        raise UnsupportedMediaError(
            f"media_url {found}; give a recording with sound in it", param="media_url"
        )
    return duration


def check_declared_duration(duration_sec: float, size_bytes: int | None) -> None:
    """A duration the file's size can't hold (below `MIN_BITRATE_BPS`) is a corrupt or forged
    header: CorruptMediaError (422). Skipped when the size is unknown."""
    if size_bytes is None or duration_sec <= 0:
        return
    bitrate = size_bytes * 8 / duration_sec
    if bitrate < MIN_BITRATE_BPS:
        raise CorruptMediaError(
            f"media_url's header says it lasts {duration_sec:.0f} s, but at {size_bytes} "
            f"bytes that would be {bitrate:.3g} bit/s, below any real recording's "
            f"{MIN_BITRATE_BPS:g} bit/s: the file is corrupt or its duration is forged",
            param="media_url",
        )


async def in_own_thread(
    function: Callable[[], T],
    on_cancel: Callable[[], None],
    on_end: Callable[[], None] = lambda: None,
) -> T:
    """`function()` in a new thread of its own (not a pool's, so a stuck one holds nobody
    else's); `on_cancel()` when the caller leaves first, to make it stop soon; `on_end()` on
    the event loop once the thread has ended (whether or not anyone still waits)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = function(), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)
            loop.call_soon_threadsafe(on_end)

    threading.Thread(target=run, name="media-probe", daemon=True).start()
    try:
        return await done
    except asyncio.CancelledError:
        on_cancel()
        raise


def _no_slot() -> OverloadedError:
    return OverloadedError(
        f"every media check slot of this server is busy ({SLOTS_SETTING}); retry shortly",
        retry_after_sec=5,
    )


async def probe_media(
    http: httpx.AsyncClient,
    url: str,
    policy: AddressPolicy,
    timeout_sec: float,
    deadline_sec: float,
    headers: Mapping[str, str] | None = None,
    slots: asyncio.Semaphore | None = None,
) -> Probe:
    """Range check, container and duration, all within `deadline_sec` (504 naming
    `DEADLINE_SETTING` beyond it), and the duration checked against the size. `headers` go
    with the probe's reads (the range check's client carries its own). `slots` bounds the
    probe threads alive at once: one is held until its thread has ended, not just until its
    caller left; a probe that gets none within its deadline is a 503."""
    deadline = Deadline(deadline_sec, DEADLINE_SETTING)
    try:
        async with asyncio.timeout(deadline.left()):
            size = await check_range_support(http, url)
    except TimeoutError:
        raise deadline.error() from None
    if slots is not None:
        try:
            async with asyncio.timeout(max(0.0, deadline.left())):
                await slots.acquire()
        except TimeoutError:
            raise _no_slot() from None
    duration = await in_own_thread(
        lambda: probe_duration(url, policy, timeout_sec, deadline, headers),
        deadline.expire,
        slots.release if slots is not None else lambda: None,
    )
    check_declared_duration(duration, size)
    return Probe(size, duration)
