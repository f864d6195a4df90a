"""Cutting a timeline into macro chunks: an even grid, then boundaries moved into pauses.

    nominal grid ──> a search window around each inner boundary ──> the quietest point in each
                     (one `find_boundary` call per window, a few at once, made as reached)

`plan_spans` yields the macro chunks in timeline order, each as soon as its own end is known:
the first chunk can start while the boundaries of a 10-hour file are still being searched. The
boundary finder is injected (the orchestrator asks the chunk workers' /v1/silence; tests and
benchmarks pass their own), so the planning itself is plain code.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable

from shared.aio import cancel_and_wait
from shared.schemas import TimeSpan

BoundaryFinder = Callable[[float, float], Awaitable[float]]
"""(window start, window end) -> the time to cut at, inside the window."""


def chunk_count(duration_sec: float, macro_chunk_sec: float) -> int:
    """Chunks of an even split into chunks no longer than `macro_chunk_sec`."""
    return max(1, math.ceil(duration_sec / macro_chunk_sec - 1e-9))


def nominal_boundaries(duration_sec: float, macro_chunk_sec: float) -> list[float]:
    """Inner boundaries of an even split into chunks no longer than `macro_chunk_sec`.

    An even split (rather than a fixed grid plus a remainder) avoids a tiny last chunk.
    """
    count = chunk_count(duration_sec, macro_chunk_sec)
    return [duration_sec * i / count for i in range(1, count)]


def search_window(
    index: int, count: int, duration_sec: float, half_width_sec: float
) -> tuple[float, float]:
    """The window around inner boundary `index` (of `count - 1`), kept clear of its
    neighbours and of the file's ends (even split: the neighbours are a chunk away)."""
    boundary = duration_sec * (index + 1) / count
    room = duration_sec / count / 2
    return boundary - min(half_width_sec, room), boundary + min(half_width_sec, room)


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
    plan. Nothing is made for the whole timeline at once: boundaries are computed as they are
    reached and a search task exists only within `2 * concurrency` boundaries ahead of the
    last span yielded, so a header that claims 1e9 s costs what 1e9 s of progress would, not
    millions of tasks up front. Closing the generator early cancels the searches running.
    """
    count = chunk_count(duration_sec, macro_chunk_sec)
    if count == 1 or find_boundary is None or search_sec <= 0:
        start = 0.0
        for index in range(1, count + 1):
            end = duration_sec * index / count if index < count else duration_sec
            yield TimeSpan(start_sec=start, end_sec=end)
            start = end
        return
    slots = asyncio.Semaphore(concurrency)
    first_found = asyncio.Event()

    async def search(index: int) -> float:
        if index > 0:
            await first_found.wait()
            if after_first is not None:
                await after_first()
        async with slots:
            try:
                return await find_boundary(*search_window(index, count, duration_sec, search_sec))
            finally:
                first_found.set()

    searches: deque[asyncio.Task[float]] = deque()
    planned = 0  # boundaries with a search task so far
    ahead = 2 * max(1, concurrency)
    try:
        start = 0.0
        while planned < count - 1 or searches:
            while planned < count - 1 and len(searches) < ahead:
                searches.append(asyncio.create_task(search(planned)))
                planned += 1
            end = await searches[0]
            searches.popleft()
            if end > start:
                yield TimeSpan(start_sec=start, end_sec=end)
                start = end
        yield TimeSpan(start_sec=start, end_sec=duration_sec)
    finally:
        await cancel_and_wait(list(searches))
