"""Global clustering of local speakers, on synthetic embeddings: one random direction per
voice plus noise (same voice: cosine ~0.9; different voices: ~0)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from shared.diarization.clustering import (
    ClusteringOptions,
    KnownSpeaker,
    ProvisionalLabels,
    SpeakerConstraints,
    SpeakerTimeline,
    adapted_threshold,
    cluster_speakers,
    cosine_distances,
    letter_labels,
)
from shared.schemas import EMBEDDING_DIM, LocalSpeaker, TimeSpan

RNG = np.random.default_rng(7)
VOICES = RNG.standard_normal((6, EMBEDDING_DIM)).astype(np.float32)


def embedding(voice: int, noise: float = 0.3, rng: np.random.Generator = RNG) -> list[float]:
    base = VOICES[voice] / np.linalg.norm(VOICES[voice])
    vector = base + rng.standard_normal(EMBEDDING_DIM) * noise / np.sqrt(EMBEDDING_DIM)
    return [float(x) for x in vector / np.linalg.norm(vector)]


def speaker(
    turns: list[tuple[float, float]], voice: int | None, noise: float = 0.3
) -> LocalSpeaker:
    return LocalSpeaker(
        turns=[TimeSpan(start_sec=a, end_sec=b) for a, b in turns],
        embedding=None if voice is None else embedding(voice, noise),
    )


def conversation(voices: list[int], windows: int = 12) -> tuple[list[LocalSpeaker], list[int]]:
    """Windows of 10 s; in each, the window's voice speaks 0-6 s, the next one 6.5-9.5 s."""
    local, truth = [], []
    for w in range(windows):
        first, second = voices[w % len(voices)], voices[(w + 1) % len(voices)]
        local.append(speaker([(10 * w, 10 * w + 6)], first))
        local.append(speaker([(10 * w + 6.5, 10 * w + 9.5)], second))
        truth += [first, second]
    return local, truth


def labels_of(timeline: SpeakerTimeline) -> list[str]:
    return timeline.local_labels


def consistent(labels: list[str], truth: list[int]) -> bool:
    """The labels are a renaming of the truth (one label per voice, one voice per label)."""
    return len(set(zip(labels, truth, strict=True))) == len(set(labels)) == len(set(truth))


def test_two_voices_over_many_windows_get_two_labels_in_order_of_first_speech() -> None:
    local, truth = conversation([3, 1])
    timeline = cluster_speakers(local, SpeakerConstraints())
    assert timeline.speakers == ["A", "B"]
    assert consistent(labels_of(timeline), truth)
    assert labels_of(timeline)[0] == "A"  # voice 3 speaks first


def test_four_voices_get_four_labels() -> None:
    local, truth = conversation([0, 1, 2, 3], windows=16)
    timeline = cluster_speakers(local, SpeakerConstraints())
    assert timeline.speakers == ["A", "B", "C", "D"]
    assert consistent(labels_of(timeline), truth)


def test_average_linkage_finds_the_same_voices() -> None:
    local, truth = conversation([0, 1, 2, 3], windows=16)
    options = ClusteringOptions(method="average", threshold=0.3)
    timeline = cluster_speakers(local, SpeakerConstraints(), options=options)
    assert consistent(labels_of(timeline), truth)


def test_num_speakers_forces_the_count_both_ways() -> None:
    local, truth = conversation([0, 1, 2], windows=12)
    three = cluster_speakers(local, SpeakerConstraints(num_speakers=3))
    assert consistent(labels_of(three), truth)
    two = cluster_speakers(local, SpeakerConstraints(num_speakers=2))
    assert len(two.speakers) == 2
    four = cluster_speakers(local, SpeakerConstraints(num_speakers=4))
    assert len(four.speakers) == 4


def test_min_and_max_speakers_move_the_cut_only_outside_them() -> None:
    local, truth = conversation([0, 1, 2], windows=12)
    within = cluster_speakers(local, SpeakerConstraints(min_speakers=2, max_speakers=4))
    assert consistent(labels_of(within), truth)
    assert len(cluster_speakers(local, SpeakerConstraints(max_speakers=2)).speakers) == 2
    assert len(cluster_speakers(local, SpeakerConstraints(min_speakers=5)).speakers) == 5


def test_a_stray_embedding_cannot_take_a_speakers_place_under_num_speakers() -> None:
    local, truth = conversation([0, 1], windows=10)
    local.append(speaker([(200.0, 200.6)], 5))  # 0.6 s of an odd voice: a cough, a noise
    timeline = cluster_speakers(local, SpeakerConstraints(num_speakers=2))
    assert consistent(labels_of(timeline)[:-1], truth)


def test_a_tiny_cluster_joins_the_nearest_big_one() -> None:
    local, _truth = conversation([0, 1], windows=10)
    local.append(speaker([(200.0, 203.0)], 5))  # 3 s of a voice heard nowhere else
    timeline = cluster_speakers(local, SpeakerConstraints())
    assert timeline.speakers == ["A", "B"]
    lower = ClusteringOptions(min_cluster_sec=2.5)
    assert cluster_speakers(local, SpeakerConstraints(), options=lower).speakers == ["A", "B", "C"]


def test_one_long_local_speaker_a_little_off_its_voice_is_no_new_speaker() -> None:
    local, _ = conversation([0, 1], windows=10)
    off = speaker([(300.0, 309.0)], 1, noise=0.85)  # 9 s, cosine ~0.76 to voice 1
    assert cluster_speakers([*local, off], SpeakerConstraints()).speakers == ["A", "B"]
    other = speaker([(300.0, 309.0)], 5)  # 9 s of a voice heard once
    assert cluster_speakers([*local, other], SpeakerConstraints()).speakers == ["A", "B", "C"]


def near(direction: np.ndarray, turns: list[tuple[float, float]]) -> LocalSpeaker:
    """A local speaker whose embedding is `direction` (a unit vector) plus the usual noise."""
    noisy = direction + RNG.standard_normal(EMBEDDING_DIM) * 0.3 / np.sqrt(EMBEDDING_DIM)
    return LocalSpeaker(
        turns=[TimeSpan(start_sec=a, end_sec=b) for a, b in turns],
        embedding=[float(x) for x in noisy / np.linalg.norm(noisy)],
    )


def unit(vector: np.ndarray) -> np.ndarray:
    return np.asarray(vector / np.linalg.norm(vector))


SHORT_TURNS = [(210.0 + 10 * i, 211.5 + 10 * i) for i in range(4)]
"""Four turns of 1.5 s: embedded, too short to shape the clusters (weak)."""


def test_a_voice_heard_mostly_in_short_turns_is_a_speaker() -> None:
    local, _ = conversation([1, 3], windows=10)  # voices 1 and 3 are 0.11 alike
    voice = unit(VOICES[2])  # 0.00 and -0.07 alike to them
    extra = [near(voice, [(200.0, 204.5)]), *(near(voice, [turn]) for turn in SHORT_TURNS)]
    timeline = cluster_speakers([*local, *extra], SpeakerConstraints())
    assert timeline.speakers == ["A", "B", "C"]  # 4.5 s + 6 s in short turns: a speaker
    assert set(timeline.local_labels[len(local) :]) == {"C"}


def test_a_speaker_count_asked_for_holds_when_short_turns_would_make_another() -> None:
    local, _ = conversation([1, 3], windows=10)
    voice = unit(VOICES[2])
    extra = [near(voice, [(200.0, 204.5)]), *(near(voice, [turn]) for turn in SHORT_TURNS)]
    voices = [*local, *extra]
    assert len(cluster_speakers(voices, SpeakerConstraints(num_speakers=2)).speakers) == 2
    assert len(cluster_speakers(voices, SpeakerConstraints(max_speakers=2)).speakers) == 2
    assert len(cluster_speakers(voices, SpeakerConstraints(max_speakers=3)).speakers) == 3
    assert len(cluster_speakers(voices, SpeakerConstraints(min_speakers=3)).speakers) >= 3


def test_short_turns_count_for_no_more_than_the_longer_speech_of_a_voice() -> None:
    local, _ = conversation([1, 3], windows=10)
    voice = unit(VOICES[2])
    many = [(210.0 + 5 * i, 211.5 + 5 * i) for i in range(8)]  # 12 s in short turns
    extra = [near(voice, [(200.0, 202.5)]), *(near(voice, [turn]) for turn in many)]
    timeline = cluster_speakers([*local, *extra], SpeakerConstraints())
    assert timeline.speakers == ["A", "B"]  # 2.5 s it is sure of, at most 2.5 s more


def test_short_turns_do_not_make_a_speaker_of_a_stray_near_a_voice() -> None:
    local, truth = conversation([1, 3], windows=10)
    stray = unit(unit(VOICES[1]) + 1.5 * unit(VOICES[2]))  # 0.55 alike to voice 1
    extra = [near(stray, [(200.0, 204.5)]), *(near(stray, [turn]) for turn in SHORT_TURNS)]
    timeline = cluster_speakers([*local, *extra], SpeakerConstraints())
    assert timeline.speakers == ["A", "B"]  # nearer to voice 1 than voices 1 and 3 are
    labels = timeline.local_labels
    assert consistent(labels[: len(local)], truth)
    assert set(labels[len(local) :]) == {labels[truth.index(1)]}


def test_in_a_long_file_a_speaker_needs_more_speech_to_count() -> None:
    odd_voice = [speaker([(5000.0, 5006.0)], 5), speaker([(5010.0, 5016.0)], 5)]  # 12 s
    short, _ = conversation([0, 1], windows=10)  # 90 s of speech: 12 s is a speaker
    assert len(cluster_speakers(short + odd_voice, SpeakerConstraints()).speakers) == 3
    long, _ = conversation([0, 1], windows=400)  # 1 h of speech: it takes 18 s
    assert len(cluster_speakers(long + odd_voice, SpeakerConstraints()).speakers) == 2


def test_in_a_short_file_a_speaker_needs_less_speech_to_count() -> None:
    local = [speaker([(0, 9)], 0), speaker([(10, 13)], 1), speaker([(14, 20)], 0)]
    assert cluster_speakers(local, SpeakerConstraints()).speakers == ["A", "B"]


def test_a_local_speaker_without_embedding_takes_the_nearest_cluster_not_in_its_window() -> None:
    local = [
        speaker([(0, 8)], 0),
        speaker([(10, 18)], 1),
        speaker([(20, 24), (25, 29)], 0),
        speaker([(24.2, 24.8)], None),  # a backchannel in voice 0's pause: not voice 0
        speaker([(30, 38)], 1),
    ]
    labels = labels_of(cluster_speakers(local, SpeakerConstraints()))
    assert labels[3] == labels[1] != labels[2]


def test_a_voice_going_on_into_the_next_window_keeps_its_cluster_without_embedding() -> None:
    local = [
        speaker([(0, 8)], 0),
        speaker([(9.6, 10.0)], None),  # the start of voice 1's turn, at its window's end
        speaker([(10.0, 18)], 1),
        speaker([(20, 28)], 0),
    ]
    labels = labels_of(cluster_speakers(local, SpeakerConstraints()))
    assert labels[1] == labels[2] != labels[0]


def test_a_weak_embedding_joins_the_nearest_voice_and_does_not_make_a_speaker() -> None:
    local, truth = conversation([0, 1], windows=10)
    local.append(speaker([(200.0, 200.7)], 1, noise=1.5))  # 0.7 s of voice 1, noisy
    local.append(speaker([(201.0, 201.7)], 5))  # 0.7 s of a voice heard nowhere else
    labels = labels_of(cluster_speakers(local, SpeakerConstraints()))
    assert consistent(labels[:-1], [*truth, 1])
    assert labels[-1] in labels[:-1]


def test_without_any_embedding_everyone_is_one_speaker() -> None:
    local = [speaker([(0, 0.5)], None), speaker([(3, 3.5)], None)]
    timeline = cluster_speakers(local, SpeakerConstraints())
    assert timeline.speakers == ["A"]
    assert timeline.turns == [(0, 0.5, "A"), (3, 3.5, "A")]


def test_no_local_speakers_give_an_empty_timeline() -> None:
    timeline = cluster_speakers([], SpeakerConstraints(num_speakers=2))
    assert timeline.turns == [] and timeline.speakers == []


def test_known_speakers_are_named_and_a_weak_match_is_not() -> None:
    local, truth = conversation([0, 1], windows=10)
    known = [
        KnownSpeaker("Ann", np.array(embedding(1), dtype=np.float32)),
        KnownSpeaker("Zed", np.array(embedding(4), dtype=np.float32)),  # not in the audio
    ]
    timeline = cluster_speakers(local, SpeakerConstraints(), known=known)
    assert set(timeline.speakers) == {"Ann", "A"}
    assert timeline.speakers[0] == "A"  # voice 0 speaks first
    for label, voice in zip(labels_of(timeline), truth, strict=True):
        assert label == ("Ann" if voice == 1 else "A")


def test_a_known_name_that_is_a_letter_is_not_given_twice() -> None:
    local, _ = conversation([0, 1], windows=10)
    known = [KnownSpeaker("A", np.array(embedding(1), dtype=np.float32))]
    timeline = cluster_speakers(local, SpeakerConstraints(), known=known)
    assert sorted(timeline.speakers) == ["A", "B"]
    assert timeline.speakers[0] == "B"  # voice 0 speaks first, and "A" is voice 1's name


def test_turns_of_one_label_merge_across_windows_and_overlaps_are_kept() -> None:
    local = [
        speaker([(0, 10)], 0),
        speaker([(7, 9)], 1),
        speaker([(10, 15)], 0),
        speaker([(15.05, 20)], 0),
        speaker([(21, 30)], 1),
    ]
    timeline = cluster_speakers(local, SpeakerConstraints())
    assert timeline.turns == [(0, 20, "A"), (7, 9, "B"), (21, 30, "B")]


def test_more_local_speakers_than_the_linkage_takes_still_cluster_right() -> None:
    local, truth = conversation([0, 1, 2], windows=30)
    options = ClusteringOptions(max_linkage_nodes=12)
    timeline = cluster_speakers(local, SpeakerConstraints(), options=options)
    assert consistent(labels_of(timeline), truth)


def test_cosine_distances_match_scipys_pdist() -> None:
    vectors = np.array([embedding(i % 3) for i in range(1100)], dtype=np.float32)
    ours = cosine_distances(vectors)
    assert ours.shape == (1100 * 1099 // 2,)
    np.testing.assert_allclose(ours, pdist(vectors, "cosine"), atol=1e-5)


def test_letter_labels_go_on_past_z() -> None:
    labels = letter_labels()
    first = [next(labels) for _ in range(28)]
    assert first[:3] == ["A", "B", "C"] and first[25:] == ["Z", "AA", "AB"]


# -- provisional labels ----------------------------------------------------------------------


def test_provisional_labels_follow_the_nearest_centroid_and_map_to_the_final_ones() -> None:
    local, truth = conversation([2, 0, 1], windows=12)
    online = ProvisionalLabels(SpeakerConstraints())
    given: list[str] = []
    for w in range(0, len(local), 4):  # micro chunks of two windows
        given += online.add(local[w : w + 4])
    assert consistent(given, truth)
    assert given[0] == "A"
    final = cluster_speakers(local, SpeakerConstraints())
    mapping = online.final_map(local, final)
    assert [mapping[p] for p in given] == labels_of(final)


def test_provisional_labels_never_repeat_within_a_window() -> None:
    online = ProvisionalLabels(SpeakerConstraints(), threshold=-1.0)  # everything is near
    labels = online.add([speaker([(0, 5)], 0), speaker([(4, 9)], 1)])
    assert labels[0] != labels[1]


def test_provisional_labels_stop_at_the_speaker_count() -> None:
    online = ProvisionalLabels(SpeakerConstraints(max_speakers=2))
    labels = [online.add([speaker([(10 * i, 10 * i + 5)], i)])[0] for i in range(4)]
    assert labels[:2] == ["A", "B"] and set(labels[2:]) <= {"A", "B"}


def test_provisional_labels_name_known_speakers_and_place_the_unembedded() -> None:
    known = [KnownSpeaker("Ann", np.array(embedding(1), dtype=np.float32))]
    online = ProvisionalLabels(SpeakerConstraints(), known=known)
    labels = online.add([speaker([(0, 5)], 0), speaker([(5.5, 9)], 1), speaker([(9.2, 9.6)], None)])
    assert labels[:2] == ["A", "Ann"]
    assert labels[2] in {"A", "Ann"}


def test_final_map_refuses_local_speakers_it_was_not_given() -> None:
    local, _ = conversation([0, 1], windows=4)
    online = ProvisionalLabels(SpeakerConstraints())
    online.add(local)
    final = cluster_speakers(local[:-1], SpeakerConstraints())
    with pytest.raises(ValueError, match="local speakers given to add"):
        online.final_map(local[:-1], final)


def test_a_weak_embedding_never_starts_a_provisional_label() -> None:
    online = ProvisionalLabels(SpeakerConstraints())
    assert online.add([speaker([(0, 6)], 0)]) == ["A"]
    assert online.add([speaker([(10, 11)], 3)]) == ["A"]  # 1 s of a new voice: too little
    assert online.add([speaker([(20, 26)], 3)]) == ["B"]


def spread_conversation(noise: float) -> tuple[list[LocalSpeaker], list[int]]:
    """Two voices taking 3 s turns; each embedding `noise` off its voice (1.0: cosine ~0.5
    between two of one voice, as real voices on a call; 0.3: ~0.92, as generated ones)."""
    rng = np.random.default_rng(11)
    local, truth = [], []
    for turn in range(24):
        voice = turn % 2
        start = 3.5 * turn
        local.append(
            LocalSpeaker(
                turns=[TimeSpan(start_sec=start, end_sec=start + 3)],
                embedding=embedding(voice, noise, rng),
            )
        )
        truth.append(voice)
    return local, truth


def test_voices_spread_out_like_real_ones_get_a_higher_cut_and_stay_two() -> None:
    local, truth = spread_conversation(noise=1.0)
    vectors = np.array([s.embedding for s in local], np.float32)
    options = ClusteringOptions()
    assert adapted_threshold(vectors, options) >= options.threshold + 0.1
    assert consistent(labels_of(cluster_speakers(local, options=options)), truth)
    fixed = cluster_speakers(local, options=ClusteringOptions(adapt_slope=0.0))
    assert len(fixed.speakers) > 2  # the tight voices' cut splits them


def test_tight_voices_keep_the_tuned_cut() -> None:
    local, _ = spread_conversation(noise=0.3)
    vectors = np.array([s.embedding for s in local], np.float32)
    options = ClusteringOptions()
    assert adapted_threshold(vectors, options) == options.threshold
