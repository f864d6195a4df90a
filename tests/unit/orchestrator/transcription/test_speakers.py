"""A job's speakers in the orchestrator: provisional labels while it streams, the map from
them to the final labels, and final segments labelled again from their words."""

from __future__ import annotations

import numpy as np

from services.orchestrator.transcription.speakers import JobSpeakers, timeline_of
from shared.schemas import (
    ChunkSegment,
    LocalSpeaker,
    MicroChunkReport,
    MicroChunkResult,
    TimeSpan,
    TranscribeParams,
)


def voice(*turns: tuple[float, float]) -> LocalSpeaker:
    return LocalSpeaker(turns=[TimeSpan(start_sec=s, end_sec=e) for s, e in turns])


def test_a_timeline_lists_every_turn_in_order_with_its_voices_label() -> None:
    timeline = timeline_of([voice((5, 6), (0, 2)), voice((2, 5))], ["B", "A"])
    assert timeline.turns == [(0, 2, "B"), (2, 5, "A"), (5, 6, "B")]
    assert timeline.speakers == ["B", "A"]


def conversation() -> list[MicroChunkResult]:
    """Six micro chunks of two voices taking turns (embeddings near two directions)."""
    rng = np.random.default_rng(5)
    directions = rng.normal(size=(2, 192))
    results = []
    for index in range(6):
        start = index * 30.0
        voices = []
        for who, (s, e) in enumerate(((start, start + 14), (start + 15, start + 29))):
            vector = directions[(who + index // 3) % 2] + rng.normal(scale=0.3, size=192)
            embedding = (vector / np.linalg.norm(vector)).round(4).tolist()
            voices.append(
                LocalSpeaker(turns=[TimeSpan(start_sec=s, end_sec=e)], embedding=embedding)
            )
        segments = [
            ChunkSegment(start_sec=s, end_sec=e, text="words", language="en")
            for s, e in ((start + 1, start + 13), (start + 16, start + 28))
        ]
        report = MicroChunkReport(start_sec=start, end_sec=start + 30, num_segments=2)
        results.append(MicroChunkResult(micro_chunk=report, segments=segments, speakers=voices))
    return results


def test_a_resumed_job_gives_the_same_labels_from_its_stored_micro_chunks() -> None:
    """A job taken up after a restart replays its micro chunk results from the job table (as
    JSON): its streamed labels, final map and final segments are the first run's."""
    first, resumed = (
        JobSpeakers(TranscribeParams(diarize=True)),
        JobSpeakers(TranscribeParams(diarize=True)),
    )
    streamed = [first.label(result) for result in conversation()]
    replayed = [
        resumed.label(MicroChunkResult.model_validate_json(result.model_dump_json()))
        for result in conversation()
    ]
    assert streamed == replayed
    assert first.finish() == resumed.finish()


def test_final_labels_follow_the_voices_not_the_provisional_order() -> None:
    """The voices swap places at the fourth micro chunk: the final segments follow the voice."""
    speakers = JobSpeakers(TranscribeParams(diarize=True))
    for result in conversation():
        speakers.label(result)
    final = speakers.finish()
    labels = [segment.speaker for segment in final.segments]
    assert final.speaker_map.speakers == ["A", "B"]
    assert labels == ["A", "B"] * 3 + ["B", "A"] * 3
    assert set(final.speaker_map.labels.values()) == {"A", "B"}
