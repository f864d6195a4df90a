"""Finding the quietest instant in a stretch of PCM: where a cut can't split a word."""

from __future__ import annotations

import numpy as np

HOP_SAMPLES = 160  # 10 ms at 16 kHz
NEAR_MINIMUM_DB = 1.0


def quietest_point(samples: np.ndarray, start: int, end: int, window: int) -> int:
    """Sample index in `[start, end)` at the centre of the quietest stretch.

    The signal's power is smoothed over `window` samples on 10 ms hops; among the windows within
    1 dB of the quietest one, the widest contiguous run wins and its centre is returned. Taking
    the centre of the widest run (not the single minimum) puts the cut in the middle of a pause
    instead of at its edge, next to a word. Audio without pauses still gets a cut in the range.
    """
    end = min(len(samples), end)
    start = min(max(0, start), end)
    if end - start <= window:
        return (start + end) // 2
    span = samples[start:end].astype(np.float64)
    cumulative = np.concatenate(([0.0], np.cumsum(span * span)))
    offsets = np.arange(0, len(span) - window + 1, HOP_SAMPLES)
    power = (cumulative[offsets + window] - cumulative[offsets]) / window
    level_db = 10.0 * np.log10(power + 1e-9)
    quiet = level_db <= level_db.min() + NEAR_MINIMUM_DB
    first, last = _widest_run(quiet)
    centre = (offsets[first] + offsets[last] + window) // 2
    return start + int(centre)


def _widest_run(mask: np.ndarray) -> tuple[int, int]:
    """First and last index of the longest run of True values (the earliest on ties)."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    run_starts, run_ends = edges[0::2], edges[1::2]
    best = int(np.argmax(run_ends - run_starts))
    return int(run_starts[best]), int(run_ends[best]) - 1
