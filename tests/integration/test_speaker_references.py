"""The worker's known-speaker references, decoded (PyAV) and trimmed to their speech (the real
Silero VAD): each is checked (2-10 s, speech) and embedded; a clip that can't be used is a 400
naming it. The embedding model is a stand-in that shows what reached it."""

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
