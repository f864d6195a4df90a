"""A job's speakers in the orchestrator: provisional labels while it streams, the map from
them to the final labels, and final segments labelled again from their words."""

from __future__ import annotations

from services.orchestrator.speakers import timeline_of
from shared.schemas import LocalSpeaker, TimeSpan


def voice(*turns: tuple[float, float]) -> LocalSpeaker:
    return LocalSpeaker(turns=[TimeSpan(start_sec=s, end_sec=e) for s, e in turns])


def test_a_timeline_lists_every_turn_in_order_with_its_voices_label() -> None:
    timeline = timeline_of([voice((5, 6), (0, 2)), voice((2, 5))], ["B", "A"])
    assert timeline.turns == [(0, 2, "B"), (2, 5, "A"), (5, 6, "B")]
    assert timeline.speakers == ["B", "A"]
