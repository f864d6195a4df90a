"""The real speaker networks from the model cache: held to the originals and to their geometry.

Needs the converted weights in the default cache (`make setup` runs `python -m
shared.diarization.weights`; `make test` depends on it), and fails with that command otherwise.
The embeddings are compared with tests/media/speaker_reference.npz: what 3D-Speaker's own CAM++
in torch, on torchaudio's fbank, gives for the same clips (scripts/make_speaker_reference.py;
the cached model's convolutions are int8, so the bound is int8's, not float's);
the segmentation scores with tests/media/segmentation_reference.npz: what the model as published
gives before its convolutions are rewritten and its LSTMs go int8
(scripts/make_segmentation_reference.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest

from scripts.make_segmentation_reference import reference_windows
from shared.diarization.models import (
    EMBEDDING_DIM,
    FRAME_DURATION_SEC,
    FRAME_STEP_SEC,
    MIN_EMBED_SAMPLES,
    SEGMENTATION_FRAMES,
    SEGMENTATION_WINDOW_SAMPLES,
    OnnxSpeakerModels,
    load_speaker_models,
    session_options,
)
from shared.diarization.weights import DiarizationWeights
from tests.support.real_models import speaker_weights

REFERENCE = Path(__file__).resolve().parents[1] / "media" / "speaker_reference.npz"
SEGMENTATION_REFERENCE = REFERENCE.with_name("segmentation_reference.npz")
RATE = 16_000


@pytest.fixture(scope="module")
def weights() -> DiarizationWeights:
    return speaker_weights()


@pytest.fixture(scope="module")
def models(weights: DiarizationWeights) -> OnnxSpeakerModels:
    return load_speaker_models(weights, threads=1)


@pytest.fixture(scope="module")
def reference() -> Iterator[dict[str, np.ndarray]]:
    with np.load(REFERENCE) as loaded:
        yield {name: loaded[name] for name in loaded.files}


def _clips(reference: dict[str, np.ndarray]) -> list[np.ndarray]:
    count = len([name for name in reference if name.startswith("clip_")])
    return [reference[f"clip_{i}"].astype(np.float32) / 32768 for i in range(count)]


def test_embeddings_match_the_original_network(
    models: OnnxSpeakerModels, reference: dict[str, np.ndarray]
) -> None:
    """int8 convolutions: cosine 0.988-0.997 to the torch network on these clips on an Intel CPU
    with AVX-512 VNNI, 0.975-0.995 (mean 0.989) on an AMD EPYC with AVX2 only, where
    onnxruntime's u8 x s8 products round differently (the float conversion gave 0.99999+;
    another speaker's voice gives 0.2-0.3)."""
    ours = models.embed(_clips(reference))
    original = reference["embeddings"]
    original = original / np.linalg.norm(original, axis=1, keepdims=True)
    assert ours.shape == (len(original), EMBEDDING_DIM)
    assert ours.dtype == np.float32
    cosine = np.sum(ours * original, axis=1)
    assert np.all(cosine >= 0.97), cosine
    assert float(cosine.mean()) >= 0.985, cosine


def test_the_embedding_network_runs_int8_convolutions(weights: DiarizationWeights) -> None:
    graph = onnx.load(str(weights.embedding)).graph
    convs = [node for node in graph.node if node.op_type == "Conv"]
    made_by = {output: node for node in graph.node for output in node.output}
    assert convs
    for conv in convs:
        assert made_by[conv.input[0]].op_type == "DequantizeLinear", conv.name
        assert made_by[conv.input[1]].op_type == "DequantizeLinear", conv.name


def test_embeddings_are_unit_vectors_that_tell_voices_apart(
    models: OnnxSpeakerModels, reference: dict[str, np.ndarray]
) -> None:
    first, same_voice, other_voice, _ = models.embed(_clips(reference))
    for vector in (first, same_voice, other_voice):
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    assert float(first @ same_voice) > 0.8
    assert float(first @ other_voice) < 0.5


def _receptive_field(model: onnx.ModelProto) -> tuple[int, int]:
    """(samples, step) of one output frame, from the strides and kernels of the SincNet front
    end (Conv and MaxPool nodes; time is their last axis, 2-D ones have height 1)."""
    layers: list[tuple[int, int, int]] = []  # kernel, stride, dilation
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert node.op_type != "If", "segmentation.convert leaves no branch"
        if node.op_type in ("Conv", "MaxPool"):
            *height, kernel = attrs["kernel_shape"]
            assert height in ([], [1])
            stride = attrs.get("strides", [1])[-1]
            dilation = attrs.get("dilations", [1])[-1]
            assert not any(attrs.get("pads", [])), node.name
            layers.append((kernel, stride, dilation))
    field, step = 1, 1
    for kernel, stride, dilation in layers:
        field += (kernel - 1) * dilation * step
        step *= stride
    return field, step


def test_segmentation_frames_step_and_receptive_field(weights: DiarizationWeights) -> None:
    field, step = _receptive_field(onnx.load(str(weights.segmentation)))
    assert (field, step) == (991, 270)
    assert field / RATE == FRAME_DURATION_SEC
    assert step / RATE == FRAME_STEP_SEC
    session = ort.InferenceSession(str(weights.segmentation), session_options(1))
    for samples in (SEGMENTATION_WINDOW_SAMPLES, SEGMENTATION_WINDOW_SAMPLES + step - 1, 3 * RATE):
        (scores,) = session.run(None, {"input": np.zeros((1, 1, samples), np.float32)})
        assert scores.shape[1] == (samples - field) // step + 1
    assert (SEGMENTATION_WINDOW_SAMPLES - field) // step + 1 == SEGMENTATION_FRAMES


def test_segmentation_scores_match_the_published_model(
    models: OnnxSpeakerModels, reference: dict[str, np.ndarray]
) -> None:
    """The 2-D rewrite of the convolutions changes float rounding only, the int8 LSTMs a little
    more: each class's probability is within 0.05 of the published model's (0.018 at most on
    an Intel CPU with AVX-512 VNNI, 0.035 on an AMD EPYC with AVX2 only; 2e-5 before the int8
    LSTMs), so a frame's class is the published model's wherever that one is not a near tie
    (on Intel every frame; on AMD all but 3 of 1,178, each a tie within 0.04)."""
    with np.load(SEGMENTATION_REFERENCE) as loaded:
        published = loaded["scores"]
    ours = models.segment(reference_windows(reference))
    assert ours.shape == published.shape == (2, SEGMENTATION_FRAMES, 7)
    assert np.abs(np.exp(ours) - np.exp(published)).max() < 0.05
    top_two = np.sort(np.exp(published), axis=-1)[..., -2:]
    clear = top_two[..., 1] - top_two[..., 0] > 0.1
    assert clear.mean() > 0.9  # the windows are mostly clear-cut, so the check below bites
    assert np.array_equal(ours.argmax(axis=-1)[clear], published.argmax(axis=-1)[clear])


def test_segmentation_tells_two_voices_and_silence_apart(
    models: OnnxSpeakerModels, reference: dict[str, np.ndarray]
) -> None:
    """One window: voice A at 0.5-3.9 s, nothing but a -54 dBFS floor, voice B at 5.0-9.6 s."""
    first, _, other, _ = _clips(reference)
    window = np.random.default_rng(0).standard_normal(SEGMENTATION_WINDOW_SAMPLES) * 10 ** (
        -54 / 20
    )
    window[RATE // 2 : RATE // 2 + first.size] += first
    window[5 * RATE : 5 * RATE + other.size] += other
    scores = models.segment(np.stack([window, np.zeros_like(window)]).astype(np.float32))
    assert scores.shape == (2, SEGMENTATION_FRAMES, 7)
    assert np.allclose(np.exp(scores).sum(axis=-1), 1.0, atol=1e-4)  # log-probabilities
    centre = (np.arange(SEGMENTATION_FRAMES) * FRAME_STEP_SEC) + FRAME_DURATION_SEC / 2
    classes = scores[0].argmax(axis=-1)

    def during(start: float, end: float) -> np.ndarray:
        selected: np.ndarray = classes[(centre >= start) & (centre < end)]
        return selected

    voice_a, silence, voice_b = during(0.7, 3.7), during(4.3, 4.7), during(5.2, 9.4)
    a_class = np.bincount(voice_a).argmax()
    b_class = np.bincount(voice_b).argmax()
    assert a_class in (1, 2, 3) and b_class in (1, 2, 3) and a_class != b_class
    assert np.mean(voice_a == a_class) > 0.95 and np.mean(voice_b == b_class) > 0.95
    assert np.all(silence == 0)
    assert np.all(scores[1].argmax(axis=-1) == 0)  # a padded (all-zero) window: nobody


def test_bad_inputs_are_refused_with_what_was_expected(
    models: OnnxSpeakerModels, weights: DiarizationWeights
) -> None:
    with pytest.raises(ValueError, match=r"\[B, 160000\]"):
        models.segment(np.zeros((1, RATE), np.float32))
    assert models.segment(np.zeros((0, SEGMENTATION_WINDOW_SAMPLES), np.float32)).shape == (
        0, SEGMENTATION_FRAMES, 7
    )  # fmt: skip
    with pytest.raises(ValueError, match="at least 8000 samples"):
        models.embed([np.zeros(MIN_EMBED_SAMPLES - 1, np.float32)])
    assert models.embed([]).shape == (0, EMBEDDING_DIM)
    with pytest.raises(ValueError, match="threads"):
        load_speaker_models(weights, threads=0)
