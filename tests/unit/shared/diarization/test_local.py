"""Local speakers of a micro chunk, with a fake model that hears scripted levels.

The fake `segment` reads the audio level at each frame's centre as the powerset class a
real model would output (0.1: voice 1, 0.2: voice 2, 0.3: both, 0.4: voice 3), and the fake
`embed` turns a clip's mean level into a one-hot embedding, so each test writes its scene as
plain levels and checks times, overlap and what was embedded.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from shared.diarization.local import (
    LocalOptions,
    local_speakers,
    window_cores,
    window_starts,
    within_speech,
)
from shared.diarization.models import (
    FRAME_DURATION_SEC,
    FRAME_STEP_SEC,
    SEGMENTATION_FRAMES,
    SEGMENTATION_WINDOW_SAMPLES,
)
from shared.schemas import EMBEDDING_DIM, LocalSpeaker, TimeSpan

RATE = 16000
LEVEL_CLASS = {0: 0, 1: 1, 2: 2, 3: 4, 4: 3, 5: 1}
"""Level (tenths) -> powerset class: nobody, {1}, {2}, {1,2}, {3}; level 5 is a voice the
model takes for voice 1, though its embedding says otherwise."""

FRAME_CENTRES = np.round(
    (np.arange(SEGMENTATION_FRAMES) * FRAME_STEP_SEC + FRAME_DURATION_SEC / 2) * RATE
).astype(int)


class FakeModels:
    def __init__(self) -> None:
        self.embedded: list[np.ndarray] = []
        self.embed_calls = 0
        self.segmented_windows = 0

    def segment(self, windows: np.ndarray) -> np.ndarray:
        assert windows.shape[1:] == (SEGMENTATION_WINDOW_SAMPLES,)
        assert windows.dtype == np.float32
        self.segmented_windows += len(windows)
        levels = np.round(windows[:, FRAME_CENTRES] * 10).astype(int)
        classes = np.vectorize(LEVEL_CLASS.__getitem__)(levels)
        out = np.full((len(windows), SEGMENTATION_FRAMES, 7), -20.0, dtype=np.float32)
        np.put_along_axis(out, classes[..., None], 0.0, axis=-1)
        return out

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        self.embed_calls += 1
        out = np.zeros((len(clips), EMBEDDING_DIM), dtype=np.float32)
        for row, clip in enumerate(clips):
            assert clip.ndim == 1 and len(clip) >= RATE // 2
            self.embedded.append(clip)
            out[row, round(float(clip.mean()) * 10)] = 1.0
        return out


def scene(seconds: float, *parts: tuple[float, float, int]) -> np.ndarray:
    """Silence with (start, end, level in tenths) stretches."""
    pcm = np.zeros(round(seconds * RATE), dtype=np.float32)
    for start, end, level in parts:
        pcm[round(start * RATE) : round(end * RATE)] = level / 10
    return pcm


def spans(speaker: LocalSpeaker) -> list[tuple[float, float]]:
    return [(t.start_sec, t.end_sec) for t in speaker.turns]


def voice(speaker: LocalSpeaker) -> int:
    assert speaker.embedding is not None
    return int(np.argmax(speaker.embedding))


@pytest.mark.parametrize("seconds", [5.0, 10.0, 10.5, 17.3, 25.0, 30.0, 47.0])
def test_window_cores_tile_the_clip_and_lie_in_their_windows(seconds: float) -> None:
    samples = round(seconds * RATE)
    starts = window_starts(samples)
    cores = window_cores(starts, samples)
    assert len(starts) == max(1, -(-samples // SEGMENTATION_WINDOW_SAMPLES))
    assert cores[0][0] == 0 and cores[-1][1] == samples
    for (_, end), (first, _) in itertools.pairwise(cores):
        assert end == first
    for start, (first, end) in zip(starts, cores, strict=True):
        assert start <= first < end <= start + SEGMENTATION_WINDOW_SAMPLES
    assert starts[-1] + SEGMENTATION_WINDOW_SAMPLES >= samples


def test_a_30s_clip_is_three_windows_without_overlap() -> None:
    assert window_starts(30 * RATE) == [0, 10 * RATE, 20 * RATE]


def test_turns_are_absolute_per_window_and_follow_the_speech() -> None:
    pcm = scene(20, (0, 5, 1), (6, 14, 2), (15, 20, 1))
    models = FakeModels()
    speakers = local_speakers(models, pcm, offset_sec=100.0)
    got = [(voice(s), spans(s)) for s in speakers]
    tol = FRAME_STEP_SEC + 0.002
    expected = [
        (1, [(100.0, 105.0)]),
        (2, [(106.0, 110.0)]),
        (2, [(110.0, 114.0)]),
        (1, [(115.0, 120.0)]),
    ]
    assert [v for v, _ in got] == [v for v, _ in expected]
    for (_, turns), (_, want) in zip(got, expected, strict=True):
        assert len(turns) == len(want)
        for (a, b), (c, d) in zip(turns, want, strict=True):
            assert a == pytest.approx(c, abs=tol) and b == pytest.approx(d, abs=tol)
    assert models.segmented_windows == 2
    assert models.embed_calls == 1


def test_a_voice_across_overlapping_windows_is_counted_once() -> None:
    pcm = scene(25, (0, 25, 1))  # three windows overlapping by 2.5 s
    speakers = local_speakers(FakeModels(), pcm, offset_sec=0.0)
    assert len(speakers) == 3
    turns = sorted(t for s in speakers for t in spans(s))
    assert sum(b - a for a, b in turns) == pytest.approx(25.0, abs=0.01)
    for (_, end), (start, _) in itertools.pairwise(turns):
        assert start == pytest.approx(end, abs=0.002)  # touching, never overlapping


def test_overlap_is_marked_and_only_clean_speech_is_embedded() -> None:
    pcm = scene(10, (0, 4, 1), (4, 6, 3), (6, 9, 2))
    models = FakeModels()
    speakers = local_speakers(models, pcm, offset_sec=0.0)
    assert [voice(s) for s in speakers] == [1, 2]
    for speaker in speakers:
        [(start, end)] = [(o.start_sec, o.end_sec) for o in speaker.overlap]
        assert start == pytest.approx(4.0, abs=0.02) and end == pytest.approx(6.0, abs=0.02)
    assert spans(speakers[0])[0][1] == pytest.approx(6.0, abs=0.02)
    assert spans(speakers[1])[0][0] == pytest.approx(4.0, abs=0.02)
    frame = round(FRAME_STEP_SEC * RATE)
    for clip in models.embedded:  # the frames' resolution: at most a frame of the edges
        assert np.isclose(clip, 0.3).sum() <= frame, "overlapped speech was embedded"
        assert (clip == 0.0).sum() <= frame, "silence was embedded"
    clean = [len(clip) / RATE for clip in models.embedded]
    assert clean == [pytest.approx(4.0, abs=0.04), pytest.approx(3.0, abs=0.04)]


def test_too_little_clean_speech_gets_no_embedding() -> None:
    pcm = scene(10, (0, 6, 1), (7, 7.4, 2))
    speakers = local_speakers(FakeModels(), pcm, offset_sec=0.0, options=LocalOptions())
    assert len(speakers) == 2
    assert speakers[0].embedding is not None
    assert speakers[1].embedding is None
    assert spans(speakers[1])[0][0] == pytest.approx(7.0, abs=0.02)


def test_short_gaps_are_closed_and_short_turns_dropped() -> None:
    options = LocalOptions(min_gap_sec=0.2, min_turn_sec=0.2)
    pcm = scene(10, (0, 3, 1), (3.1, 6, 1), (7, 7.08, 2))
    [speaker] = local_speakers(FakeModels(), pcm, offset_sec=0.0, options=options)
    [(start, end)] = spans(speaker)
    assert start == 0.0 and end == pytest.approx(6.0, abs=0.02)


def test_longer_gaps_split_turns() -> None:
    pcm = scene(10, (0, 3, 1), (3.5, 6, 1))
    [speaker] = local_speakers(FakeModels(), pcm, offset_sec=0.0)
    assert len(speaker.turns) == 2


def test_embedded_speech_is_capped_per_voice_and_window() -> None:
    models = FakeModels()
    local_speakers(models, scene(10, (0, 10, 1)), 0.0, LocalOptions(max_embed_sec=3.0))
    [clip] = models.embedded
    assert len(clip) == 3 * RATE


def test_silence_gives_no_speakers_and_no_embedding() -> None:
    models = FakeModels()
    assert local_speakers(models, scene(12, (3, 3.05, 1)), offset_sec=5.0) == []
    assert local_speakers(models, np.zeros(0, dtype=np.float32), offset_sec=0.0) == []
    assert models.embed_calls == 0


def test_a_short_clip_is_one_zero_padded_window() -> None:
    models = FakeModels()
    [speaker] = local_speakers(models, scene(6, (1, 6, 2)), offset_sec=30.0)
    assert models.segmented_windows == 1
    [(start, end)] = spans(speaker)
    assert start == pytest.approx(31.0, abs=0.02) and end == pytest.approx(36.0, abs=0.02)


def test_turns_of_one_window_voice_that_sound_apart_become_two_local_speakers() -> None:
    models = FakeModels()
    pcm = scene(10, (0, 4, 1), (4.5, 9, 5))  # one voice to the model, two to the embedding
    speakers = local_speakers(models, pcm, offset_sec=0.0)
    assert [voice(s) for s in speakers] == [1, 5]
    assert spans(speakers[0])[0][1] == pytest.approx(4.0, abs=0.02)
    assert spans(speakers[1])[0][0] == pytest.approx(4.5, abs=0.02)


def test_turns_of_one_voice_that_sound_alike_stay_one_local_speaker() -> None:
    models = FakeModels()
    pcm = scene(10, (0, 4, 1), (4.5, 7, 1), (7.5, 7.8, 1))
    [speaker] = local_speakers(models, pcm, offset_sec=0.0)
    assert len(speaker.turns) == 3 and voice(speaker) == 1
    assert len(models.embedded) == 2  # each long turn on its own, the short one not at all
    assert sum(map(len, models.embedded)) == pytest.approx(6.5 * RATE, abs=0.05 * RATE)


def test_without_splitting_a_voice_is_embedded_once() -> None:
    models = FakeModels()
    pcm = scene(10, (0, 4, 1), (4.5, 9, 5))
    [speaker] = local_speakers(models, pcm, 0.0, LocalOptions(split_distance=None))
    assert len(speaker.turns) == 2 and len(models.embedded) == 1


class BridgingModels(FakeModels):
    """Like the real model, hears a voice go on through a short pause: a silent frame takes the
    class of the nearest sounding one."""

    def segment(self, windows: np.ndarray) -> np.ndarray:
        out = super().segment(windows)
        for window in out:
            sounding = np.flatnonzero(window.argmax(axis=-1) != 0)
            if len(sounding):
                nearest = sounding[np.abs(np.arange(len(window))[:, None] - sounding).argmin(1)]
                window[:] = window[nearest]
        return out


def test_a_change_of_speaker_the_model_bridges_is_found_at_the_pause() -> None:
    pcm = scene(10, (0, 4, 1), (4.4, 9, 5))  # one voice through the pause to the model
    speakers = local_speakers(BridgingModels(), pcm, offset_sec=0.0)
    assert [voice(s) for s in speakers] == [1, 5]
    assert spans(speakers[0])[-1][1] == pytest.approx(4.2, abs=0.02)  # the pause's middle
    assert spans(speakers[1])[0][0] == pytest.approx(4.2, abs=0.02)


def test_without_pause_cuts_the_bridged_change_of_speaker_is_one_local_speaker() -> None:
    pcm = scene(10, (0, 4, 1), (4.4, 9, 5))
    [speaker] = local_speakers(BridgingModels(), pcm, 0.0, LocalOptions(pause_sec=None))
    assert spans(speaker) == [(0.0, 10.0)]


def test_pieces_of_one_turn_that_stay_one_voice_are_one_turn_again() -> None:
    pcm = scene(10, (0.5, 4, 1), (4.4, 9, 1))
    speakers = local_speakers(BridgingModels(), pcm, offset_sec=0.0)
    assert len(speakers) == 1  # identical embeddings: no reason to split
    assert spans(speakers[0]) == [(0.0, 10.0)]


def test_a_pause_shorter_than_pause_sec_does_not_cut() -> None:
    pcm = scene(10, (0, 4, 1), (4.15, 9, 5))  # 0.15 s < 0.25 s
    [speaker] = local_speakers(BridgingModels(), pcm, offset_sec=0.0)
    assert len(speaker.turns) == 1


def test_a_short_voice_heard_only_over_another_is_dropped() -> None:
    pcm = scene(10, (0, 2, 1), (2, 2.5, 3), (2.5, 9, 1))  # voice 2 only under voice 1, 0.5 s
    speakers = local_speakers(FakeModels(), pcm, offset_sec=0.0)
    assert [voice(s) for s in speakers] == [1]


def test_a_longer_voice_heard_only_over_another_is_kept() -> None:
    pcm = scene(10, (0, 2, 1), (2, 4.5, 3), (4.5, 9, 1))  # 2.5 s >= phantom_sec
    speakers = local_speakers(FakeModels(), pcm, offset_sec=0.0)
    assert len(speakers) == 2


def _speaker(turns: list[tuple[float, float]], overlap: list[tuple[float, float]]) -> LocalSpeaker:
    return LocalSpeaker(
        turns=[TimeSpan(start_sec=a, end_sec=b) for a, b in turns],
        overlap=[TimeSpan(start_sec=a, end_sec=b) for a, b in overlap],
        embedding=None,
    )


def test_voices_are_cut_to_the_micro_chunks_speech() -> None:
    """A voice heard in the silence before the first speech (a window's first frames) or after
    the last starts and ends with the speech; a voice heard only there is dropped."""
    early = _speaker(
        [(100.0, 100.4), (101.0, 104.0), (108.0, 112.0)], [(100.1, 100.3), (103.0, 103.5)]
    )
    phantom = _speaker([(100.0, 100.3)], [])
    late = _speaker([(110.0, 113.0)], [(112.5, 113.0)])
    cut = within_speech([early, phantom, late], 100.35, 111.0)
    assert [spans(s) for s in cut] == [
        [(100.35, 100.4), (101.0, 104.0), (108.0, 111.0)],
        [(110.0, 111.0)],
    ]
    assert [(o.start_sec, o.end_sec) for o in cut[0].overlap] == [(103.0, 103.5)]
    assert cut[1].overlap == []
    assert within_speech([early], 0.0, 1000.0) == [early]
