"""Macro chunk planning: an even grid, search windows, spans."""

from __future__ import annotations

import itertools

import pytest

from services.orchestrator.planner import nominal_boundaries, search_windows, spans_from_boundaries


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
    boundaries = nominal_boundaries(40.0, 30.0)  # one boundary at 20 s
    assert search_windows(boundaries, 40.0, 5.0) == [(15.0, 25.0)]
    tight = nominal_boundaries(90.0, 30.0)  # boundaries 30, 60
    windows = search_windows(tight, 90.0, 20.0)
    assert windows == [(15.0, 45.0), (45.0, 75.0)]
    for (_, high), (low, _) in itertools.pairwise(windows):
        assert high <= low
