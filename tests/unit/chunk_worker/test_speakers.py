"""The worker's diarization seam without models or audio files: the thread it runs in, and a
micro chunk's voices cut to its speech (references, decoded and run through the VAD:
tests/integration/test_speaker_references.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.chunk_worker.speakers import Speakers

RATE = 16000


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
