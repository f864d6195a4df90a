"""The diarization error rate against hand-computed cases (0.25 s collar, overlap not scored)."""

from __future__ import annotations

import pytest

from tests.support.der import diarization_error, labelled_share, named_precision

# Two speakers, a 2 s gap: scored A 0.25-9.75 (9.5 s), B 12.25-19.75 (7.5 s).
TWO = [(0.0, 10.0, "A"), (12.0, 20.0, "B")]


def test_perfect_hypothesis_scores_zero_with_any_label_names() -> None:
    result = diarization_error(TWO, [(0.0, 10.0, "spk0"), (12.0, 20.0, "spk1")])
    assert result.der == 0
    assert result.scored_sec == pytest.approx(17.0)
    assert (result.reference_speakers, result.hypothesis_speakers) == (2, 2)
    assert result.mapping == {"spk0": "A", "spk1": "B"}


def test_swapped_labels_are_mapped_not_charged() -> None:
    result = diarization_error(TWO, [(0.0, 10.0, "B"), (12.0, 20.0, "A")])
    assert result.der == 0
    assert result.mapping == {"B": "A", "A": "B"}


def test_a_missed_turn_is_missed_speech() -> None:
    reference = [*TWO, (22.0, 30.0, "A")]
    result = diarization_error(reference, [(0.0, 10.0, "x"), (22.0, 30.0, "x")])
    assert result.missed_sec == pytest.approx(7.5)
    assert result.false_alarm_sec == result.confusion_sec == 0
    assert result.scored_sec == pytest.approx(24.5)
    assert result.der == pytest.approx(7.5 / 24.5)
    assert result.hypothesis_speakers == 1


def test_speech_in_a_pause_is_a_false_alarm_and_a_speaker_too_many() -> None:
    hypothesis = [(0.0, 10.0, "x"), (10.5, 11.5, "z"), (12.0, 20.0, "y")]
    result = diarization_error(TWO, hypothesis)
    assert result.false_alarm_sec == pytest.approx(1.0)
    assert result.der == pytest.approx(1.0 / 17.0)
    assert result.hypothesis_speakers == 3


def test_a_wrong_speaker_is_confusion_after_the_best_mapping() -> None:
    # x speaks 0.25-6 of A (5.75 s), y 6-9.75 of A (3.75 s) and all of B (9.5 s): the best
    # mapping is x->A, y->B, and A's last 3.75 s are confused.
    reference = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]
    result = diarization_error(reference, [(0.0, 6.0, "x"), (6.0, 20.0, "y")])
    assert result.mapping == {"x": "A", "y": "B"}
    assert result.confusion_sec == pytest.approx(3.75)
    assert result.missed_sec == result.false_alarm_sec == 0
    assert result.der == pytest.approx(3.75 / 19.0)


def test_the_collar_forgives_a_quarter_second_either_side() -> None:
    reference = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]
    late = [(0.0, 10.2, "x"), (10.2, 20.0, "y")]
    assert diarization_error(reference, late).der == 0
    later = [(0.0, 10.5, "x"), (10.5, 20.0, "y")]
    assert diarization_error(reference, later).confusion_sec == pytest.approx(0.25)
    without_collar = diarization_error(reference, later, collar_sec=0.0)
    assert without_collar.confusion_sec == pytest.approx(0.5)
    assert without_collar.scored_sec == pytest.approx(20.0)


def test_overlapped_reference_speech_is_not_scored() -> None:
    # A and B overlap 8-10; scored: A 0.25-7.75, B 10.25-19.75.
    reference = [(0.0, 10.0, "A"), (8.0, 20.0, "B")]
    hypothesis = [(0.0, 8.0, "x"), (8.0, 20.0, "y")]
    result = diarization_error(reference, hypothesis)
    assert result.der == 0
    assert result.scored_sec == pytest.approx(17.0)
    # Scored anyway, 8.25-9.75 has two reference speakers and one hypothesis speaker.
    scored = diarization_error(reference, hypothesis, skip_overlap=False)
    assert scored.missed_sec == pytest.approx(1.5)
    assert scored.scored_sec == pytest.approx(20.0)


def test_a_label_overlapping_itself_counts_once() -> None:
    result = diarization_error(TWO, [(0.0, 6.0, "x"), (4.0, 10.0, "x"), (12.0, 20.0, "y")])
    assert result.der == 0


def test_nothing_said_and_nothing_found_is_no_error() -> None:
    assert diarization_error([], []).der == 0
    assert diarization_error([(0.0, 10.0, "A")], []).der == 1.0
    assert diarization_error([], [(0.0, 1.0, "x")]).der == float("inf")


def test_known_speaker_share_is_the_scored_speech_under_the_name() -> None:
    reference = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]
    hypothesis = [(0.0, 7.75, "Alice"), (7.75, 20.0, "C")]
    assert labelled_share(reference, hypothesis, "A", "Alice") == pytest.approx(7.5 / 9.5)
    assert labelled_share(reference, hypothesis, "B", "Alice") == 0
    with pytest.raises(ValueError, match="'Z' does not speak"):
        labelled_share(reference, hypothesis, "Z", "Alice")


def test_a_turn_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="hypothesis turn"):
        diarization_error(TWO, [(5.0, 4.0, "x")])


def test_a_name_on_everyone_is_all_recall_and_little_precision() -> None:
    reference = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]
    everyone = [(0.0, 20.0, "Alice")]
    assert labelled_share(reference, everyone, "A", "Alice") == 1.0
    assert named_precision(reference, everyone, "A", "Alice") == pytest.approx(9.5 / 19.0)
    # Alice on A's turn and 1 s of the pause before B: 9.5 of 10.5 scored seconds are A's.
    reference = [(0.0, 10.0, "A"), (12.0, 20.0, "B")]
    assert named_precision(reference, [(0.0, 11.0, "Alice")], "A", "Alice") == pytest.approx(
        9.5 / 10.25
    )
    assert named_precision(reference, everyone, "A", "Bob") == 0
