"""Kaldi fbank in numpy, held to torchaudio's output on the committed reference clips.

tests/media/speaker_reference.npz holds `torchaudio.compliance.kaldi.fbank` of two clips as
3D-Speaker calls it (scripts/make_speaker_reference.py): one over a noise floor, one with digital
silence (every energy at the floor).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.diarization.fbank import (
    FRAME_LENGTH,
    FRAME_SHIFT,
    NUM_MEL_BINS,
    campplus_features,
    kaldi_fbank,
    num_frames,
)

REFERENCE = Path(__file__).resolve().parents[3] / "media" / "speaker_reference.npz"


def _clip(reference: np.lib.npyio.NpzFile, index: int) -> np.ndarray:
    return reference[f"clip_{index}"].astype(np.float32) / 32768


@pytest.mark.parametrize("index", [0, 3])
def test_fbank_matches_torchaudio(index: int) -> None:
    with np.load(REFERENCE) as reference:
        expected = reference[f"fbank_{index}"]
        ours = kaldi_fbank(_clip(reference, index))
    assert ours.shape == expected.shape
    assert ours.dtype == np.float32
    difference = np.abs(ours - expected)
    # float32 FFTs differ in the last bits; log energies span about -16..+5.
    assert difference.max() < 1e-3
    assert difference.mean() < 2e-5


def test_digital_silence_sits_at_torchaudios_floor() -> None:
    features = kaldi_fbank(np.zeros(16_000, dtype=np.float32))
    assert np.all(features == np.log(np.finfo(np.float32).eps))


def test_only_whole_frames_are_kept() -> None:
    assert num_frames(FRAME_LENGTH - 1) == 0
    assert num_frames(FRAME_LENGTH) == 1
    assert num_frames(FRAME_LENGTH + FRAME_SHIFT - 1) == 1
    assert num_frames(FRAME_LENGTH + FRAME_SHIFT) == 2
    assert num_frames(160_000) == 998
    assert kaldi_fbank(np.zeros(FRAME_LENGTH - 1, dtype=np.float32)).shape == (0, NUM_MEL_BINS)
    rng = np.random.default_rng(1)
    assert kaldi_fbank(rng.standard_normal(16_000).astype(np.float32)).shape == (98, NUM_MEL_BINS)


def test_features_are_mean_normalised_per_clip() -> None:
    with np.load(REFERENCE) as reference:
        clip = _clip(reference, 0)
        raw = reference["fbank_0"]
    features = campplus_features(clip)
    assert np.abs(features.mean(axis=0)).max() < 1e-4
    assert np.abs(features - (raw - raw.mean(axis=0))).max() < 1e-3


def test_a_multichannel_array_is_refused() -> None:
    with pytest.raises(ValueError, match="1-D"):
        kaldi_fbank(np.zeros((2, 16_000), dtype=np.float32))
