"""Who speaks in a micro chunk, and known speakers' voices: the worker's part of diarization.

The models (pyannote segmentation, CAM++ embeddings; `shared.diarization`) run on the CPU next
to the audio the worker decoded anyway, one micro chunk at a time per worker (more at once
would only fight over the same cores), in one thread of their own so the event loop keeps
streaming. That thread runs at a lower CPU priority (Linux nice, `CHUNK_WORKER_DIARIZATION_NICE`)
than the worker's own threads (its event loop, the clips it sends). Linux shares the CPU between
sessions (autogroup) and containers (cgroups) before it looks at nice, so this does not make
diarization yield to a model server in another session or container, which is how `make run`,
Compose and Kubernetes start them. Measured with the 2-voice bench file under `make run`'s
stack: the first clips' diarization ran alongside the model server's first batch (both
sessions get their share); with every service in one session, where nice holds across them,
diarization waited for the model server, clips held their in-flight slots waiting for it, and
the stream came in bursts (half the segments at 24.4 s instead of 15.7 s; wall 24.7 against
23.4 s, one run each), so the stack keeps a session per service.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from shared.audio import decode_clip_bytes
from shared.diarization.local import local_speakers, within_speech
from shared.diarization.models import SpeakerModels
from shared.errors import BadRequestError, DiarizationUnavailableError, WhisperfleetError
from shared.schemas import SAMPLE_RATE_HZ, LocalSpeaker
from shared.vad import speech_spans

REFERENCE_MIN_SEC = 2.0
REFERENCE_MAX_SEC = 10.0
_SLACK_SEC = 0.25
"""An encoder's padding on a clip cut at exactly 10 s is not a reason to refuse it."""
T = TypeVar("T")
logger = logging.getLogger(__name__)


def diarization_thread(nice: int) -> ThreadPoolExecutor:
    """The one thread diarization runs in, `nice` steps below the process's CPU priority
    (threads it starts inherit it: onnxruntime's pool, when models are loaded there)."""
    return ThreadPoolExecutor(
        max_workers=1,
        thread_name_prefix="diarization",
        initializer=_lower_priority,
        initargs=(nice,),
    )


def _lower_priority(nice: int) -> None:
    if nice <= 0:
        return
    try:  # Linux: a thread's id names that thread alone
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except (AttributeError, OSError) as exc:
        logger.warning("diarization runs at normal CPU priority: %s", exc)


class Speakers:
    def __init__(
        self,
        models: SpeakerModels | None,
        unavailable: str | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.models = models
        self.unavailable = unavailable or "diarization is turned off on this chunk worker"
        self._executor = executor or diarization_thread(0)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def require(self) -> SpeakerModels:
        """The models, or a 400 saying why this worker can't diarize."""
        if self.models is None:
            raise DiarizationUnavailableError(self.unavailable, param="params.diarize")
        return self.models

    async def of_micro_chunk(
        self, pcm: np.ndarray, offset_sec: float, speech: tuple[float, float]
    ) -> list[LocalSpeaker]:
        """The voices heard in a micro chunk (16 kHz mono float32), times absolute, within
        `speech` (absolute seconds: where the VAD hears its first and last speech)."""
        models = self.require()
        voices = await self._run(local_speakers, models, pcm, offset_sec)
        return within_speech(voices, *speech)

    async def embed_references(self, references: list[str]) -> list[list[float]]:
        """One embedding per known speaker's reference clip (data URLs), in order."""
        models = self.require()
        clips = [_reference_pcm(reference, index) for index, reference in enumerate(references)]
        embeddings = await self._run(models.embed, clips)
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
        pcm = decode_clip_bytes(data, subject=f"known speaker reference {index}")
    except WhisperfleetError as exc:
        raise BadRequestError(exc.message, param=param) from None
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
