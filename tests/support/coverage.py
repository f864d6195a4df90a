"""The coverage check every fault test applies to a finished job: nothing lost, nothing twice."""

from __future__ import annotations

import itertools

import pytest

from shared.schemas import TranscribeOutput


def assert_every_micro_chunk_once(output: TranscribeOutput) -> None:
    """Every micro chunk of the plan was transcribed exactly once.

    The macro chunks tile the file and their micro chunks tile each macro chunk (no stretch of
    the timeline skipped or planned twice); each micro chunk with speech came back with
    segments, and exactly as many segments lie in it as it reports (none lost, none repeated
    by a retry); the segments are in order and never overlap.
    """
    duration = output.input_duration_sec
    macros = output.macro_chunks
    assert macros, "no plan reported"
    assert macros[0].start_sec == 0
    assert macros[-1].end_sec == pytest.approx(duration, abs=0.05)
    for macro, following in itertools.pairwise(macros):
        assert macro.end_sec == pytest.approx(following.start_sec, abs=1e-6)
    for macro in macros:
        micros = macro.micro_chunks
        assert micros, f"macro chunk {macro.start_sec}-{macro.end_sec} has no micro chunks"
        assert micros[0].start_sec == pytest.approx(macro.start_sec, abs=1e-6)
        assert micros[-1].end_sec == pytest.approx(macro.end_sec, abs=0.05)
        for micro, following_micro in itertools.pairwise(micros):
            assert micro.end_sec == pytest.approx(following_micro.start_sec, abs=1e-6)
        for micro in micros:
            inside = [
                s
                for s in output.segments
                if micro.start_sec <= (s.start_time_sec + s.end_time_sec) / 2 < micro.end_sec
            ]
            where = f"micro chunk {micro.start_sec:.2f}-{micro.end_sec:.2f}"
            assert len(inside) == micro.num_segments, f"{where}: {len(inside)} segments"
            if micro.speech_sec:
                assert micro.num_segments >= 1, f"{where} has speech but no segment"
    reported = sum(m.num_segments for macro in macros for m in macro.micro_chunks)
    assert reported == len(output.segments)
    for segment, following_segment in itertools.pairwise(output.segments):
        assert segment.end_time_sec <= following_segment.start_time_sec + 1e-6
