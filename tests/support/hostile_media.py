"""Files a hostile media host serves instead of media: playlists and manifests whose entries
point at another host (one the address rule refuses) and at a local file.

Left to guess its demuxer, FFmpeg (and PyAV) would fetch those entries itself, past the
address guard, or read the service's own files. Tests serve these from a `MediaServer` and
point the entries at a second `MediaServer` (on 127.0.0.2, refused by configuration) whose
request log must stay empty.
"""

from __future__ import annotations

from pathlib import Path

MANIFESTS = {
    "attack.mpd": "DASH manifest",
    "attack.m3u8": "HLS playlist",
    "attack_file.m3u8": "HLS playlist",
    "attack.ffconcat": "concat list",
}
"""File name -> the words the refusal must say."""


def write_manifests(directory: Path, target: str, local_file: Path) -> dict[str, str]:
    """Write `MANIFESTS` into `directory`, their entries pointing at `target` (a base URL) and
    at `local_file`; returns `MANIFESTS`."""
    (directory / "attack.mpd").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" minBufferTime="PT1S"'
        ' mediaPresentationDuration="PT40S"'
        ' profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">\n'
        ' <Period><AdaptationSet mimeType="audio/mp4">'
        '<Representation id="a" bandwidth="64000" codecs="mp4a.40.2">'
        f"<BaseURL>{target}/dash/segment.mp4</BaseURL>"
        "</Representation></AdaptationSet></Period>\n</MPD>\n"
    )
    (directory / "attack.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:20\n"
        f"#EXTINF:20,\n{target}/hls/segment0.ts\n"
        f"#EXTINF:20,\n{target}/hls/segment1.ts\n#EXT-X-ENDLIST\n"
    )
    (directory / "attack_file.m3u8").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:40\n#EXTINF:40,\nfile://{local_file}\n#EXT-X-ENDLIST\n"
    )
    (directory / "attack.ffconcat").write_text(
        f"ffconcat version 1.0\nfile '{local_file}'\nfile '{target}/concat/part.wav'\n"
    )
    return MANIFESTS
