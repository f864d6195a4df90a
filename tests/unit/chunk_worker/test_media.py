"""The media layer without FFmpeg: sniffing, the FFmpeg command, error classification, and the
range proxy against an in-memory origin (httpx.MockTransport)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from services.chunk_worker.media import (
    FetchOptions,
    MediaFormat,
    SeekMode,
    classify_ffmpeg_failure,
    ffmpeg_command,
    sniff_format,
    sniff_media,
)
from services.chunk_worker.range_proxy import RangeProxy
from shared.containers import (
    ADTS,
    FLAC,
    MATROSKA,
    MOV,
    MP3,
    OGG,
    SNIFF_BYTES,
    WAV,
    Container,
    id3v2_length,
)
from shared.errors import (
    MediaHostError,
    MediaUnavailableError,
    RangeNotSupportedError,
    UnsupportedMediaError,
)
from tests.conftest import MEDIA_DIR
from tests.support.media_origin import URL, Origin

# -- sniffing ----------------------------------------------------------------------------------


def head(name: str, size: int = SNIFF_BYTES) -> bytes:
    with (MEDIA_DIR / name).open("rb") as file:
        return file.read(size)


@pytest.mark.parametrize(
    ("name", "container", "mode"),
    [
        ("speech_40s.cbr.mp3", MP3, SeekMode.FAST_MP3),
        ("speech_40s.left-only.stereo.mp3", MP3, SeekMode.FAST_MP3),
        ("speech_200s.mp3", MP3, SeekMode.FAST_MP3),
        ("speech_40s.vbr.mp3", MP3, SeekMode.SEQUENTIAL),
        ("speech_40s.wav", WAV, SeekMode.INPUT),
        ("speech_40s.flac", FLAC, SeekMode.INPUT),
        ("speech_40s.opus", OGG, SeekMode.INPUT),
        ("speech_40s.faststart.m4a", MOV, SeekMode.INPUT),
        ("speech_40s.moovend.m4a", MOV, SeekMode.INPUT),
        ("speech_40s.6ch.m4a", MOV, SeekMode.INPUT),
        ("speech_40s.mp4", MOV, SeekMode.INPUT),
        ("speech_40s.webm", MATROSKA, SeekMode.MATROSKA),
        ("speech_40s.mkv", MATROSKA, SeekMode.MATROSKA),
    ],
)
def test_sniffing_picks_the_demuxer_and_seek_mode_of_every_committed_format(
    name: str, container: Container, mode: SeekMode
) -> None:
    assert sniff_format(head(name)) == MediaFormat(container, mode)


def id3_tag(body_size: int, footer: bool = False) -> bytes:
    size = bytes((body_size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    flags = 0x10 if footer else 0
    return b"ID3\x04\x00" + bytes([flags]) + size + b"\x00" * (body_size + (10 if footer else 0))


def mp3_frames() -> bytes:
    """The CBR frames of the committed MP3, after its own (small) tag."""
    data = head("speech_40s.cbr.mp3", 65536)
    return data[id3v2_length(data) :]


def test_id3_length_counts_every_tag_and_its_footer() -> None:
    data = id3_tag(100) + id3_tag(50, footer=True) + b"\xff\xfb"
    assert id3v2_length(data) == (10 + 100) + (10 + 50 + 10)


def test_cbr_mp3_behind_an_id3_tag_and_padding_is_fast_seekable() -> None:
    media = sniff_format(id3_tag(300) + b"\x00" * 700 + mp3_frames()[:6000])
    assert media == MediaFormat(MP3, SeekMode.FAST_MP3)


def test_mp3_without_a_vbr_header_but_varying_bitrates_decodes_sequentially() -> None:
    frames = bytearray()
    for bitrate_index in (5, 9, 5, 11, 7):  # MPEG-1 layer III, 44.1 kHz, mono-agnostic
        header = bytes([0xFF, 0xFB, bitrate_index << 4, 0x00])
        bitrate = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192)[bitrate_index]
        frames += header + b"\x00" * (144 * bitrate * 1000 // 44100 - 4)
    assert sniff_format(bytes(frames)) == MediaFormat(MP3, SeekMode.SEQUENTIAL)


def test_raw_adts_aac_decodes_sequentially() -> None:
    def frame(length: int) -> bytes:
        header = [0xFF, 0xF1, 0x50, 0x80 | (length >> 11), (length >> 3) & 0xFF, 0x1F, 0xFC]
        header[5] = ((length & 0x7) << 5) | 0x1F
        return bytes(header) + b"\x00" * (length - 7)

    sequential = MediaFormat(ADTS, SeekMode.SEQUENTIAL)
    assert sniff_format(frame(300) + frame(280) + frame(310)) == sequential
    assert sniff_format(id3_tag(60) + frame(300) + frame(280)) == sequential


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (bytes(range(256)) * 16, "not audio or video"),  # arbitrary bytes
        (b"\xff\xfb\x90\x00" + b"not an mpeg stream" * 50, "not audio or video"),  # one sync word
        (b"#EXTM3U\n#EXTINF:10,\nhttp://cdn.example/a.ts\n", "HLS playlist"),
        (b"", "empty"),
    ],
)
def test_anything_else_is_refused_before_ffmpeg_runs(data: bytes, words: str) -> None:
    """FFmpeg is never left to guess (its guesses include playlists that open other URLs)."""
    with pytest.raises(UnsupportedMediaError, match=words):
        sniff_format(data)


def test_a_bare_wav_header_is_read_with_an_input_seek() -> None:
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") == MediaFormat(WAV, SeekMode.INPUT)


@asynccontextmanager
async def behind_proxy(origin: Origin) -> AsyncIterator[RangeProxy]:
    """The origin behind a range proxy: how a worker sniffs media."""
    async with origin.client() as http, unentered(RangeProxy(http, reconnect_delay_max_sec=0)) as p:
        yield p


@asynccontextmanager
async def unentered(proxy: RangeProxy) -> AsyncIterator[RangeProxy]:
    """A proxy whose port is never opened (sniffing reads its pages in-process), its page
    fetches ended on leaving as `async with proxy` would."""
    try:
        yield proxy
    finally:
        await proxy.__aexit__(None, None, None)


async def test_sniffing_looks_past_an_id3_tag_bigger_than_the_sniff() -> None:
    origin = Origin(id3_tag(200_000) + mp3_frames())
    async with behind_proxy(origin) as proxy:
        assert await sniff_media(proxy, URL) == MediaFormat(MP3, SeekMode.FAST_MP3)
    starts = [first for first, _ in origin.requests]
    assert starts[0] == 0 and any(a <= 200_010 <= b for a, b in origin.requests)
    assert all(f < SNIFF_BYTES or f > 200_010 - 8192 for f in starts)  # the tag isn't read


async def test_sniffing_refuses_a_host_that_ignores_range_after_a_few_pages() -> None:
    origin = Origin(mp3_frames() * 40, honour_range=False)
    async with behind_proxy(origin) as proxy:
        with pytest.raises(RangeNotSupportedError, match="ignores HTTP range requests"):
            await sniff_media(proxy, URL)
    assert origin.sent < SNIFF_BYTES + 8192 < len(origin.data)


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (404, MediaUnavailableError, "HTTP 404"),
        (403, MediaUnavailableError, "HTTP 403"),
        (416, UnsupportedMediaError, "empty"),
        (500, MediaHostError, "HTTP 500"),
        (503, MediaHostError, "HTTP 503"),
    ],
)
async def test_sniffing_maps_the_host_status_to_an_error(
    status: int, error: type[Exception], words: str
) -> None:
    async with behind_proxy(Origin(b"", status=status)) as proxy:
        with pytest.raises(error, match=words):
            await sniff_media(proxy, URL)


async def test_an_unreachable_host_is_a_media_host_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http,
        unentered(RangeProxy(http, reconnect_delay_max_sec=0)) as proxy,
    ):
        with pytest.raises(MediaHostError, match="ConnectError"):
            await sniff_media(proxy, URL)


# -- the FFmpeg command ------------------------------------------------------------------------

OPTIONS = FetchOptions(ffmpeg_path="ffmpeg", preroll_sec=2.0)
LEASE_URL = "http://127.0.0.1:4567/0123abcd"
"""What FFmpeg is given: a range proxy lease for the media URL."""
INPUT = MediaFormat(MOV, SeekMode.INPUT)
FAST_MP3 = MediaFormat(MP3, SeekMode.FAST_MP3)
SEQUENTIAL = MediaFormat(MP3, SeekMode.SEQUENTIAL)
MKV = MediaFormat(MATROSKA, SeekMode.MATROSKA)


def value_after(command: list[str], flag: str, occurrence: int = 0) -> str:
    positions = [i for i, part in enumerate(command) if part == flag]
    return command[positions[occurrence] + 1]


def test_input_seek_goes_before_the_input_and_the_preroll_is_trimmed_after_it() -> None:
    command = ffmpeg_command(LEASE_URL, 13.37, 73.37, INPUT, OPTIONS, via_proxy=True)
    i = command.index("-i")
    first_ss, second_ss = (j for j, part in enumerate(command) if part == "-ss")
    assert first_ss < i < second_ss
    assert float(command[first_ss + 1]) == pytest.approx(11.37)
    assert float(command[second_ss + 1]) == pytest.approx(2.0)
    assert float(value_after(command, "-t")) == pytest.approx(60.0)
    assert command.index("-t") > i
    assert value_after(command, "-map") == "0:a:0"
    assert value_after(command, "-af").startswith("aresample=16000:")
    assert "async=1" in value_after(command, "-af")  # timestamp holes become silence
    assert "-ac" not in command  # channels are averaged from the WAV, not by FFmpeg's matrix
    assert command[-3:] == ["-f", "wav", "pipe:1"]


def test_a_window_starting_inside_the_preroll_seeks_on_the_output_only() -> None:
    command = ffmpeg_command(LEASE_URL, 0.5, 10.0, INPUT, OPTIONS, via_proxy=True)
    assert command.count("-ss") == 1
    assert command.index("-ss") > command.index("-i")
    assert float(value_after(command, "-ss")) == pytest.approx(0.5)


def test_fast_mp3_seek_is_enabled_before_the_input() -> None:
    command = ffmpeg_command(LEASE_URL, 100.0, 130.0, FAST_MP3, OPTIONS, via_proxy=True)
    assert command.index("+fastseek") < command.index("-i")


def test_sequential_decoding_never_seeks_the_input() -> None:
    command = ffmpeg_command(LEASE_URL, 100.0, 130.0, SEQUENTIAL, OPTIONS, via_proxy=True)
    assert command.count("-ss") == 1
    assert command.index("-ss") > command.index("-i")
    assert float(value_after(command, "-ss")) == pytest.approx(100.0)


def test_matroska_keeps_timestamps_and_trims_in_the_filter_graph() -> None:
    command = ffmpeg_command(LEASE_URL, 13.37, 20.0, MKV, OPTIONS, via_proxy=True)
    i = command.index("-i")
    for flag in ("-copyts", "-seek_timestamp", "-noaccurate_seek", "-flags2"):
        assert command.index(flag) < i
    assert float(value_after(command, "-ss")) == pytest.approx(11.37)
    assert command.count("-ss") == 1
    graph = value_after(command, "-af")
    assert "asetpts=PTS-13.370000/TB" in graph and "first_pts=0" in graph


@pytest.mark.parametrize("media", [INPUT, FAST_MP3, SEQUENTIAL, MKV], ids=lambda m: m.mode.value)
def test_ffmpeg_is_held_to_the_sniffed_demuxer_and_the_proxys_protocols(media: MediaFormat) -> None:
    """Left to guess, FFmpeg would run the HLS, DASH or concat demuxer on a playlist and fetch
    the URLs (or read the files) it names, past the address guard."""
    command = ffmpeg_command(LEASE_URL, 100.0, 130.0, media, OPTIONS, via_proxy=True)
    i = command.index("-i")
    assert command.count("-protocol_whitelist") == 1 and command.index("-protocol_whitelist") < i
    assert value_after(command, "-protocol_whitelist") == "http,tcp"
    assert command.index("-f") < i and value_after(command, "-f") == media.container.demuxer
    local = ffmpeg_command("/data/talk.mp3", 10.0, 20.0, media, OPTIONS)
    assert value_after(local, "-protocol_whitelist") == "file"
    assert value_after(local, "-f") == media.container.demuxer


def test_mov_never_follows_external_data_references() -> None:
    command = ffmpeg_command(LEASE_URL, 10.0, 20.0, INPUT, OPTIONS, via_proxy=True)
    assert command.index("-enable_drefs") < command.index("-i")
    assert value_after(command, "-enable_drefs") == "0"
    assert "-enable_drefs" not in ffmpeg_command(
        LEASE_URL, 10.0, 20.0, MKV, OPTIONS, via_proxy=True
    )


def test_ffmpeg_is_never_handed_a_media_hosts_url() -> None:
    with pytest.raises(ValueError, match="range proxy"):
        ffmpeg_command(URL, 10.0, 20.0, INPUT, OPTIONS)
    local_file = ffmpeg_command("/data/talk.mp3", 10.0, 20.0, INPUT, OPTIONS)
    assert value_after(local_file, "-i") == "/data/talk.mp3"


def test_through_the_proxy_ffmpeg_neither_reconnects_nor_bounds_its_requests() -> None:
    local = "http://127.0.0.1:4567/0123abcd"
    command = ffmpeg_command(local, 10.0, 20.0, INPUT, OPTIONS, via_proxy=True)
    for flag in ("-reconnect", "-request_size", "-initial_request_size", "-tls_verify"):
        assert flag not in command
    assert value_after(command, "-i") == local
    assert "-recv_buffer_size" in command


# -- error classification ----------------------------------------------------------------------

STDERR = {
    "404": "[in#0 @ 0x1] Error opening input: Server returned 404 Not Found\n"
    f"Error opening input file {URL}.\nError opening input files: Server returned 404 Not Found",
    "403 on reconnect": "[http @ 0x1] Stream ends prematurely at 100, should be 200\n"
    "[http @ 0x1] HTTP error 403 Forbidden\n[in#0/mp3 @ 0x2] Error during demuxing: I/O error",
    "dropped": "[http @ 0x1] Stream ends prematurely at 126676, should be 253352\n"
    "[in#0/mp3 @ 0x2] Error during demuxing: Input/output error\n"
    "[in#0/mp3 @ 0x2] Task finished with error code: -5 (Input/output error)",
    "5xx": "[in#0 @ 0x1] Error opening input: Server returned 5XX Server Error reply",
    "no audio": "Stream map '' matches no streams.\n"
    "To ignore this, add a trailing '?' to the map.\n"
    "Failed to set value '0:a:0' for option 'map': Invalid argument",
    "moov": "[in#0 @ 0x1] moov atom not found\n[in#0 @ 0x2] Error opening input: Invalid data "
    f"found when processing input\nError opening input file {URL}.",
    "garbage": "[mp3float @ 0x1] Header missing\n[in#0/mp3 @ 0x2] Could not find codec "
    "parameters for stream 0 (Audio: mp3, 0 channels): unspecified frame size\n"
    "Error submitting packet to decoder: Invalid data found when processing input",
    "416": "[http @ 0x1] HTTP error 416 Requested Range Not Satisfiable",
    "unknown": "Segmentation fault",
}


@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("404", MediaUnavailableError, "HTTP 404"),
        ("403 on reconnect", MediaUnavailableError, "HTTP 403"),
        ("dropped", MediaHostError, "Stream ends prematurely"),
        ("5xx", MediaHostError, "media host failed"),
        ("no audio", UnsupportedMediaError, "no audio stream"),
        ("moov", UnsupportedMediaError, "moov atom"),
        ("garbage", UnsupportedMediaError, "not audio or video"),
        ("416", UnsupportedMediaError, "past the end"),
        ("unknown", MediaHostError, "Segmentation fault"),
    ],
)
def test_ffmpeg_failures_map_to_errors_users_can_act_on(
    case: str, error: type[Exception], words: str
) -> None:
    failure = classify_ffmpeg_failure(STDERR[case], URL)
    assert type(failure) is error
    assert words in failure.message
    assert "secret" not in failure.message  # the URL's signature never leaks
    assert "Task finished" not in failure.message
