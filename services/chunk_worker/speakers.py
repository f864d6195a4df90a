"""Who speaks in a micro chunk, and known speakers' voices: the worker's part of diarization.

The models (pyannote segmentation, CAM++ embeddings; `shared.diarization`) run on the CPU next
to the audio the worker decoded anyway, one micro chunk at a time per worker (more at once
would only fight over the same cores), in a thread so the event loop keeps streaming.
"""

from __future__ import annotations

import asyncio
import base64
import binascii

import numpy as np

from shared.audio import decode_clip_bytes
from shared.diarization.local import local_speakers
from shared.diarization.models import SpeakerModels
from shared.errors import BadRequestError, DiarizationUnavailableError, WhisperfleetError
from shared.schemas import SAMPLE_RATE_HZ, LocalSpeaker
from shared.vad import speech_spans

REFERENCE_MIN_SEC = 2.0
REFERENCE_MAX_SEC = 10.0
_SLACK_SEC = 0.25
"""An encoder's padding on a clip cut at exactly 10 s is not a reason to refuse it."""


class Speakers:
    def __init__(self, models: SpeakerModels | None, unavailable: str | None = None) -> None:
        self.models = models
        self.unavailable = unavailable or "diarization is turned off on this chunk worker"
        self._slot = asyncio.Semaphore(1)

    def require(self) -> SpeakerModels:
        """The models, or a 400 saying why this worker can't diarize."""
        if self.models is None:
            raise DiarizationUnavailableError(self.unavailable, param="params.diarize")
        return self.models

    async def of_micro_chunk(self, pcm: np.ndarray, offset_sec: float) -> list[LocalSpeaker]:
        """The voices heard in a micro chunk (16 kHz mono float32), times absolute."""
        models = self.require()
        async with self._slot:
            return await asyncio.to_thread(local_speakers, models, pcm, offset_sec)

    async def embed_references(self, references: list[str]) -> list[list[float]]:
        """One embedding per known speaker's reference clip (data URLs), in order."""
        models = self.require()
        clips = [_reference_pcm(reference, index) for index, reference in enumerate(references)]
        async with self._slot:
            embeddings = await asyncio.to_thread(models.embed, clips)
        return [[float(x) for x in row] for row in embeddings]


def _reference_pcm(reference: str, index: int) -> np.ndarray:
    """A reference clip's speech as 16 kHz mono float32; a 400 naming the clip otherwise."""
    param = f"known_speaker_references[{index}]"
    _, _, payload = reference.partition(";base64,")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(
            f"known speaker reference {index} is not valid base64 in a data URL", param=param
        ) from None
    try:
        pcm = decode_clip_bytes(data)
    except WhisperfleetError as exc:
        raise BadRequestError(
            f"known speaker reference {index}: {exc.message}", param=param
        ) from None
    except Exception:
        raise BadRequestError(
            f"known speaker reference {index} is not audio that can be decoded "
            "(give WAV, MP3, FLAC, Ogg, M4A or WebM)",
            param=param,
        ) from None
    seconds = len(pcm) / SAMPLE_RATE_HZ
    if not REFERENCE_MIN_SEC - _SLACK_SEC <= seconds <= REFERENCE_MAX_SEC + _SLACK_SEC:
        raise BadRequestError(
            f"known speaker reference {index} is {seconds:.1f} s long; give "
            f"{REFERENCE_MIN_SEC:g}-{REFERENCE_MAX_SEC:g} s of that speaker alone",
            param=param,
        )
    speech = speech_spans(pcm)
    if not speech:
        raise BadRequestError(f"known speaker reference {index} holds no speech", param=param)
    # The voice only: the pauses and noise around it would pull the embedding toward silence.
    voiced = np.concatenate(
        [pcm[int(s * SAMPLE_RATE_HZ) : int(e * SAMPLE_RATE_HZ)] for s, e in speech]
    )
    return voiced if len(voiced) >= SAMPLE_RATE_HZ // 2 else pcm
