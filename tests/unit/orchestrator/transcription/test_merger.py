"""The ordered merger: pure bookkeeping from chunk results to events in timeline order."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from services.orchestrator.transcription.merger import OrderedMerger
from shared.schemas import (
    ChunkSegment,
    MacroChunkReport,
    MicroChunkReport,
    MicroChunkResult,
    StreamProgress,
    TimeSpan,
)


def result(
    start: float, end: float, language: str = "en", *, incomplete: bool = False
) -> MicroChunkResult:
    segment = ChunkSegment(start_sec=start, end_sec=end, text=f"{start:g}", language=language)
    report = MicroChunkReport(start_sec=start, end_sec=end, num_segments=1, incomplete=incomplete)
    return MicroChunkResult(micro_chunk=report, segments=[segment])


def starts(events: Sequence[object]) -> list[float]:
    return [e.start_sec for e in events if isinstance(e, ChunkSegment)]


def merger(*bounds: float) -> OrderedMerger:
    merged = OrderedMerger(bounds[-1])
    for start, end in itertools.pairwise(bounds):
        merged.add_chunk(TimeSpan(start_sec=start, end_sec=end))
    return merged


def test_later_chunks_wait_for_earlier_ones() -> None:
    m = merger(0, 10, 20)
    assert starts(m.push(1, result(10, 15))) == []  # chunk 0 has not finished
    assert starts(m.push(0, result(0, 5))) == [0]  # the head is released at once
    events = m.finish(0)
    assert starts(events) == [10]  # chunk 1's buffered result follows
    assert [e.start_sec for e in events if isinstance(e, MacroChunkReport)] == [0]
    m.push(1, result(15, 20))
    m.finish(1)
    assert not m.done  # the plan may still grow
    assert m.plan_complete() == [] and m.done
    assert m.segments == 3 and list(m.languages) == ["en"]


def test_every_result_reports_progress_even_when_nothing_is_released() -> None:
    m = merger(0, 10, 20)
    [progress] = m.push(1, result(10, 20))
    assert isinstance(progress, StreamProgress)
    assert (progress.done_sec, progress.total_sec, progress.segments) == (10, 20, 0)


def test_a_chunk_report_lists_its_micro_chunks_and_releases_it() -> None:
    m = merger(0, 10)
    m.push(0, result(0, 4))
    m.push(0, result(4, 10))
    [report] = [e for e in m.finish(0) if isinstance(e, MacroChunkReport)]
    assert [(c.start_sec, c.end_sec) for c in report.micro_chunks] == [(0, 4), (4, 10)]


def test_languages_are_listed_in_order_of_first_appearance() -> None:
    m = merger(0, 10)
    m.push(0, result(0, 3, "de"))
    m.push(0, result(3, 6, "en"))
    m.push(0, result(6, 10, "de"))
    assert list(m.languages) == ["de", "en"]


def test_incomplete_clips_are_counted_and_stay_marked_in_their_report() -> None:
    m = merger(0, 10)
    m.push(0, result(0, 4, incomplete=True))
    m.push(0, result(4, 10))
    [report] = [e for e in m.finish(0) if isinstance(e, MacroChunkReport)]
    assert [c.incomplete for c in report.micro_chunks] == [True, False]
    assert m.incomplete_clips == 1


def test_misuse_is_refused() -> None:
    m = merger(0, 10)
    m.finish(0)
    with pytest.raises(RuntimeError):
        m.push(0, result(0, 5))
    m.plan_complete()
    with pytest.raises(RuntimeError):
        m.add_chunk(TimeSpan(start_sec=10, end_sec=20))


def test_results_are_relabelled_in_timeline_order_whatever_order_chunks_finish_in() -> None:
    """Diarization's provisional labels go to voices in order of first speech: the relabel
    hook must see results in timeline order, not arrival order."""
    seen: list[float] = []

    def relabel(result: MicroChunkResult) -> list[ChunkSegment]:
        seen.append(result.micro_chunk.start_sec)
        return [s.model_copy(update={"speaker": "A"}) for s in result.segments]

    m = OrderedMerger(20, relabel)
    m.add_chunk(TimeSpan(start_sec=0, end_sec=10))
    m.add_chunk(TimeSpan(start_sec=10, end_sec=20))
    events = m.push(1, result(10, 15)) + m.push(0, result(0, 5)) + m.finish(0) + m.finish(1)
    assert seen == [0, 10]
    assert [s.speaker for s in events if isinstance(s, ChunkSegment)] == ["A", "A"]
