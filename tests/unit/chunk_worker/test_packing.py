"""packing: a micro chunk's speech end to end, and the way back from sent time to chunk time."""

from __future__ import annotations

import pytest

from services.chunk_worker.packing import (
    Piece,
    packed_sec,
    pieces_of,
    sent_spans,
    source_at_packed,
    source_time,
)


def test_pauses_are_left_out_and_short_gaps_kept() -> None:
    pieces = pieces_of([(1.0, 4.0), (4.2, 6.0), (8.0, 9.5)], merge_gap_sec=0.3)
    assert pieces == [Piece(0.0, 1.0, 5.0), Piece(5.0, 8.0, 1.5)]  # 4.0-4.2 kept, 6-8 left out
    assert packed_sec(pieces) == pytest.approx(6.5)


def test_sent_times_map_back_into_their_piece() -> None:
    pieces = [Piece(0.0, 1.0, 5.0), Piece(5.0, 8.0, 1.5)]
    assert source_time(pieces, 0.0) == 1.0
    assert source_time(pieces, 4.5) == pytest.approx(5.5)
    assert source_time(pieces, 5.25) == pytest.approx(8.25)
    assert source_time(pieces, 9.0) == pytest.approx(9.5)  # past the clip: its last speech
    assert source_time([], 3.0) == 3.0


def test_speech_spans_are_given_to_the_model_in_sent_time() -> None:
    speech = [(1.0, 4.0), (4.2, 6.0), (8.0, 9.5)]
    pieces = pieces_of(speech, merge_gap_sec=0.3)
    # Spans that touch once the pause between them is gone are one span in the sent clip.
    assert sent_spans(pieces, speech) == [(0.0, 3.0), (3.2, 6.5)]


def test_where_the_packed_clip_fills_a_length() -> None:
    pieces = [Piece(0.0, 1.0, 5.0), Piece(5.0, 8.0, 1.5)]
    assert source_at_packed(pieces, 2.0) == pytest.approx(3.0)
    assert source_at_packed(pieces, 6.0) == pytest.approx(9.0)
    assert source_at_packed(pieces, 7.0) is None
