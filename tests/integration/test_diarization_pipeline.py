"""The diarization pipeline on real models: two espeak-ng voices taking turns.

tests/media/two_voices_20s.wav (scripts/make_two_voices.py) is cut into two micro chunks at a
pause, as a chunk worker would; each gets its local speakers, and one clustering labels them.
Needs the converted weights in the default cache (`make setup`, or
`python -m shared.diarization.weights`); fails without them.
"""

from __future__ import annotations

import pytest

from shared.diarization.clustering import (
    ProvisionalLabels,
    SpeakerConstraints,
    SpeakerTimeline,
    cluster_speakers,
)
from shared.diarization.local import local_speakers
from shared.diarization.models import OnnxSpeakerModels, load_speaker_models
from shared.schemas import LocalSpeaker
from tests.support.real_models import audio_16k, manifest, speaker_weights

RATE = 16000
CUT_SEC = 7.3
"""In the pause between the second and third turns."""


@pytest.fixture(scope="module")
def models() -> OnnxSpeakerModels:
    return load_speaker_models(speaker_weights(), threads=1)


@pytest.fixture(scope="module")
def chunks(models: OnnxSpeakerModels) -> list[list[LocalSpeaker]]:
    pcm = audio_16k("two_voices_20s.wav")
    cut = int(CUT_SEC * RATE)
    return [local_speakers(models, pcm[:cut], 0.0), local_speakers(models, pcm[cut:], CUT_SEC)]


def turns_of(timeline: SpeakerTimeline, label: str) -> list[tuple[float, float]]:
    return [(start, end) for start, end, who in timeline.turns if who == label]


def test_two_voices_are_two_speakers_with_the_right_turns(
    chunks: list[list[LocalSpeaker]],
) -> None:
    timeline = cluster_speakers([s for chunk in chunks for s in chunk], SpeakerConstraints())
    assert timeline.speakers == ["A", "B"]
    reference = manifest("two_voices_20s")["turns"]
    for turn in reference:
        # The voice that speaks first is A; each reference turn is one hypothesis turn of its
        # speaker, both ends within 0.5 s (one label across both micro chunks).
        matches = [
            (start, end)
            for start, end in turns_of(timeline, turn["speaker"])
            if abs(start - turn["start_sec"]) <= 0.5 and abs(end - turn["end_sec"]) <= 0.5
        ]
        assert len(matches) == 1, (turn, timeline.turns)
    spoken = sum(t["end_sec"] - t["start_sec"] for t in reference)
    labelled = sum(end - start for start, end, _ in timeline.turns)
    assert labelled == pytest.approx(spoken, abs=1.0)


def test_asking_for_two_speakers_gives_the_same_answer(chunks: list[list[LocalSpeaker]]) -> None:
    local = [s for chunk in chunks for s in chunk]
    free = cluster_speakers(local, SpeakerConstraints())
    asked = cluster_speakers(local, SpeakerConstraints(num_speakers=2))
    assert asked.turns == free.turns


def test_provisional_labels_map_onto_the_final_ones(chunks: list[list[LocalSpeaker]]) -> None:
    online = ProvisionalLabels(SpeakerConstraints())
    given = online.add(chunks[0]) + online.add(chunks[1])
    local = [s for chunk in chunks for s in chunk]
    final = cluster_speakers(local, SpeakerConstraints())
    mapping = online.final_map(local, final)
    assert [mapping[label] for label in given] == final.local_labels
    assert set(mapping.values()) == {"A", "B"}
