"""Aligned words -> segments: sentence ends, pauses, decode boundaries, length; speech snapping."""

from __future__ import annotations

from services.whisper_gpu.alignment import AlignedWord
from services.whisper_gpu.segmenter import snap_to_speech, split_segments, widen_instant_words


def words(*spec: tuple[str, float, float]) -> list[AlignedWord]:
    return [AlignedWord(text, start, end, 0.9, []) for text, start, end in spec]


def texts(groups: list[list[AlignedWord]]) -> list[str]:
    return ["".join(w.word for w in group) for group in groups]


def test_segments_end_at_sentence_ends() -> None:
    ws = words(
        (" Hello", 0.0, 0.4), (" there.", 0.4, 0.8), (" Next", 1.0, 1.3), (" one!", 1.3, 1.6)
    )
    assert texts(split_segments(ws, [None] * 4)) == [" Hello there.", " Next one!"]


def test_a_long_pause_ends_a_segment_without_punctuation() -> None:
    ws = words((" no", 0.0, 0.3), (" stop", 0.3, 0.6), (" here", 2.0, 2.3))
    assert texts(split_segments(ws, [None] * 3)) == [" no stop", " here"]


def test_words_of_another_decode_start_a_new_segment() -> None:
    first, second = object(), object()
    ws = words((" uno", 0.0, 0.3), (" dos", 0.3, 0.6), (" three", 0.7, 1.0))
    assert texts(split_segments(ws, [first, first, second])) == [" uno dos", " three"]


def test_an_overlong_segment_is_cut_at_its_widest_gap() -> None:
    spec = [(f" w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(30)]
    spec[12] = (" w12,", 6.0, 6.4)
    ws = words(*spec)
    groups = split_segments(ws, [None] * len(ws), max_segment_sec=10.0)
    assert len(groups) == 2
    assert groups[0][-1].word == " w12,"  # the comma wins among equal gaps
    assert all(g[-1].end_sec - g[0].start_sec <= 10.0 for g in groups)


def test_word_edges_outside_the_speech_move_onto_it() -> None:
    ws = words((" late", 0.5, 1.6), (" inside", 2.1, 2.5), (" dragged", 3.4, 3.9))
    snap_to_speech(ws, [(1.2, 1.9), (2.0, 3.0), (4.0, 5.0)])
    assert [(w.start_sec, w.end_sec) for w in ws] == [(1.2, 1.6), (2.1, 2.5), (3.0, 3.0)]
    [early] = words((" early", 0.1, 0.5))
    snap_to_speech([early], [(1.2, 1.9)])
    assert (early.start_sec, early.end_sec) == (1.2, 1.2)


def test_a_last_word_running_into_the_next_sentence_stays_in_its_own() -> None:
    [word] = words((" night.", 27.3, 28.2))
    snap_to_speech([word], [(25.0, 27.8), (27.95, 31.0)])
    assert (word.start_sec, word.end_sec) == (27.3, 27.8)


def times(ws: list[AlignedWord]) -> list[tuple[float, float]]:
    return [(round(w.start_sec, 3), round(w.end_sec, 3)) for w in ws]


def test_a_reply_said_over_a_sentences_end_gets_the_time_before_it() -> None:
    """conversation_2v_143s.mp3: "Okay." (spoken 29.72-30.16 s) came back at 30.061-30.061,
    a zero-length segment and subtitle cue."""
    ws = words((" ringing.", 29.521, 29.741), (" Okay.", 30.061, 30.061), (" The", 30.441, 30.561))
    widen_instant_words(ws, [(27.3, 30.2), (30.4, 32.9)])
    assert times(ws) == [(29.521, 29.741), (29.761, 30.061), (30.441, 30.561)]


def test_an_instant_word_takes_no_more_than_the_free_time_and_stays_in_its_speech() -> None:
    ws = words((" a", 1.0, 1.5), (" b", 1.6, 1.6), (" c", 1.6, 1.9))
    widen_instant_words(ws, [(0.5, 2.0)])
    assert times(ws)[1] == (1.5, 1.6)  # the 0.1 s between its neighbours, not 0.3
    [first] = words((" hm", 2.0, 2.0))
    widen_instant_words([first], [(2.0, 3.0)])  # at its span's start: the time after it
    assert times([first]) == [(2.0, 2.3)]


def test_a_word_with_no_free_time_takes_half_its_longer_neighbour_at_most() -> None:
    """codeswitch_180s.mp3: "'un" at 104.481-104.481 between two touching words."""
    ws = words((" a", 1.0, 1.5), (" b", 1.5, 1.5), (" c", 1.5, 1.9))
    widen_instant_words(ws, [(0.5, 2.0)])
    assert times(ws) == [(1.0, 1.25), (1.25, 1.5), (1.5, 1.9)]  # half of " a" (0.5 s)
    ws = words((" a", 1.0, 1.1), (" b", 1.1, 1.1), (" long", 1.1, 2.1))
    widen_instant_words(ws, [(0.5, 2.5)])
    assert times(ws) == [(1.0, 1.1), (1.1, 1.4), (1.4, 2.1)]  # 0.3 s of " long" at most


def test_an_instant_between_two_instants_stays_one() -> None:
    ws = words((" a", 1.0, 1.0), (" b", 1.0, 1.0))
    widen_instant_words(ws, [(1.0, 1.0)])
    assert times(ws) == [(1.0, 1.0), (1.0, 1.0)]


def test_words_with_time_are_left_as_they_are() -> None:
    ws = words((" one", 0.0, 0.4), (" two", 0.9, 1.3))
    widen_instant_words(ws, [(0.0, 1.3)])
    assert times(ws) == [(0.0, 0.4), (0.9, 1.3)]
