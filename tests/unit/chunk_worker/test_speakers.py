"""The worker's known-speaker references: each is decoded, checked (2-10 s, speech) and
embedded; a clip that can't be used is a 400 naming it."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from services.chunk_worker.speakers import Speakers
from shared.audio import decode_clip_bytes, pcm16_to_wav
from shared.errors import BadRequestError

RATE = 16000


class CountingModels:
    """Embeds each clip as [its length in samples, 0, ...]: what reached the model."""

    def segment(self, windows: np.ndarray) -> np.ndarray:
        raise AssertionError("references are embedded whole, not segmented")

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(clips), 192), dtype=np.float32)
        out[:, 0] = [len(clip) for clip in clips]
        return out


def data_url(samples: np.ndarray, mime: str = "audio/wav") -> str:
    return f"data:{mime};base64," + base64.b64encode(pcm16_to_wav(samples)).decode()


@pytest.fixture(scope="module")
def speech(media_dir: Path) -> np.ndarray:
    """16 kHz int16 speech: the committed 40 s file's first sentences."""
    samples = decode_clip_bytes((media_dir / "speech_40s.wav").read_bytes())
    return (samples * 32767).astype(np.int16)


async def test_a_reference_is_embedded_from_its_speech_only(speech: np.ndarray) -> None:
    clip = speech[: 8 * RATE]
    [embedding] = await Speakers(CountingModels()).embed_references([data_url(clip)])
    assert len(embedding) == 192
    assert 2 * RATE < embedding[0] < 8 * RATE  # the pauses around the words were left out


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda s: "data:audio/wav;base64,not base64!", "not valid base64"),
        (lambda s: "data:audio/wav;base64," + base64.b64encode(b"x" * 400).decode(), "reference 1"),
        (lambda s: data_url(s[: 12 * RATE]), "12.0 s long"),
        (lambda s: data_url(s[:RATE]), "1.0 s long"),
        (lambda s: data_url(np.zeros(4 * RATE, dtype=np.int16)), "no speech"),
    ],
    ids=["not-base64", "not-audio", "too-long", "too-short", "silence"],
)
async def test_an_unusable_reference_is_a_400_naming_it(
    speech: np.ndarray, make: object, words: str
) -> None:
    good = data_url(speech[: 4 * RATE])
    with pytest.raises(BadRequestError) as caught:
        await Speakers(CountingModels()).embed_references([good, make(speech)])  # type: ignore[operator]
    assert caught.value.param == "known_speaker_references[1]"
    assert words in caught.value.message
    assert "media_url" not in caught.value.message  # the clip is not the job's media


def _own_priority() -> int:
    import os
    import threading

    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_diarization_runs_in_a_thread_below_the_workers_cpu_priority() -> None:
    from services.chunk_worker.speakers import diarization_thread

    lowered, same = diarization_thread(7), diarization_thread(0)
    try:
        assert lowered.submit(_own_priority).result() == _own_priority() + 7
        assert same.submit(_own_priority).result() == _own_priority()
    finally:
        lowered.shutdown()
        same.shutdown()


class HearsOneVoiceThroughout:
    """Segmentation that hears voice 1 in every frame, silence included (as the real model can
    at a window's first frames); one fixed embedding."""

    def segment(self, windows: np.ndarray) -> np.ndarray:
        scores = np.full((len(windows), 589, 7), -20.0, dtype=np.float32)
        scores[:, :, 1] = 0.0
        return scores

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(clips), 192), dtype=np.float32)
        out[:, 0] = 1.0
        return out


async def test_a_micro_chunks_voices_start_and_end_with_its_speech() -> None:
    """The worker cuts what the segmentation hears to the VAD's first and last speech."""
    pcm = np.full(10 * RATE, 0.1, dtype=np.float32)
    [voice] = await Speakers(HearsOneVoiceThroughout()).of_micro_chunk(pcm, 100.0, (101.5, 108.25))
    assert [(t.start_sec, t.end_sec) for t in voice.turns] == [(101.5, 108.25)]
    assert await Speakers(HearsOneVoiceThroughout()).of_micro_chunk(pcm, 100.0, (111, 112)) == []
