"""The container allow-list without FFmpeg: what the first bytes say, and what is refused in
words (tests/integration/test_containers.py runs real FFmpeg and PyAV on each container)."""

from __future__ import annotations

import pytest

from shared.containers import (
    ADTS,
    AIFF,
    AMR,
    ASF,
    AU,
    AVI,
    CAF,
    DEMUXER_OPTIONS,
    FLAC,
    FLV,
    MATROSKA,
    MOV,
    MPEGPS,
    MPEGTS,
    OGG,
    SNIFF_BYTES,
    W64,
    WAV,
    WAVPACK,
    Container,
    read_after_tag,
    sniff_container,
)
from shared.errors import UnsupportedMediaError

PAD = b"\x00" * 600


def ts_packets(first: int = 0, size: int = 188) -> bytes:
    packet = bytearray(size)
    packet[first] = 0x47
    return bytes(packet) * 5


def id3(body_size: int) -> bytes:
    size = bytes((body_size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + size + b"\x00" * body_size


@pytest.mark.parametrize(
    ("head", "container"),
    [
        (b"\x1a\x45\xdf\xa3" + PAD, MATROSKA),
        (b"\x00\x00\x00\x20ftypM4A " + PAD, MOV),
        (b"\x00\x00\x00\x08wide\x00\x00\x10\x00mdat" + PAD, MOV),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + PAD, WAV),
        (b"RF64\xff\xff\xff\xffWAVEds64" + PAD, WAV),
        (b"RIFF\x24\x00\x00\x00AVI LIST" + PAD, AVI),
        (b"FORM\x00\x00\x10\x00AIFFCOMM" + PAD, AIFF),
        (b"FORM\x00\x00\x10\x00AIFCFVER" + PAD, AIFF),
        (b"OggS\x00\x02" + PAD, OGG),
        (b"fLaC\x00\x00\x00\x22" + PAD, FLAC),
        (id3(300) + b"fLaC\x00\x00\x00\x22" + PAD, FLAC),
        (b"caff\x00\x01\x00\x00" + PAD, CAF),
        (b"#!AMR\n" + PAD, AMR),
        (b"#!AMR-WB\n" + PAD, AMR),
        (bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + PAD, ASF),
        (bytes.fromhex("726966662e91cf11a5d628db04c10000") + PAD, W64),
        (b"FLV\x01\x05" + PAD, FLV),
        (ts_packets(), MPEGTS),
        (ts_packets(4, 192), MPEGTS),
        (b"\x00\x00\x01\xba\x44" + PAD, MPEGPS),
        (b".snd\x00\x00\x00\x18" + PAD, AU),
        (b"wvpk\x00\x10\x00\x00" + PAD, WAVPACK),
    ],
    ids=lambda value: value.demuxer if isinstance(value, Container) else "",
)
def test_each_signature_names_its_demuxer(head: bytes, container: Container) -> None:
    assert sniff_container(head) == container


def test_raw_aac_behind_an_id3_tag_is_adts() -> None:
    frame = bytes([0xFF, 0xF1, 0x50, 0x80, 296 >> 3, 0x1F, 0xFC]) + b"\x00" * 289  # 296 bytes
    assert sniff_container(id3(60) + frame * 3) == ADTS


def test_mov_never_follows_its_data_references() -> None:
    assert DEMUXER_OPTIONS["mov"] == {"enable_drefs": "0"}


def test_a_big_id3_tag_asks_for_a_second_read_after_it() -> None:
    head = id3(100_000)[:SNIFF_BYTES]
    assert read_after_tag(head) == 100_010
    assert read_after_tag(id3(100) + PAD * 20) is None


PLAYLIST_ADVICE = "not a media file: give the URL of the media itself"


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"#EXTM3U\n#EXT-X-VERSION:3\n", f"an HLS playlist (M3U8), {PLAYLIST_ADVICE}"),
        (b"\xef\xbb\xbf\n#EXTM3U\n", "an HLS playlist"),  # a byte-order mark and a blank line
        (b"#EXT-X-TARGETDURATION:10\n", "an HLS playlist"),
        (
            b'<?xml version="1.0"?>\n<!-- packaged -->\n<MPD profiles="urn:mpeg:dash:profile">',
            f"a DASH manifest (MPD), {PLAYLIST_ADVICE}",
        ),
        (b"<MPD type='static'>", "a DASH manifest"),
        (b"<?xml version='1.0'?><SmoothStreamingMedia>", "a Smooth Streaming manifest"),
        (b"ffconcat version 1.0\nfile a.wav\n", f"an FFmpeg concat list, {PLAYLIST_ADVICE}"),
        (b"file '/etc/passwd'\n", "an FFmpeg concat list"),
        (b"[playlist]\nFile1=http://radio.example/stream\n", "a PLS playlist"),
        (b"<asx version='3.0'><entry><ref href='mms://x'/></entry></asx>", "an ASX playlist"),
        (b"[Reference]\nRef1=http://media.example/a.asf\n", "an ASX playlist"),
        (b"<smil><body><audio src='a.mp3'/></body></smil>", "a SMIL playlist"),
        (b"http://cdn.example/a.mp3\nhttp://cdn.example/b.mp3\n", "a playlist of URLs"),
        (b"#EXTINF:-1,Radio\n", "a playlist of URLs"),
    ],
)
def test_playlists_and_manifests_are_refused_saying_what_they_are(head: bytes, words: str) -> None:
    with pytest.raises(UnsupportedMediaError, match="give the URL of the media itself") as e:
        sniff_container(head)
    assert words in str(e.value)
    assert e.value.status_code == 415 and e.value.param == "media_url"


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "an HTML page, not audio"),
        (b"<?xml version='1.0'?><ListBucketResult/>", "an XML document, not audio"),
        (b'{"error": "expired"}', "a JSON document, not audio"),
        (bytes(range(256)) * 4, "not audio or video in a container this server reads"),
        (b"", "empty (0 bytes)"),
    ],
)
def test_other_data_is_refused_naming_what_is_read(head: bytes, words: str) -> None:
    with pytest.raises(UnsupportedMediaError) as e:
        sniff_container(head)
    assert words in str(e.value)
    if head:
        assert "MP3 (MPEG audio)" in str(e.value) and "Matroska/WebM" in str(e.value)
