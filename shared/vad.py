"""Where the speech is: Silero VAD (the ONNX model faster-whisper ships) turned into time spans.

Whisper invents words for audio without speech and places timestamps poorly after long
silences, so the stack asks the VAD first: the chunk worker sends only micro chunks that hold
speech, trimmed to it, and tells the model server where the speech is (`SPEECH_HEADER`); the
model server checks that every stretch of speech came back as words.

The model scores 32 ms windows (512 samples at 16 kHz); a span starts where the score reaches
`threshold` and ends once it stays below `threshold - 0.15` for `min_silence_sec` (hysteresis,
as Silero's own `get_speech_timestamps`), then every span is padded and overlaps are merged.
Only the model loader comes from faster-whisper (pinned in pyproject); the span logic is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.schemas import SAMPLE_RATE_HZ

WINDOW_SAMPLES = 512
WINDOW_SEC = WINDOW_SAMPLES / SAMPLE_RATE_HZ


@dataclass(frozen=True)
class VadOptions:
    threshold: float = 0.5
    """Speech probability that starts a span."""
    min_silence_sec: float = 0.25
    """Quiet this long ends a span (shorter gaps stay inside it)."""
    min_speech_sec: float = 0.1
    """Spans shorter than this (clicks, breaths) are dropped."""
    pad_sec: float = 0.2
    """Added to both ends of every span: the VAD trims soft onsets and word endings."""


Span = tuple[float, float]
"""(start, end) in seconds from the start of the audio."""


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Probability of speech for each 32 ms window of 16 kHz mono audio."""
    from faster_whisper.vad import get_vad_model  # onnxruntime loads on first use only

    if len(audio) == 0:
        return np.zeros(0, dtype=np.float32)
    padded = np.pad(audio.astype(np.float32), (0, -len(audio) % WINDOW_SAMPLES))
    return np.asarray(get_vad_model()(padded), dtype=np.float32).reshape(-1)


def speech_spans(audio: np.ndarray, options: VadOptions | None = None) -> list[Span]:
    """The stretches of `audio` (16 kHz mono) that hold speech, padded and merged."""
    options = options or VadOptions()
    return spans_from_probabilities(
        speech_probabilities(audio), len(audio) / SAMPLE_RATE_HZ, options
    )


def spans_from_probabilities(
    probabilities: np.ndarray, duration_sec: float, options: VadOptions
) -> list[Span]:
    release = max(options.threshold - 0.15, 0.01)
    quiet_windows_to_end = max(1, round(options.min_silence_sec / WINDOW_SEC))
    raw: list[tuple[int, int]] = []
    start: int | None = None
    last_loud = 0
    for index, probability in enumerate(probabilities):
        if start is None:
            if probability >= options.threshold:
                start, last_loud = index, index
            continue
        if probability >= release:
            last_loud = index
        elif index - last_loud >= quiet_windows_to_end:
            raw.append((start, last_loud + 1))
            start = None
    if start is not None:
        raw.append((start, last_loud + 1))
    spans: list[Span] = []
    for first, end in raw:
        if (end - first) * WINDOW_SEC < options.min_speech_sec:
            continue
        span = (
            round(max(0.0, first * WINDOW_SEC - options.pad_sec), 3),
            round(min(duration_sec, end * WINDOW_SEC + options.pad_sec), 3),
        )
        if spans and span[0] <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], span[1]))
        else:
            spans.append(span)
    return spans


def speech_seconds(spans: list[Span]) -> float:
    return sum(end - start for start, end in spans)


def format_spans(spans: list[Span]) -> str:
    """`0.120-3.400,4.100-8.000`: how spans travel in `SPEECH_HEADER`."""
    return ",".join(f"{start:.3f}-{end:.3f}" for start, end in spans)


def parse_spans(text: str) -> list[Span]:
    """The inverse of `format_spans`; raises ValueError on anything else."""
    spans: list[Span] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        start_text, _, end_text = item.partition("-")
        start, end = float(start_text), float(end_text)
        if not (0 <= start <= end) or (spans and start < spans[-1][1]):
            raise ValueError(
                f"speech spans must be ordered, non-overlapping start-end pairs: {item!r}"
            )
        spans.append((start, end))
    return spans
