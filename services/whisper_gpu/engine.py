"""Transcribing clips completely: the model server's core, free of HTTP.

A clip comes with its speech spans (from the chunk worker's VAD, or computed here). Clips with
no speech never reach the model. The rest are decoded in rounds of batched *windows*:

    round 1   one window per clip: its speech, first span to last
    decode    encode (round 1 at the window's length on CPU, later rounds 30 s), language
              per window, generate (no timestamps), quality checks
    align     every word gets its time from the cross-attention path; words the path gives no
              time at the window's end were decoded past the audio (a sentence said twice) and
              are dropped
    check     speech the words don't cover -> a new window over it, for the next round:
              - speech after the last word (the model stopped early: the common loss)
              - speech between two words (a skipped sentence), or before the first
              - a window with speech but no words at all -> retried once, split at its
                widest pause when it has one; a retry still without words gives its speech
                up: counted, and its clip comes back `incomplete`
    round 2+  the new windows, batched across clips, until none is left (at most 4 rounds);
              windows still open then are given up: counted, and their clip comes back
              `incomplete`

A window that may hold two languages (its detection is uncertain, or its two halves, detected
in the window's context, disagree) is halved at a pause before decoding, each half with its own
language; otherwise a language switch is no special case: the coverage check picks up whatever
a window decoded in the wrong language left out. Words of a later window that overlap words
already accepted are dropped, so a word is never returned twice. The rules that make windows
are in `windows.py`; decoding in `decoding.py`; word times in `alignment.py`; segments in
`segmenter.py`. The random models' engine (`random_engine.py`) shares the rounds but not the
alignment: a window's text is one segment. Every round shows in the metrics (`metrics.py`):
rounds, windows by kind, language halving, temperature fallbacks, windows given up.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Protocol, TypeVar

import numpy as np
from faster_whisper import WhisperModel

from services.whisper_gpu.alignment import (
    AlignedWord,
    align_words,
    squeezed_copies,
    words_past_the_audio,
)
from services.whisper_gpu.config import WhisperSettings
from services.whisper_gpu.decoding import (
    FULL_WINDOW_FRAMES,
    Decoded,
    Decoder,
    DecodeRequest,
    select,
)
from services.whisper_gpu.metrics import ModelMetrics
from services.whisper_gpu.segmenter import snap_to_speech, split_segments, widen_instant_words
from services.whisper_gpu.windows import (
    MAX_SPLITS,
    Window,
    given_up_speech,
    speech_within,
    split_window,
    uncovered_windows,
)
from shared.audio import decode_clip_bytes, read_pcm16_wav
from shared.errors import InvalidAudioError, UnsupportedMediaError
from shared.languages import ENGLISH_ONLY, LANGUAGE_NAMES
from shared.schemas import (
    MAX_CLIP_SEC,
    SAMPLE_RATE_HZ,
    ClipSegment,
    ClipTranscription,
    DecodeOptions,
    Word,
)
from shared.vad import Span, speech_spans

logger = logging.getLogger(__name__)

_CLIP_TOLERANCE_SEC = 0.05
MAX_ROUNDS = 4
LANGUAGE_SPLIT_BELOW = 0.6
"""A detected language less likely than this splits a window (at a pause) before decoding."""
LANGUAGE_CERTAIN = 0.95
"""Above this, a window is one language even if its halves seem to disagree."""


def decode_clip(body: bytes) -> np.ndarray:
    """Audio bytes (WAV, or another single-file container `shared.containers` allows) as
    16 kHz mono float32, checked for length."""
    if not body:
        raise InvalidAudioError("empty request body: send a WAV clip of at most 30 s")
    audio = read_pcm16_wav(body)
    if audio is None:
        try:
            audio = decode_clip_bytes(body)
        except UnsupportedMediaError as exc:
            raise UnsupportedMediaError(
                f"request body is not a clip this server decodes ({exc.message}); send a WAV clip"
            ) from exc
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
    return audio[: int(MAX_CLIP_SEC * SAMPLE_RATE_HZ)]


@dataclass(frozen=True)
class PreparedClip:
    """A decoded clip, where its speech is, and the first window's log-mel features, computed
    when the request arrives (in the request's thread) so that work overlaps the model running
    the previous batch instead of adding to it."""

    audio: np.ndarray
    speech: list[Span]
    features: np.ndarray | None
    """Features of the first window (all the speech); None when there is no speech."""
    language_hint: str | None = None
    """The language the clip's job has been heard in so far (the chunk worker's
    `X-Language-Hint`): its windows' `prior`."""

    @property
    def duration_sec(self) -> float:
        return len(self.audio) / SAMPLE_RATE_HZ


class ClipEngine(Protocol):
    """What the model server needs of an engine (`app.py`, the batcher). `loading.load_engine`
    picks one by `WHISPER_MODEL`: `WhisperEngine` for real weights, `RandomEngine`
    (`random_engine.py`) for the random models."""

    def prepare(self, audio: np.ndarray, speech: list[Span] | None = None) -> PreparedClip: ...

    def transcribe_batch(
        self,
        clips: Sequence[PreparedClip],
        options: DecodeOptions,
        abandoned: Callable[[], bool] = ...,
    ) -> list[ClipTranscription]: ...

    def warm_up(self) -> None: ...

    @property
    def languages(self) -> frozenset[str]:
        """The language codes the model reads: `ENGLISH_ONLY` for `tiny.en`;
        a multilingual one's, as its tokenizer has them (`yue` only from large-v3 on)."""
        ...


ResultT = TypeVar("ResultT")
"""What an engine keeps of a clip's decoded windows until its segments are made."""


class WindowEngine(ABC, Generic[ResultT]):
    """A loaded model decoding clips in rounds of batched windows (the module docstring): the
    rounds, language halving and the rounds' metrics. Subclasses say what a decoded window
    yields (`_read`, which returns the next round's windows) and how a clip's yield becomes
    segments (`_segments`)."""

    fallback_by_default = True
    """`temperature_fallback` when `WHISPER_TEMPERATURE_FALLBACK` is unset."""

    def __init__(
        self, model: WhisperModel, settings: WhisperSettings, metrics: ModelMetrics | None = None
    ) -> None:
        self.model = model
        self.settings = settings
        self.metrics = metrics or ModelMetrics()
        full_window = settings.encode_full_window
        if full_window is None:
            full_window = model.model.device == "cuda"
        self.decoder = Decoder(model, full_window=full_window)
        fallback = settings.temperature_fallback
        self.temperature_fallback = self.fallback_by_default if fallback is None else fallback

    @functools.cached_property
    def languages(self) -> frozenset[str]:
        if not self.model.model.is_multilingual:
            return ENGLISH_ONLY
        tokens = self.model.hf_tokenizer
        return frozenset(c for c in LANGUAGE_NAMES if tokens.token_to_id(f"<|{c}|>") is not None)

    def prepare(self, audio: np.ndarray, speech: list[Span] | None = None) -> PreparedClip:
        if speech is None:
            speech = speech_spans(audio)
        duration = len(audio) / SAMPLE_RATE_HZ
        speech = [(max(0.0, s), min(duration, e)) for s, e in speech if e > s and s < duration]
        if not speech:
            return PreparedClip(audio, [], None)
        first = Window(0, speech[0][0], speech[-1][1])
        return PreparedClip(audio, speech, self._features(audio, first))

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> ClipTranscription:
        """One clip (tests and tools; the server batches through `transcribe_batch`)."""
        return self.transcribe_batch([self.prepare(audio)], options)[0]

    def transcribe_batch(
        self,
        clips: Sequence[PreparedClip],
        options: DecodeOptions,
        abandoned: Callable[[], bool] = lambda: False,
    ) -> list[ClipTranscription]:
        """Every clip's segments, with their words (callers drop what wasn't asked for).
        Between rounds, `abandoned()` true (every caller has gone) ends the work early."""
        request = DecodeRequest(
            options,
            beam_size=self.settings.beam_size,
            temperature_fallback=self.temperature_fallback,
        )
        results = [self._new_result() for _ in clips]
        incomplete: set[int] = set()
        windows = [
            Window(
                i,
                clip.speech[0][0],
                clip.speech[-1][1],
                features=clip.features,
                prior=clip.language_hint,
            )
            for i, clip in enumerate(clips)
            if clip.speech
        ]
        for round_number in range(MAX_ROUNDS):
            if not windows or abandoned():
                break
            logger.debug(
                "round %d: %d windows, %.1f s",
                round_number + 1,
                len(windows),
                sum(w.end_sec - w.start_sec for w in windows),
            )
            windows = self._round(clips, windows, results, request)
        else:
            incomplete = self._give_up(windows)
        return [
            self._transcription(
                clip, result, options, incomplete=i in incomplete or self._gave_up(result)
            )
            for i, (clip, result) in enumerate(zip(clips, results, strict=True))
        ]

    def warm_up(self) -> None:
        """Run every model call once on a tiny input so the first request pays no lazy set-up
        (a full decode of silence would cost tens of seconds for a real model)."""
        audio = np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)
        speech_spans(audio)
        features = self._features(audio, Window(0, 0.0, 1.0))
        for batch in (1, 2):
            encoder_output = self.decoder.encode([features] * batch)
            request = DecodeRequest(beam_size=self.settings.beam_size)
            languages = [
                c for c, _ in self.decoder.languages(encoder_output, request, [None] * batch)
            ]
            self.decoder.generate(encoder_output, languages, request, max_new_tokens=2)
            self._warm_up_read(encoder_output, languages)

    # -- what an engine does with decoded windows ----------------------------------------------

    @abstractmethod
    def _new_result(self) -> ResultT:
        """An empty yield for one clip."""

    @abstractmethod
    def _read(
        self,
        clips: Sequence[PreparedClip],
        windows: list[Window],
        encoder_output: object,
        decoded: list[Decoded],
        results: list[ResultT],
        request: DecodeRequest,
    ) -> list[Window]:
        """Take what the decoded windows yield into their clips' results; return the windows
        the next round must decode."""

    @abstractmethod
    def _segments(
        self, result: ResultT, speech: Sequence[Span]
    ) -> list[tuple[ClipSegment, Decoded]]:
        """A clip's segments, each with the decode its text came from (`speech`: the clip's)."""

    def _gave_up(self, result: ResultT) -> bool:
        """Whether a round gave up on some of the clip's speech (none do by default)."""
        return False

    def _warm_up_read(self, encoder_output: object, languages: list[str]) -> None:
        """Run the model calls `_read` makes once (nothing by default)."""

    # -- one round ---------------------------------------------------------------------------

    def _round(
        self,
        clips: Sequence[PreparedClip],
        windows: list[Window],
        results: list[ResultT],
        request: DecodeRequest,
    ) -> list[Window]:
        """Decode one round of windows; return the windows of the next round. Windows may be
        encoded at their own length (`_features`), so those of one length are decoded
        together, shortest first: a window's transcript never depends on the windows that
        share its batch."""
        self.metrics.rounds.inc()
        windows = [
            w
            if w.features is not None
            else replace(w, features=self._features(clips[w.clip].audio, w))
            for w in windows
        ]
        lengths = sorted({_frames(w) for w in windows})
        follow_up: list[Window] = []
        for length in lengths:
            group = [w for w in windows if _frames(w) == length]
            follow_up += self._decode(clips, group, results, request)
        return follow_up

    def _decode(
        self,
        clips: Sequence[PreparedClip],
        windows: list[Window],
        results: list[ResultT],
        request: DecodeRequest,
    ) -> list[Window]:
        """Decode windows of one encoded length together; return the next round's windows."""
        encoder_output = self.decoder.encode([_features_of(w) for w in windows])
        languages = self.decoder.languages(
            encoder_output, request, [w.hint for w in windows], [w.prior for w in windows]
        )
        languages, recheck = self._recheck_languages(clips, windows, languages, request)
        follow_up, kept = self._split_languages(
            clips, windows, encoder_output, languages, request, recheck
        )
        if not kept:
            return follow_up
        encoder_output = select(encoder_output, kept)
        windows = [windows[i] for i in kept]
        decoded = self.decoder.decode(encoder_output, [languages[i] for i in kept], request)
        for window, result in zip(windows, decoded, strict=True):
            self.metrics.windows.labels(kind=window.kind).inc()
            self.metrics.fallbacks.inc(result.tries - 1)
        return follow_up + self._read(clips, windows, encoder_output, decoded, results, request)

    def _recheck_languages(
        self,
        clips: Sequence[PreparedClip],
        windows: list[Window],
        languages: list[tuple[str, float]],
        request: DecodeRequest,
    ) -> tuple[list[tuple[str, float]], _Recheck | None]:
        """A window encoded at its own length (a clip's first, on CPU) whose detection is unsure
        (below `LANGUAGE_SPLIT_BELOW`) or names another language than its job's (`prior`) is
        detected again on Whisper's 30 s encoding, what the detection was trained on: the short
        encoding is right for decoding but tips unsure detections (one Scottish sentence: Welsh
        or Latin short, English at 30 s, as faster-whisper detects it). A real switch of
        language stays one. Returns the languages and what was encoded again."""
        if request.options.language is not None:
            return languages, None
        todo = [
            i
            for i, w in enumerate(windows)
            if _frames(w) < FULL_WINDOW_FRAMES
            and (languages[i][1] < LANGUAGE_SPLIT_BELOW or w.prior not in (None, languages[i][0]))
        ]
        if not todo:
            return languages, None
        self.metrics.language_rechecks.inc(len(todo))
        full = [self.decoder.features(_audio_of(clips, windows[i]), full_window=True) for i in todo]
        recheck = _Recheck(todo, self.decoder.encode(full))
        again = self.decoder.languages(
            recheck.encoder_output,
            request,
            [windows[i].hint for i in todo],
            [windows[i].prior for i in todo],
        )
        checked = list(languages)
        for i, language in zip(todo, again, strict=True):
            checked[i] = language
        return checked, recheck

    def _split_languages(
        self,
        clips: Sequence[PreparedClip],
        windows: list[Window],
        encoder_output: object,
        languages: list[tuple[str, float]],
        request: DecodeRequest,
        recheck: _Recheck | None = None,
    ) -> tuple[list[Window], list[int]]:
        """Halve the windows that may hold two languages (detection uncertain, or its halves
        disagree); return the halves and the indices of the windows to decode now."""
        if request.options.language is not None:
            return [], list(range(len(windows)))
        splits = [
            None
            if w.retried or w.accept or w.splits >= MAX_SPLITS
            else split_window(w, clips[w.clip].speech)
            for w in windows
        ]
        cuts = [
            halves[0].end_sec - w.start_sec if halves else None
            for w, halves in zip(windows, splits, strict=True)
        ]
        # A half keeps the job's language, else its window's, unless its own detection finds
        # another clearly likelier: a switch inside the window is clear; an accent is not.
        priors = [w.prior or language for w, (language, _) in zip(windows, languages, strict=True)]
        # A window detected again at 30 s has its halves told apart there too.
        again = set(recheck.indices) if recheck else set()
        short_cuts = [None if i in again else cut for i, cut in enumerate(cuts)]
        parts = self.decoder.halves_languages(encoder_output, short_cuts, request, priors)
        if recheck:
            full_parts = self.decoder.halves_languages(
                recheck.encoder_output,
                [cuts[i] for i in recheck.indices],
                request,
                [priors[i] for i in recheck.indices],
            )
            for i, part in zip(recheck.indices, full_parts, strict=True):
                parts[i] = part
        follow_up: list[Window] = []
        kept: list[int] = []
        for index, (window, halves, part) in enumerate(zip(windows, splits, parts, strict=True)):
            code, probability = languages[index]
            differ = part is not None and part[0] != part[1] and probability < LANGUAGE_CERTAIN
            # The job's own language, plausible here, needs no certainty of its own: only
            # halves that disagree (a switch inside the window) split it.
            unsure = probability < LANGUAGE_SPLIT_BELOW and code != window.prior
            if halves is None or not (unsure or differ):
                kept.append(index)
                continue
            logger.debug(
                "halving window %.1f-%.1f (%s %.2f)",
                window.start_sec,
                window.end_sec,
                *languages[index],
            )
            self.metrics.language_splits.inc()
            # Each half's language as seen in the whole window's context is its hint: a half
            # alone has less audio to tell its language by.
            hints = part or (None, None)
            follow_up += [
                replace(h, hint=hint, retried=False, splits=window.splits + 1, kind="language")
                for h, hint in zip(halves, hints, strict=True)
            ]
        return follow_up, kept

    def _give_up(self, windows: list[Window]) -> set[int]:
        """Windows still open when the rounds ran out: counted, logged; returns their clips."""
        if not windows:
            return set()
        self.metrics.windows_given_up.inc(len(windows))
        logger.info(
            "gave up on %d windows (%.1f s) after %d rounds: their clips are incomplete",
            len(windows),
            sum(w.end_sec - w.start_sec for w in windows),
            MAX_ROUNDS,
        )
        return {w.clip for w in windows}

    def _features(self, audio: np.ndarray, window: Window) -> np.ndarray:
        """A window's log-mel features: a clip's first window at its own length (on CPU), the
        later rounds' windows (a gap, a retry, a language half: where the model struggled)
        at Whisper's full 30 s, which lost fewer sentences of the code-switching file
        (`make bench-accuracy`: 2-4 against 9 with every window short)."""
        start = int(window.start_sec * SAMPLE_RATE_HZ)
        end = int(window.end_sec * SAMPLE_RATE_HZ)
        return self.decoder.features(audio[start:end], full_window=window.kind != "clip")

    # -- the result ----------------------------------------------------------------------------

    def _transcription(
        self, clip: PreparedClip, result: ResultT, options: DecodeOptions, *, incomplete: bool
    ) -> ClipTranscription:
        pairs = sorted(self._segments(result, clip.speech), key=lambda pair: pair[0].start_sec)
        segments = [segment for segment, _ in pairs]
        language, probability = _main_language(pairs, options)
        return ClipTranscription(
            segments=clamp_segments(segments, clip.duration_sec),
            language=language,
            language_probability=probability,
            duration_sec=clip.duration_sec,
            speech_sec=round(sum(e - s for s, e in clip.speech), 3),
            incomplete=incomplete,
        )


@dataclass
class _Words:
    """The words a clip's windows yielded so far, each with the decode it came from."""

    words: list[tuple[AlignedWord, Decoded]] = field(default_factory=list)
    gave_up: bool = False
    """A retried window still found no words in speech: the clip is incomplete."""

    def accept(self, words: list[AlignedWord], decoded: Decoded) -> list[AlignedWord]:
        """Add words that don't overlap words already accepted; return the ones added."""
        taken = [(w.start_sec, w.end_sec) for w, _ in self.words]
        added = [w for w in words if not any(_overlaps(w, s, e) for s, e in taken)]
        self.words += [(w, decoded) for w in added]
        return added


def _overlaps(word: AlignedWord, start: float, end: float) -> bool:
    overlap = min(word.end_sec, end) - max(word.start_sec, start)
    return overlap > 0.5 * max(word.end_sec - word.start_sec, 1e-3)


class WhisperEngine(WindowEngine[_Words]):
    """Real weights: every decoded window's words aligned to the audio, and the speech they
    leave uncovered decoded again in the next round."""

    def _new_result(self) -> _Words:
        return _Words()

    def _gave_up(self, result: _Words) -> bool:
        return result.gave_up

    def _read(
        self,
        clips: Sequence[PreparedClip],
        windows: list[Window],
        encoder_output: object,
        decoded: list[Decoded],
        results: list[_Words],
        request: DecodeRequest,
    ) -> list[Window]:
        with_text = [i for i, d in enumerate(decoded) if d.has_text]
        aligned = self._align(encoder_output, windows, decoded, with_text, request)
        follow_up: list[Window] = []
        for index, (window, result) in enumerate(zip(windows, decoded, strict=True)):
            speech = speech_within(clips[window.clip].speech, window)
            words = aligned.get(index, [])
            past = words_past_the_audio(words)
            if past:
                self.metrics.words_past_the_audio.inc(past)
                words = words[:-past]
            if twice := squeezed_copies(words):
                self.metrics.words_past_the_audio.inc(len(twice))
                words = [w for i, w in enumerate(words) if i not in twice]
            for word in words:
                word.start_sec += window.start_sec
                word.end_sec += window.start_sec
            snap_to_speech(words, speech)
            if window.accept is not None:
                low, high = window.accept
                words = [w for w in words if low <= (w.start_sec + w.end_sec) / 2 < high]
            accepted = results[window.clip].accept(words, result)
            spans = [(w.start_sec, w.end_sec) for w in accepted]
            if left := given_up_speech(window, speech, spans):
                self.metrics.windows_given_up.inc()
                logger.info("a retried window left %.1f s of speech without words", left)
                results[window.clip].gave_up = True
            follow_up += uncovered_windows(
                window,
                speech,
                spans,
                clips[window.clip].duration_sec,
                result.language,
            )
        return follow_up

    def _align(
        self,
        encoder_output: object,
        windows: list[Window],
        decoded: list[Decoded],
        indices: list[int],
        request: DecodeRequest,
    ) -> dict[int, list[AlignedWord]]:
        if not indices:
            return {}
        # One call for the batch: CTranslate2 aligns with one start sequence, so the most
        # common language's (the alignment heads barely depend on it).
        languages = [decoded[i].language for i in indices]
        tokenizer = self.decoder.tokenizer(
            max(set(languages), key=languages.count), request.options.task
        )
        texts = [decoded[i].tokens if i in indices else [] for i in range(len(windows))]
        durations = [w.end_sec - w.start_sec for w in windows]
        words = align_words(self.decoder.ct2, encoder_output, tokenizer, texts, durations)
        return {i: words[i] for i in indices}

    def _warm_up_read(self, encoder_output: object, languages: list[str]) -> None:
        tokenizer = self.decoder.tokenizer(languages[0])
        batch = len(languages)
        align_words(
            self.decoder.ct2,
            encoder_output,
            tokenizer,
            [tokenizer.encode(" hi")] * batch,
            [1.0] * batch,
        )

    def _segments(
        self, result: _Words, speech: Sequence[Span]
    ) -> list[tuple[ClipSegment, Decoded]]:
        words = sorted(result.words, key=lambda pair: pair[0].start_sec)
        # Once every round is done: the coverage check saw the words as aligned.
        widen_instant_words([w for w, _ in words], speech)
        by_decode: dict[int, Decoded] = {id(w): d for w, d in words}
        pairs = []
        for group in split_segments([w for w, _ in words], [d for _, d in words]):
            decoded = by_decode[id(group[0])]
            text = "".join(w.word for w in group)
            segment_words = [
                Word(
                    start_sec=round(w.start_sec, 3),
                    end_sec=round(w.end_sec, 3),
                    word=w.word,
                    probability=round(w.probability, 4),
                )
                for w in group
            ]
            segment = segment_from(
                group[0].start_sec, group[-1].end_sec, text, decoded, segment_words
            )
            pairs.append((segment, decoded))
        return pairs


def segment_from(
    start: float, end: float, text: str, decoded: Decoded, words: list[Word] | None
) -> ClipSegment:
    """A segment of a clip, with the scores of the decode its text came from."""
    return ClipSegment(
        start_sec=round(start, 3),
        end_sec=round(end, 3),
        text=text,
        words=words,
        language=decoded.language,
        avg_logprob=round(decoded.avg_logprob, 4),
        compression_ratio=round(decoded.compression_ratio, 4),
        no_speech_prob=round(decoded.no_speech_prob, 4),
        temperature=decoded.temperature,
    )


def _main_language(
    pairs: list[tuple[ClipSegment, Decoded]], options: DecodeOptions
) -> tuple[str | None, float]:
    """The requested language, or the one with most text; None (probability 0) when nothing
    was said and none was requested: a clip without words has no language to name."""
    if options.language is not None:
        return options.language, 1.0
    counts: dict[str, int] = {}
    for segment, _ in pairs:
        counts[segment.language] = counts.get(segment.language, 0) + len(segment.text)
    if not counts:
        return None, 0.0
    language = max(counts, key=lambda code: counts[code])
    probability = max(d.language_probability for _, d in pairs if d.language == language)
    return language, round(probability, 4)


def clamp_segments(segments: list[ClipSegment], duration: float) -> list[ClipSegment]:
    """Keep segments inside [0, duration], in order and non-overlapping."""
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


@dataclass(frozen=True)
class _Recheck:
    """Windows of one batch encoded again at 30 s for their language: their indices, and that
    encoding (in the same order)."""

    indices: list[int]
    encoder_output: object


def _audio_of(clips: Sequence[PreparedClip], window: Window) -> np.ndarray:
    start = int(window.start_sec * SAMPLE_RATE_HZ)
    return clips[window.clip].audio[start : int(window.end_sec * SAMPLE_RATE_HZ)]


def _features_of(window: Window) -> np.ndarray:
    if window.features is None:
        raise ValueError("a window is decoded before its features are computed")
    return window.features


def _frames(window: Window) -> int:
    return int(_features_of(window).shape[-1])
