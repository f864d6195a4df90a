"""One decoding pass over a batch of windows: encode, pick languages, generate, check quality.

A *window* is a stretch of one clip (at most 30 s) that the model decodes in one go. Windows are
decoded **without timestamp tokens**, as faster-whisper's `BatchedInferencePipeline` does: with
timestamps, Whisper is trained to stop at the last timestamp before a window's end whenever it
expects the next 30 s window to carry on (its long-form loop then seeks there), so a clip decoded
once with timestamps loses its last sentence. Times come from word alignment instead
(`alignment.py`), which also finds what the model left out (see `engine.py`).

Per window, as Whisper's own decoding loop does it:
- language: the one requested, or the most likely one among `languages` (all if not given);
- temperature fallback: a window whose text is too repetitive (gzip ratio > 2.4) or unlikely
  (mean log-probability < -1) is decoded again with sampling at 0.2, 0.6 and 1.0, keeping its
  best try (Whisper's ladder has six steps; three cost half as much on hard audio, where no
  step helped on our code-switching media, and change nothing on clean speech);
- no speech: a window Whisper rates as silence (no-speech probability > 0.6 and log-probability
  < -1) yields nothing;
- repetition loops that survive the fallback are cut after their first occurrence.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from shared.languages import ENGLISH
from shared.schemas import SAMPLE_RATE_HZ, DecodeOptions

COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
FALLBACK_TEMPERATURES = (0.2, 0.6, 1.0)
HINT_RATIO = 0.5
TOKENS_PER_SECOND = 50
"""Encoder output frames per second of audio (20 ms each; Whisper's name for it)."""
FULL_WINDOW_FRAMES = 3000
"""Whisper's 30 s window in log-mel frames (10 ms each), what it was trained on."""
MIN_ENCODED_FRAMES = 1000
"""The shortest stretch the encoder sees (10 s): a few seconds of speech then padding, the way
Whisper saw the ends of its training files."""
ENCODED_PADDING_FRAMES = 100
"""Padding after a window's speech (1 s), so the model hears it end."""


def encoded_frames(frames: int, full_window: bool) -> int:
    """How many log-mel frames the encoder sees for a window of `frames`: Whisper's 30 s, or
    (not `full_window`) the window's own plus 1 s, at least 10 s, an even count (the encoder
    halves it)."""
    if full_window:
        return FULL_WINDOW_FRAMES
    wanted = max(MIN_ENCODED_FRAMES, frames + ENCODED_PADDING_FRAMES)
    return min(FULL_WINDOW_FRAMES, wanted + wanted % 2)


@dataclass(frozen=True)
class DecodeRequest:
    """What every window in one pass shares: the clips' decoding options (one batch shares
    them: `DecodeOptions.batch_key`) and this server's decoding settings."""

    options: DecodeOptions = field(default_factory=DecodeOptions)
    """Language (or the allow-list detection picks among), task, prompt, first temperature
    (0: beam search; fallback only climbs from there), as the request gave them."""
    beam_size: int = 5
    temperature_fallback: bool = True


@dataclass
class Decoded:
    """A window's text tokens and the scores Whisper's quality checks use."""

    language: str
    language_probability: float
    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    temperature: float = 0.0
    tries: int = 1
    """Generate calls this window took: 1, plus one per fallback temperature tried."""

    @property
    def has_text(self) -> bool:
        """Tokens that Whisper does not rate as silence: something to read words from."""
        return bool(self.tokens) and not self.is_silence

    @property
    def is_silence(self) -> bool:
        return self.no_speech_prob > NO_SPEECH_THRESHOLD and self.avg_logprob < LOG_PROB_THRESHOLD

    @property
    def needs_fallback(self) -> bool:
        if self.is_silence:
            return False
        return (
            self.compression_ratio > COMPRESSION_RATIO_THRESHOLD
            or self.avg_logprob < LOG_PROB_THRESHOLD
        )


class Decoder:
    """Wraps a loaded faster-whisper model; every method takes and returns whole batches."""

    def __init__(self, model: WhisperModel, *, full_window: bool = False) -> None:
        self.model = model
        self.full_window = full_window
        self.ct2 = model.model
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        self._empty: np.ndarray | None = None

    def tokenizer(self, language: str, task: str = "transcribe") -> Tokenizer:
        key = (language, task)
        if key not in self._tokenizers:
            self._tokenizers[key] = Tokenizer(
                self.model.hf_tokenizer, self.ct2.is_multilingual, task=task, language=language
            )
        return self._tokenizers[key]

    def features(self, audio: np.ndarray, *, full_window: bool = False) -> np.ndarray:
        """Log-mel features of up to 30 s of audio, padded (`encoded_frames`): to 30 s if this
        decoder or the caller asks for it."""
        mel = self.model.feature_extractor(audio)[..., :-1]
        return padded(mel, encoded_frames(mel.shape[-1], self.full_window or full_window))

    def encode(self, features: Sequence[np.ndarray]) -> Any:
        """One encoder call for the batch, every window padded to the longest: the encoder's
        cost grows faster than its input (attention), so a 20 s window costs 0.4x a 30 s one."""
        frames = max(f.shape[-1] for f in features)
        return self.model.encode(np.stack([padded(f, frames) for f in features]))

    def languages(
        self,
        encoder_output: Any,
        request: DecodeRequest,
        hints: Sequence[str | None],
        priors: Sequence[str | None] | None = None,
    ) -> list[tuple[str, float]]:
        """(code, probability) per window: the requested language, or the likeliest allowed.

        A window's `hint` (the language of the window it continues), else its `prior` (the
        language its job has been heard in), wins unless the detection finds another language
        more than `1 / HINT_RATIO` times as likely: short windows carry little evidence of
        their language, their neighbours and the rest of the file a lot (faster-whisper
        detects once, on a file's first 30 s).
        """
        if request.options.language is not None or not self.ct2.is_multilingual:
            return [(request.options.language or ENGLISH, 1.0)] * len(hints)
        chosen = []
        priors = priors or [None] * len(hints)
        detected = self.ct2.detect_language(encoder_output)
        for ranked, hint, prior in zip(detected, hints, priors, strict=True):
            # Probabilities stay the model's own (not renormalised over an allow-list), so a
            # window between two allowed languages still looks uncertain.
            candidates = [(token[2:-2], float(p)) for token, p in ranked]
            if request.options.languages:
                candidates = [(c, p) for c, p in candidates if c in request.options.languages] or [
                    (request.options.languages[0], 0.0)
                ]
            top = candidates[0]
            plausible = [
                c
                for wanted in (hint, prior)
                if wanted is not None
                for c in candidates
                if c[0] == wanted and c[1] >= HINT_RATIO * top[1]
            ]
            chosen.append(plausible[0] if plausible else top)
        return chosen

    def halves_languages(
        self,
        encoder_output: Any,
        cuts_sec: Sequence[float | None],
        request: DecodeRequest,
        priors: Sequence[str | None] | None = None,
    ) -> list[tuple[str, str] | None]:
        """The likeliest language of each window's first and second part (split at its cut),
        without encoding again: the window's encoder output with the other part's frames
        replaced by those of an empty window. Whisper's encoder output is local enough that
        this tells two languages in one window apart (a window and its two halves encoded
        alone agree with it on our code-switching media)."""
        import ctranslate2

        todo = [i for i, cut in enumerate(cuts_sec) if cut is not None]
        result: list[tuple[str, str] | None] = [None] * len(cuts_sec)
        if not todo or request.options.language is not None or not self.ct2.is_multilingual:
            return result
        frames = on_host(encoder_output)
        empty = self._empty_encoding(frames.dtype)[: frames.shape[1]]
        spliced = []
        for i in todo:
            cut = min(frames.shape[1], round(float(cuts_sec[i] or 0) * TOKENS_PER_SECOND))
            first, second = frames[i].copy(), frames[i].copy()
            first[cut:] = empty[cut:]
            second[:cut] = empty[:cut]
            spliced += [first, second]
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(spliced)))
        hints: list[str | None] = [None] * len(spliced)
        half_priors = [(priors or [None] * len(cuts_sec))[i] for i in todo for _ in range(2)]
        codes = [code for code, _ in self.languages(view, request, hints, half_priors)]
        for k, i in enumerate(todo):
            result[i] = (codes[2 * k], codes[2 * k + 1])
        return result

    def _empty_encoding(self, dtype: Any) -> np.ndarray:
        if self._empty is None:
            silence = self.model.feature_extractor(np.zeros(SAMPLE_RATE_HZ // 10, np.float32))
            self._empty = on_host(self.encode([padded(silence, FULL_WINDOW_FRAMES)]))[0]
        return self._empty.astype(dtype)

    def generate(
        self,
        encoder_output: Any,
        languages: Sequence[str],
        request: DecodeRequest,
        *,
        temperature: float = 0.0,
        max_new_tokens: int | None = None,
    ) -> list[tuple[list[int], float, float]]:
        """(text tokens, mean log-probability, no-speech probability) per window."""
        prompts = [self.prompt(language, request) for language in languages]
        first = self.tokenizer(languages[0], request.options.task)
        if temperature > 0:
            kwargs: dict[str, Any] = {
                "beam_size": 1,
                "num_hypotheses": request.beam_size,
                "sampling_topk": 0,
                "sampling_temperature": temperature,
            }
        else:
            kwargs = {"beam_size": request.beam_size}
        max_length = self.model.max_length
        if max_new_tokens is not None:
            max_length = min(max_length, max(len(p) for p in prompts) + max_new_tokens)
        results = self.ct2.generate(
            encoder_output,
            prompts,
            max_length=max_length,
            suppress_blank=True,
            suppress_tokens=suppressed_tokens(first),
            return_scores=True,
            return_no_speech_prob=True,
            **kwargs,
        )
        decoded = []
        for result in results:
            tokens = [t for t in result.sequences_ids[0] if t < first.eot]
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1) if tokens else -10.0
            decoded.append((tokens, float(avg_logprob), float(result.no_speech_prob)))
        return decoded

    def prompt(self, language: str, request: DecodeRequest) -> list[int]:
        tokenizer = self.tokenizer(language, request.options.task)
        prompt: list[int] = []
        if request.options.prompt:
            previous = tokenizer.encode(" " + request.options.prompt.strip())
            prompt = [tokenizer.sot_prev, *previous[-(self.model.max_length // 2 - 1) :]]
        return [*prompt, *tokenizer.sot_sequence, tokenizer.no_timestamps]

    def decode(
        self, encoder_output: Any, languages: Sequence[tuple[str, float]], request: DecodeRequest
    ) -> list[Decoded]:
        """Each window's best decode: beam search (or sampling, when the request asks for a
        temperature above 0), then temperature fallback for the windows that fail the quality
        checks, then repetition loops cut."""
        codes = [code for code, _ in languages]
        first = request.options.temperature
        results = self.generate(encoder_output, codes, request, temperature=first)
        decoded = [
            Decoded(
                code, p, tokens, logprob, self.compression_ratio(tokens, code, request), nsp, first
            )
            for (code, p), (tokens, logprob, nsp) in zip(languages, results, strict=True)
        ]
        if request.temperature_fallback:
            self._fall_back(encoder_output, decoded, request)
        for window in decoded:
            window.tokens = cut_repetition(window.tokens)
        return decoded

    def _fall_back(
        self, encoder_output: Any, decoded: list[Decoded], request: DecodeRequest
    ) -> None:
        """Re-decode failing windows at rising temperatures; keep each window's best try."""
        best = dict(enumerate(decoded))
        tries = [1] * len(decoded)
        failing = [i for i, window in enumerate(decoded) if window.needs_fallback]
        for temperature in FALLBACK_TEMPERATURES:
            if temperature <= request.options.temperature:
                continue
            if not failing:
                break
            languages = [decoded[i].language for i in failing]
            subset = select(encoder_output, failing)
            results = self.generate(subset, languages, request, temperature=temperature)
            still = []
            for i, (tokens, logprob, nsp) in zip(failing, results, strict=True):
                tries[i] += 1
                attempt = Decoded(
                    decoded[i].language,
                    decoded[i].language_probability,
                    tokens,
                    logprob,
                    self.compression_ratio(tokens, decoded[i].language, request),
                    nsp,
                    temperature,
                )
                if _better(attempt, best[i]):
                    best[i] = attempt
                if attempt.needs_fallback:
                    still.append(i)
            failing = still
        for i, window in best.items():
            window.tries = tries[i]
            decoded[i] = window

    def compression_ratio(self, tokens: list[int], language: str, request: DecodeRequest) -> float:
        text = self.tokenizer(language, request.options.task).decode(tokens).strip()
        return compression_ratio(text)


def _better(attempt: Decoded, incumbent: Decoded) -> bool:
    """Prefer a decode that passes the repetition check, then the likelier one."""
    attempt_ok = attempt.compression_ratio <= COMPRESSION_RATIO_THRESHOLD
    incumbent_ok = incumbent.compression_ratio <= COMPRESSION_RATIO_THRESHOLD
    if attempt_ok != incumbent_ok:
        return attempt_ok
    return attempt.avg_logprob > incumbent.avg_logprob


def select(encoder_output: Any, indices: Sequence[int]) -> Any:
    """The encoder output of some windows of a batch (no second encoder pass). Goes through
    host memory, which CTranslate2 accepts on any device (as for multi-GPU encoding)."""
    import ctranslate2

    if list(indices) == list(range(encoder_output.shape[0])):
        return encoder_output
    array = on_host(encoder_output)[list(indices)]
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array))


def padded(mel: np.ndarray, frames: int) -> np.ndarray:
    """Log-mel features cut or padded with zeros to `frames`, as faster-whisper pads them."""
    from faster_whisper.audio import pad_or_trim

    return np.asarray(pad_or_trim(mel, frames))


def on_host(encoder_output: Any) -> np.ndarray:
    """An encoder output (a CTranslate2 StorageView, on any device) as an array in host memory."""
    import ctranslate2

    if encoder_output.device != "cpu":
        encoder_output = encoder_output.to_device(ctranslate2.Device.cpu)
    return np.asarray(encoder_output)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def suppressed_tokens(tokenizer: Tokenizer) -> list[int]:
    """Whisper's default (`suppress_tokens=[-1]`): symbols that are never speech, and the
    special tokens that must not appear inside a transcript."""
    special = [
        tokenizer.transcribe,
        tokenizer.translate,
        tokenizer.sot,
        tokenizer.sot_prev,
        tokenizer.sot_lm,
        tokenizer.no_speech,
    ]
    return sorted({*tokenizer.non_speech_tokens, *special})


def cut_repetition(tokens: list[int], max_period: int = 40) -> list[int]:
    """Cut a loop: a run of `p` tokens repeated back to back (5 times for p <= 2, else 3) is
    kept once, and everything after it dropped (the audio it covered is decoded again)."""
    n = len(tokens)
    for start in range(n):
        for period in range(1, min(max_period, (n - start) // 2) + 1):
            needed = 5 if period <= 2 else 3
            if start + period * needed > n:
                continue
            block = tokens[start : start + period]
            if all(
                tokens[start + k * period : start + (k + 1) * period] == block
                for k in range(1, needed)
            ):
                return tokens[: start + period]
    return tokens
