"""Make the committed forged-duration test file: a real WebM whose header claims 1e9 s.

    python -m scripts.make_forged_media [--source tests/media/speech_40s.webm]
                                        [--out tests/media/forged_duration_1e9s.webm]

Copies the source byte for byte and rewrites only the EBML `Duration` element of its Segment
`Info` (a float in `TimecodeScale` units, 4 or 8 bytes, kept at its size), so the file plays
its 42 s of audio while PyAV and FFmpeg report the forged length. It stands for a hostile
host's file: the orchestrator must refuse it (the size can't hold that duration) rather than
plan millions of macro chunks.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

EBML_HEADER = 0x1A45DFA3
SEGMENT = 0x18538067
INFO = 0x1549A966
TIMECODE_SCALE = 0x2AD7B1
DURATION = 0x4489
FORGED_SEC = 1e9


def _vint(data: bytes, offset: int, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at `offset`: (value, its length in bytes)."""
    first = data[offset]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8:
        raise ValueError(f"bad EBML length at byte {offset}")
    value = first if keep_marker else first & (0xFF >> length)
    for byte in data[offset + 1 : offset + length]:
        value = (value << 8) | byte
    return value, length


def _elements(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(id, payload offset, payload size) of each element in `data[start:end]`."""
    found = []
    offset = start
    while offset < end:
        element, id_length = _vint(data, offset, keep_marker=True)
        size, size_length = _vint(data, offset + id_length, keep_marker=False)
        payload = offset + id_length + size_length
        unknown = size == (1 << (7 * size_length)) - 1  # "unknown size" (live streams)
        if unknown:
            size = end - payload
        found.append((element, payload, size))
        offset = payload + size
    return found


def forge(data: bytes, seconds: float) -> bytes:
    """`data` with its Segment Info Duration set to `seconds`."""
    top = _elements(data, 0, len(data))
    if not top or top[0][0] != EBML_HEADER:
        raise ValueError("not an EBML (Matroska/WebM) file")
    segment = next(e for e in top if e[0] == SEGMENT)
    info = next(e for e in _elements(data, segment[1], segment[1] + segment[2]) if e[0] == INFO)
    fields = _elements(data, info[1], info[1] + info[2])
    scale = 1_000_000  # nanoseconds per tick unless TimecodeScale says otherwise
    for element, payload, size in fields:
        if element == TIMECODE_SCALE:
            scale = int.from_bytes(data[payload : payload + size], "big")
    _, payload, size = next(e for e in fields if e[0] == DURATION)
    ticks = seconds * 1e9 / scale
    packed = struct.pack(">f" if size == 4 else ">d", ticks)
    return data[:payload] + packed + data[payload + size :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=Path("tests/media/speech_40s.webm"))
    parser.add_argument("--out", type=Path, default=Path("tests/media/forged_duration_1e9s.webm"))
    args = parser.parse_args()
    args.out.write_bytes(forge(args.source.read_bytes(), FORGED_SEC))
    print(f"{args.out}: {args.out.stat().st_size} bytes, header duration {FORGED_SEC:g} s")


if __name__ == "__main__":
    main()
