"""quietest_point and MicroChunker on synthetic signals: cuts land in the pause, and never exceed
the maximum (on committed speech, decoded by FFmpeg: tests/integration/test_silence.py)."""

from __future__ import annotations

import numpy as np
import pytest

from services.chunk_worker.silence import quietest_point
from shared.schemas import SAMPLE_RATE_HZ
from tests.support.chunking import cuts

RATE = SAMPLE_RATE_HZ


def noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(int(seconds * RATE)) * 32768 * 10 ** (dbfs / 20)


def as_pcm(signal: np.ndarray) -> np.ndarray:
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


# -- synthetic signals -------------------------------------------------------------------------


def test_cut_lands_in_the_middle_of_the_only_gap() -> None:
    signal = noise(10, -20)
    signal[int(6.0 * RATE) : int(6.8 * RATE)] = noise(0.8, -60, seed=1)
    cut = quietest_point(as_pcm(signal), 5 * RATE, 10 * RATE, 3200)
    assert 6.3 * RATE <= cut <= 6.5 * RATE


def test_widest_quiet_run_wins_over_a_narrow_one() -> None:
    signal = noise(10, -20)
    signal[int(5.5 * RATE) : int(5.9 * RATE)] = noise(0.4, -60, seed=1)  # narrow gap
    signal[int(8.0 * RATE) : int(9.5 * RATE)] = noise(1.5, -60, seed=2)  # wide gap
    cut = quietest_point(as_pcm(signal), 5 * RATE, 10 * RATE, 3200)
    assert 8.5 * RATE <= cut <= 9.0 * RATE


def test_digital_silence_is_quieter_than_a_noise_floor() -> None:
    signal = noise(10, -50)
    signal[int(7.0 * RATE) : int(7.5 * RATE)] = 0.0
    cut = quietest_point(as_pcm(signal), 5 * RATE, 10 * RATE, 1600)
    assert 7.05 * RATE <= cut <= 7.45 * RATE


def test_cut_stays_inside_the_search_range_without_any_pause() -> None:
    t = np.arange(10 * RATE) / RATE
    music = 8000 * np.sin(2 * np.pi * 220 * t) * (1.1 + np.sin(2 * np.pi * 0.37 * t))
    cut = quietest_point(as_pcm(music + noise(10, -30)), 5 * RATE, 10 * RATE, 3200)
    assert 5 * RATE <= cut <= 10 * RATE


@pytest.mark.parametrize(
    ("length", "start", "end", "expected"),
    [
        (1000, 100, 900, 500),  # shorter than the window: the middle
        (1000, -50, 5000, 500),  # clamped to the samples
        (1000, 4000, 5000, 1000),  # entirely past the end: the end, never beyond it
    ],
)
def test_short_or_out_of_range_spans_are_clamped(
    length: int, start: int, end: int, expected: int
) -> None:
    assert quietest_point(np.zeros(length, dtype=np.int16), start, end, 3200) == expected


@pytest.mark.parametrize("kind", ["white noise", "music"])
def test_audio_without_pauses_is_cut_between_half_and_the_maximum(kind: str) -> None:
    t = np.arange(130 * RATE) / RATE
    if kind == "music":
        signal = 6000 * np.sin(2 * np.pi * (200 + 50 * np.sin(t)) * t) + noise(130, -35)
    else:
        signal = noise(130, -15)
    times = list(cuts(as_pcm(signal), max_sec=20, smoothing=3200))
    assert len(times) >= 6
    for cut, chunk_start in times:
        assert 10 - 0.01 <= cut - chunk_start <= 20
