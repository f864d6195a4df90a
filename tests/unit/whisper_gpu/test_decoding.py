"""Decoding rules that need no model: loops cut, quality checks, encoder output subsets."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from services.whisper_gpu.decoding import (
    Decoded,
    Decoder,
    DecodeRequest,
    compression_ratio,
    cut_repetition,
    encoded_frames,
    padded,
    select,
)
from shared.schemas import DecodeOptions


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


def test_a_window_is_encoded_at_its_own_length_plus_a_second() -> None:
    assert encoded_frames(2000, full_window=False) == 2100
    assert encoded_frames(2001, full_window=False) == 2102  # even: the encoder halves it


def test_a_short_window_is_encoded_as_ten_seconds() -> None:
    assert encoded_frames(150, full_window=False) == 1000


def test_a_window_near_thirty_seconds_is_encoded_as_thirty() -> None:
    assert encoded_frames(2950, full_window=False) == 3000
    assert encoded_frames(3000, full_window=False) == 3000


def test_full_windows_are_always_thirty_seconds() -> None:
    assert encoded_frames(150, full_window=True) == 3000


def test_features_are_padded_with_zeros_or_cut() -> None:
    mel = np.ones((80, 5), dtype=np.float32)
    assert padded(mel, 8)[:, 5:].tolist() == np.zeros((80, 3)).tolist()
    assert padded(mel, 8)[:, :5].tolist() == mel.tolist()
    assert padded(mel, 3).shape == (80, 3)


class _Detector:
    """A CTranslate2 model as `Decoder.languages` uses it: its ranked detection per window."""

    is_multilingual = True

    def __init__(self, *ranked: list[tuple[str, float]]) -> None:
        self.ranked = [[(f"<|{code}|>", p) for code, p in window] for window in ranked]

    def detect_language(self, encoder_output: object) -> list[list[tuple[str, float]]]:
        return self.ranked


def _decoder(*ranked: list[tuple[str, float]]) -> Decoder:
    return Decoder(SimpleNamespace(model=_Detector(*ranked)))


def test_a_jobs_language_is_chosen_where_the_detection_finds_it_plausible() -> None:
    """The prior (the job's language) wins at half the first choice's probability or more;
    a window's own hint (the window it continues) comes before it; a clear switch switches."""
    unsure = [("la", 0.40), ("en", 0.21), ("de", 0.2)]
    clear = [("de", 0.90), ("en", 0.04)]
    decoder = _decoder(unsure, unsure, unsure, clear)
    chosen = decoder.languages(
        None, DecodeRequest(), [None, None, "de", None], [None, "en", "en", "en"]
    )
    assert [code for code, _ in chosen] == ["la", "en", "de", "de"]
    assert chosen[1] == ("en", 0.21)  # the model's own probability, not renormalised


def test_a_prior_outside_the_allowed_languages_is_not_chosen() -> None:
    decoder = _decoder([("de", 0.5), ("en", 0.4), ("fr", 0.1)])
    request = DecodeRequest(DecodeOptions(languages=["de", "fr"]))
    assert decoder.languages(None, request, [None], ["en"]) == [("de", 0.5)]
