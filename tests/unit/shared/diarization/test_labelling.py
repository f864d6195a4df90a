"""Speakers onto segments and words: splits at speaker changes, majority labels, overlap."""

from __future__ import annotations

from shared.diarization.clustering import SpeakerTimeline
from shared.diarization.labelling import label_segments
from shared.schemas import ChunkSegment, Word


def word(start: float, end: float, text: str) -> Word:
    return Word(start_sec=start, end_sec=end, word=text, probability=0.9)


def segment(start: float, end: float, text: str, words: list[Word] | None = None) -> ChunkSegment:
    return ChunkSegment(
        start_sec=start,
        end_sec=end,
        text=text,
        language="en",
        words=words,
        avg_logprob=-0.2,
    )


TIMELINE = SpeakerTimeline(
    turns=[(0.0, 4.1, "A"), (4.3, 8.0, "B"), (7.0, 7.8, "A"), (8.5, 12.0, "A")],
    speakers=["A", "B"],
)


def test_a_segment_is_split_where_its_words_change_speaker() -> None:
    words = [
        word(2.0, 2.5, " Are"),
        word(2.5, 3.0, " you"),
        word(3.0, 4.0, " there?"),
        word(4.4, 4.9, " Yes,"),
        word(5.0, 5.6, " I"),
        word(5.6, 6.2, " am."),
    ]
    [first, second] = label_segments(
        [segment(2.0, 6.2, " Are you there? Yes, I am.", words)], TIMELINE
    )
    assert (first.speaker, first.text, first.start_sec, first.end_sec) == (
        "A",
        " Are you there?",
        2.0,
        4.0,
    )
    assert (second.speaker, second.text, second.start_sec, second.end_sec) == (
        "B",
        " Yes, I am.",
        4.4,
        6.2,
    )
    assert [w.speaker for w in first.words or []] == ["A"] * 3
    assert [w.speaker for w in second.words or []] == ["B"] * 3
    assert first.avg_logprob == second.avg_logprob == -0.2
    assert first.language == "en"


def test_a_segment_of_one_speaker_keeps_its_text_and_times() -> None:
    words = [word(0.5, 1.0, " Hello"), word(1.1, 1.6, " there.")]
    [labelled] = label_segments([segment(0.4, 1.7, " Hello there.", words)], TIMELINE)
    assert (labelled.speaker, labelled.text, labelled.start_sec) == ("A", " Hello there.", 0.4)
    assert labelled.overlapping_speakers is None


def test_a_segment_without_words_takes_the_speaker_of_most_of_it_whole() -> None:
    [labelled] = label_segments([segment(3.0, 7.0, " Mostly B.")], TIMELINE)
    assert labelled.speaker == "B"
    assert (labelled.start_sec, labelled.end_sec) == (3.0, 7.0)


def test_a_word_in_a_pause_takes_the_label_of_its_neighbours() -> None:
    words = [word(8.6, 9.0, " One"), word(12.1, 12.4, " two"), word(12.5, 13.0, " three")]
    [labelled] = label_segments([segment(8.6, 13.0, " One two three", words)], TIMELINE)
    assert labelled.speaker == "A"
    assert [w.speaker for w in labelled.words or []] == ["A", "A", "A"]


def test_a_segment_in_a_pause_takes_the_nearest_turn() -> None:
    [labelled] = label_segments([segment(12.5, 13.5, " Late.")], TIMELINE)
    assert labelled.speaker == "A"
    [words_only_in_a_pause] = label_segments(
        [segment(8.1, 8.4, " Hm.", [word(8.1, 8.4, " Hm.")])], TIMELINE
    )
    assert words_only_in_a_pause.speaker == "A"  # 8.5 is nearer than 8.0... by 0.05 s


def test_overlapping_speakers_are_those_heard_at_once() -> None:
    words = [word(6.5, 7.0, " and"), word(7.0, 7.6, " so"), word(7.6, 7.9, " on")]
    [labelled] = label_segments([segment(6.5, 7.9, " and so on", words)], TIMELINE)
    assert labelled.speaker == "B"
    assert labelled.overlapping_speakers == ["A"]


def test_a_touch_at_a_speaker_change_is_not_overlap() -> None:
    timeline = SpeakerTimeline(turns=[(0.0, 5.1, "A"), (4.95, 9.0, "B")], speakers=["A", "B"])
    words = [word(1.0, 4.9, " long"), word(5.2, 8.0, " reply")]
    parts = label_segments([segment(1.0, 8.0, " long reply", words)], timeline)
    assert [p.speaker for p in parts] == ["A", "B"]
    assert [p.overlapping_speakers for p in parts] == [None, None]


def test_without_a_timeline_segments_stay_unlabelled() -> None:
    original = [segment(0.0, 1.0, " Hi.", [word(0.0, 1.0, " Hi.")])]
    [labelled] = label_segments(original, SpeakerTimeline())
    assert labelled.speaker is None
    assert labelled.words is not None and labelled.words[0].speaker is None


def test_input_segments_are_not_changed() -> None:
    original = segment(0.4, 1.7, " Hello.", [word(0.5, 1.0, " Hello.")])
    label_segments([original], TIMELINE)
    assert original.speaker is None
    assert original.words is not None and original.words[0].speaker is None
