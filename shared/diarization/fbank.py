"""Kaldi filterbank features, as `torchaudio.compliance.kaldi.fbank` computes them, in numpy.

CAM++ was trained on 3D-Speaker's front end: `Kaldi.fbank(wav, num_mel_bins=80,
sample_frequency=16000, dither=0)` on the waveform as torchaudio loads it (float in [-1, 1], not
int16 scale), then the per-utterance mean subtracted. The defaults that implies, all fixed here:

    25 ms frames (400 samples) every 10 ms (160), snip edges (only whole frames)
    per frame: DC offset removed, pre-emphasis 0.97 (the first sample against itself),
    Povey window (Hann ** 0.85), zero-padded to 512 points, power spectrum
    80 triangular mel bins from 20 Hz to Nyquist (mel = 1127 ln(1 + f / 700))
    natural log, floored at float32's epsilon (torchaudio's floor; no dither)

All frames at once (one strided view, one rfft, one matrix product): about a millisecond per
second of audio. tests/unit/shared/diarization/test_fbank.py holds it to torchaudio's output.
"""

from __future__ import annotations

import math

import numpy as np

from shared.schemas import SAMPLE_RATE_HZ

FRAME_LENGTH = 400
FRAME_SHIFT = 160
FFT_SIZE = 512
NUM_MEL_BINS = 80
LOW_FREQ = 20.0
PREEMPHASIS = 0.97
POVEY_POWER = 0.85
_EPSILON = np.finfo(np.float32).eps


def _mel(freq: np.ndarray | float) -> np.ndarray:
    return np.asarray(1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0))


def _mel_banks() -> np.ndarray:
    """[257, 80] float32: the triangular filters, transposed for a right-hand product."""
    nyquist = SAMPLE_RATE_HZ / 2
    low, high = float(_mel(LOW_FREQ)), float(_mel(nyquist))
    delta = (high - low) / (NUM_MEL_BINS + 1)
    left = low + np.arange(NUM_MEL_BINS, dtype=np.float64)[:, None] * delta
    centre, right = left + delta, left + 2 * delta
    mel = _mel(SAMPLE_RATE_HZ / FFT_SIZE * np.arange(FFT_SIZE // 2))[None, :]
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    banks = np.maximum(0.0, np.minimum(up, down))
    banks = np.pad(banks, ((0, 0), (0, 1)))  # the Nyquist bin is in no filter
    return np.ascontiguousarray(banks.T, dtype=np.float32)


def _povey_window() -> np.ndarray:
    n = np.arange(FRAME_LENGTH, dtype=np.float64)
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * n / (FRAME_LENGTH - 1))
    return (hann**POVEY_POWER).astype(np.float32)


_BANKS = _mel_banks()
_WINDOW = _povey_window()


def num_frames(num_samples: int) -> int:
    """Frames of a clip of this many samples (snip edges: whole frames only)."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def kaldi_fbank(waveform: np.ndarray) -> np.ndarray:
    """16 kHz mono samples in [-1, 1] -> [frames, 80] float32 log mel energies."""
    samples = np.ascontiguousarray(waveform, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected 1-D samples, got shape {samples.shape}")
    count = num_frames(samples.size)
    if count == 0:
        return np.zeros((0, NUM_MEL_BINS), dtype=np.float32)
    frames = np.lib.stride_tricks.as_strided(
        samples,
        shape=(count, FRAME_LENGTH),
        strides=(FRAME_SHIFT * samples.itemsize, samples.itemsize),
        writeable=False,
    )
    frames = frames - frames.mean(axis=1, keepdims=True, dtype=np.float32)
    padded = np.zeros((count, FFT_SIZE), dtype=np.float32)
    emphasised = padded[:, :FRAME_LENGTH]
    emphasised[:, 1:] = frames[:, 1:] - PREEMPHASIS * frames[:, :-1]
    emphasised[:, 0] = frames[:, 0] * (1.0 - PREEMPHASIS)
    emphasised *= _WINDOW
    spectrum = np.fft.rfft(padded, axis=1)
    power = np.square(spectrum.real) + np.square(spectrum.imag)
    energies = power.astype(np.float32, copy=False) @ _BANKS
    logged: np.ndarray = np.log(np.maximum(energies, _EPSILON))
    return logged


def campplus_features(waveform: np.ndarray) -> np.ndarray:
    """CAM++'s input for one clip: Kaldi fbank minus its mean over the clip's frames."""
    features = kaldi_fbank(waveform)
    if len(features):
        features -= features.mean(axis=0, keepdims=True)
    return features
