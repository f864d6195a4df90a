"""quietest_point and MicroChunker: cuts land in pauses, and never exceed the maximum."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest

from services.chunk_worker.pipeline import MicroChunker
from services.chunk_worker.silence import quietest_point
from shared.schemas import SAMPLE_RATE_HZ
from tests.conftest import MEDIA_DIR, in_pause, load_manifest, pauses

RATE = SAMPLE_RATE_HZ


def noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(int(seconds * RATE)) * 32768 * 10 ** (dbfs / 20)


def as_pcm(signal: np.ndarray) -> np.ndarray:
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


@functools.cache
def decoded(name: str) -> np.ndarray:
    """A committed file decoded whole to 16 kHz mono, as the worker would get it."""
    source = str(MEDIA_DIR / name)
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", source,
               "-ac", "1", "-ar", str(RATE), "-f", "s16le", "pipe:1"]  # fmt: skip
    pcm = subprocess.run(command, check=True, capture_output=True).stdout
    return np.frombuffer(pcm, dtype="<i2")


def cuts(samples: np.ndarray, max_sec: float, smoothing: int) -> Iterator[tuple[float, float]]:
    """(cut time, chunk start time) of every cut MicroChunker makes, fed in 4096-sample blocks."""
    chunker = MicroChunker(round(max_sec * RATE), smoothing)
    chunks = [
        chunk
        for start in range(0, len(samples), 4096)
        for chunk in chunker.feed(samples[start : start + 4096])
    ]
    chunks += list(chunker.finish())
    for chunk in chunks[:-1]:
        yield (chunk.offset_samples + len(chunk.samples)) / RATE, chunk.offset_samples / RATE


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


# -- committed speech against its manifest -----------------------------------------------------


def has_pause(low: float, high: float, manifest: dict[str, Any], min_sec: float = 0.3) -> bool:
    """Whether `[low, high]` holds at least `min_sec` of one pause."""
    return any(min(end, high) - max(start, low) >= min_sec for start, end in pauses(manifest))


def margin_to_speech(time_sec: float, manifest: dict[str, Any]) -> float:
    return min(
        min(abs(time_sec - start), abs(end - time_sec))
        for start, end in pauses(manifest)
        if start <= time_sec <= end
    )


@pytest.mark.parametrize(
    ("name", "manifest_name"),
    [
        ("speech_200s.mp3", "speech_200s.json"),
        ("speech_40s.wav", "speech_40s.json"),
        ("speech_40s.opus", "speech_40s.json"),
        ("speech_40s.faststart.m4a", "speech_40s.json"),
    ],
)
@pytest.mark.parametrize(("max_sec", "smoothing"), [(30, 3200), (20, 3200), (10, 1600), (8, 8000)])
def test_micro_cuts_of_speech_land_in_pauses(
    name: str, manifest_name: str, max_sec: float, smoothing: int
) -> None:
    """Every cut whose search window (the chunk's second half) holds a pause of >= 300 ms."""
    manifest = load_manifest(manifest_name)
    times = list(cuts(decoded(name), max_sec, smoothing))
    assert times, "the file is longer than one chunk"
    searched = 0
    for cut, chunk_start in times:
        assert cut - chunk_start <= max_sec
        if not has_pause(chunk_start + max_sec / 2, chunk_start + max_sec, manifest):
            continue  # one long sentence fills the window: any cut splits it
        searched += 1
        assert in_pause(cut, manifest), f"cut at {cut:.3f} s is inside a sentence"
        assert margin_to_speech(cut, manifest) >= 0.05, f"cut at {cut:.3f} s grazes a word"
    assert searched >= 0.8 * len(times)


def test_macro_boundaries_move_into_pauses_of_speech() -> None:
    """The /v1/silence search: a +/-5 s window around each point of a grid."""
    manifest = load_manifest("speech_200s.json")
    samples = decoded("speech_200s.mp3")
    for nominal in np.arange(10.0, 195.0, 7.3):
        low, high = round((nominal - 5) * RATE), round((nominal + 5) * RATE)
        assert has_pause(nominal - 5, nominal + 5, manifest)
        split = quietest_point(samples[low:high], 0, high - low, 3200)
        assert in_pause((low + split) / RATE, manifest), f"boundary near {nominal:.1f} s"
