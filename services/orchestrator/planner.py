"""Cutting a timeline into macro chunks: an even grid, then boundaries moved into pauses."""

from __future__ import annotations

import itertools
import math

from shared.schemas import TimeSpan


def nominal_boundaries(duration_sec: float, macro_chunk_sec: float) -> list[float]:
    """Inner boundaries of an even split into chunks no longer than `macro_chunk_sec`.

    An even split (rather than a fixed grid plus a remainder) avoids a tiny last chunk.
    """
    count = max(1, math.ceil(duration_sec / macro_chunk_sec - 1e-9))
    return [duration_sec * i / count for i in range(1, count)]


def search_windows(
    boundaries: list[float], duration_sec: float, half_width_sec: float
) -> list[tuple[float, float]]:
    """A window around each boundary, kept clear of its neighbours and of the file's ends."""
    windows = []
    points = [0.0, *boundaries, duration_sec]
    for i, boundary in enumerate(boundaries, start=1):
        room_before = (points[i] - points[i - 1]) / 2
        room_after = (points[i + 1] - points[i]) / 2
        windows.append(
            (
                boundary - min(half_width_sec, room_before),
                boundary + min(half_width_sec, room_after),
            )
        )
    return windows


def spans_from_boundaries(duration_sec: float, boundaries: list[float]) -> list[TimeSpan]:
    points = [0.0, *sorted(boundaries), duration_sec]
    return [
        TimeSpan(start_sec=start, end_sec=end)
        for start, end in itertools.pairwise(points)
        if end > start
    ]
