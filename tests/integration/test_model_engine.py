"""The model server's core without HTTP, on the random model: input, structure, batching, the
rounds' metrics (the real engine's coverage rounds driven by a fake aligner).

What the words are is tested with real models (tests/integration, tests/e2e)."""

from __future__ import annotations

import functools
import io
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from services.whisper_gpu.alignment import AlignedWord
from services.whisper_gpu.config import WhisperSettings
from services.whisper_gpu.decoding import Decoded, DecodeRequest
from services.whisper_gpu.engine import (
    MAX_ROUNDS,
    PreparedClip,
    WhisperEngine,
    WindowEngine,
    clamp_segments,
    decode_clip,
)
from services.whisper_gpu.loading import (
    ModelUnavailableError,
    choose_placement,
    engine_class,
    load_engine,
    load_model,
)
from services.whisper_gpu.metrics import ModelMetrics
from services.whisper_gpu.random_engine import RandomEngine
from services.whisper_gpu.random_model import RANDOM_PRESETS, ensure_random_model, vocabulary
from services.whisper_gpu.windows import Window
from shared.audio import pcm16_to_wav, read_pcm16_wav
from shared.errors import InvalidAudioError, UnsupportedMediaError
from shared.schemas import ClipSegment, DecodeOptions
from tests.conftest import MEDIA_DIR
from tests.support.metrics import metric


@functools.cache
def speech_40s() -> np.ndarray:
    """The committed 40 s of speech as 16 kHz float32 (the VAD finds speech in it)."""
    audio = read_pcm16_wav((MEDIA_DIR / "speech_40s.wav").read_bytes())
    assert audio is not None
    return audio


def random_tiny(cache: Path, temperature_fallback: bool | None = None) -> WhisperSettings:
    return WhisperSettings(
        model="random-tiny",
        model_cache_dir=cache,
        cpu_threads=1,
        temperature_fallback=temperature_fallback,
    )


@pytest.fixture(scope="module")
def engine(model_cache_dir: Path) -> RandomEngine:
    settings = random_tiny(model_cache_dir)
    loaded = load_engine(settings, choose_placement(settings))
    assert isinstance(loaded, RandomEngine)
    return loaded


def counted(engine: WindowEngine[Any], name: str, labels: str = "") -> float:
    """The value of one of the engine's metrics (0 when it never moved)."""
    return metric(engine.metrics.render().decode(), name, labels)


def test_vocabulary_has_whisper_multilingual_layout() -> None:
    tokens = vocabulary()
    assert len(tokens) == 51866
    assert tokens.index("<|endoftext|>") == 50257
    assert tokens.index("<|startoftranscript|>") == 50258
    assert tokens.index("<|en|>") == 50259
    assert tokens.index("<|0.00|>") == 50365
    assert tokens[50256] == ""


def test_random_model_is_cached_and_reused(tmp_path: Path) -> None:
    first = ensure_random_model("random-tiny", tmp_path)
    assert (first / "model.bin").is_file() and (first / "tokenizer.json").is_file()
    assert ensure_random_model("random-tiny", tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging left behind


def test_random_model_stops_after_its_token_budget(engine: RandomEngine) -> None:
    audio = np.random.default_rng(0).standard_normal(16000 * 20).astype(np.float32) * 0.1
    segments, _ = engine.model.transcribe(audio, language="en", temperature=0.0, beam_size=1)
    tokens = sum(len(s.tokens) for s in segments)
    assert 0 < tokens <= RANDOM_PRESETS["random-tiny"].stop_after_tokens


def test_a_clip_without_speech_never_reaches_the_model(
    engine: RandomEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("the model was asked to decode a clip without speech")

    monkeypatch.setattr(engine.decoder, "encode", refuse)
    noise = np.random.default_rng(0).standard_normal(16000 * 20).astype(np.float32) * 0.01
    result = engine.transcribe(noise, DecodeOptions(language="en"))
    assert result.segments == [] and result.speech_sec == 0
    assert result.duration_sec == 20.0


def test_a_clip_without_words_has_no_invented_language(engine: RandomEngine) -> None:
    noise = np.random.default_rng(0).standard_normal(16000 * 20).astype(np.float32) * 0.01
    for options in (DecodeOptions(), DecodeOptions(languages=["de", "fr"])):
        result = engine.transcribe(noise, options)  # was "en", or the allow-list's first
        assert (result.language, result.language_probability) == (None, 0.0)
    assert engine.transcribe(noise, DecodeOptions(language="de")).language == "de"  # as asked


def test_random_model_gives_one_segment_per_window_on_the_speech(engine: RandomEngine) -> None:
    audio = speech_40s()[: 16000 * 12]
    prepared = engine.prepare(audio)
    result = engine.transcribe_batch([prepared], DecodeOptions(language="en"))[0]
    assert prepared.speech and result.speech_sec
    first, last = prepared.speech[0][0], prepared.speech[-1][1]
    assert len(result.segments) == 1  # no alignment for random weights: the window's text
    segment = result.segments[0]
    assert (segment.start_sec, segment.end_sec) == pytest.approx((first, last), abs=1e-3)
    assert result.segments[0].language == "en"


def test_speech_spans_from_the_caller_replace_the_vad(engine: RandomEngine) -> None:
    audio = speech_40s()[: 16000 * 12]
    prepared = engine.prepare(audio, [(2.0, 5.5)])
    result = engine.transcribe_batch([prepared], DecodeOptions(language="en"))[0]
    assert [(s.start_sec, s.end_sec) for s in result.segments] == [(2.0, 5.5)]
    assert engine.prepare(audio, []).features is None  # "no speech" is an answer too


def test_unknown_model_fails_with_a_message_saying_what_to_set(tmp_path: Path) -> None:
    settings = WhisperSettings(model=str(tmp_path / "nope-model"), model_cache_dir=tmp_path)
    with pytest.raises(ModelUnavailableError, match=r"WHISPER_MODEL.*random-tiny"):
        load_model(settings, choose_placement(settings))


def test_clamp_keeps_segments_ordered_and_inside() -> None:
    segments = [
        ClipSegment(start_sec=0.5, end_sec=2.0, text="a", language="en"),
        ClipSegment(start_sec=1.5, end_sec=1.0, text="b", language="en"),
        ClipSegment(start_sec=22.0, end_sec=26.0, text="c", language="en"),
    ]
    clamped = clamp_segments(segments, 5.0)
    assert [(s.start_sec, s.end_sec) for s in clamped] == [(0.5, 2.0), (2.0, 2.0), (5.0, 5.0)]
    assert [s.text for s in clamped] == ["a", "b", "c"]  # nothing dropped


def test_decode_accepts_16k_wav_and_resamples_anything_else() -> None:
    tone = (np.sin(np.arange(16000) / 5) * 10000).astype(np.int16)
    assert len(decode_clip(pcm16_to_wav(tone))) == 16000
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:  # 44.1 kHz stereo
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(44100)
        writer.writeframes(np.zeros(44100 * 2, dtype=np.int16).tobytes())
    assert abs(len(decode_clip(buffer.getvalue())) - 16000) <= 16


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"", InvalidAudioError, "empty"),
        (pcm16_to_wav(np.zeros(16000 * 31, dtype=np.int16)), InvalidAudioError, "at most 30"),
        (b"definitely not audio" * 10, UnsupportedMediaError, "not a clip this server decodes"),
    ],
)
def test_bad_clips_are_rejected_with_a_clear_reason(
    body: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        decode_clip(body)


def test_a_clip_that_names_other_files_opens_none_of_them(tmp_path: Path) -> None:
    """Regression: PyAV guessed the demuxer of a clip, so an `ffconcat` body naming a file on
    the model server was decoded from that file (42 s of audio came back)."""
    target = tmp_path / "secret.wav"
    target.write_bytes(pcm16_to_wav(np.zeros(16000, dtype=np.int16)))
    for body in (
        f"ffconcat version 1.0\nfile '{target}'\n".encode(),
        f"#EXTM3U\n#EXTINF:1,\nfile://{target}\n#EXT-X-ENDLIST\n".encode(),
    ):
        with pytest.raises(UnsupportedMediaError, match="send a WAV clip"):
            decode_clip(body)


def test_a_clip_in_another_container_is_decoded_held_to_it(tmp_path: Path) -> None:
    tone = (np.sin(np.arange(32000) / 5) * 10000).astype(np.int16)
    flac = tmp_path / "tone.flac"
    with av.open(str(flac), "w") as out:
        stream = out.add_stream("flac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    audio = decode_clip(flac.read_bytes())
    assert abs(len(audio) - 32000) <= 16
    assert np.allclose(audio[1000:2000], tone[1000:2000] / 32768.0, atol=1e-4)


def test_a_clip_gets_the_same_transcript_alone_or_in_a_batch(engine: RandomEngine) -> None:
    audio = speech_40s()
    clips = [engine.prepare(audio[: 16000 * seconds]) for seconds in (3, 11, 29)]
    batched = engine.transcribe_batch(clips, DecodeOptions(language="en"))
    alone = [engine.transcribe_batch([clip], DecodeOptions(language="en"))[0] for clip in clips]
    assert batched == alone
    assert [t.duration_sec for t in batched] == [3.0, 11.0, 29.0]


def encoded_lengths(engine: WindowEngine[Any], clips: list[PreparedClip]) -> list[list[int]]:
    """The log-mel frames of each encoder call while the clips are transcribed together."""
    calls: list[list[int]] = []
    encode = engine.decoder.encode

    def spy(features: Any) -> Any:
        calls.append([f.shape[-1] for f in features])
        return encode(features)

    engine.decoder.encode = spy  # type: ignore[method-assign]
    try:
        engine.transcribe_batch(clips, DecodeOptions(language="en"))
    finally:
        del engine.decoder.encode
    return calls


def test_a_window_is_encoded_at_its_speech_length_and_batched_with_its_own_length(
    engine: RandomEngine,
) -> None:
    audio = speech_40s()
    clips = [engine.prepare(audio[: 16000 * seconds]) for seconds in (11, 24, 11)]
    speech = [c.speech[-1][1] - c.speech[0][0] for c in clips]
    calls = encoded_lengths(engine, clips)
    # The two 11 s clips in one call (shortest first), the 24 s one in its own.
    assert [len(call) for call in calls] == [2, 1], calls
    assert calls[0][0] == calls[0][1]
    for frames, seconds in ((calls[0][0], speech[0]), (calls[1][0], speech[1])):
        assert abs(frames - (seconds * 100 + 100)) <= 2, (frames, seconds)


def test_only_a_clips_first_window_is_encoded_short(engine: RandomEngine) -> None:
    audio = speech_40s()
    lengths = {
        kind: engine._features(audio, Window(0, 1.0, 6.0, kind=kind)).shape[-1]
        for kind in ("clip", "gap", "retry", "language")
    }
    assert lengths == {"clip": 1000, "gap": 3000, "retry": 3000, "language": 3000}


def test_full_window_encoding_gives_every_window_thirty_seconds(model_cache_dir: Path) -> None:
    settings = random_tiny(model_cache_dir).model_copy(update={"encode_full_window": True})
    full = load_engine(settings, choose_placement(settings))
    assert isinstance(full, RandomEngine)
    audio = speech_40s()
    clips = [full.prepare(audio[: 16000 * seconds]) for seconds in (11, 29)]
    assert encoded_lengths(full, clips) == [[3000, 3000]]


def detected(engine: RandomEngine, clip: PreparedClip, request: DecodeRequest) -> tuple[str, float]:
    """What the model's language detection says of a clip's first window, on its own."""
    assert clip.features is not None
    encoded = engine.decoder.encode([clip.features])
    [(code, probability)] = engine.decoder.languages(encoded, request, [None])
    return code, round(probability, 4)


def test_batch_detects_the_language_of_each_clip(engine: RandomEngine) -> None:
    """Each clip's language and probability are its own detection's (not a default's, nor
    another clip's): random weights rate every language alike, so the pick is arbitrary but
    fixed."""
    audio = speech_40s()
    clips = [engine.prepare(audio[: 16000 * s]) for s in (4, 9)]
    results = engine.transcribe_batch(clips, DecodeOptions())
    for clip, result in zip(clips, results, strict=True):
        expected = detected(engine, clip, DecodeRequest())
        assert (result.language, result.language_probability) == expected
        assert result.segments and {s.language for s in result.segments} == {expected[0]}


def test_detection_keeps_to_the_allowed_languages(engine: RandomEngine) -> None:
    audio = speech_40s()
    clips = [engine.prepare(audio[: 16000 * s]) for s in (4, 9, 20)]
    unrestricted = {detected(engine, clip, DecodeRequest())[0] for clip in clips}
    assert not unrestricted & {"sw", "yo"}, "pick an allow-list the detection would not choose"
    results = engine.transcribe_batch(clips, DecodeOptions(languages=["sw", "yo"]))
    assert all(r.segments for r in results)
    assert {r.language for r in results} <= {"sw", "yo"}
    assert {s.language for r in results for s in r.segments} <= {"sw", "yo"}


def test_the_loader_picks_the_engine_by_model() -> None:
    for name in RANDOM_PRESETS:
        assert engine_class(name) is RandomEngine
    for name in ("base", "tiny.en", "/models/whisper-large-v3-ct2", "distil-large-v3"):
        assert engine_class(name) is WhisperEngine


def test_temperature_fallback_is_off_by_default_only_for_random_models(
    engine: RandomEngine, model_cache_dir: Path
) -> None:
    unset = random_tiny(model_cache_dir)
    assert RandomEngine(engine.model, unset).temperature_fallback is False
    assert WhisperEngine(engine.model, unset).temperature_fallback is True
    forced = random_tiny(model_cache_dir, temperature_fallback=True)
    assert RandomEngine(engine.model, forced).temperature_fallback is True


def test_rounds_windows_and_language_halving_are_counted(engine: RandomEngine) -> None:
    """A 12 s clip with pauses, language detected: its window is halved (random weights are
    never sure of a language) and the halves decoded in a second round; with the language
    given, one window in one round."""
    settings = engine.settings
    clip = engine.prepare(speech_40s()[: 16000 * 12])
    detecting = RandomEngine(engine.model, settings, ModelMetrics())
    [result] = detecting.transcribe_batch([clip], DecodeOptions())
    assert len(result.segments) == 2 and not result.incomplete
    assert counted(detecting, "whisper_rounds_total") == 2
    assert counted(detecting, "whisper_language_splits_total") == 1
    assert counted(detecting, "whisper_windows_total", '{kind="language"}') == 2
    assert counted(detecting, "whisper_windows_total", '{kind="clip"}') == 0

    told = RandomEngine(engine.model, settings, ModelMetrics())
    told.transcribe_batch([clip], DecodeOptions(language="en"))
    assert counted(told, "whisper_rounds_total") == 1
    assert counted(told, "whisper_language_splits_total") == 0
    assert counted(told, "whisper_windows_total", '{kind="clip"}') == 1
    assert counted(told, "whisper_temperature_fallbacks_total") == 0  # off for random models


def test_temperature_fallbacks_are_counted(engine: RandomEngine, model_cache_dir: Path) -> None:
    """Random text fails every quality check, so each window climbs the whole ladder."""
    settings = random_tiny(model_cache_dir, temperature_fallback=True)
    falling_back = RandomEngine(engine.model, settings, ModelMetrics())
    clips = [engine.prepare(speech_40s()[: 16000 * s]) for s in (4, 5)]
    results = falling_back.transcribe_batch(clips, DecodeOptions(language="en"))
    assert counted(falling_back, "whisper_windows_total", '{kind="clip"}') == 2
    assert counted(falling_back, "whisper_temperature_fallbacks_total") == 2 * 3
    temperatures = [s.temperature for r in results for s in r.segments]
    assert temperatures and all((t or 0) > 0 for t in temperatures)


class _CreepingAligner:
    """A fake aligner for the real engine: in each window, one word of 0.5 s where the speech
    still without words begins, so every round leaves a gap after it and the coverage rounds
    never catch up; a window starting at `covered_from` gets one word over all of it."""

    def __init__(self, covered_from: float) -> None:
        self.covered_from = covered_from

    def __call__(
        self,
        encoder_output: object,
        windows: list[Window],
        decoded: list[Decoded],
        indices: list[int],
        request: DecodeRequest,
    ) -> dict[int, list[AlignedWord]]:
        aligned = {}
        for i in indices:
            window = windows[i]
            start = window.accept[0] if window.accept else window.start_sec
            end = window.end_sec if window.start_sec >= self.covered_from else start + 0.5
            word = AlignedWord(" hi", start - window.start_sec, end - window.start_sec, 0.9, [1])
            aligned[i] = [word]
        return aligned


def test_windows_open_after_the_last_round_are_counted_and_flag_their_clip(
    engine: RandomEngine, model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: windows still open after MAX_ROUNDS were dropped without a trace. The real
    engine on random weights, its aligner faked: the first clip's gap never closes, the second
    clip (speech 20-21.5 s) is covered by its first window."""
    settings = random_tiny(model_cache_dir, temperature_fallback=False)
    real = WhisperEngine(engine.model, settings, ModelMetrics())
    monkeypatch.setattr(real, "_align", _CreepingAligner(covered_from=20.0))
    audio = speech_40s()[: 16000 * 25]
    clips = [real.prepare(audio, [(0.5, 11.5)]), real.prepare(audio, [(20.0, 21.5)])]
    creeping, covered = real.transcribe_batch(clips, DecodeOptions(language="en"))
    assert creeping.incomplete and not covered.incomplete
    assert counted(real, "whisper_rounds_total") == MAX_ROUNDS
    assert counted(real, "whisper_windows_total", '{kind="clip"}') == 2
    assert counted(real, "whisper_windows_total", '{kind="gap"}') == MAX_ROUNDS - 1
    assert counted(real, "whisper_windows_given_up_total") == 1
    words = [w for s in creeping.segments for w in s.words or []]
    assert [(w.start_sec, w.end_sec) for w in words] == [
        (0.5, 1.0),
        (1.0, 1.5),
        (1.5, 2.0),
        (2.0, 2.5),
    ]


class _WordlessAfterTheFirst:
    """A fake aligner: the clip's first window gets one word at its start; every later window
    (the gap, its retries) none, as where `base` read nothing of 10 s of Mandarin."""

    def __call__(
        self,
        encoder_output: object,
        windows: list[Window],
        decoded: list[Decoded],
        indices: list[int],
        request: DecodeRequest,
    ) -> dict[int, list[AlignedWord]]:
        first = [i for i in indices if windows[i].kind == "clip"]
        return {i: [AlignedWord(" hi", 0.0, 0.5, 0.9, [1])] for i in first}


def test_speech_a_retry_still_leaves_without_words_flags_its_clip(
    engine: RandomEngine, model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a gap decoded, retried in halves and still wordless was dropped without a
    trace (10 s of Mandarin, no `incomplete`)."""
    settings = random_tiny(model_cache_dir, temperature_fallback=False)
    real = WhisperEngine(engine.model, settings, ModelMetrics())
    monkeypatch.setattr(real, "_align", _WordlessAfterTheFirst())
    clip = real.prepare(speech_40s()[: 16000 * 25], [(0.5, 6.0), (7.0, 12.0)])
    [result] = real.transcribe_batch([clip], DecodeOptions(language="en"))
    assert result.incomplete
    assert counted(real, "whisper_windows_total", '{kind="retry"}') >= 1
    assert counted(real, "whisper_windows_given_up_total") >= 1


def test_an_abandoned_batch_is_not_flagged_incomplete(engine: RandomEngine) -> None:
    """Work stopped because every caller left is not the coverage giving up."""
    clip = engine.prepare(speech_40s()[: 16000 * 12])
    quitting = RandomEngine(engine.model, engine.settings, ModelMetrics())
    [result] = quitting.transcribe_batch([clip], DecodeOptions(), abandoned=lambda: True)
    assert result.segments == [] and not result.incomplete
    assert counted(quitting, "whisper_rounds_total") == 0
    assert counted(quitting, "whisper_windows_given_up_total") == 0
