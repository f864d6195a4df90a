"""Fetching one time range of remote media as 16 kHz mono PCM, with FFmpeg.

FFmpeg runs as an asyncio subprocess and streams s16le PCM on stdout as it decodes, so the first
micro chunk can leave long before the range is fetched. Only the range is fetched: the seek goes
*before* `-i` (an input seek, which turns into HTTP range requests), starts a short pre-roll early
and trims it on the output side, which is sample-exact for every format and warms up AAC/Opus
decoders. HTTP requests are bounded in size so an abandoned request doesn't keep streaming.

Formats that can't seek exactly by bytes (VBR MP3 without a usable TOC, raw ADTS AAC) are found
by sniffing the first 64 KiB and decoded sequentially from the start instead. See
`../shared/notes/media-io.md` in the product notes for the measurements behind each flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import numpy as np

from shared.errors import (
    MediaHostError,
    MediaUnavailableError,
    UnsupportedMediaError,
    WhisperfleetError,
)
from shared.schemas import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

BYTES_PER_SAMPLE = 2
SNIFF_BYTES = 65536


class SeekMode(enum.Enum):
    INPUT = "input"  # seek by bytes/index before -i: fetches only the range
    FAST_MP3 = "fast_mp3"  # CBR MP3: input seek computed from the bitrate (-fflags +fastseek)
    SEQUENTIAL = "sequential"  # no reliable byte seek: decode from the start, trim the output


def sniff_seek_mode(head: bytes) -> SeekMode:
    """Choose how to seek from the first bytes of the file."""
    body = head
    if body.startswith(b"ID3") and len(body) >= 10:
        size = (body[6] << 21) | (body[7] << 14) | (body[8] << 7) | body[9]
        body = body[10 + size :]
    if len(body) >= 2 and body[0] == 0xFF and (body[1] & 0xE0) == 0xE0:
        layer = (body[1] >> 1) & 0x3
        if layer == 0:  # ADTS AAC: no index, no bitrate to seek by
            return SeekMode.SEQUENTIAL
        window = body[:4096]
        if b"Xing" in window or b"VBRI" in window:
            return SeekMode.SEQUENTIAL  # VBR MP3: TOC seeks land seconds off
        return SeekMode.FAST_MP3  # CBR MP3 ("Info" header or none)
    return SeekMode.INPUT


async def sniff_media(http: httpx.AsyncClient, url: str) -> SeekMode:
    """Fetch the first 64 KiB of `url` and pick the seek mode (errors map to the hierarchy)."""
    headers = {"Range": f"bytes=0-{SNIFF_BYTES - 1}", "Accept-Encoding": "identity"}
    try:
        response = await http.get(url, headers=headers, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise MediaHostError(f"media host unreachable ({type(exc).__name__}: {exc})") from exc
    if response.status_code >= 500:
        raise MediaHostError(f"media host answered HTTP {response.status_code}")
    if response.status_code >= 400:
        raise MediaUnavailableError(
            f"media_url answered HTTP {response.status_code}; check that it is correct and readable"
        )
    return sniff_seek_mode(response.content[:SNIFF_BYTES])


@dataclass(frozen=True)
class FetchOptions:
    ffmpeg_path: str
    preroll_sec: float = 2.0
    rw_timeout_sec: float = 30.0
    initial_request_bytes: int = 65536
    request_bytes: int = 1048576


def ffmpeg_command(
    url: str, start_sec: float, end_sec: float, mode: SeekMode, options: FetchOptions
) -> list[str]:
    """The FFmpeg command that writes `[start_sec, end_sec)` of `url` as s16le PCM to stdout."""
    duration = end_sec - start_sec
    if mode is SeekMode.SEQUENTIAL:
        input_seek, output_seek = 0.0, start_sec
    else:
        input_seek = max(0.0, start_sec - options.preroll_sec)
        output_seek = start_sec - input_seek
    command = [options.ffmpeg_path, "-nostdin", "-hide_banner", "-v", "error", "-xerror"]
    if url.startswith(("http://", "https://")):
        command += [
            "-reconnect", "1", "-reconnect_on_network_error", "1", "-reconnect_delay_max", "4",
            "-rw_timeout", str(int(options.rw_timeout_sec * 1_000_000)),
            "-multiple_requests", "1",
            "-initial_request_size", str(options.initial_request_bytes),
            "-request_size", str(options.request_bytes),
        ]  # fmt: skip
    if mode is SeekMode.FAST_MP3:
        command += ["-fflags", "+fastseek"]
    if input_seek > 0:
        command += ["-ss", f"{input_seek:.6f}"]
    command += ["-i", url]
    if output_seek > 0:
        command += ["-ss", f"{output_seek:.6f}"]
    command += ["-t", f"{duration:.6f}"]
    command += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(SAMPLE_RATE_HZ)]
    command += ["-f", "s16le", "pipe:1"]
    return command


_UNSUPPORTED = re.compile(
    r"Invalid data found|matches no streams|does not contain any stream|could not find codec"
    r"|Invalid argument|moov atom not found|Failed to find two consecutive",
    re.IGNORECASE,
)
_CLIENT_ERROR = re.compile(r"HTTP error 4\d\d|Server returned 4\d\d|4\d\d (Not Found|Forbidden)")


def classify_ffmpeg_failure(stderr: str, url: str) -> WhisperfleetError:
    """Turn FFmpeg's stderr into the error a user can act on."""
    tail = stderr.strip().splitlines()[-3:]
    detail = " | ".join(line.strip() for line in tail) or "no diagnostics"
    if _CLIENT_ERROR.search(stderr):
        return MediaUnavailableError(f"media host refused the range request: {detail}")
    if _UNSUPPORTED.search(stderr):
        return UnsupportedMediaError(
            f"media_url is not decodable audio/video or has no audio stream: {detail}"
        )
    return MediaHostError(f"fetching media failed: {detail}")


async def _read_tail(stream: asyncio.StreamReader, keep: int = 1 << 14) -> bytes:
    """Read a stream to its end (so the child never blocks on it), keeping the last bytes."""
    tail = b""
    while chunk := await stream.read(1 << 14):
        tail = (tail + chunk)[-keep:]
    return tail


class PcmSource:
    """Async iterator of int16 sample blocks for one time range; kills FFmpeg when closed."""

    def __init__(
        self, url: str, start_sec: float, end_sec: float, mode: SeekMode, options: FetchOptions
    ) -> None:
        self.url = url
        self.start_sec = start_sec
        self.end_sec = end_sec
        self.command = ffmpeg_command(url, start_sec, end_sec, mode, options)
        self.samples_read = 0
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[bytes] | None = None

    @property
    def expected_samples(self) -> int:
        return round((self.end_sec - self.start_sec) * SAMPLE_RATE_HZ)

    async def __aenter__(self) -> PcmSource:
        self._process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._process.stderr is not None
        self._stderr_task = asyncio.create_task(_read_tail(self._process.stderr))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stderr_task

    async def blocks(self, block_bytes: int = 1 << 16) -> AsyncIterator[np.ndarray]:
        """Yield sample blocks as FFmpeg decodes them; raise if it fails or returns too little."""
        process = self._process
        assert process is not None and process.stdout is not None, "use `async with` first"
        carry = b""
        while True:
            data = await process.stdout.read(block_bytes)
            if not data:
                break
            data = carry + data
            usable = len(data) - len(data) % BYTES_PER_SAMPLE
            carry = data[usable:]
            if usable:
                block = np.frombuffer(data[:usable], dtype="<i2")
                self.samples_read += len(block)
                yield block
        await process.wait()
        assert self._stderr_task is not None
        stderr = (await self._stderr_task).decode("utf-8", "replace")
        if process.returncode != 0:
            raise classify_ffmpeg_failure(stderr, self.url)
        self._check_length(stderr)

    def _check_length(self, stderr: str) -> None:
        # FFmpeg can exit 0 with no output (a failed seek); a short read means truncated media.
        missing_sec = (self.expected_samples - self.samples_read) / SAMPLE_RATE_HZ
        tolerance_sec = max(1.0, 0.01 * (self.end_sec - self.start_sec))
        if self.samples_read == 0:
            error = classify_ffmpeg_failure(stderr, self.url)
            if isinstance(error, MediaHostError):
                error = UnsupportedMediaError(
                    f"no audio decoded for {self.start_sec:.2f}-{self.end_sec:.2f} s of "
                    "media_url: the file is empty, truncated, or not audio/video"
                )
            raise error
        if missing_sec > tolerance_sec:
            raise MediaHostError(
                f"media ended {missing_sec:.1f} s early in {self.start_sec:.2f}-"
                f"{self.end_sec:.2f} s: the file is truncated or the host cut the transfer"
            )
