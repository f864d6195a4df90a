"""The two speaker networks behind one small interface: segmentation and voice embeddings.

`SpeakerModels` is what the diarization pipeline (local.py) codes against; `OnnxSpeakerModels`
runs the cached ONNX files (weights.py) with onnxruntime, torch-free:

    segment: [B, 160000] 10 s windows -> [B, 589, 7] log-probabilities over pyannote's powerset
             classes (none, {1}, {2}, {3}, {1,2}, {1,3}, {2,3})
    embed:   clips >= 0.5 s -> [N, 192] L2-normalised CAM++ embeddings

Frames: output frame i of a window covers samples [i * 270, i * 270 + 991) of it (SincNet's
stride and receptive field; tests/integration/test_speaker_models.py derives both from the ONNX
graph and checks the frame count by running it).

Clips are embedded one at a time: CAM++ pools over the whole clip (segment means, statistics),
so clips of different lengths can't share a zero-padded batch without changing the result, and
on one thread a batch of equal-length clips is no faster (measured: 10 s clips, 86 ms each alone,
102 ms each in a batch of 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from shared.diarization.fbank import campplus_features
from shared.diarization.weights import DiarizationWeights
from shared.schemas import EMBEDDING_DIM, SAMPLE_RATE_HZ

SEGMENTATION_WINDOW_SAMPLES = 160_000
"""10 s at 16 kHz: the segmentation model's input."""
SEGMENTATION_FRAMES = 589
"""Output frames per 10 s window."""
FRAME_STEP_SAMPLES = 270
FRAME_DURATION_SAMPLES = 991
FRAME_STEP_SEC = FRAME_STEP_SAMPLES / SAMPLE_RATE_HZ
"""Seconds between output frames."""
FRAME_DURATION_SEC = FRAME_DURATION_SAMPLES / SAMPLE_RATE_HZ
"""The receptive field of one output frame."""
POWERSET_CLASSES = 7
MIN_EMBED_SAMPLES = SAMPLE_RATE_HZ // 2
"""The shortest clip `embed` takes (0.5 s)."""

__all__ = [
    "EMBEDDING_DIM",
    "FRAME_DURATION_SEC",
    "FRAME_STEP_SEC",
    "MIN_EMBED_SAMPLES",
    "SEGMENTATION_FRAMES",
    "SEGMENTATION_WINDOW_SAMPLES",
    "OnnxSpeakerModels",
    "SpeakerModels",
    "load_speaker_models",
]


class SpeakerModels(Protocol):
    def segment(self, windows: np.ndarray) -> np.ndarray:
        """[B, 160000] float32 (pad short windows with zeros) -> [B, 589, 7] float32
        log-probabilities over pyannote's powerset classes, in its order:
        (none, {1}, {2}, {3}, {1,2}, {1,3}, {2,3})."""
        ...

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """1-D float32 16 kHz clips (each >= 0.5 s) -> [N, 192] float32, each row
        L2-normalised (CAM++ on 80-bin Kaldi fbank with per-clip mean normalisation)."""
        ...


class OnnxSpeakerModels:
    """pyannote segmentation-3.0 and CAM++ in onnxruntime sessions (thread-safe `run`)."""

    def __init__(self, segmentation: ort.InferenceSession, embedding: ort.InferenceSession):
        self._segmentation = segmentation
        self._embedding = embedding

    def segment(self, windows: np.ndarray) -> np.ndarray:
        batch = np.asarray(windows)
        if batch.ndim != 2 or batch.shape[1] != SEGMENTATION_WINDOW_SAMPLES:
            raise ValueError(
                f"segment() takes [B, {SEGMENTATION_WINDOW_SAMPLES}] windows, got {batch.shape}"
            )
        if batch.shape[0] == 0:
            return np.zeros((0, SEGMENTATION_FRAMES, POWERSET_CLASSES), dtype=np.float32)
        inputs = np.ascontiguousarray(batch, dtype=np.float32)[:, None, :]
        (scores,) = self._segmentation.run(["output"], {"input": inputs})
        return np.asarray(scores, dtype=np.float32)

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        embeddings = np.zeros((len(clips), EMBEDDING_DIM), dtype=np.float32)
        for i, clip in enumerate(clips):
            samples = np.asarray(clip)
            if samples.ndim != 1 or samples.size < MIN_EMBED_SAMPLES:
                raise ValueError(
                    f"embed() takes 1-D clips of at least {MIN_EMBED_SAMPLES} samples (0.5 s); "
                    f"clip {i} has shape {samples.shape}"
                )
            features = campplus_features(samples)[None]
            (raw,) = self._embedding.run(["embedding"], {"fbank": features})
            vector = np.asarray(raw, dtype=np.float32)[0]
            norm = float(np.linalg.norm(vector))
            embeddings[i] = vector / norm if norm > 0 else vector
        return embeddings


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return options


def load_speaker_models(weights: DiarizationWeights, threads: int) -> OnnxSpeakerModels:
    """Both networks on the CPU, `threads` threads each (about 0.5 s to load)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    providers = ["CPUExecutionProvider"]
    return OnnxSpeakerModels(
        ort.InferenceSession(
            str(weights.segmentation), session_options(threads), providers=providers
        ),
        ort.InferenceSession(str(weights.embedding), session_options(threads), providers=providers),
    )
