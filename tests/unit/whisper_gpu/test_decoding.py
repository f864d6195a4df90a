"""Decoding rules that need no model: loops cut, quality checks, encoder output subsets."""

from __future__ import annotations

import numpy as np

from services.whisper_gpu.decoding import Decoded, compression_ratio, cut_repetition, select


def test_a_phrase_looping_three_times_is_kept_once() -> None:
    loop = [5, 6, 7]
    assert cut_repetition([1, 2, *loop, *loop, *loop, *loop, 9]) == [1, 2, *loop]


def test_a_single_token_needs_five_repeats_to_count_as_a_loop() -> None:
    assert cut_repetition([1, 4, 4, 4, 4, 2]) == [1, 4, 4, 4, 4, 2]
    assert cut_repetition([1, 4, 4, 4, 4, 4, 4]) == [1, 4]


def test_ordinary_text_is_left_alone() -> None:
    tokens = list(range(100))
    assert cut_repetition(tokens) == tokens


def test_repetitive_text_compresses_well() -> None:
    assert compression_ratio("thank you " * 30) > 2.4
    assert compression_ratio("The quick brown fox jumps over the lazy dog.") < 2.4
    assert compression_ratio("") == 0.0


def test_silence_and_failed_quality_are_told_apart() -> None:
    def decoded(logprob: float, no_speech: float, ratio: float = 1.5) -> Decoded:
        return Decoded("en", 1.0, [1], logprob, ratio, no_speech)

    assert decoded(-1.5, 0.9).is_silence and not decoded(-1.5, 0.9).needs_fallback
    assert decoded(-1.5, 0.1).needs_fallback  # unlikely text, not silence
    assert decoded(-0.3, 0.1, ratio=3.0).needs_fallback  # a loop
    assert not decoded(-0.3, 0.9).is_silence  # confident text despite the no-speech score


def test_selecting_windows_of_a_batch_keeps_their_rows() -> None:
    import ctranslate2

    rows = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)
    view = ctranslate2.StorageView.from_array(rows)
    assert select(view, [0, 1, 2, 3]) is view
    assert np.array_equal(np.asarray(select(view, [1, 3])), rows[[1, 3]])
