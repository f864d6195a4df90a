"""Real FFmpeg fetching windows of every committed format from a real range-capable host.

FFmpeg reads through the worker's `RangeProxy`, as in the service (it never opens a media
host's URL itself); the proxy fetches through `shared.media_host` with loopback allowed.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import imageio_ffmpeg
import numpy as np
import pytest

from services.chunk_worker.media import FetchOptions, MediaFormat, PcmSource, SeekMode, sniff_media
from services.chunk_worker.range_proxy import RangeProxy
from shared.containers import FLAC, MP3, WAV
from shared.errors import (
    MediaHostError,
    MediaUnavailableError,
    UnsupportedMediaError,
    WhisperfleetError,
)
from shared.media_host import AddressPolicy, media_client
from shared.schemas import SAMPLE_RATE_HZ
from tests.conftest import MEDIA_DIR
from tests.support.media_server import MediaServer

RATE = SAMPLE_RATE_HZ
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
FORMATS = sorted(path.name for path in MEDIA_DIR.glob("speech_40s.*") if path.suffix != ".json")
ONE_MS = RATE // 1000


def ffmpeg(*args: str) -> bytes:
    command = [FFMPEG, "-nostdin", "-v", "error", "-y", *args]
    return subprocess.run(command, check=True, capture_output=True).stdout


@functools.cache
def whole(path: Path) -> np.ndarray:
    """The whole file decoded in one go: the reference every window must line up with."""
    pcm = ffmpeg("-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(RATE), "-f", "s16le",
                 "pipe:1")  # fmt: skip
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def lag_and_likeness(reference: np.ndarray, window: np.ndarray, start: int) -> tuple[int, float]:
    """Samples by which `window` sits late against `reference[start:]` (FFT cross-correlation
    over +/-50 ms), and the normalised correlation there."""
    reach = 50 * ONE_MS
    low = max(0, start - reach)
    search = reference[low : start + len(window) + reach]
    size = 1 << int(np.ceil(np.log2(len(search) + len(window))))
    scores = np.fft.irfft(np.fft.rfft(search, size) * np.conj(np.fft.rfft(window, size)), size)
    best = int(np.argmax(scores[: len(search) - len(window) + 1]))
    matched = search[best : best + len(window)]
    likeness = float(np.dot(matched, window) / (np.linalg.norm(matched) * np.linalg.norm(window)))
    return low + best - start, likeness


def dbfs(samples: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(samples.astype(np.float64) ** 2)) / 32768 + 1e-12))


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host() -> Iterator[MediaServer]:
    with MediaServer(MEDIA_DIR) as server:
        yield server


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Media made at test time: truncated, corrupt, video-only, other channel layouts."""
    root = tmp_path_factory.mktemp("media")
    for name in ("speech_40s.cbr.mp3", "speech_40s.faststart.m4a", "speech_40s.opus"):
        data = (MEDIA_DIR / name).read_bytes()
        (root / f"truncated.{name}").write_bytes(data[: len(data) // 2])
    (root / "random.mp3").write_bytes(np.random.default_rng(5).bytes(200_000))
    damaged = bytearray((MEDIA_DIR / "speech_40s.cbr.mp3").read_bytes())
    damaged[120_000:140_000] = np.random.default_rng(6).bytes(20_000)
    (root / "damaged_middle.mp3").write_bytes(bytes(damaged))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=5", "-t", "3", "-c:v", "libx264",
           "-preset", "ultrafast", str(root / "video_only.mp4"))  # fmt: skip
    master = str(MEDIA_DIR / "speech_40s.wav")
    ffmpeg("-i", master, "-t", "12", "-af", "pan=5.1|c3=c0", "-c:a", "flac",
           str(root / "lfe_only.5.1.flac"))  # fmt: skip
    ffmpeg("-i", master, "-t", "12", "-af", "pan=4c|c3=c0", "-ar", "44100",
           str(root / "fourth_of_four.wav"))  # fmt: skip
    ffmpeg("-i", master, "-t", "20", "-c:a", "aac", "-b:a", "48k", "-f", "adts",
           str(root / "raw.aac"))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def scratch_host(scratch: Path) -> Iterator[MediaServer]:
    with MediaServer(scratch) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with media_client(AddressPolicy.parse(["127.0.0.0/8", "::1"]), 30) as client:
        yield client


@pytest.fixture
async def options(http: httpx.AsyncClient) -> AsyncIterator[FetchOptions]:
    """How the worker fetches; reconnects once, at once, so host failures fail fast."""
    async with RangeProxy(http, reconnect_delay_max_sec=0) as proxy:
        yield FetchOptions(FFMPEG, reconnect_delay_max_sec=0, proxy=proxy)


async def fetch(
    http: httpx.AsyncClient,
    url: str,
    start: float,
    end: float,
    options: FetchOptions,
    media: MediaFormat | None = None,
) -> np.ndarray:
    """What a worker's PcmSource delivers for `[start, end)` of `url`."""
    if media is None:
        assert options.proxy is not None
        media = await sniff_media(options.proxy, url)
    async with PcmSource(url, start, end, media, options) as source:
        blocks = [block async for block in source.blocks()]
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int16)


# -- (a) exact offsets -------------------------------------------------------------------------


@pytest.mark.parametrize("start", [13.37, 0.37])
@pytest.mark.parametrize("name", FORMATS)
async def test_window_lines_up_with_the_whole_file_to_a_millisecond(
    host: MediaServer, http: httpx.AsyncClient, options: FetchOptions, name: str, start: float
) -> None:
    window = await fetch(http, host.url(name), start, start + 6.0, options)
    assert len(window) == 6 * RATE
    lag, likeness = lag_and_likeness(whole(MEDIA_DIR / name), window.astype(np.float64),
                                     round(start * RATE))  # fmt: skip
    assert abs(lag) <= ONE_MS, f"{name} at {start} s is off by {lag / ONE_MS:.2f} ms"
    assert likeness > 0.95


async def test_raw_adts_aac_is_decoded_from_the_start_and_still_exact(
    scratch: Path, scratch_host: MediaServer, http: httpx.AsyncClient, options: FetchOptions
) -> None:
    url = scratch_host.url("raw.aac")  # no index to seek by
    assert options.proxy is not None
    assert (await sniff_media(options.proxy, url)).mode is SeekMode.SEQUENTIAL
    window = await fetch(http, url, 11.37, 17.37, options)
    lag, likeness = lag_and_likeness(whole(scratch / "raw.aac"), window.astype(np.float64),
                                     round(11.37 * RATE))  # fmt: skip
    assert abs(lag) <= ONE_MS and likeness > 0.95


# -- (b) channel layouts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("speech_40s.left-only.stereo.mp3", "host"),
        ("speech_40s.6ch.m4a", "host"),
        ("lfe_only.5.1.flac", "scratch"),  # FFmpeg's own -ac 1 drops the LFE channel entirely
        ("fourth_of_four.wav", "scratch"),
    ],
)
async def test_speech_on_any_one_channel_is_heard_after_the_downmix(
    host: MediaServer,
    scratch_host: MediaServer,
    http: httpx.AsyncClient,
    options: FetchOptions,
    name: str,
    where: str,
) -> None:
    server = host if where == "host" else scratch_host
    window = await fetch(http, server.url(name), 4.0, 10.0, options)
    assert dbfs(window) > -45  # one channel of six, averaged: about -16 dB below the source
    master = whole(MEDIA_DIR / "speech_40s.wav")
    lag, likeness = lag_and_likeness(master, window.astype(np.float64), 4 * RATE)
    assert abs(lag) <= ONE_MS and likeness > 0.8


# -- (c) errors --------------------------------------------------------------------------------


async def test_missing_media_is_reported_as_unavailable(
    host: MediaServer, http: httpx.AsyncClient, options: FetchOptions
) -> None:
    url = host.url("speech_40s.cbr.mp3", route="missing")
    assert options.proxy is not None
    with pytest.raises(MediaUnavailableError, match="HTTP 404"):
        await sniff_media(options.proxy, url)
    # Gone between the sniff and FFmpeg's own requests:
    with pytest.raises(MediaUnavailableError, match="404"):
        await fetch(http, url, 5.0, 10.0, options, MediaFormat(MP3, SeekMode.FAST_MP3))


@pytest.mark.parametrize(("start", "end"), [(10.0, 30.0), (30.0, 35.0)])
async def test_a_host_that_drops_the_connection_mid_file_is_a_media_host_error(
    host: MediaServer, http: httpx.AsyncClient, options: FetchOptions, start: float, end: float
) -> None:
    url = host.url("speech_40s.wav", route="drop")  # every response stops at 50 % (21 s)
    with pytest.raises(MediaHostError) as caught:
        await fetch(http, url, start, end, options)
    assert "media host" in caught.value.message


async def test_a_host_that_drops_every_few_hundred_kb_is_resumed_losing_nothing(
    host: MediaServer, http: httpx.AsyncClient, options: FetchOptions
) -> None:
    path = MEDIA_DIR / "speech_40s.wav"
    url = host.url(path.name, route="flaky") + "?every=200000"  # about 6 drops in this file
    window = await fetch(http, url, 0.0, 38.0, options)
    assert len(window) == 38 * RATE
    lag, likeness = lag_and_likeness(whole(path), window.astype(np.float64), 0)
    assert lag == 0 and likeness > 0.9999
    assert options.proxy is not None
    assert options.proxy.upstream_bytes <= 1.2 * path.stat().st_size


@pytest.mark.parametrize(
    "name", ["truncated.speech_40s.cbr.mp3", "truncated.speech_40s.faststart.m4a",
             "truncated.speech_40s.opus"],
)  # fmt: skip
async def test_truncated_media_is_unsupported_media_that_says_so(
    scratch_host: MediaServer, http: httpx.AsyncClient, options: FetchOptions, name: str
) -> None:
    url = scratch_host.url(name)  # half the bytes: the audio stops near 21 s
    assert len(await fetch(http, url, 5.0, 15.0, options)) == 10 * RATE
    with pytest.raises(UnsupportedMediaError, match="truncated"):
        await fetch(http, url, 15.0, 30.0, options)  # straddles the end
    with pytest.raises(UnsupportedMediaError, match=r"truncated|past the end"):
        await fetch(http, url, 30.0, 35.0, options)  # entirely past it


async def test_bytes_that_are_not_media_are_unsupported_media(
    scratch_host: MediaServer, http: httpx.AsyncClient, options: FetchOptions
) -> None:
    with pytest.raises(UnsupportedMediaError, match=r"not audio or video|no audio decoded"):
        await fetch(http, scratch_host.url("random.mp3"), 1.0, 5.0, options)


async def test_a_video_without_audio_says_it_has_no_audio_stream(
    scratch_host: MediaServer, http: httpx.AsyncClient, options: FetchOptions
) -> None:
    with pytest.raises(UnsupportedMediaError, match="no audio stream"):
        await fetch(http, scratch_host.url("video_only.mp4"), 0.5, 2.5, options)


async def test_a_damaged_stretch_of_mp3_does_not_fail_the_windows_around_it(
    scratch_host: MediaServer, http: httpx.AsyncClient, options: FetchOptions
) -> None:
    """Regression: with -xerror, one bad frame near a window's seek point failed it whole.

    Where a window reads through the damage, its timeline there is only as good as the frames
    FFmpeg finds in the garbage; before it, the window stays exact."""
    url = scratch_host.url("damaged_middle.mp3")  # bytes 120-140 kB: about 20-23 s
    for start, end in ((5.0, 15.0), (25.0, 30.0), (15.0, 30.0)):
        window = await fetch(http, url, start, end, options)
        assert len(window) == round((end - start) * RATE)
        assert dbfs(window) > -40
    clean = await fetch(http, url, 5.0, 15.0, options)
    lag, likeness = lag_and_likeness(whole(MEDIA_DIR / "speech_40s.cbr.mp3"),
                                     clean.astype(np.float64), 5 * RATE)  # fmt: skip
    assert abs(lag) <= ONE_MS and likeness > 0.95


async def test_errors_never_echo_a_signed_url(
    host: MediaServer, http: httpx.AsyncClient, options: FetchOptions
) -> None:
    url = host.url("speech_40s.wav", route="drop") + "?at=0.2&X-Amz-Signature=deadbeef"
    with pytest.raises(WhisperfleetError) as caught:
        await fetch(http, url, 20.0, 30.0, options)
    assert "deadbeef" not in caught.value.message


# -- (d) cancellation --------------------------------------------------------------------------


def process_exists(pid: int) -> bool:
    """A zombie still has a /proc entry; a reaped process has none."""
    return Path(f"/proc/{pid}").exists()


async def test_cancelling_a_read_kills_ffmpeg_and_reaps_it(
    host: MediaServer, http: httpx.AsyncClient, options: FetchOptions
) -> None:
    url = host.url("speech_40s.flac")
    source = PcmSource(url, 2.0, 38.0, MediaFormat(FLAC, SeekMode.INPUT), options)
    first_block = asyncio.Event()
    pids: list[int] = []

    async def consume() -> None:
        async with source:
            assert source.pid is not None
            pids.append(source.pid)
            async for _ in source.blocks():
                first_block.set()
                await asyncio.Event().wait()  # a consumer that stalls: FFmpeg's pipe fills

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_block.wait(), 10)
    assert process_exists(pids[0])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)  # Python 3.11 hangs here if the pipe isn't drained
    assert not process_exists(pids[0])


async def test_leaving_the_loop_early_kills_ffmpeg_and_reaps_it(
    host: MediaServer, http: httpx.AsyncClient, options: FetchOptions
) -> None:
    url = host.url("speech_40s.wav")
    async with PcmSource(url, 1.0, 39.0, MediaFormat(WAV, SeekMode.INPUT), options) as source:
        pid = source.pid
        async for _ in source.blocks():
            break
    assert pid is not None and not process_exists(pid)


# -- (e) bytes fetched -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 20 minutes of speech in three formats, looped with `-c copy` (a second or two)."""
    root = tmp_path_factory.mktemp("long")
    source = str(MEDIA_DIR / "speech_200s.mp3")
    ffmpeg("-stream_loop", "5", "-i", source, "-c", "copy", str(root / "long.mp3"))
    ffmpeg("-i", source, "-c:a", "aac", "-b:a", "48k", str(root / "one.m4a"))
    ffmpeg("-stream_loop", "5", "-i", str(root / "one.m4a"), "-c", "copy", "-movflags",
           "+faststart", str(root / "long.m4a"))  # fmt: skip
    ffmpeg("-i", source, "-c:a", "libopus", "-b:a", "24k", str(root / "one.opus"))
    ffmpeg("-stream_loop", "5", "-i", str(root / "one.opus"), "-c", "copy",
           str(root / "long.opus"))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def long_host(long_files: Path) -> Iterator[MediaServer]:
    with MediaServer(long_files) as server:
        yield server


@pytest.mark.parametrize("name", ["long.mp3", "long.m4a", "long.opus"])
async def test_a_middle_window_fetches_about_its_share_of_the_file(
    long_host: MediaServer,
    long_files: Path,
    http: httpx.AsyncClient,
    options: FetchOptions,
    name: str,
) -> None:
    size = (long_files / name).stat().st_size
    duration = 6 * 203.85  # six loops
    start, length = 600.0, 120.0
    share = size * length / duration
    long_host.traffic.reset()
    window = await fetch(http, long_host.url(name), start, start + length, options)
    assert len(window) == length * RATE
    fetched = long_host.traffic.bytes_by_path[f"/media/{name}"]
    # A tenth more, plus what a worker new to the file reads once: header and index (the moov
    # of 20 min of AAC is ~110 kB), or Ogg's last pages and its bisection.
    assert fetched <= 1.1 * share + 400_000, f"{fetched} bytes for a share of {share:.0f}"
    assert fetched < size / 3


def test_every_committed_format_is_covered() -> None:
    expected = {"wav", "cbr.mp3", "vbr.mp3", "opus", "faststart.m4a", "moovend.m4a", "flac",
                "webm", "mp4", "mkv", "left-only.stereo.mp3", "6ch.m4a"}  # fmt: skip
    assert {name.removeprefix("speech_40s.") for name in FORMATS} == expected
    assert os.path.getsize(MEDIA_DIR / "speech_200s.mp3") > 0
