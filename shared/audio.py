"""16 kHz mono PCM <-> WAV bytes: how audio crosses the worker -> model server hop; any other
clip a model server is sent is decoded held to its sniffed container (`decode_clip_bytes`)."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator

import av
import numpy as np

from shared.containers import pyav_options, sniff_bytes
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


def decode_clip_bytes(data: bytes, subject: str = "the clip") -> np.ndarray:
    """Audio bytes in any container `shared.containers` allows, as 16 kHz mono float32. PyAV
    is held to the sniffed demuxer and opens nothing the data names (an `ffconcat` body would
    otherwise make it read the server's own files); 415 for anything else, calling the bytes
    `subject`."""
    container = sniff_bytes(data, subject)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)
    pieces: list[np.ndarray] = []
    with av.open(
        io.BytesIO(data), mode="r", metadata_errors="ignore", **pyav_options(container)
    ) as media:
        for frame in _valid_frames(media.decode(audio=0)):
            frame.pts = None  # resampled as one stream: no timestamp checks
            pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
        pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(pieces).astype(np.float32) / 32768.0


def _valid_frames(frames: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    """Skip frames FFmpeg can't decode (a damaged packet), as faster-whisper does."""
    while True:
        try:
            yield next(frames)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue
