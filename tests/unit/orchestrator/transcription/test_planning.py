"""Macro chunk planning: an even grid, search windows, spans, and spans as boundaries arrive."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from services.orchestrator.transcription.planning import (
    nominal_boundaries,
    plan_spans,
    search_window,
    spans_from_boundaries,
)


def test_short_file_is_one_chunk() -> None:
    assert nominal_boundaries(10.0, 300.0) == []
    assert spans_from_boundaries(10.0, [])[0].model_dump() == {"start_sec": 0.0, "end_sec": 10.0}


def test_even_split_has_no_tiny_last_chunk() -> None:
    boundaries = nominal_boundaries(610.0, 300.0)
    assert len(boundaries) == 2  # three chunks of 203.3 s, not 300 + 300 + 10
    lengths = [s.end_sec - s.start_sec for s in spans_from_boundaries(610.0, boundaries)]
    assert lengths == pytest.approx([610 / 3] * 3)
    assert max(lengths) <= 300.0


def test_exact_multiple_does_not_add_an_empty_chunk() -> None:
    assert len(nominal_boundaries(600.0, 300.0)) == 1


def test_spans_tile_the_timeline() -> None:
    spans = spans_from_boundaries(36_000.0, nominal_boundaries(36_000.0, 300.0))
    assert len(spans) == 120
    assert spans[0].start_sec == 0.0 and spans[-1].end_sec == 36_000.0
    for left, right in itertools.pairwise(spans):
        assert left.end_sec == right.start_sec


def test_search_windows_stay_clear_of_neighbours_and_ends() -> None:
    assert nominal_boundaries(40.0, 30.0) == [20.0]
    assert search_window(0, 2, 40.0, 5.0) == (15.0, 25.0)
    assert nominal_boundaries(90.0, 30.0) == [30.0, 60.0]
    windows = [search_window(i, 3, 90.0, 20.0) for i in range(2)]
    assert windows == [(15.0, 45.0), (45.0, 75.0)]
    for (_, high), (low, _) in itertools.pairwise(windows):
        assert high <= low


async def test_the_first_span_comes_before_later_boundaries_are_found() -> None:
    """A 2-hour plan: chunk 0 may start once its own end is known, not the 23rd boundary."""
    found: list[float] = []
    later = asyncio.Event()  # the later boundaries are found only once the first span is out

    async def find(low: float, high: float) -> float:
        if low >= 400:
            await later.wait()
        found.append(low)
        return (low + high) / 2

    spans = plan_spans(7200.0, 300.0, 5.0, find, concurrency=32)
    first = await asyncio.wait_for(anext(spans), timeout=5)  # a planner waiting for all hangs
    assert found and all(low < 400 for low in found)
    later.set()
    assert first.start_sec == 0 and first.end_sec == pytest.approx(300.0)
    rest = [span async for span in spans]
    assert len(rest) == 23 and rest[-1].end_sec == 7200.0
    for left, right in itertools.pairwise([first, *rest]):
        assert left.end_sec == right.start_sec


async def test_without_a_finder_the_plan_is_the_nominal_grid() -> None:
    spans = [span async for span in plan_spans(610.0, 300.0, 5.0, None, concurrency=4)]
    assert spans == spans_from_boundaries(610.0, nominal_boundaries(610.0, 300.0))


async def test_closing_the_plan_early_cancels_the_searches() -> None:
    cancelled = 0

    async def find(low: float, high: float) -> float:
        nonlocal cancelled
        try:
            await asyncio.sleep(0 if low < 400 else 10)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return low

    spans = plan_spans(3000.0, 300.0, 5.0, find, concurrency=4)
    await anext(spans)
    await spans.aclose()
    assert cancelled == 4  # the searches in flight when the client left


async def test_a_plan_for_a_claimed_billion_seconds_makes_a_few_tasks_not_millions() -> None:
    """A forged header (1e9 s: 3.3 million macro chunks) once made every boundary search up
    front; the plan makes them as it reaches them, a few ahead, whatever the duration."""
    in_flight = 0
    most = 0
    searched = 0

    async def find(low: float, high: float) -> float:
        nonlocal in_flight, most, searched
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        searched += 1
        return (low + high) / 2

    tasks_before = len(asyncio.all_tasks())
    started = time.monotonic()
    spans = plan_spans(1e9, 300.0, 5.0, find, concurrency=2)
    for _ in range(20):
        span = await anext(spans)
        assert len(asyncio.all_tasks()) - tasks_before <= 4  # 2 * concurrency search tasks
    await spans.aclose()
    assert span.start_sec == pytest.approx(19 * 300.0, abs=5) and most <= 2
    assert searched <= 20 + 4
    assert time.monotonic() - started < 2


async def test_a_grid_plan_for_a_claimed_billion_seconds_is_lazy_too() -> None:
    spans = plan_spans(1e9, 300.0, 0.0, None, concurrency=2)
    first = await anext(spans)
    assert first.start_sec == 0 and first.end_sec == pytest.approx(300.0, abs=1e-3)
    await spans.aclose()
