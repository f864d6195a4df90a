"""Where MicroChunker cuts a signal: shared by the unit tests of the cuts and the integration
tests on real audio."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from services.chunk_worker.pipeline import MicroChunker
from shared.schemas import SAMPLE_RATE_HZ as RATE


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
