"""Build a randomly initialised Whisper model in CTranslate2 format, offline.

The model has Whisper's real architecture, vocabulary layout and side files, so faster-whisper
loads and runs it through exactly the code paths a real model uses; only its text is gibberish.
It exists for tests, benchmarks and offline demos (no model hub is needed).

Random weights never emit end-of-text on their own, so every window would decode to
CTranslate2's token cap. To mimic a real model's output length, one hidden dimension is reserved
as a "stop" channel: it is zero in every token embedding except end-of-text, and the decoder's
position encodings carry -1 on it before `stop_after_tokens` and a large positive value after,
so end-of-text wins from that position on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.languages import LANGUAGE_NAMES

logger = logging.getLogger(__name__)

# Whisper's language tokens, in the order of the real vocabulary.
LANGUAGE_CODES = tuple(LANGUAGE_NAMES)

_N_TEXT_TOKENS = 50256  # ids 0..50255: 256 byte tokens, then filler words; 50256 is ""
_N_MELS = 80
_ENCODER_POSITIONS = 1500
_DECODER_POSITIONS = 448


@dataclass(frozen=True)
class RandomModelShape:
    """Architecture of a random model; presets below mirror real Whisper sizes."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    stop_after_tokens: int
    seed: int = 0

    @property
    def cache_key(self) -> str:
        return (
            f"d{self.d_model}-e{self.encoder_layers}-d{self.decoder_layers}-h{self.heads}"
            f"-stop{self.stop_after_tokens}-s{self.seed}-v1"
        )


RANDOM_PRESETS: dict[str, RandomModelShape] = {
    # Small and fast: tests and offline demos (~7 MB, builds in well under a second).
    "random-tiny": RandomModelShape(64, 2, 2, 2, stop_after_tokens=24),
    # Whisper-tiny shaped, stopping at a realistic output length: benchmarks.
    "random-tiny-shape": RandomModelShape(384, 4, 4, 6, stop_after_tokens=80),
    "random-base-shape": RandomModelShape(512, 6, 6, 8, stop_after_tokens=80),
    "random-small-shape": RandomModelShape(768, 12, 12, 12, stop_after_tokens=80),
}


def vocabulary() -> list[str]:
    """Token strings in id order: Whisper's multilingual layout (51,866 tokens)."""
    from tokenizers import pre_tokenizers

    byte_tokens = sorted(pre_tokenizers.ByteLevel.alphabet())
    assert len(byte_tokens) == 256
    rng = np.random.default_rng(1234)
    letters = np.array(list("aeioubcdfghklmnprstvwz"))
    seen = set(byte_tokens)
    words: list[str] = []
    while len(byte_tokens) + len(words) < _N_TEXT_TOKENS:
        word = "Ġ" + "".join(rng.choice(letters, size=int(rng.integers(2, 8))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    specials = (
        ["<|endoftext|>", "<|startoftranscript|>"]
        + [f"<|{code}|>" for code in LANGUAGE_CODES]
        + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>"]
        + ["<|nospeech|>", "<|notimestamps|>"]
        + [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    )
    return byte_tokens + words + [""] + specials


def _tokenizer_json(tokens: list[str]) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    first_special = _N_TEXT_TOKENS + 1
    vocab = {token: index for index, token in enumerate(tokens[:first_special])}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(tokens[first_special:])
    return str(tokenizer.to_str())


def _build_spec(shape: RandomModelShape, tokens: list[str]) -> object:
    from ctranslate2.specs import whisper_spec

    rng = np.random.default_rng(shape.seed)
    d = shape.d_model
    scale = 0.02 if d <= 128 else 0.5 / np.sqrt(d)

    def normal(*dims: int) -> np.ndarray:
        return (rng.standard_normal(dims) * scale).astype(np.float32)

    def norm(layer_norm: object) -> None:
        layer_norm.gamma = np.ones(d, dtype=np.float32)  # type: ignore[attr-defined]
        layer_norm.beta = np.zeros(d, dtype=np.float32)  # type: ignore[attr-defined]

    def linear(spec: object, out_dim: int, in_dim: int) -> None:
        spec.weight = normal(out_dim, in_dim)  # type: ignore[attr-defined]
        spec.bias = np.zeros(out_dim, dtype=np.float32)  # type: ignore[attr-defined]

    def ffn(spec: object) -> None:
        norm(spec.layer_norm)  # type: ignore[attr-defined]
        linear(spec.linear_0, 4 * d, d)  # type: ignore[attr-defined]
        linear(spec.linear_1, d, 4 * d)  # type: ignore[attr-defined]

    spec = whisper_spec.WhisperSpec(
        shape.encoder_layers, shape.heads, shape.decoder_layers, shape.heads
    )
    encoder = spec.encoder
    encoder.conv1.weight = normal(d, _N_MELS, 3)
    encoder.conv1.bias = np.zeros(d, dtype=np.float32)
    encoder.conv2.weight = normal(d, d, 3)
    encoder.conv2.bias = np.zeros(d, dtype=np.float32)
    encoder.position_encodings.encodings = _sinusoids(_ENCODER_POSITIONS, d)
    norm(encoder.layer_norm)
    for layer in encoder.layer:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d)
        linear(layer.self_attention.linear[1], d, d)
        ffn(layer.ffn)

    stop = d - 1  # the reserved "stop" channel
    eot = tokens.index("<|endoftext|>")
    embeddings = normal(len(tokens), d)
    embeddings[:, stop] = 0.0
    embeddings[eot] = 0.0
    embeddings[eot, stop] = 1.0
    positions = normal(_DECODER_POSITIONS, d)
    positions[:, stop] = -1.0
    positions[shape.stop_after_tokens :, stop] = 1.0

    decoder = spec.decoder
    decoder.embeddings.weight = embeddings
    decoder.position_encodings.encodings = positions
    norm(decoder.layer_norm)
    # Amplify the stop channel after the final layer norm so end-of-text dominates once it is set.
    decoder.layer_norm.gamma[stop] = 50.0
    decoder.projection.weight = embeddings
    for layer in decoder.layer:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d)
        linear(layer.self_attention.linear[1], d, d)
        norm(layer.attention.layer_norm)
        linear(layer.attention.linear[0], d, d)
        linear(layer.attention.linear[1], 2 * d, d)
        linear(layer.attention.linear[2], d, d)
        ffn(layer.ffn)

    spec.register_vocabulary(tokens)
    lang_ids = [tokens.index(f"<|{code}|>") for code in LANGUAGE_CODES]
    half = shape.decoder_layers // 2
    spec.config.suppress_ids = []
    spec.config.suppress_ids_begin = [tokens.index("Ġ") if "Ġ" in tokens else 220, eot]
    spec.config.lang_ids = lang_ids
    spec.config.alignment_heads = [
        (layer, head) for layer in range(half, shape.decoder_layers) for head in range(shape.heads)
    ]
    spec.validate()
    return spec


def _sinusoids(length: int, channels: int) -> np.ndarray:
    log_timescale_increment = np.log(10000) / (channels // 2 - 1)
    inv_timescales = np.exp(-log_timescale_increment * np.arange(channels // 2))
    scaled_time = np.arange(length)[:, None] * inv_timescales[None, :]
    return np.concatenate([np.sin(scaled_time), np.cos(scaled_time)], axis=1).astype(np.float32)


def build_random_model(
    shape: RandomModelShape, directory: Path, quantization: str = "int8"
) -> None:
    """Write a complete faster-whisper model directory (CTranslate2 weights + side files)."""
    tokens = vocabulary()
    spec = _build_spec(shape, tokens)
    directory.mkdir(parents=True)
    spec.optimize(quantization=quantization)  # type: ignore[attr-defined]
    spec.save(str(directory))  # type: ignore[attr-defined]
    (directory / "tokenizer.json").write_text(_tokenizer_json(tokens), encoding="utf-8")
    preprocessor = {
        "feature_size": _N_MELS,
        "sampling_rate": 16000,
        "hop_length": 160,
        "chunk_length": 30,
        "n_fft": 400,
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor), encoding="utf-8")


def ensure_random_model(preset: str, cache_dir: Path) -> Path:
    """Return the directory of a cached random model, building it first if missing.

    Building happens in a private temporary directory that is renamed into place, so concurrent
    processes never see a half-written model.
    """
    shape = RANDOM_PRESETS[preset]
    target = cache_dir / f"{preset}-{shape.cache_key}"
    if (target / "model.bin").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{preset}-", dir=cache_dir))
    try:
        model_dir = staging / "model"
        build_random_model(shape, model_dir)
        try:
            os.rename(model_dir, target)
        except OSError:
            if not (target / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.warning(
        "built RANDOM model %s in %s: its transcripts are gibberish (for tests and offline demos)",
        preset,
        target,
    )
    return target
