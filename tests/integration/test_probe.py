"""The orchestrator's check of a media URL against a real host on loopback: the container
allow-list, nested opens, a duration the size can't hold, and the deadline that a dripping
host can't stretch.

Addresses: the media host is 127.0.0.1 (allowed); the host that playlists point at is
127.0.0.2, refused by the policy, and records every request it gets.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import av
import httpx
import pytest

from services.orchestrator.transcription.probe import (
    DEADLINE_SETTING,
    MIN_BITRATE_BPS,
    check_declared_duration,
    probe_duration,
    probe_media,
)
from shared.containers import NestedOpenRefusedError, refuse_nested_open
from shared.errors import (
    CorruptMediaError,
    OverloadedError,
    UnsupportedMediaError,
    UpstreamTimeoutError,
)
from shared.media_host import AddressPolicy, media_client
from tests.conftest import MEDIA_DIR
from tests.support.hostile_media import MANIFESTS
from tests.support.media_server import MediaServer
from tests.support.waiting import until

POLICY = AddressPolicy.parse(["127.0.0.1/32"])


@pytest.fixture(scope="module")
def host() -> Iterator[MediaServer]:
    with MediaServer(MEDIA_DIR) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with media_client(POLICY, 30.0) as client:
        yield client


@pytest.mark.parametrize(
    ("name", "duration"),
    [("speech_40s.webm", 42.13), ("speech_40s.moovend.m4a", 42.12), ("speech_40s.vbr.mp3", 42.12)],
)
async def test_a_probe_reads_size_and_duration_of_real_media(
    host: MediaServer, http: httpx.AsyncClient, name: str, duration: float
) -> None:
    probe = await probe_media(http, host.url(name), POLICY, 30.0, 60.0)
    assert probe.size_bytes == (MEDIA_DIR / name).stat().st_size
    assert probe.duration_sec == pytest.approx(duration, abs=0.05)


@pytest.mark.parametrize(
    "name", ["attack.mpd", "attack.m3u8", "attack_file.m3u8", "attack.ffconcat"]
)
async def test_playlists_and_manifests_are_refused_and_nothing_they_name_is_fetched(
    hostile: MediaServer,
    refused: MediaServer,
    http: httpx.AsyncClient,
    name: str,
) -> None:
    with pytest.raises(UnsupportedMediaError) as raised:
        await probe_media(http, hostile.url(name), POLICY, 30.0, 60.0)
    assert raised.value.status_code == 415
    assert MANIFESTS[name] in str(raised.value)
    assert "give the URL of the media itself" in str(raised.value)
    assert refused.traffic.requests_by_path == {}


def test_pyav_opens_nothing_a_playlist_names_even_with_its_demuxer_forced(
    refused: MediaServer,
) -> None:
    """The last line behind the allow-list: every nested open goes through `io_open`, which
    refuses. Without it, PyAV's HLS demuxer fetches the refused host directly (checked first,
    so the zero below means something)."""
    playlist = (
        f"#EXTM3U\n#EXT-X-TARGETDURATION:20\n#EXTINF:20,\n{refused.base_url}/hls/x.ts\n"
        "#EXT-X-ENDLIST\n"
    )
    refused.traffic.reset()
    with pytest.raises(av.error.FFmpegError):
        av.open(io.BytesIO(playlist.encode()), format="hls", timeout=5).close()
    assert refused.traffic.requests_by_path == {"/hls/x.ts": 1}
    refused.traffic.reset()
    with pytest.raises(NestedOpenRefusedError, match="give the URL of the media itself"):
        av.open(io.BytesIO(playlist.encode()), format="hls", io_open=refuse_nested_open)
    assert refused.traffic.requests_by_path == {}


def test_a_duration_the_size_cant_hold_is_a_corrupt_file() -> None:
    forged = MEDIA_DIR / "forged_duration_1e9s.webm"
    size = forged.stat().st_size
    with pytest.raises(CorruptMediaError, match="forged") as raised:
        check_declared_duration(1e9, size)
    assert raised.value.status_code == 422 and "1000000000 s" in str(raised.value)
    check_declared_duration(42.13, size)  # the same bytes, honestly: 25.8 kbit/s
    check_declared_duration(1e9, None)  # size unknown: not checked
    one_hour_at_the_floor = int(3600 * MIN_BITRATE_BPS / 8)
    check_declared_duration(3600, one_hour_at_the_floor)
    with pytest.raises(CorruptMediaError):
        check_declared_duration(3600, one_hour_at_the_floor - 1)


async def test_the_forged_file_is_refused_by_the_probe(
    host: MediaServer, http: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    with pytest.raises(CorruptMediaError, match="forged"):
        await probe_media(http, host.url("forged_duration_1e9s.webm"), POLICY, 30.0, 60.0)
    assert time.monotonic() - started < 5


def test_the_forged_file_really_claims_1e9_seconds(host: MediaServer) -> None:
    """What the probe is up against (scripts/make_forged_media.py)."""
    url = host.url("forged_duration_1e9s.webm")
    assert probe_duration(url, POLICY, 30.0) == pytest.approx(1e9)


# -- the deadline ------------------------------------------------------------------------------

DRIPPERS = min(32, (os.cpu_count() or 1) + 4) + 2
"""More dripping probes than the default thread pool has threads, on any machine."""


async def test_dripping_hosts_end_by_the_deadline_and_delay_no_other_probe(
    host: MediaServer, http: httpx.AsyncClient
) -> None:
    deadline = 5.0
    drip = host.url("speech_40s.wav", route="drip") + "?every=0.5"
    started = time.monotonic()
    drippers = [
        asyncio.create_task(probe_media(http, drip, POLICY, 30.0, deadline))
        for _ in range(DRIPPERS)
    ]
    # every dripper past its range check, reading a trickle
    await until(lambda: host.traffic.dripping >= DRIPPERS, "every dripper reading")
    probe = await probe_media(http, host.url("speech_40s.cbr.mp3"), POLICY, 30.0, deadline)
    assert probe.duration_sec == pytest.approx(42.12, abs=0.05)
    assert not any(task.done() for task in drippers)  # it did not wait for them

    outcomes = await asyncio.gather(*drippers, return_exceptions=True)
    ended_sec = time.monotonic() - started
    for outcome in outcomes:
        assert isinstance(outcome, UpstreamTimeoutError), outcome
        assert DEADLINE_SETTING in str(outcome) and "5 s" in str(outcome)
    assert ended_sec < deadline + 3.0  # not a drip per byte of the file
    # their connections are closed too: nothing holds the threads
    await until(lambda: host.traffic.dripping == 0, "every dripping connection closed")


async def test_a_probe_whose_caller_left_stops_reading_at_once(
    host: MediaServer, http: httpx.AsyncClient
) -> None:
    before = len(host.traffic.drips_ended)
    drip = host.url("speech_40s.flac", route="drip") + "?every=0.2"
    task = asyncio.create_task(probe_media(http, drip, POLICY, 30.0, 60.0))
    await asyncio.sleep(0.5)
    task.cancel()
    left = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: len(host.traffic.drips_ended) > before, "the drip ended")
    assert host.traffic.drips_ended[-1] - left < 3.0  # not the 60 s deadline


async def test_a_host_slow_to_answer_the_range_check_is_cut_at_the_deadline(
    host: MediaServer, http: httpx.AsyncClient
) -> None:
    slow = host.url("speech_40s.wav", route="slow") + "?delay=20"
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError, match=DEADLINE_SETTING):
        await probe_media(http, slow, POLICY, 30.0, 1.5)
    assert time.monotonic() - started < 1.5 + 2.0  # not the host's 20 s


async def test_probe_threads_are_bounded_and_a_slot_is_held_until_its_thread_ends(
    host: MediaServer, http: httpx.AsyncClient
) -> None:
    """Each probe's thread ends by its deadline, but a flood of slow hosts could still start
    thousands: `slots` bounds them. A check that gets no slot within its deadline is a 503,
    and a slot comes back when its thread has ended, not when its caller left."""
    slots = asyncio.Semaphore(2)
    drip = host.url("speech_40s.wav", route="drip") + "?every=0.3"
    drippers = [
        asyncio.create_task(probe_media(http, drip, POLICY, 30.0, 60.0, slots=slots))
        for _ in range(2)
    ]
    await until(lambda: slots.locked(), "both slots taken")
    threads = sum(t.name == "media-probe" for t in threading.enumerate())
    assert threads >= 2
    with pytest.raises(OverloadedError, match="ORCHESTRATOR_MAX_PROBES") as refused:
        await probe_media(http, host.url("speech_40s.cbr.mp3"), POLICY, 30.0, 1.0, slots=slots)
    assert refused.value.status_code == 503
    assert sum(t.name == "media-probe" for t in threading.enumerate()) == threads
    for task in drippers:  # the callers leave; their threads stop at their next read
        task.cancel()
    await asyncio.gather(*drippers, return_exceptions=True)
    alive = sum(t.name == "media-probe" for t in threading.enumerate())
    assert alive == 0 or slots.locked()  # a thread still reading still holds its slot
    probe = await probe_media(http, host.url("speech_40s.cbr.mp3"), POLICY, 30.0, 5.0, slots=slots)
    assert probe.duration_sec == pytest.approx(42.12, abs=0.05)


async def test_a_wav_without_samples_is_said_to_hold_no_audio_not_to_be_a_live_stream(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """A valid WAV header and 0 frames was "could not determine the duration of media_url (a
    live stream?)", and for an upload the message kept saying media_url."""
    with wave.open(str(tmp_path / "empty.wav"), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
    with MediaServer(tmp_path) as server, pytest.raises(UnsupportedMediaError) as refused:
        await probe_media(http, server.url("empty.wav"), POLICY, 30.0, 60.0)
    assert refused.value.message.startswith("media_url holds no audio")  # the upload rewrite's
    assert "live stream" not in refused.value.message
