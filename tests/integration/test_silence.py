"""quietest_point and MicroChunker on committed speech, decoded by FFmpeg as the worker gets it:
cuts land in the manifest's pauses (synthetic signals: tests/unit/chunk_worker/test_silence.py)."""

from __future__ import annotations

import functools
import subprocess
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest

from services.chunk_worker.silence import quietest_point
from shared.schemas import SAMPLE_RATE_HZ
from tests.conftest import MEDIA_DIR, in_pause, load_manifest, pauses
from tests.support.chunking import cuts

RATE = SAMPLE_RATE_HZ


@functools.cache
def decoded(name: str) -> np.ndarray:
    """A committed file decoded whole to 16 kHz mono, as the worker would get it."""
    source = str(MEDIA_DIR / name)
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", source,
               "-ac", "1", "-ar", str(RATE), "-f", "s16le", "pipe:1"]  # fmt: skip
    pcm = subprocess.run(command, check=True, capture_output=True).stdout
    return np.frombuffer(pcm, dtype="<i2")


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
