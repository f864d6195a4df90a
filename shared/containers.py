"""Which media containers the services read, told from a file's first bytes.

Left to guess, FFmpeg picks its demuxer from the data, and some of its demuxers open whatever
the data names: HLS playlists and DASH manifests fetch their segment URLs, a concat list opens
the files it lists, MOV follows external data references, `image2` expands file patterns. A
media host could so make the orchestrator's probe (PyAV) or a worker's FFmpeg fetch URLs past
the address guard, or read the service's own files. So both read only what this module names:

    first bytes ──> sniff_container ──> Container(demuxer) ──> PyAV av.open(format=demuxer)
                          │                                    FFmpeg -f demuxer
                          └──> UnsupportedMediaError (415): a playlist, manifest, page or
                               anything not on the list, said in words

Every demuxer on the list reads one self-contained file (MOV with its data references off:
`DEMUXER_OPTIONS`), and the caller forces it, so nothing in the data can choose another. The
sniff is pure: the orchestrator and the worker each run it on the bytes they read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.errors import UnsupportedMediaError

SNIFF_BYTES = 8192
"""Enough for every signature below and a few MPEG frames; a larger ID3 tag costs one more
read (`read_after_tag`)."""


@dataclass(frozen=True)
class Container:
    demuxer: str
    """FFmpeg's demuxer name: `-f` for FFmpeg, `format=` for PyAV."""
    name: str
    """What people call it, for messages."""


MATROSKA = Container("matroska", "Matroska/WebM")
MOV = Container("mov", "MP4/M4A/MOV")
OGG = Container("ogg", "Ogg (Opus, Vorbis, FLAC)")
FLAC = Container("flac", "FLAC")
WAV = Container("wav", "WAV")
W64 = Container("w64", "Wave64")
AIFF = Container("aiff", "AIFF")
CAF = Container("caf", "CAF")
AMR = Container("amr", "AMR")
ASF = Container("asf", "ASF/WMA/WMV")
AVI = Container("avi", "AVI")
FLV = Container("flv", "FLV")
MPEGTS = Container("mpegts", "MPEG-TS")
MPEGPS = Container("mpeg", "MPEG-PS")
AU = Container("au", "Sun AU")
WAVPACK = Container("wv", "WavPack")
ADTS = Container("aac", "raw AAC (ADTS)")
MP3 = Container("mp3", "MP3 (MPEG audio)")
_ALL = (MATROSKA, MOV, OGG, FLAC, WAV, W64, AIFF, CAF, AMR, ASF, AVI, FLV, MPEGTS, MPEGPS, AU,
        WAVPACK, ADTS, MP3)  # fmt: skip

DEMUXER_OPTIONS: dict[str, dict[str, str]] = {"mov": {"enable_drefs": "0"}}
"""Demuxer options that must be set whenever the demuxer is used: MOV never opens the
external files its data references name (off by default; said here so it stays off)."""

_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_W64_GUID = bytes.fromhex("726966662e91cf11a5d628db04c10000")  # "riff" GUID
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")


def _magic(body: bytes) -> Container | None:
    """The container whose signature `body` starts with."""
    if body.startswith(b"\x1a\x45\xdf\xa3"):
        return MATROSKA
    if body[4:8] in _ISO_BOXES:
        return MOV
    if body[8:12] == b"WAVE" and body[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64"):
        return WAV
    if body[:4] == b"RIFF" and body[8:12] == b"AVI ":
        return AVI
    if body[:4] == b"FORM" and body[8:12] in (b"AIFF", b"AIFC"):
        return AIFF
    for prefix, container in (
        (b"OggS", OGG),
        (b"fLaC", FLAC),
        (b"caff", CAF),
        (b"#!AMR", AMR),
        (_ASF_GUID, ASF),
        (_W64_GUID, W64),
        (b"FLV\x01", FLV),
        (b"\x00\x00\x01\xba", MPEGPS),
        (b".snd", AU),
        (b"wvpk", WAVPACK),
    ):
        if body.startswith(prefix):
            return container
    if _is_transport_stream(body):
        return MPEGTS
    return None


def _is_transport_stream(body: bytes) -> bool:
    """TS packets (188 bytes, or 192 with a timecode as in .m2ts): sync bytes in step."""
    for first, size in ((0, 188), (4, 192)):
        syncs = range(first, min(len(body), first + 5 * size), size)
        if len(syncs) >= 2 and all(body[i] == 0x47 for i in syncs):
            return True
    return False


# -- MPEG audio and ADTS: no magic, frames that follow each other ------------------------------

_MPEG_BITRATES_KBPS = {
    (3, 3): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (3, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (3, 1): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 3): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 1): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def id3v2_length(head: bytes) -> int:
    """Bytes taken by the ID3v2 tags at the start of `head` (may exceed `len(head)`)."""
    offset = 0
    while head[offset : offset + 3] == b"ID3" and len(head) >= offset + 10:
        size = 0
        for byte in head[offset + 6 : offset + 10]:
            size = (size << 7) | (byte & 0x7F)
        footer = 10 if head[offset + 5] & 0x10 else 0
        offset += 10 + size + footer
    return offset


def mpeg_frame(head: bytes, offset: int) -> tuple[int, int] | None:
    """(bitrate in kbps, frame length) of an MPEG audio frame header at `offset`, if valid."""
    if len(head) < offset + 4 or head[offset] != 0xFF or head[offset + 1] & 0xE0 != 0xE0:
        return None
    version = (head[offset + 1] >> 3) & 0x3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    layer = (head[offset + 1] >> 1) & 0x3  # 3: I, 2: II, 1: III
    bitrate_index = head[offset + 2] >> 4
    rate_index = (head[offset + 2] >> 2) & 0x3
    padding = (head[offset + 2] >> 1) & 0x1
    if version == 1 or layer == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    bitrate = _MPEG_BITRATES_KBPS[(3 if version == 3 else 2, layer)][bitrate_index]
    rate = _MPEG_SAMPLE_RATES[version][rate_index]
    if layer == 3:
        length = (12 * bitrate * 1000 // rate + padding) * 4
    elif layer == 1 and version != 3:
        length = 72 * bitrate * 1000 // rate + padding
    else:
        length = 144 * bitrate * 1000 // rate + padding
    return bitrate, length


def mpeg_bitrates(body: bytes) -> set[int] | None:
    """The bitrates of the MPEG audio frames `body` starts with (empty: a VBR header says the
    bitrate varies); None if it is not MPEG audio."""
    first = mpeg_frame(body, 0)
    if first is None:
        return None
    if b"Xing" in body[: first[1]] or b"VBRI" in body[: first[1]]:
        return set()  # a VBR header: the frames' bitrates vary
    bitrates: set[int] = set()
    offset, frames = first[1] if b"Info" in body[: first[1]] else 0, 0
    while (frame := mpeg_frame(body, offset)) is not None:
        bitrates.add(frame[0])
        offset += frame[1]
        frames += 1
    if frames == 0 or (frames == 1 and offset < len(body)):
        return None  # a lone sync word followed by something else: not MPEG audio
    return bitrates


def is_adts(head: bytes, offset: int = 0) -> bool:
    """An ADTS (raw AAC) header at `offset`, confirmed by the next one where the data allows."""
    if len(head) < offset + 7 or head[offset] != 0xFF or head[offset + 1] & 0xF6 != 0xF0:
        return False
    length = ((head[offset + 3] & 0x3) << 11) | (head[offset + 4] << 3) | (head[offset + 5] >> 5)
    if length < 7:
        return False
    following = offset + length
    return len(head) < following + 2 or (
        head[following] == 0xFF and head[following + 1] & 0xF6 == 0xF0
    )


# -- what is refused, in words -----------------------------------------------------------------

_NOT_MEDIA: tuple[tuple[re.Pattern[bytes], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE | re.DOTALL), kind)
    for pattern, kind in (
        (rb"#EXTM3U|#EXT-X-", "an HLS playlist (M3U8)"),
        (rb"<\?xml[^>]*>\s*(<!--.*?-->\s*)*<MPD\b|<MPD\b", "a DASH manifest (MPD)"),
        (rb"(<\?xml[^>]*>\s*)?<SmoothStreamingMedia\b", "a Smooth Streaming manifest"),
        (rb"ffconcat version|file\s+\S", "an FFmpeg concat list"),
        (rb"\[playlist\]", "a PLS playlist"),
        (rb"(<\?xml[^>]*>\s*)?<asx\b|\[Reference\]", "an ASX playlist"),
        (rb"(<\?xml[^>]*>\s*)?<smil\b", "a SMIL playlist"),
        (rb"#EXTINF|[a-z][a-z0-9+.-]*://", "a playlist of URLs"),
        (rb"<!doctype html|<html\b", "an HTML page"),
        (rb"<\?xml|<[a-z!]", "an XML document"),
        (rb"[{\[]", "a JSON document"),
    )
)
_PLAYLISTS = ("playlist", "manifest", "concat list", "URLs")


def _refusal(body: bytes, subject: str) -> UnsupportedMediaError:
    text = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    param = _param(subject)
    known = ", ".join(sorted({c.name for c in _ALL}))
    for pattern, kind in _NOT_MEDIA:
        if pattern.match(text):
            if any(word in kind for word in _PLAYLISTS):
                itself = "the URL of the media" if param else "the audio"
                return UnsupportedMediaError(
                    f"{subject} is {kind}, not a media file: give {itself} itself (this server "
                    "reads one file; it never follows the URLs or files a playlist names)",
                    param=param,
                )
            return UnsupportedMediaError(
                f"{subject} is {kind}, not audio or video (readable: {known})", param=param
            )
    return UnsupportedMediaError(
        f"{subject} is not audio or video in a container this server reads ({known})",
        param=param,
    )


def _param(subject: str) -> str | None:
    """The request field an error names: `media_url` for a file fetched by URL; none for bytes
    a request carries (its caller names the field)."""
    return subject if subject == "media_url" else None


class NestedOpenRefusedError(UnsupportedMediaError):
    """The data asked FFmpeg to open another URL or file (a playlist's entry, a reference)."""


def refuse_nested_open(url: str, flags: int, options: dict[str, str]) -> Any:
    """PyAV's `io_open`: FFmpeg opens every URL or file named inside the data through it
    (segments, references); none is ever opened."""
    raise NestedOpenRefusedError(
        "media_url refers to other files or URLs (a playlist or a reference); this server reads "
        "one self-contained file: give the URL of the media itself",
        param="media_url",
    )


def pyav_options(container: Container) -> dict[str, Any]:
    """`av.open` keyword arguments that hold PyAV to `container`: its demuxer forced, the
    options it must have, and every nested open refused."""
    return {
        "format": container.demuxer,
        "container_options": DEMUXER_OPTIONS.get(container.demuxer, {}),
        "io_open": refuse_nested_open,
    }


def sniff_bytes(data: bytes, subject: str = "the clip") -> Container:
    """`sniff_container` for a file held whole in memory (a clip sent to the model server, a
    known speaker's reference); errors call it `subject`."""
    tag_end = read_after_tag(data[:SNIFF_BYTES])
    if tag_end is not None:
        return sniff_container(data[tag_end : tag_end + SNIFF_BYTES].lstrip(b"\x00"), subject)
    return sniff_container(data[:SNIFF_BYTES], subject)


def read_after_tag(head: bytes) -> int | None:
    """Where to read again when an ID3 tag (cover art) hides what follows it in `head`, a
    full sniff read (None: `head` is enough)."""
    tag_end = id3v2_length(head)
    return tag_end if len(head) >= SNIFF_BYTES and tag_end > SNIFF_BYTES // 2 else None


def sniff_container(head: bytes, subject: str = "media_url") -> Container:
    """The container of a file that starts with `head` (or of the bytes after its ID3 tag);
    UnsupportedMediaError (415), calling the file `subject`, for anything this server does not
    read."""
    if not head:
        raise UnsupportedMediaError(f"{subject} is empty (0 bytes)", param=_param(subject))
    body = head[id3v2_length(head) :]
    if head.startswith(b"ID3"):
        body = body.lstrip(b"\x00")  # padding after the tag
    container = _magic(body)
    if container is not None:
        return container
    if is_adts(body):
        return ADTS
    if mpeg_bitrates(body) is not None:
        return MP3
    raise _refusal(body, subject)
