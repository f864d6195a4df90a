"""Loading faster-whisper and transcribing one clip: the model server's core, free of HTTP."""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio, pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

from services.whisper_gpu.config import WhisperSettings
from services.whisper_gpu.random_model import RANDOM_PRESETS, ensure_random_model
from shared.audio import read_pcm16_wav
from shared.errors import InvalidAudioError, UnsupportedMediaError
from shared.schemas import (
    MAX_CLIP_SEC,
    SAMPLE_RATE_HZ,
    ClipOptions,
    ClipSegment,
    ClipTranscription,
    Word,
)

logger = logging.getLogger(__name__)

_CLIP_TOLERANCE_SEC = 0.05
_FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# faster-whisper's defaults for the quality checks that trigger a temperature fallback.
_COMPRESSION_RATIO_THRESHOLD = 2.4
_LOG_PROB_THRESHOLD = -1.0
_PREPEND_PUNCTUATIONS = "\"'“¿([{-"
_APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


class ModelUnavailableError(RuntimeError):
    """The configured model can't be loaded; the message says what to set instead."""


def cuda_available() -> bool:
    import ctranslate2

    try:
        return bool(ctranslate2.get_cuda_device_count())
    except RuntimeError:
        return False


@dataclass(frozen=True)
class Placement:
    device: str
    compute_type: str
    replicas: int
    threads_per_replica: int


def choose_placement(settings: WhisperSettings, cores: int | None = None) -> Placement:
    """Resolve the `auto` settings. On CPU, small matrices parallelise poorly across threads,
    so a replica per core (each single-threaded) gives more clips per second, and no worse
    single-clip latency, than one replica using every core (see `make bench-model`)."""
    cores = cores or os.cpu_count() or 1
    device = settings.device
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    compute_type = settings.compute_type
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    replicas = settings.num_workers or (1 if device == "cuda" else min(cores, 4))
    threads = settings.cpu_threads or max(1, cores // replicas)
    return Placement(device, compute_type, replicas, threads)


def load_model(settings: WhisperSettings, placement: Placement) -> tuple[WhisperModel, bool]:
    """The model named by `WHISPER_MODEL`, and whether it is a random (gibberish) model."""
    name = settings.model
    is_random = name in RANDOM_PRESETS
    try:
        if is_random:
            path = str(ensure_random_model(name, settings.model_cache_dir))
        elif os.path.isdir(name):
            path = name
        else:
            path = name  # a model name: faster-whisper downloads it into the cache
        model = WhisperModel(
            path,
            device=placement.device,
            compute_type=placement.compute_type,
            cpu_threads=placement.threads_per_replica,
            num_workers=placement.replicas,
            download_root=str(settings.model_cache_dir),
        )
    except Exception as exc:
        raise ModelUnavailableError(
            f"could not load WHISPER_MODEL={name!r} on {placement.device} "
            f"({type(exc).__name__}: {exc}). Set WHISPER_MODEL to a model name reachable from "
            "this machine, to a local CTranslate2 model directory, or to 'random-tiny' for an "
            "offline demo (gibberish text)."
        ) from exc
    logger.info(
        "loaded model %s on %s (%s, %d replicas x %d threads)%s",
        name,
        placement.device,
        placement.compute_type,
        placement.replicas,
        placement.threads_per_replica,
        " -- RANDOM WEIGHTS, transcripts are gibberish" if is_random else "",
    )
    return model, is_random


def decode_clip(body: bytes) -> np.ndarray:
    """Audio bytes (any format FFmpeg reads) as 16 kHz mono float32, checked for length."""
    if not body:
        raise InvalidAudioError("empty request body: send a WAV clip of at most 30 s")
    audio = read_pcm16_wav(body)
    if audio is None:
        try:
            audio = decode_audio(io.BytesIO(body), sampling_rate=SAMPLE_RATE_HZ)
        except Exception as exc:
            raise UnsupportedMediaError(
                f"request body is not decodable audio ({type(exc).__name__}); send a WAV clip"
            ) from exc
    duration = len(audio) / SAMPLE_RATE_HZ
    if duration == 0:
        raise InvalidAudioError("the clip holds no audio samples")
    if duration > MAX_CLIP_SEC + _CLIP_TOLERANCE_SEC:
        raise InvalidAudioError(
            f"clip is {duration:.2f} s long; the model server takes at most {MAX_CLIP_SEC:g} s "
            "per clip (cut longer audio into micro chunks)"
        )
    return audio


@dataclass(frozen=True)
class PreparedClip:
    """A decoded clip and its log-mel features, computed when the request arrives (in the
    request's thread) so the batch itself only stacks them: feature extraction overlaps the
    model running the previous batch instead of adding to it."""

    audio: np.ndarray
    features: np.ndarray

    @property
    def duration_sec(self) -> float:
        return len(self.audio) / SAMPLE_RATE_HZ


class WhisperEngine:
    """A loaded model and the decoding settings every clip shares."""

    def __init__(self, model: WhisperModel, settings: WhisperSettings, *, is_random: bool) -> None:
        self.model = model
        self.settings = settings
        self.is_random = is_random
        fallback = settings.temperature_fallback
        if fallback is None:
            fallback = not is_random
        self.temperatures: tuple[float, ...] = _FALLBACK_TEMPERATURES if fallback else (0.0,)
        # A random model's timestamp tokens are noise (segments at 0.1 s and 27 s of a 28 s
        # clip, nothing between): ask it for none, so each clip is one segment spanning it and
        # a transcript's segments tile the file. Real models keep their timestamps.
        self.without_timestamps = is_random

    def transcribe(self, audio: np.ndarray, options: ClipOptions) -> ClipTranscription:
        """One clip through faster-whisper's sequential path, with temperature fallback."""
        segments, info = self.model.transcribe(
            audio,
            language=options.language,
            task=options.task,
            beam_size=self.settings.beam_size,
            temperature=list(self.temperatures),
            without_timestamps=self.without_timestamps,
            word_timestamps=options.word_timestamps,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        duration = len(audio) / SAMPLE_RATE_HZ
        clip_segments = [
            ClipSegment(
                start_sec=segment.start,
                end_sec=segment.end,
                text=segment.text,
                words=None
                if segment.words is None
                else [
                    Word(start_sec=w.start, end_sec=w.end, word=w.word, probability=w.probability)
                    for w in segment.words
                ],
            )
            for segment in segments
        ]
        return ClipTranscription(
            segments=clamp_segments(clip_segments, duration),
            language=info.language,
            language_probability=info.language_probability,
            duration_sec=duration,
        )

    def prepare(self, audio: np.ndarray) -> PreparedClip:
        features = self.model.feature_extractor(audio)[..., :-1]
        return PreparedClip(audio, pad_or_trim(features))

    def transcribe_batch(
        self, clips: Sequence[PreparedClip], options: ClipOptions
    ) -> list[ClipTranscription]:
        """Many clips in one encode and one generate; each keeps its own language.

        Built from faster-whisper's public pieces (feature extractor, `encode`, the CTranslate2
        model's `detect_language` and `generate`) plus its segment splitter and word aligner,
        the same ones its `BatchedInferencePipeline` uses. Clips that fail Whisper's quality
        checks are re-decoded alone with temperature fallback, when fallback is on.
        """
        model = self.model
        encoder_output = model.encode(np.stack([clip.features for clip in clips]))
        languages = self._languages(encoder_output, len(clips), options)
        tokenizers = {
            code: Tokenizer(
                model.hf_tokenizer, model.model.is_multilingual, task=options.task, language=code
            )
            for code, _ in languages
        }
        first = tokenizers[languages[0][0]]
        prompts = [
            model.get_prompt(tokenizers[code], [], without_timestamps=self.without_timestamps)
            for code, _ in languages
        ]
        results = model.model.generate(
            encoder_output,
            prompts,
            beam_size=self.settings.beam_size,
            max_length=model.max_length,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(first, [-1]) or []),
            return_scores=True,
            return_no_speech_prob=True,
            sampling_temperature=self.temperatures[0],
        )
        durations = [clip.duration_sec for clip in clips]
        sizes = [int(math.ceil(d) * model.frames_per_second) for d in durations]
        per_clip: list[list[dict[str, Any]]] = []
        needs_fallback: list[bool] = []
        for result, duration, size in zip(results, durations, sizes, strict=True):
            tokens = result.sequences_ids[0]
            subsegments, _, _ = model._split_segments_by_timestamps(
                tokenizer=first,
                tokens=tokens,
                time_offset=0.0,
                segment_size=size,
                segment_duration=duration,
                seek=0,
            )
            text = first.decode(tokens)
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            needs_fallback.append(
                len(self.temperatures) > 1
                and (
                    get_compression_ratio(text) > _COMPRESSION_RATIO_THRESHOLD
                    or avg_logprob < _LOG_PROB_THRESHOLD
                )
            )
            per_clip.append(
                [{**sub, "text": first.decode(sub["tokens"]), "seek": 0} for sub in subsegments]
            )
        if options.word_timestamps:
            model.add_word_timestamps(
                per_clip,
                first,
                encoder_output,
                sizes,
                _PREPEND_PUNCTUATIONS,
                _APPEND_PUNCTUATIONS,
                0.0,
            )
        transcriptions = []
        for index, clip in enumerate(clips):
            if needs_fallback[index]:
                transcriptions.append(self.transcribe(clip.audio, options))
                continue
            code, probability = languages[index]
            segments = [_clip_segment(sub) for sub in per_clip[index]]
            transcriptions.append(
                ClipTranscription(
                    segments=clamp_segments(segments, durations[index]),
                    language=code,
                    language_probability=probability,
                    duration_sec=durations[index],
                )
            )
        return transcriptions

    def _languages(
        self, encoder_output: Any, count: int, options: ClipOptions
    ) -> list[tuple[str, float]]:
        """Per clip (code, probability): the requested language, or detected clip by clip."""
        if options.language is not None or not self.model.model.is_multilingual:
            return [(options.language or "en", 1.0)] * count
        detections = self.model.model.detect_language(encoder_output)
        return [(ranked[0][0][2:-2], float(ranked[0][1])) for ranked in detections]


def _clip_segment(sub: dict[str, Any]) -> ClipSegment:
    words = sub.get("words")
    return ClipSegment(
        start_sec=sub["start"],
        end_sec=sub["end"],
        text=sub["text"],
        words=None
        if words is None
        else [
            Word(
                start_sec=w["start"], end_sec=w["end"], word=w["word"], probability=w["probability"]
            )
            for w in words
        ],
    )


def clamp_segments(segments: list[ClipSegment], duration: float) -> list[ClipSegment]:
    """Keep segments inside [0, duration], in order and non-overlapping.

    Whisper can place timestamps past the end of a short clip (it always thinks in 30 s windows)
    and random models emit arbitrary ones; times outside the clip would corrupt absolute times.
    """
    clamped: list[ClipSegment] = []
    floor = 0.0
    for segment in segments:
        start = min(max(segment.start_sec, floor), duration)
        end = min(max(segment.end_sec, start), duration)
        words = None
        if segment.words is not None:
            words = []
            for word in segment.words:
                word_start = min(max(word.start_sec, start), end)
                words.append(
                    word.model_copy(
                        update={
                            "start_sec": word_start,
                            "end_sec": min(max(word.end_sec, word_start), end),
                        }
                    )
                )
        clamped.append(
            segment.model_copy(update={"start_sec": start, "end_sec": end, "words": words})
        )
        floor = end
    return clamped
