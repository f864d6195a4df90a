"""Speech spans: speech found where the manifest says, none in noise, tones or silence."""

from __future__ import annotations

import numpy as np
import pytest

from shared.vad import (
    VadOptions,
    format_spans,
    parse_spans,
    spans_from_probabilities,
    speech_spans,
)
from tests.support.real_models import audio_16k, manifest


def test_spans_cover_every_sentence_and_little_else() -> None:
    audio = audio_16k("speech_40s.wav")
    sentences = manifest("speech_40s")["sentences"]
    spans = speech_spans(audio)
    for sentence in sentences:
        assert any(
            s - 0.05 <= sentence["start_sec"] and sentence["end_sec"] <= e + 0.05 for s, e in spans
        ), sentence
    speech = sum(e - s for s, e in spans)
    spoken = sum(s["end_sec"] - s["start_sec"] for s in sentences)
    assert speech < spoken * 1.4


@pytest.mark.parametrize(
    "signal",
    [
        np.zeros(16000 * 10, dtype=np.float32),
        np.random.default_rng(0).standard_normal(16000 * 10).astype(np.float32) * 0.01,
        (np.sin(np.arange(16000 * 10) * 2 * np.pi * 440 / 16000) * 0.3).astype(np.float32),
    ],
    ids=["silence", "noise", "tone"],
)
def test_no_speech_in_silence_noise_or_a_tone(signal: np.ndarray) -> None:
    assert speech_spans(signal) == []


def test_hysteresis_padding_and_merging() -> None:
    window = 512 / 16000
    probs = np.array([0.1] * 10 + [0.9] * 10 + [0.4] * 3 + [0.9] * 5 + [0.1] * 30, dtype=float)
    # 0.4 stays above the release threshold (0.35): one span, padded 0.2 s both sides.
    [(start, end)] = spans_from_probabilities(probs, 3.0, VadOptions())
    assert start == pytest.approx(10 * window - 0.2, abs=1e-3)
    assert end == pytest.approx(28 * window + 0.2, abs=1e-3)


def test_spans_travel_as_text_and_bad_text_is_refused() -> None:
    spans = [(0.12, 3.4), (4.1, 8.0)]
    assert parse_spans(format_spans(spans)) == spans
    assert parse_spans("") == []
    for bad in ("3-1", "0-2,1-3", "a-b"):
        with pytest.raises(ValueError):
            parse_spans(bad)
