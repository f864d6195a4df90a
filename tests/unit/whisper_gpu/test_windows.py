"""Window rules: halving for languages, and new windows over speech the words left out."""

from __future__ import annotations

import pytest

from services.whisper_gpu.windows import (
    CONTEXT_SEC,
    MAX_CONTEXT_SEC,
    PAUSE_PADDING_SEC,
    Window,
    given_up_speech,
    speech_between,
    speech_within,
    split_window,
    uncovered_windows,
)

SPEECH = [(0.2, 3.0), (3.8, 7.0), (8.5, 11.0), (11.6, 14.8)]


def test_speech_is_cut_to_the_window_and_summed() -> None:
    window = Window(0, 2.0, 9.0)
    assert speech_within(SPEECH, window) == [(2.0, 3.0), (3.8, 7.0), (8.5, 9.0)]
    assert speech_between(SPEECH, 2.0, 9.0) == pytest.approx(1.0 + 3.2 + 0.5)


def test_a_window_is_halved_at_its_widest_pause_near_the_middle() -> None:
    halves = split_window(Window(0, 0.2, 14.8), SPEECH)
    assert halves is not None
    first, second = halves
    assert first.end_sec == second.start_sec == pytest.approx((7.0 + 8.5) / 2)
    assert (first.start_sec, second.end_sec) == (0.2, 14.8)
    assert first.retried and second.retried


def test_short_or_pauseless_windows_are_not_halved() -> None:
    assert split_window(Window(0, 0.2, 5.0), SPEECH) is None
    assert split_window(Window(0, 0.0, 20.0), [(0.0, 20.0)]) is None


def test_speech_after_the_last_word_becomes_a_window_with_context() -> None:
    """The model stopped early: the last sentence (11.6-14.8) has no words."""
    words = [(0.3, 2.9), (3.9, 6.9), (8.6, 10.9)]
    window = Window(0, 0.2, 14.8)
    [follow] = uncovered_windows(window, SPEECH, words, 15.0, "en")
    assert follow.accept == (10.9, 14.8)
    # Its context starts at the pause before the speech the gap begins in (8.5), not mid-word.
    assert follow.start_sec == pytest.approx(8.5 - PAUSE_PADDING_SEC)
    assert follow.end_sec == 15.0
    assert follow.hint == "en"
    assert follow.kind == "gap"


def test_a_gap_whose_speech_began_long_before_keeps_a_few_seconds_of_context() -> None:
    """Regression: a window over a gap began 3 s back, mid-sentence, on words already read, and
    `base` took it for no speech (10 s of Mandarin lost); from the pause it read them."""
    one_long_span = [(0.2, 14.8)]
    words = [(0.3, 10.9)]
    [follow] = uncovered_windows(Window(0, 0.2, 14.8), one_long_span, words, 15.0, "zh")
    assert follow.start_sec == pytest.approx(10.9 - CONTEXT_SEC)  # the pause is 10.7 s back
    assert 10.9 - MAX_CONTEXT_SEC > 0.2


def test_a_skipped_sentence_between_words_becomes_a_window() -> None:
    words = [(0.3, 2.9), (8.6, 10.9), (11.7, 14.7)]
    [follow] = uncovered_windows(Window(0, 0.2, 14.8), SPEECH, words, 15.0, "de")
    assert follow.accept == (2.9, 8.6)


def test_covered_speech_makes_no_window() -> None:
    words = [(0.3, 2.9), (3.9, 6.9), (8.6, 10.9), (11.7, 14.6)]
    assert uncovered_windows(Window(0, 0.2, 14.8), SPEECH, words, 15.0, "en") == []


def test_only_the_accepted_stretch_of_a_context_window_is_checked() -> None:
    window = Window(0, 7.9, 14.8, accept=(10.9, 14.8))
    assert uncovered_windows(window, SPEECH, [(11.7, 14.6)], 15.0, "en") == []


def test_a_window_without_words_is_retried_once_halved() -> None:
    window = Window(0, 0.2, 14.8)
    retry = uncovered_windows(window, SPEECH, [], 15.0, "en")
    assert len(retry) == 2 and all(w.retried and w.kind == "retry" for w in retry)
    assert uncovered_windows(retry[0], SPEECH, [], 15.0, "en") == []


def test_a_window_with_barely_any_speech_and_no_words_is_left_alone() -> None:
    assert uncovered_windows(Window(0, 0.0, 5.0), [(1.0, 1.6)], [], 5.0, "en") == []


def test_a_retried_window_without_words_gives_its_speech_up() -> None:
    speech = [(1.0, 4.0), (5.0, 9.0)]
    retried = Window(0, 4.5, 12.0, retried=True, accept=(4.5, 12.0), kind="retry")
    assert given_up_speech(retried, speech, []) == 4.0
    assert given_up_speech(retried, speech, [(5.0, 9.0)]) == 0.0  # it found words
    first_try = Window(0, 0.0, 12.0)
    assert given_up_speech(first_try, speech, []) == 0.0  # retried next round instead
    breath = [(5.0, 5.6)]
    assert given_up_speech(retried, breath, []) == 0.0  # too little to count
