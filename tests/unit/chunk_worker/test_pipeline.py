"""pipeline.to_result: a clip's model times become the file's times (range start + micro chunk
offset + where the sent audio began), clamped to the micro chunk (MicroChunker's cuts:
test_silence.py)."""

from __future__ import annotations

import pytest

from services.chunk_worker.pipeline import ClipPlacement, cut_to_speech, to_result
from shared.schemas import SAMPLE_RATE_HZ, ClipSegment, ClipTranscription, Word

RATE = SAMPLE_RATE_HZ


def clip(*segments: ClipSegment) -> ClipTranscription:
    return ClipTranscription(
        segments=list(segments), language="en", language_probability=0.9, duration_sec=30.0
    )


def test_model_times_are_moved_by_the_range_the_chunk_and_its_first_speech() -> None:
    # Range from 600 s; the micro chunk starts 20 s into it; its audio was sent from 1.5 s on.
    placement = ClipPlacement(
        20 * RATE, 30 * RATE, sent_from_samples=int(1.5 * RATE), speech_sec=12.25
    )
    word = Word(start_sec=0.2, end_sec=0.61, word=" Hello", probability=0.75)
    segment = ClipSegment(
        start_sec=0.2, end_sec=2.0, text=" Hello there.", words=[word], language="de",
        avg_logprob=-0.3, compression_ratio=1.2, no_speech_prob=0.01, temperature=0.2,
    )  # fmt: skip
    result = to_result(600.0, 900.0, placement, clip(segment))
    (out,) = result.segments
    assert (out.start_sec, out.end_sec) == (621.7, 623.5)
    assert out.text == " Hello there." and out.language == "de"  # the segment's own language
    assert (out.avg_logprob, out.compression_ratio, out.no_speech_prob, out.temperature) == (
        -0.3, 1.2, 0.01, 0.2,
    )  # fmt: skip
    assert out.words is not None
    (moved,) = out.words
    assert (moved.start_sec, moved.end_sec, moved.word, moved.probability) == (
        621.7, 622.11, " Hello", 0.75,
    )  # fmt: skip
    report = result.micro_chunk
    assert (report.start_sec, report.end_sec) == (620.0, 650.0)
    assert report.num_segments == 1 and report.speech_sec == 12.25


def test_times_past_the_micro_chunk_or_the_range_are_clamped_to_its_end() -> None:
    placement = ClipPlacement(0, 30 * RATE, sent_from_samples=0)
    word = Word(start_sec=9.0, end_sec=12.0, word=" end", probability=1.0)
    segment = ClipSegment(start_sec=9.0, end_sec=12.0, text=" end", words=[word], language="en")
    result = to_result(100.0, 110.0, placement, clip(segment))  # the range ends 10 s in
    assert result.micro_chunk.end_sec == 110.0
    (out,) = result.segments
    assert out.end_sec == 110.0 and out.words is not None and out.words[0].end_sec == 110.0


def test_times_are_rounded_to_the_millisecond() -> None:
    placement = ClipPlacement(1, RATE, sent_from_samples=0)  # one sample in: 62.5 microseconds
    segment = ClipSegment(start_sec=0.1234, end_sec=0.5, text=" x", language="en")
    (out,) = to_result(0.0, 10.0, placement, clip(segment)).segments
    assert out.start_sec == pytest.approx(0.123, abs=1e-9)
    assert out.words is None  # none asked, none invented


def test_a_micro_chunk_never_sent_has_its_report_and_no_segments() -> None:
    placement = ClipPlacement(5 * RATE, 10 * RATE, speech_sec=0.0)
    result = to_result(0.0, 60.0, placement, None)
    assert result.segments == []
    assert (result.micro_chunk.start_sec, result.micro_chunk.end_sec) == (5.0, 15.0)
    assert result.micro_chunk.num_segments == 0 and result.micro_chunk.speech_sec == 0.0


def test_a_clip_is_sent_from_its_first_speech_to_its_last_with_spans_moved_to_match() -> None:
    first, last, shifted = cut_to_speech([(1.5, 3.0), (4.0, 6.25003)])
    assert (first, last) == (24000, 100001)  # the last sample rounded up: no speech cut off
    assert shifted == [(0.0, 1.5), (2.5, pytest.approx(4.75003))]
