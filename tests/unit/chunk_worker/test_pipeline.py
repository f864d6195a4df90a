"""pipeline.to_result: a clip's model times become the file's times (range start + micro chunk
offset + the sent piece's place in the chunk), clamped to the micro chunk (MicroChunker's cuts:
test_silence.py)."""

from __future__ import annotations

import pytest

from services.chunk_worker.packing import Piece
from services.chunk_worker.pipeline import ClipSpan, to_result
from shared.schemas import SAMPLE_RATE_HZ, ClipSegment, ClipTranscription, Word

RATE = SAMPLE_RATE_HZ


def clip(*segments: ClipSegment) -> ClipTranscription:
    return ClipTranscription(
        segments=list(segments), language="en", language_probability=0.9, duration_sec=30.0
    )


def test_model_times_are_moved_by_the_range_the_chunk_and_its_first_speech() -> None:
    # Range from 600 s; the micro chunk starts 20 s into it; its audio was sent from 1.5 s on.
    span = ClipSpan(20 * RATE, 30 * RATE, pieces=(Piece(0.0, 1.5, 28.5),), speech_sec=12.25)
    word = Word(start_sec=0.2, end_sec=0.61, word=" Hello", probability=0.75)
    segment = ClipSegment(
        start_sec=0.2, end_sec=2.0, text=" Hello there.", words=[word], language="de",
        avg_logprob=-0.3, compression_ratio=1.2, no_speech_prob=0.01,
    )  # fmt: skip
    result = to_result(600.0, 900.0, span, clip(segment))
    (out,) = result.segments
    assert (out.start_sec, out.end_sec) == (621.7, 623.5)
    assert out.text == " Hello there." and out.language == "de"  # the segment's own language
    assert (out.avg_logprob, out.compression_ratio, out.no_speech_prob) == (-0.3, 1.2, 0.01)
    assert out.words is not None
    (moved,) = out.words
    assert (moved.start_sec, moved.end_sec, moved.word, moved.probability) == (
        621.7, 622.11, " Hello", 0.75,
    )  # fmt: skip
    report = result.micro_chunk
    assert (report.start_sec, report.end_sec) == (620.0, 650.0)
    assert report.num_segments == 1 and report.speech_sec == 12.25


def test_times_past_the_micro_chunk_or_the_range_are_clamped_to_its_end() -> None:
    span = ClipSpan(0, 30 * RATE, pieces=(Piece(0.0, 0.0, 30.0),))
    word = Word(start_sec=9.0, end_sec=12.0, word=" end", probability=1.0)
    segment = ClipSegment(start_sec=9.0, end_sec=12.0, text=" end", words=[word], language="en")
    result = to_result(100.0, 110.0, span, clip(segment))  # the range ends 10 s in
    assert result.micro_chunk.end_sec == 110.0
    (out,) = result.segments
    assert out.end_sec == 110.0 and out.words is not None and out.words[0].end_sec == 110.0


def test_times_are_rounded_to_the_millisecond() -> None:
    span = ClipSpan(1, RATE, pieces=(Piece(0.0, 0.0, 1.0),))  # one sample in: 62.5 microseconds
    segment = ClipSegment(start_sec=0.1234, end_sec=0.5, text=" x", language="en")
    (out,) = to_result(0.0, 10.0, span, clip(segment)).segments
    assert out.start_sec == pytest.approx(0.123, abs=1e-9)
    assert out.words is None  # none asked, none invented


def test_a_micro_chunk_never_sent_has_its_report_and_no_segments() -> None:
    span = ClipSpan(5 * RATE, 10 * RATE, speech_sec=0.0)
    result = to_result(0.0, 60.0, span, None)
    assert result.segments == []
    assert (result.micro_chunk.start_sec, result.micro_chunk.end_sec) == (5.0, 15.0)
    assert result.micro_chunk.num_segments == 0 and result.micro_chunk.speech_sec == 0.0


def test_packed_times_go_back_to_where_each_piece_was_cut_from() -> None:
    """Regression: packed clips leave pauses out; a word after a left-out pause must land after
    it, not the pause's length too early."""
    # Pieces: chunk 1.0-9.0 s sent at 0-8 s, chunk 12.0-20.0 s sent at 8-16 s.
    span = ClipSpan(0, 30 * RATE, pieces=(Piece(0.0, 1.0, 8.0), Piece(8.0, 12.0, 8.0)))
    first = Word(start_sec=7.5, end_sec=7.9, word=" one.", probability=1.0)
    second = Word(start_sec=8.2, end_sec=8.6, word=" Two", probability=1.0)
    segment = ClipSegment(
        start_sec=7.5, end_sec=8.6, text=" one. Two", words=[first, second], language="en"
    )
    (out,) = to_result(100.0, 200.0, span, clip(segment)).segments
    assert out.words is not None
    assert [(w.start_sec, w.end_sec) for w in out.words] == [(108.5, 108.9), (112.2, 112.6)]
    assert (out.start_sec, out.end_sec) == (108.5, 112.6)
