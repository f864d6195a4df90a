"""A job's speakers in the orchestrator: provisional labels while it streams, the map from
them to the final labels, and final segments labelled again from their words."""

from __future__ import annotations

from shared.schemas import LocalSpeaker, TimeSpan
from services.orchestrator.speakers import map_labels, timeline_of


def voice(*turns: tuple[float, float]) -> LocalSpeaker:
    return LocalSpeaker(turns=[TimeSpan(start_sec=s, end_sec=e) for s, e in turns])


def test_a_timeline_lists_every_turn_in_order_with_its_voices_label() -> None:
    timeline = timeline_of([voice((5, 6), (0, 2)), voice((2, 5))], ["B", "A"])
    assert timeline.turns == [(0, 2, "B"), (2, 5, "A"), (5, 6, "B")]
    assert timeline.speakers == ["B", "A"]


def test_each_provisional_label_maps_to_the_final_label_holding_most_of_its_speech() -> None:
    provisional = timeline_of(
        [voice((0, 10)), voice((10, 12)), voice((12, 30)), voice((30, 31))], ["A", "B", "C", "D"]
    )
    # The clustering found C to be A's voice, and split A's first turn at 9 s.
    final = timeline_of(
        [voice((0, 9), (12, 30)), voice((9, 10), (10, 12)), voice((30, 31))], ["A", "B", "C"]
    )
    assert map_labels(provisional, final) == {"A": "A", "B": "B", "C": "A", "D": "C"}


def test_mapping_many_turns_takes_one_sweep_not_one_pass_per_turn() -> None:
    """10 h of speech is tens of thousands of turns: quadratic would take minutes."""
    turns = [(float(i), i + 0.9) for i in range(40_000)]
    provisional = timeline_of([voice(*turns[0::2]), voice(*turns[1::2])], ["A", "B"])
    final = timeline_of([voice(*turns[1::2]), voice(*turns[0::2])], ["A", "B"])
    assert map_labels(provisional, final) == {"A": "B", "B": "A"}
