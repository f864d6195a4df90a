"""Real FFmpeg and PyAV held to the containers we chose (shared/containers.py).

Every container on the list is made by FFmpeg here, sniffed, decoded by a worker's FFmpeg with
that demuxer forced and probed by PyAV with it forced. Playlists and manifests whose entries
point at a refused host (127.0.0.2, outside the policy; it records every request) and at a
local file are refused by the worker's sniff, and FFmpeg held to a single-file demuxer opens
nothing they name even when a host swaps them in after the sniff. A control run of FFmpeg as
it used to be called (no `-f`, no whitelist) shows the same files do make it fetch.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator

import imageio_ffmpeg
import numpy as np
import pytest

from services.chunk_worker.media import FetchOptions, MediaFormat, PcmSource, SeekMode, sniff_media
from services.chunk_worker.range_proxy import RangeProxy
from services.orchestrator.transcription.probe import probe_duration
from shared.containers import MOV, MP3, Container
from shared.errors import UnsupportedMediaError, WhisperfleetError
from shared.media_host import AddressPolicy, media_client
from shared.schemas import SAMPLE_RATE_HZ
from tests.support.hostile_media import MANIFESTS
from tests.support.media_server import MediaServer

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
POLICY = AddressPolicy.parse(["127.0.0.1/32"])

MADE = {
    # file name: (demuxer, sample rate, FFmpeg output options)
    "tone.wav": ("wav", 44100, []),
    "tone.w64": ("w64", 44100, []),
    "tone.aiff": ("aiff", 44100, []),
    "tone.caf": ("caf", 44100, ["-c:a", "pcm_s16le"]),
    "tone.amr": ("amr", 8000, ["-c:a", "libopencore_amrnb"]),
    "tone.wma": ("asf", 44100, ["-c:a", "wmav2"]),
    "tone.avi": ("avi", 44100, ["-c:a", "pcm_s16le"]),
    "tone.flv": ("flv", 44100, ["-c:a", "aac"]),
    "tone.ts": ("mpegts", 44100, ["-c:a", "mp2"]),
    "tone.m2ts": ("mpegts", 44100, ["-c:a", "mp2", "-f", "mpegts", "-mpegts_m2ts_mode", "1"]),
    "tone.mpg": ("mpeg", 44100, ["-c:a", "mp2", "-f", "mpeg"]),
    "tone.au": ("au", 44100, []),
    "tone.wv": ("wv", 44100, []),
    "tone.aac": ("aac", 44100, ["-c:a", "aac", "-f", "adts"]),
    "tone.mp3": ("mp3", 44100, ["-c:a", "libmp3lame"]),
    "tone.ogg": ("ogg", 48000, ["-c:a", "libvorbis"]),
    "tone.flac": ("flac", 44100, []),
    "tone.mkv": ("matroska", 44100, ["-c:a", "aac"]),
    "tone.m4a": ("mov", 44100, ["-c:a", "aac"]),
}


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    root = tmp_path_factory.mktemp("containers")
    for name, (_, rate, output) in MADE.items():
        ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration=4",
               *output, str(root / name))  # fmt: skip
    with MediaServer(root) as server:
        yield server


@pytest.fixture
async def options() -> AsyncIterator[FetchOptions]:
    async with (
        media_client(POLICY, 30) as http,
        RangeProxy(http, reconnect_delay_max_sec=0) as proxy,
    ):
        yield FetchOptions(FFMPEG, reconnect_delay_max_sec=0, proxy=proxy)


@pytest.mark.parametrize("name", sorted(MADE))
async def test_every_container_on_the_list_is_sniffed_decoded_and_probed(
    made: MediaServer, options: FetchOptions, name: str
) -> None:
    url = made.url(name)
    assert options.proxy is not None
    media = await sniff_media(options.proxy, url)
    assert media.container.demuxer == MADE[name][0]
    async with PcmSource(url, 1.0, 2.0, media, options) as source:
        samples = np.concatenate([block async for block in source.blocks()])
    assert len(samples) == SAMPLE_RATE_HZ
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 1000  # the tone, not silence
    assert probe_duration(url, POLICY, 30.0) == pytest.approx(4.0, abs=0.2)


@pytest.mark.parametrize("name", sorted(MANIFESTS))
async def test_the_worker_refuses_playlists_and_fetches_nothing_they_name(
    hostile: MediaServer, refused: MediaServer, options: FetchOptions, name: str
) -> None:
    assert options.proxy is not None
    with pytest.raises(UnsupportedMediaError, match=MANIFESTS[name]) as raised:
        await sniff_media(options.proxy, hostile.url(name))
    assert "give the URL of the media itself" in str(raised.value)
    assert refused.traffic.requests_by_path == {}


@pytest.mark.parametrize("container", [MP3, MOV], ids=lambda c: c.demuxer)
@pytest.mark.parametrize("name", sorted(MANIFESTS))
async def test_ffmpeg_held_to_a_demuxer_opens_nothing_a_swapped_in_playlist_names(
    hostile: MediaServer,
    refused: MediaServer,
    options: FetchOptions,
    name: str,
    container: Container,
) -> None:
    """A host that served audio to the sniff and a playlist to FFmpeg's reads: FFmpeg fails
    on the playlist as MP3 or MP4 data, and the refused host is never contacted."""
    media = MediaFormat(container, SeekMode.INPUT)
    with pytest.raises(WhisperfleetError):
        async with PcmSource(hostile.url(name), 0.0, 5.0, media, options) as source:
            [block async for block in source.blocks()]
    assert refused.traffic.requests_by_path == {}


def test_control_ffmpeg_left_to_guess_fetches_what_a_playlist_names(
    hostile: MediaServer, refused: MediaServer
) -> None:
    """Why the tests above matter: FFmpeg as the worker used to call it (no `-f`, no
    whitelist) fetches a DASH manifest's and an HLS playlist's entries from the refused host
    itself. (Run last in this module: it leaves requests on the refused host's log.)"""
    try:
        for name in ("attack.mpd", "attack.m3u8"):
            command = [FFMPEG, "-nostdin", "-v", "error", "-i", hostile.url(name), "-t", "1",
                       "-f", "null", "-"]  # fmt: skip
            subprocess.run(command, capture_output=True, timeout=60, check=False)
        fetched = set(refused.traffic.requests_by_path)
    finally:
        refused.traffic.reset()
    assert {"/dash/segment.mp4", "/hls/segment0.ts"} <= fetched


def test_the_probe_refuses_what_the_worker_refuses(hostile: MediaServer) -> None:
    for name, words in MANIFESTS.items():
        with pytest.raises(UnsupportedMediaError, match=words):
            probe_duration(hostile.url(name), POLICY, 30.0)
