"""Cutting a timeline into macro chunks: an even grid, then boundaries moved into pauses.

    nominal grid ──> a search window around each inner boundary ──> the quietest point in each
                     (one `find_boundary` call per window, all at once, bounded)

`plan_spans` yields the macro chunks in timeline order, each as soon as its own end is known:
the first chunk can start while the boundaries of a 10-hour file are still being searched. The
boundary finder is injected (the orchestrator asks the chunk workers' /v1/silence; tests and
benchmarks pass their own), so the planning itself is plain code.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncGenerator, Awaitable, Callable

from shared.aio import cancel_and_wait
from shared.schemas import TimeSpan

BoundaryFinder = Callable[[float, float], Awaitable[float]]
"""(window start, window end) -> the time to cut at, inside the window."""


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


async def plan_spans(
    duration_sec: float,
    macro_chunk_sec: float,
    search_sec: float,
    find_boundary: BoundaryFinder | None,
    concurrency: int,
    after_first: Callable[[], Awaitable[object]] | None = None,
) -> AsyncGenerator[TimeSpan]:
    """The macro chunks in timeline order, each as soon as its end boundary is known.

    Boundary searches run at most `concurrency` at a time, earliest first; the ones after the
    first wait for `after_first()` (the job's first words: the first chunk gets the machine to
    itself for a moment). Without a finder (or with `search_sec` 0) the nominal grid is the
    plan. Closing the generator early cancels the searches still running.
    """
    boundaries = nominal_boundaries(duration_sec, macro_chunk_sec)
    if not boundaries or find_boundary is None or search_sec <= 0:
        for span in spans_from_boundaries(duration_sec, boundaries):
            yield span
        return
    slots = asyncio.Semaphore(concurrency)
    first_found = asyncio.Event()

    async def search(index: int, low: float, high: float) -> float:
        if index > 0:
            await first_found.wait()
            if after_first is not None:
                await after_first()
        async with slots:
            try:
                return await find_boundary(low, high)
            finally:
                first_found.set()

    windows = search_windows(boundaries, duration_sec, search_sec)
    searches = [asyncio.create_task(search(i, *window)) for i, window in enumerate(windows)]
    try:
        start = 0.0
        for task in searches:
            end = await task
            if end > start:
                yield TimeSpan(start_sec=start, end_sec=end)
                start = end
        yield TimeSpan(start_sec=start, end_sec=duration_sec)
    finally:
        await cancel_and_wait(searches)
