"""Output formats: the one module every answer, download and CLI file comes from."""

from __future__ import annotations

import itertools
import json

import pytest

from shared import formats
from shared.schemas import Segment, TranscribeOutput, Word


def segment(start: float, end: float, text: str, words: list[Word] | None = None) -> Segment:
    return Segment(
        start_time_sec=start,
        end_time_sec=end,
        text=text,
        language="english",
        bcp47_key="en",
        words=words,
        avg_logprob=-0.2,
        compression_ratio=1.3,
        no_speech_prob=0.01,
    )


def output(*segments: Segment) -> TranscribeOutput:
    return TranscribeOutput(
        segments=list(segments),
        input_duration_sec=12.5,
        processing_duration_sec=1.0,
        speedup=12.5,
    )


TWO = output(segment(0.52, 2.61, " Hello there."), segment(3.0, 4.25, " General Kenobi!"))


def test_json_and_text() -> None:
    assert json.loads(formats.render(TWO, "json")) == {"text": "Hello there. General Kenobi!"}
    assert formats.render(TWO, "text") == "Hello there.\nGeneral Kenobi!\n"
    assert formats.render(TWO, "txt") == formats.render(TWO, "text")


def test_srt_and_vtt_times_and_numbering() -> None:
    assert formats.render(TWO, "srt") == (
        "1\n00:00:00,520 --> 00:00:02,610\nHello there.\n\n"
        "2\n00:00:03,000 --> 00:00:04,250\nGeneral Kenobi!\n"
    )
    assert formats.render(TWO, "vtt") == (
        "WEBVTT\n\n00:00:00.520 --> 00:00:02.610\nHello there.\n\n"
        "00:00:03.000 --> 00:00:04.250\nGeneral Kenobi!\n"
    )


def test_timestamps_carry_rounding_into_the_next_unit() -> None:
    late = output(segment(59.9996, 7384.25, " x"), segment(7384.25, 7384.3, " y"))
    assert "00:01:00,000 --> 02:03:04,250" in formats.render(late, "srt")


def test_a_long_segment_becomes_cues_of_two_short_lines_at_word_times() -> None:
    text = " ".join(f"word{i}" for i in range(40))
    words = [
        Word(start_sec=i * 0.4, end_sec=i * 0.4 + 0.3, word=f" word{i}", probability=1)
        for i in range(40)
    ]
    cues = formats.cues([segment(0.0, 15.9, " " + text, words)])
    assert len(cues) > 2
    assert " ".join(" ".join(c.lines) for c in cues) == text  # nothing lost or repeated
    for cue in cues:
        assert 1 <= len(cue.lines) <= 2 and all(len(line) <= 42 for line in cue.lines)
        assert cue.end_sec - cue.start_sec <= 7.0
        first_word = int(cue.lines[0].split()[0].removeprefix("word"))
        assert cue.start_sec == pytest.approx(first_word * 0.4)  # a word's own time


def test_without_words_cues_are_timed_by_their_characters() -> None:
    cues = formats.cues([segment(10.0, 30.0, " " + "a bb ccc dddd " * 12)])
    assert cues[0].start_sec == 10.0 and cues[-1].end_sec == pytest.approx(30.0)
    assert all(b.start_sec == pytest.approx(a.end_sec) for a, b in itertools.pairwise(cues))


def test_tsv_is_milliseconds_and_text() -> None:
    assert formats.render(TWO, "tsv") == (
        "start\tend\ttext\n520\t2610\tHello there.\n3000\t4250\tGeneral Kenobi!\n"
    )


def test_verbose_json_is_openais_shape_with_words_when_asked() -> None:
    words = [Word(start_sec=0.52, end_sec=1.0, word=" Hello", probability=0.9)]
    body = json.loads(
        formats.render(output(segment(0.52, 1.0, " Hello", words)), "verbose_json", words=True)
    )
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert body["duration"] == 12.5 and body["text"] == "Hello"
    [seg] = body["segments"]
    assert {"id", "start", "end", "text", "avg_logprob", "compression_ratio",
            "no_speech_prob", "temperature", "tokens", "seek"} <= set(seg)  # fmt: skip
    assert body["words"] == [{"word": "Hello", "start": 0.52, "end": 1.0}]
    without = json.loads(formats.render(TWO, "verbose_json"))
    assert "words" not in without


def test_empty_segments_make_no_cues_and_unknown_formats_are_refused() -> None:
    assert formats.render(output(segment(0, 1, "  ")), "srt") == ""
    with pytest.raises(ValueError, match="unknown format"):
        formats.render(TWO, "docx")
