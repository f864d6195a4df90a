"""Word timing guards: punctuation joins its word, long words can't hide skipped speech."""

from __future__ import annotations

from services.whisper_gpu.alignment import (
    AlignedWord,
    _limit_long_words,
    _merge_punctuation,
    squeezed_copies,
    words_past_the_audio,
)


def word(text: str, start: float, end: float, tokens: list[int] | None = None) -> AlignedWord:
    return AlignedWord(text, start, end, 0.9, tokens or [len(text)])


def test_closing_punctuation_joins_the_word_before_and_opening_the_word_after() -> None:
    merged = _merge_punctuation(
        [
            word(" Hello", 0, 1),
            word(",", 1, 1),
            word(" (", 1, 1),
            word("there", 1, 2),
            word(")", 2, 2),
        ]
    )
    assert [w.word for w in merged] == [" Hello,", " (there)"]
    assert merged[0].tokens == [6, 1]


def test_a_word_stretched_over_skipped_speech_is_cut_back() -> None:
    words = [
        word(" a", 0.0, 0.3),
        word(" profesor", 0.3, 4.8),
        word(" b", 4.8, 5.1),
        word(" c.", 5.1, 5.4),
    ]
    _limit_long_words(words)
    assert words[1].end_sec - words[1].start_sec <= 2 * 0.3 + 1e-9
    assert words[1].start_sec == 0.3


def test_the_last_word_of_a_sentence_is_limited_to_twice_the_median() -> None:
    words = [word(" one", 0.0, 0.3), word(" two", 0.3, 0.6), word(" day.", 0.6, 3.0)]
    _limit_long_words(words)
    assert words[-1].end_sec == 0.6 + 2 * 0.3


def test_words_the_alignment_gave_no_time_at_the_end_are_past_the_audio() -> None:
    heard = [
        word(" many", 10.1, 10.4),
        word(" requests", 10.4, 10.7),
        word(" together.", 10.7, 11.4),
    ]
    again = [word(" A", 11.84, 11.84), word(" model", 11.84, 11.84), word(" server.", 11.84, 11.84)]
    assert words_past_the_audio(heard + again) == 3
    assert words_past_the_audio(heard + again[:2]) == 2


def test_a_repeat_squeezed_into_the_last_frames_is_a_copy_to_drop() -> None:
    """The 2-voice bench file's first micro chunk: the last sentence decoded twice, the second
    time eight words without time and two on the path's last 0.16 s."""
    said = ["The", "set", "room", "had", "a", "lovely", "view", "on", "the", "sea."]
    heard = [word(f" {w}", 6.8 + 0.16 * i, 6.96 + 0.16 * i) for i, w in enumerate(said)]
    again = [word(f" {w}", 8.42, 8.42) for w in said[:-2]]
    again += [word(" the", 8.42, 8.5), word(" sea.", 8.5, 8.58)]
    assert words_past_the_audio(heard + again) == 0  # its last two words have time
    assert squeezed_copies(heard + again) == set(range(len(said), 2 * len(said)))


def test_a_repeat_said_at_speaking_pace_or_too_short_to_tell_is_kept() -> None:
    said = [word(" no", 1.0, 1.3), word(" not", 1.3, 1.6), word(" that", 1.6, 2.0)]
    again = [word(" no", 2.2, 2.5), word(" not", 2.5, 2.8), word(" that.", 2.8, 3.2)]
    assert squeezed_copies(said + again) == set()  # said twice: as long the second time
    yes = [word(" yes", 1.0, 1.2), word(" yes", 1.2, 1.24), word(" yes", 1.24, 1.28)]
    assert squeezed_copies(yes[:2]) == set()  # two words: too short a run to call a repeat
    other = [word(" a", 3.0, 3.02), word(" b", 3.02, 3.04), word(" c.", 3.04, 3.08)]
    assert squeezed_copies(said + other) == set()  # squeezed, but not a repeat


def test_one_word_without_time_or_words_without_time_before_others_are_kept() -> None:
    heard = [word(" many", 10.1, 10.4), word(" requests", 10.4, 10.7)]
    assert words_past_the_audio([*heard, word(" yes.", 10.7, 10.7)]) == 0
    squeezed = [word(" a", 9.0, 9.0), word(" b", 9.0, 9.0)]
    assert words_past_the_audio([*squeezed, *heard]) == 0
    assert words_past_the_audio(heard) == 0
    assert words_past_the_audio([]) == 0


def timed(text: str, start: float, end: float) -> list[AlignedWord]:
    """`text`'s words spread evenly over start..end."""
    said = text.split()
    step = (end - start) / len(said)
    return [word(f" {w}", start + i * step, start + (i + 1) * step) for i, w in enumerate(said)]


def test_a_passage_decoded_twice_keeps_the_copy_of_each_sentence_that_has_time() -> None:
    """scottish_7s on an AVX2-only CPU: A B decoded as A B A B, the middle B A squeezed."""
    a, b = "the concert once all-out at my ears were ringing.", "the cart slipped all day."
    words = [
        *timed(a, 0.0, 2.155),
        *timed(b, 2.155, 2.18),
        *timed(a, 2.18, 2.44),
        *timed(b, 3.68, 6.14),
    ]
    dropped = squeezed_copies(words)
    kept = [w for i, w in enumerate(words) if i not in dropped]
    assert " ".join(w.word.strip() for w in kept) == f"{a} {b}"
    assert kept[0].start_sec == 0.0 and kept[-1].end_sec == 6.14  # the copies with time
    assert words_past_the_audio(words) == 0  # not at the end: the tail rule can't see it


def test_only_squeezed_copies_of_timed_words_are_dropped() -> None:
    said = timed("no not that", 1.0, 2.0)
    assert squeezed_copies(said + timed("no not that", 2.2, 3.2)) == set()  # said twice
    assert squeezed_copies(said + timed("a b c", 3.0, 3.06)) == set()  # fast, but no repeat
    both_fast = timed("one two three", 1.0, 1.06) + timed("one two three", 1.06, 1.12)
    assert squeezed_copies(both_fast) == set()  # no copy with time to keep instead
    assert squeezed_copies(said + timed("no not", 2.0, 2.02)) == set()  # two words: too short
    assert squeezed_copies(timed("no not that", 0.0, 0.1) + said) == {0, 1, 2}
    assert squeezed_copies([]) == set()
