"""A private copy of `models.py`'s interface (the contract's SpeakerModels Protocol and frame
constants), so the pipeline modules type-check before `models.py` lands. Replaced by
`shared.diarization.models` at merge: nothing else may import this module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

SEGMENTATION_WINDOW_SAMPLES = 160_000
SEGMENTATION_FRAMES = 589
FRAME_STEP_SEC = 270 / 16000
FRAME_DURATION_SEC = 991 / 16000
EMBEDDING_DIM = 192


class SpeakerModels(Protocol):
    def segment(self, windows: np.ndarray) -> np.ndarray:
        """[B, 160000] float32 -> [B, 589, 7] float32 log-probabilities over the powerset
        classes (none, {1}, {2}, {3}, {1,2}, {1,3}, {2,3})."""
        ...

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """1-D float32 16 kHz clips (each >= 0.5 s) -> [N, 192] float32, rows L2-normalised."""
        ...
