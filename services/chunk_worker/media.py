"""Fetching one time range of remote media as 16 kHz mono PCM, with FFmpeg.

    sniff_media ──> MediaFormat ──> ffmpeg_command ──> PcmSource (FFmpeg, WAV on stdout)
                                                      │ reads through
                                                RangeProxy (loopback HTTP, page cache) ──> origin

FFmpeg runs as an asyncio subprocess and streams PCM as it decodes, so the first micro chunk
leaves long before the range is fetched, and back-pressure from the reader pauses FFmpeg (and
the download). Only the range is fetched: the seek goes *before* `-i` (an input seek, which
turns into HTTP range requests), starts a short pre-roll early and trims it on the output side,
which is sample-exact and warms up AAC/Opus decoders. The first bytes say which demuxer
FFmpeg is held to (`-f`, from `shared.containers`' list of single-file containers: a
playlist or manifest is refused before FFmpeg runs) and how to seek:

    INPUT       -ss S-p -i URL -ss p -t D             index or bisection seek, output-side trim
    FAST_MP3    -fflags +fastseek, as INPUT           CBR MP3: byte offset from the bitrate
    MATROSKA    -copyts -ss S-p -i URL, then trim     WebM/MKV keep whole-millisecond timestamps
                by timestamp in the filter graph      (FFmpeg's own offset and trim round to a
                                                      millisecond and overshoot the 1 ms budget)
    SEQUENTIAL  -i URL -ss S -t D                     VBR MP3 (TOC seeks land seconds off), raw
                                                      ADTS AAC (no index): decode from the start

Sample n of a window is at `start + n / 16000` s of the source's timeline: timestamp holes
(lost or damaged packets) become silence. FFmpeg writes WAV at the source's channel count (the
count travels with the data) and channels are averaged here, so speech on any one channel is
heard, LFE included (FFmpeg's own `-ac 1` drops LFE and weights the rest).

FFmpeg exits 0 when a seek fails or a file is truncated, so a window that comes back short is
an error, and FFmpeg's stderr (or the proxy's record of the origin) says which one
(`classify_ffmpeg_failure`). FFmpeg never opens a media host's URL: it reads a loopback URL of
the worker's `RangeProxy` (`-protocol_whitelist http,tcp`: no other URL and no file), which
fetches through `shared.media_host` (address guard, TLS, errors), asks the origin for little
more than FFmpeg reads, and keeps each file's index for the next window. The measurements
behind each choice are in ARCHITECTURE.md ("Why") and `benchmarks/bench_media.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import struct
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import numpy as np

from services.chunk_worker.range_proxy import ProxyLease, RangeProxy
from shared.containers import (
    ADTS,
    DEMUXER_OPTIONS,
    MATROSKA,
    MP3,
    SNIFF_BYTES,
    Container,
    id3v2_length,
    mpeg_bitrates,
    read_after_tag,
    sniff_container,
)
from shared.errors import (
    MediaHostError,
    MediaUnavailableError,
    UnsupportedMediaError,
    WhisperfleetError,
)
from shared.retries import RetrySchedule
from shared.schemas import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

BYTES_PER_SAMPLE = 2
TIMESTAMP_HOLE_SEC = 0.02
"""Timestamp jumps at least this long are filled with silence (or dropped, if backwards)."""
PROXY_RECEIVE_BUFFER_BYTES = 16384
"""FFmpeg's socket buffer towards the proxy: small, so the proxy sees what FFmpeg reads."""


class SeekMode(enum.Enum):
    """How FFmpeg gets to the start of a window (see the module's table)."""

    INPUT = "input"  # seek by index/bisection before -i: fetches only the range
    FAST_MP3 = "fast_mp3"  # CBR MP3: input seek computed from the bitrate (-fflags +fastseek)
    MATROSKA = "matroska"  # input seek; the container's timestamps (its timeline starts at 0)
    SEQUENTIAL = "sequential"  # no reliable byte seek: decode from the start, trim the output


# -- sniffing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaFormat:
    """What the first bytes say: the demuxer FFmpeg is held to, and how to seek."""

    container: Container
    mode: SeekMode


def sniff_format(head: bytes) -> MediaFormat:
    """The container (UnsupportedMediaError for anything not on `shared.containers`' list)
    and the seek mode, from the first bytes of the file (or the bytes after its ID3 tag)."""
    container = sniff_container(head)
    if container is MATROSKA:
        return MediaFormat(container, SeekMode.MATROSKA)
    if container is ADTS:
        return MediaFormat(container, SeekMode.SEQUENTIAL)  # raw AAC: no index, no bitrate
    if container is MP3:
        body = head[id3v2_length(head) :]
        bitrates = mpeg_bitrates(body.lstrip(b"\x00") if head.startswith(b"ID3") else body)
        if bitrates is not None and len(bitrates) == 1:
            return MediaFormat(container, SeekMode.FAST_MP3)
        return MediaFormat(container, SeekMode.SEQUENTIAL)  # VBR: TOC seeks land seconds off
    return MediaFormat(container, SeekMode.INPUT)


async def sniff_media(proxy: RangeProxy, url: str) -> MediaFormat:
    """Fetch the first bytes of `url` and sniff them (errors map to the hierarchy).

    The bytes come through the range proxy and stay in its cache, where FFmpeg's first read
    finds them.
    """
    head = await proxy.read(url, 0, SNIFF_BYTES)
    tag_end = read_after_tag(head)
    if tag_end is not None:
        # An ID3 tag (cover art) hides the first frames: look right after it.
        return sniff_format((await proxy.read(url, tag_end, SNIFF_BYTES)).lstrip(b"\x00"))
    return sniff_format(head)


@dataclass(frozen=True)
class FetchOptions:
    ffmpeg_path: str
    preroll_sec: float = 2.0
    """Seek this much early and trim it: exact starts, warmed-up decoders."""
    rw_timeout_sec: float = 30.0
    """Give up on a host that sends nothing for this long."""
    reconnect_delay_max_sec: int = 4
    """The proxy retries the origin after 0, 1, 3... s while the delay is at most this (0:
    once, at once); FFmpeg waits that long for it."""
    proxy: RangeProxy | None = None
    """The range proxy media URLs are read through (FFmpeg never opens one itself); only a
    local file may be read without one."""


PROXY_PROTOCOLS = "http,tcp"
"""What FFmpeg may open to read the proxy's loopback URL (its http protocol runs over tcp), and
nothing else: no file, no other scheme (the demuxer is forced too: see `shared.containers`)."""
FILE_PROTOCOLS = "file"
"""What FFmpeg may open to read a local file (tests and benchmarks)."""


def ffmpeg_command(
    url: str,
    start_sec: float,
    end_sec: float,
    media: MediaFormat,
    options: FetchOptions,
    *,
    via_proxy: bool = False,
) -> list[str]:
    """The FFmpeg command that writes `[start_sec, end_sec)` of `url` as 16 kHz WAV to stdout.

    The WAV keeps the source's channels (`PcmSource` averages them). `via_proxy`: `url` is a
    `RangeProxy` lease, which retries the origin itself and sizes the origin's requests, so
    FFmpeg makes open-ended requests with a small receive buffer and never reconnects. A media
    URL is only ever read that way: FFmpeg doesn't open URLs of media hosts itself. FFmpeg is
    held to the sniffed demuxer (`-f`) and to the protocols that reading `url` needs
    (`-protocol_whitelist`), so nothing in the data makes it open another URL or a file.
    """
    if not via_proxy and url.startswith(("http://", "https://")):
        raise ValueError("media URLs are read through the range proxy, never by FFmpeg itself")
    mode = media.mode
    duration = end_sec - start_sec
    if mode is SeekMode.SEQUENTIAL:
        input_seek, output_seek = 0.0, start_sec
    else:
        input_seek = max(0.0, start_sec - options.preroll_sec)
        output_seek = start_sec - input_seek
    command = [options.ffmpeg_path, "-nostdin", "-hide_banner", "-nostats", "-v", "error"]
    if via_proxy:
        # The proxy may spend all its reconnects on one page before it answers or gives up.
        delays = RetrySchedule.reconnecting(options.reconnect_delay_max_sec).delays
        patience_sec = options.rw_timeout_sec * (len(delays) + 2) + sum(delays)
        command += [
            "-rw_timeout", str(int(patience_sec * 1_000_000)),
            "-multiple_requests", "1",
            "-recv_buffer_size", str(PROXY_RECEIVE_BUFFER_BYTES),
        ]  # fmt: skip
    if mode is SeekMode.FAST_MP3:
        command += ["-fflags", "+fastseek"]
    if mode is SeekMode.MATROSKA:
        # Keep the container's timestamps (FFmpeg's own offset and trim round to 1 ms) and
        # let the decoder keep Opus pre-skip samples (their pts adjustment rounds too); the
        # filter graph then drops everything before `start_sec` to the sample.
        command += ["-copyts", "-seek_timestamp", "1", "-noaccurate_seek"]
        command += ["-flags2", "+skip_manual"]
    if input_seek > 0:
        command += ["-ss", f"{input_seek:.6f}"]
    command += ["-protocol_whitelist", PROXY_PROTOCOLS if via_proxy else FILE_PROTOCOLS]
    command += ["-f", media.container.demuxer]
    for name, value in DEMUXER_OPTIONS.get(media.container.demuxer, {}).items():
        command += [f"-{name}", value]
    command += ["-i", url]
    # Holes and overlaps in the timestamps (lost or damaged packets, priming dropped mid-file)
    # become silence or are dropped, so sample n is always at `start_sec + n / 16000` s.
    resample = f"aresample={SAMPLE_RATE_HZ}:min_hard_comp={TIMESTAMP_HOLE_SEC}"
    if mode is SeekMode.MATROSKA:
        trim = f"asetpts=PTS-{start_sec:.6f}/TB"
        command += ["-af", f"{trim},{resample}:min_comp=0.00001:first_pts=0"]
    else:
        if output_seek > 0:
            command += ["-ss", f"{output_seek:.6f}"]
        command += ["-af", f"{resample}:async=1"]
    command += ["-t", f"{duration:.6f}"]
    command += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-c:a", "pcm_s16le"]
    command += ["-fflags", "+bitexact", "-flags:a", "+bitexact", "-f", "wav", "pipe:1"]
    return command


# -- errors ------------------------------------------------------------------------------------

_NOISE = re.compile(
    r"Task finished with error code|Terminating thread|Last message repeated|Consider increasing"
    r"|To ignore this|Error opening (input|output) files?|Error parsing options"
    r"|Nothing was written into output|Could not open encoder|No filtered frames"
)
_NO_AUDIO = re.compile(r"matches no streams|does not contain any stream", re.IGNORECASE)
_NETWORK = re.compile(
    r"Stream ends prematurely|Connection (reset|refused|timed out)|Operation timed out"
    r"|Network is unreachable|Failed to resolve|Broken pipe|Input/output error|I/O error"
    r"|Server returned 5(\d\d|XX)|HTTP error 5\d\d|error:0A0|certificate|TLS|SSL",
)
_RANGE_END = re.compile(r"HTTP error 416|Server returned 416|Range Not Satisfiable", re.IGNORECASE)
_CLIENT_ERROR = re.compile(r"HTTP error (4\d\d)|Server returned (4\d\d)")
_NOT_MEDIA = re.compile(
    r"Invalid data found when processing input|could not find codec|Failed to find two consecutive"
    r"|Could not find codec parameters|Invalid argument",
    re.IGNORECASE,
)


def _diagnostics(stderr: str, url: str) -> str:
    """FFmpeg's last meaningful stderr lines, without the URL (it may carry a signature)."""
    lines = []
    for line in stderr.replace(url, "media_url").splitlines():
        line = re.sub(r"^(\[[^\]]*\] ?)+", "", line.strip())
        if line and not _NOISE.search(line) and line not in lines:
            lines.append(line[:200])
    return " | ".join(lines[-3:]) or "no diagnostics"


def is_network_failure(stderr: str) -> bool:
    """FFmpeg's stderr says the transfer failed (as opposed to the data being bad)."""
    return bool(_NETWORK.search(stderr)) and not _CLIENT_ERROR.search(stderr)


def classify_ffmpeg_failure(stderr: str, url: str) -> WhisperfleetError:
    """Turn FFmpeg's stderr into the error a user can act on."""
    detail = _diagnostics(stderr, url)
    if _NO_AUDIO.search(stderr):
        return UnsupportedMediaError(
            "media_url has no audio stream (only video, subtitles or data)", param="media_url"
        )
    if "moov atom not found" in stderr:
        return UnsupportedMediaError(
            "media_url is an MP4/MOV file without its index (moov atom): it is truncated or "
            "still being written",
            param="media_url",
        )
    if _RANGE_END.search(stderr):
        return UnsupportedMediaError(
            "the requested time range lies past the end of media_url's bytes: the file is "
            f"truncated or its header overstates its duration ({detail})",
            param="media_url",
        )
    client_error = _CLIENT_ERROR.search(stderr)
    if client_error:
        status = client_error.group(1) or client_error.group(2)
        return MediaUnavailableError(
            f"media_url answered HTTP {status} while its audio was fetched (an expiring or "
            f"revoked link?): {detail}",
            param="media_url",
        )
    if _NETWORK.search(stderr):
        return MediaHostError(
            f"the media host failed while the audio was fetched (it closed the connection, "
            f"stalled or errored, and reconnecting did not help): {detail}"
        )
    if _NOT_MEDIA.search(stderr):
        return UnsupportedMediaError(
            f"media_url is not audio or video that FFmpeg can decode, or it is corrupt: {detail}",
            param="media_url",
        )
    return MediaHostError(f"fetching the audio of media_url failed: {detail}")


# -- the PCM stream ----------------------------------------------------------------------------


async def _read_tail(stream: asyncio.StreamReader, keep: int = 1 << 14) -> bytes:
    """Read a stream to its end (so the child never blocks on it), keeping the last bytes."""
    tail = b""
    while chunk := await stream.read(1 << 14):
        tail = (tail + chunk)[-keep:]
    return tail


async def _drain(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await stream.read(1 << 16):
            pass


async def _read_wav_header(stream: asyncio.StreamReader) -> int:
    """Consume a streamed WAV header up to the data chunk; return the channel count."""
    riff = await stream.readexactly(12)
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise ValueError("FFmpeg did not write a WAV header")
    channels = 0
    while True:
        chunk_id, size = struct.unpack("<4sI", await stream.readexactly(8))
        if chunk_id == b"data":
            if channels <= 0:
                raise ValueError("WAV data before its format chunk")
            return channels
        body = await stream.readexactly(size + (size & 1))
        if chunk_id == b"fmt ":
            channels = struct.unpack("<H", body[2:4])[0]


class PcmSource:
    """Async iterator of mono int16 sample blocks for one time range; kills FFmpeg when closed.

    `async with PcmSource(...) as source: async for block in source.blocks(): ...`
    """

    def __init__(
        self, url: str, start_sec: float, end_sec: float, media: MediaFormat, options: FetchOptions
    ) -> None:
        self.url = url
        self.start_sec = start_sec
        self.end_sec = end_sec
        self.media = media
        self.options = options
        self.command: list[str] = []
        self.samples_read = 0
        self.channels = 0
        self.lease: ProxyLease | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[bytes] | None = None

    @property
    def expected_samples(self) -> int:
        return round((self.end_sec - self.start_sec) * SAMPLE_RATE_HZ)

    @property
    def pid(self) -> int | None:
        """FFmpeg's process id while it runs (for diagnostics and tests)."""
        return self._process.pid if self._process is not None else None

    async def __aenter__(self) -> PcmSource:
        proxy = self.options.proxy
        if proxy is not None and self.url.startswith(("http://", "https://")):
            self.lease = proxy.lease(self.url)
            self.command = ffmpeg_command(
                self.lease.local_url, self.start_sec, self.end_sec, self.media, self.options,
                via_proxy=True,
            )  # fmt: skip
        else:
            self.command = ffmpeg_command(
                self.url, self.start_sec, self.end_sec, self.media, self.options
            )
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            await self.close()
            raise WhisperfleetError(
                f"could not start FFmpeg at {self.command[0]!r} ({exc}); "
                "set CHUNK_WORKER_FFMPEG_PATH"
            ) from exc
        assert self._process.stderr is not None
        self._stderr_task = asyncio.create_task(_read_tail(self._process.stderr))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Kill FFmpeg if it still runs and reap it (idempotent; safe while being cancelled)."""
        process, self._process = self._process, None
        lease, self.lease = self.lease, None
        if lease is not None and self.options.proxy is not None:
            self.options.proxy.release(lease)
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        # Python 3.11's wait() returns only once every pipe has seen EOF: drain what FFmpeg
        # left in stdout (its reader may be paused by back-pressure), then reap it.
        assert process.stdout is not None
        pending: list[Awaitable[object]] = [_drain(process.stdout), process.wait()]
        if self._stderr_task is not None:
            pending.append(self._stderr_task)
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.gather(*pending, return_exceptions=True))

    async def blocks(self, block_bytes: int = 1 << 16) -> AsyncIterator[np.ndarray]:
        """Yield mono sample blocks as FFmpeg decodes them; raise if it fails or ends short."""
        process = self._process
        assert process is not None and process.stdout is not None, "use `async with` first"
        with contextlib.suppress(asyncio.IncompleteReadError, ValueError):
            self.channels = await _read_wav_header(process.stdout)
        if self.channels:
            async for block in self._samples(process.stdout, block_bytes):
                yield block
        await _drain(process.stdout)
        await process.wait()
        assert self._stderr_task is not None
        stderr = (await self._stderr_task).decode("utf-8", "replace")
        error = self._failure(process.returncode or 0, stderr)
        if error is not None:
            raise error

    async def _samples(
        self, stdout: asyncio.StreamReader, block_bytes: int
    ) -> AsyncIterator[np.ndarray]:
        frame_bytes = BYTES_PER_SAMPLE * self.channels
        block_bytes = max(frame_bytes, block_bytes - block_bytes % frame_bytes)
        carry = b""
        while self.samples_read < self.expected_samples:
            data = await stdout.read(block_bytes)
            if not data:
                break
            data = carry + data
            usable = len(data) - len(data) % frame_bytes
            carry = data[usable:]
            if not usable:
                continue
            frames = np.frombuffer(data[:usable], dtype="<i2")
            if self.channels > 1:
                frames = frames.reshape(-1, self.channels).mean(axis=1).round().astype(np.int16)
            block = frames[: self.expected_samples - self.samples_read]
            self.samples_read += len(block)
            yield block

    def _failure(self, returncode: int, stderr: str) -> WhisperfleetError | None:
        """The error for a read that ended short of the window, or None when it is complete.

        FFmpeg exits 0 when a seek fails or the file ends early, and a host that went away
        shows only in its stderr (or, through the proxy, on the lease), so the sample count
        decides and the origin's recorded error or FFmpeg's stderr says why.
        """
        missing_sec = (self.expected_samples - self.samples_read) / SAMPLE_RATE_HZ
        if missing_sec <= 0:
            return None
        window = f"{self.start_sec:.2f}-{self.end_sec:.2f} s"
        if self.lease is not None:
            stderr = stderr.replace(self.lease.local_url, self.url)
            if self.lease.error is not None:
                return self.lease.error
        detail = _diagnostics(stderr, self.url)
        got = f"got {self.samples_read / SAMPLE_RATE_HZ:.2f} s of {window}"
        if is_network_failure(stderr):
            return MediaHostError(
                f"the media host failed while the audio was fetched ({got}; it closed the "
                f"connection, stalled or errored, and reconnecting did not help): {detail}"
            )
        if returncode != 0:
            error = classify_ffmpeg_failure(stderr, self.url)
            if type(error) is MediaHostError:  # nothing recognisable in stderr
                return MediaHostError(
                    f"FFmpeg failed with exit code {returncode} ({got}): {detail}"
                )
            return error
        if self.samples_read == 0:
            error = classify_ffmpeg_failure(stderr, self.url)
            if isinstance(error, MediaUnavailableError) or _NO_AUDIO.search(stderr):
                return error
            return UnsupportedMediaError(
                f"no audio decoded for {window} of media_url: the range lies past the end of "
                f"the audio, or the file is truncated or corrupt ({detail})",
                param="media_url",
            )
        if missing_sec <= max(1.0, 0.01 * (self.end_sec - self.start_sec)):
            return None  # the audio ends a little before the container says: rounding
        ended = self.start_sec + self.samples_read / SAMPLE_RATE_HZ
        return UnsupportedMediaError(
            f"the audio of media_url ends at {ended:.2f} s, {missing_sec:.1f} s before the end "
            f"of the requested {window}: the file is truncated or its header overstates its "
            "duration",
            param="media_url",
        )
