"""Where to cut a stretch of PCM so that no word is split.

- `quietest_point`: the centre of the quietest stretch (macro chunk boundaries).
- `latest_pause`: the centre of the last real pause (micro chunks): Whisper transcribes a
  window better the more context it has, so a micro chunk should be as long as it may be, and
  end in a pause rather than at the single quietest instant, which may lie early in the range.
"""

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
    offsets, level_db = _levels(samples[start:end], window)
    quiet = level_db <= level_db.min() + NEAR_MINIMUM_DB
    first, last = _widest_run(quiet)
    centre = (offsets[first] + offsets[last] + window) // 2
    return start + int(centre)


PAUSE_DB = 6.0
MIN_PAUSE_SEC = 0.3


def latest_pause(samples: np.ndarray, start: int, end: int, window: int) -> int:
    """Sample index in `[start, end)` at the centre of the last pause of at least 0.3 s.

    A pause is a stretch whose level, in 10 ms windows, stays within 6 dB of the range's
    quietest 10 ms for at least 0.3 s: short enough windows that no gap inside a word passes
    for one. Without any such pause this is `quietest_point` (with the caller's smoothing).
    """
    end = min(len(samples), end)
    start = min(max(0, start), end)
    if end - start <= window:
        return quietest_point(samples, start, end, window)
    offsets, level_db = _levels(samples[start:end], HOP_SAMPLES)
    quiet = level_db <= level_db.min() + PAUSE_DB
    min_windows = round(MIN_PAUSE_SEC * 16000 / HOP_SAMPLES)
    pauses = [(first, last) for first, last in _runs(quiet) if last - first + 1 >= min_windows]
    if not pauses:
        return quietest_point(samples, start, end, window)
    first, last = pauses[-1]
    return start + int((offsets[first] + offsets[last] + HOP_SAMPLES) // 2)


def _levels(span: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Window offsets (10 ms hops) and the smoothed power at each, in dB."""
    span = span.astype(np.float64)
    cumulative = np.concatenate(([0.0], np.cumsum(span * span)))
    offsets = np.arange(0, len(span) - window + 1, HOP_SAMPLES)
    power = (cumulative[offsets + window] - cumulative[offsets]) / window
    return offsets, 10.0 * np.log10(power + 1e-9)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of True values, in order."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[0::2], edges[1::2], strict=True)]


def _widest_run(mask: np.ndarray) -> tuple[int, int]:
    """First and last index of the longest run of True values (the earliest on ties)."""
    runs = _runs(mask)
    return max(runs, key=lambda run: run[1] - run[0])  # max() keeps the earliest on ties
