"""16 kHz mono PCM <-> WAV bytes: how audio crosses the worker -> model server hop."""

from __future__ import annotations

import io
import wave

import numpy as np

from shared.schemas import SAMPLE_RATE_HZ


def pcm16_to_wav(samples: np.ndarray, sample_rate: int = SAMPLE_RATE_HZ) -> bytes:
    """Wrap mono int16 samples in a WAV container (44-byte header, no copy of the format)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
    return buffer.getvalue()


def read_pcm16_wav(data: bytes) -> np.ndarray | None:
    """Mono float32 in [-1, 1] if `data` is a 16 kHz PCM16 WAV (the fast path), else None."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            if reader.getsampwidth() != 2 or reader.getframerate() != SAMPLE_RATE_HZ:
                return None
            channels = reader.getnchannels()
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError):
        return None
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(axis=1)
    return samples
