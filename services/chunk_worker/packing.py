"""Packing a micro chunk's speech: the model hears the speech, not the pauses between it.

Whisper decodes 30 s windows whatever they hold, so a window's cost is fixed and its worth is
the speech in it. A micro chunk is cut once its *packed* length (its speech spans, VAD-padded,
end to end) reaches the limit, and only that packed audio is sent: a 30 s clip of speech can
span 35-40 s of a talk with ordinary pauses, and a job needs fewer windows (faster-whisper's
batched pipeline packs its VAD chunks the same way).

    chunk   |--speech--|....pause....|--speech----|.|--speech--|
    pieces  |----------|             |------------------------|    (gaps < MERGE_GAP_SEC stay)
    sent    |----------|------------------------|

A piece keeps the VAD's padding on both sides (0.2 s), so a pause becomes ~0.4 s of quiet:
the model still hears where a sentence ends. Model times come back in sent time and go back to
the chunk's time through the pieces (`source_time`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.vad import Span

MERGE_GAP_SEC = 0.3
"""Gaps between speech spans shorter than this stay in the audio (cutting saves little)."""


@dataclass(frozen=True)
class Piece:
    """One stretch of the chunk's audio in the sent clip."""

    sent_sec: float
    """Where it starts in the sent clip."""
    source_sec: float
    """Where it starts in the micro chunk."""
    duration_sec: float


def pieces_of(speech: Sequence[Span], merge_gap_sec: float = MERGE_GAP_SEC) -> list[Piece]:
    """The stretches of a chunk to send, in order: its speech spans, joined across short gaps."""
    joined: list[list[float]] = []
    for start, end in speech:
        if joined and start - joined[-1][1] < merge_gap_sec:
            joined[-1][1] = max(joined[-1][1], end)
        else:
            joined.append([start, end])
    pieces, sent = [], 0.0
    for start, end in joined:
        pieces.append(Piece(round(sent, 6), start, end - start))
        sent += end - start
    return pieces


def packed_sec(pieces: Sequence[Piece]) -> float:
    return sum(piece.duration_sec for piece in pieces)


def source_time(pieces: Sequence[Piece], sent_sec: float) -> float:
    """A time in the sent clip as a time in the chunk: inside the piece that holds it (a time
    past a piece's end, in no piece, stays at that end: nothing was sent from the pause)."""
    if not pieces:
        return sent_sec
    piece = pieces[0]
    for candidate in pieces:
        if candidate.sent_sec > sent_sec:
            break
        piece = candidate
    offset = min(max(sent_sec - piece.sent_sec, 0.0), piece.duration_sec)
    return piece.source_sec + offset


def sent_spans(pieces: Sequence[Piece], speech: Sequence[Span]) -> list[Span]:
    """The speech spans in the sent clip's time (what the model server checks its words by)."""
    spans: list[Span] = []
    for start, end in speech:
        for piece in pieces:
            low = max(start, piece.source_sec)
            high = min(end, piece.source_sec + piece.duration_sec)
            if high > low:
                span = (
                    round(piece.sent_sec + low - piece.source_sec, 3),
                    round(piece.sent_sec + high - piece.source_sec, 3),
                )
                if spans and span[0] <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], max(spans[-1][1], span[1]))
                else:
                    spans.append(span)
    return spans


def source_at_packed(pieces: Sequence[Piece], packed: float) -> float | None:
    """The chunk time where the sent clip reaches `packed` seconds; None if it never does."""
    for piece in pieces:
        if packed <= piece.sent_sec + piece.duration_sec:
            return piece.source_sec + max(0.0, packed - piece.sent_sec)
    return None
