"""Word timestamps: decoded tokens aligned to the audio by Whisper's cross-attention.

CTranslate2's `Whisper.align` (a public API) runs the decoder over the known tokens and returns
a monotonic path through (token, 20 ms frame) pairs from the alignment heads. Turning that path
into words follows OpenAI Whisper's `timing.py` and faster-whisper's `add_word_timestamps` (both
MIT), which we own here rather than call: faster-whisper's helpers are private and change
between versions. Two of their guards matter for completeness checks downstream: a word at a
sentence edge can't stretch past twice the median word length (otherwise the path smears the
last word over speech the model never transcribed), and punctuation joins its neighbour word.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from faster_whisper.tokenizer import Tokenizer

from services.whisper_gpu.decoding import TOKENS_PER_SECOND

PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
SENTENCE_END = ".。!！?？"
_MAX_MEDIAN_WORD_SEC = 0.7
_IMPLAUSIBLE_WORD_SEC = 1.5
_NO_TIME_SEC = 0.5 / TOKENS_PER_SECOND
"""Less than half an alignment frame (20 ms): a word the path gave no frame of its own."""


@dataclass
class AlignedWord:
    word: str
    """As decoded, with its leading space: words join back into the text."""
    start_sec: float
    end_sec: float
    probability: float
    tokens: list[int]


def align_words(
    ct2_model: Any,
    encoder_output: Any,
    tokenizer: Tokenizer,
    texts: Sequence[list[int]],
    durations_sec: Sequence[float],
) -> list[list[AlignedWord]]:
    """Words with times (seconds from the start of each window) for a batch of windows."""
    words: list[list[AlignedWord]] = [[] for _ in texts]
    todo = [i for i, tokens in enumerate(texts) if tokens]
    if not todo:
        return words
    frames = [int(np.ceil(d * 100)) for d in durations_sec]
    results = ct2_model.align(
        encoder_output,
        tokenizer.sot_sequence,
        [list(tokens) for tokens in texts],
        frames,
        median_filter_width=7,
    )
    for index in todo:
        words[index] = _words_from_path(tokenizer, list(texts[index]), results[index])
        _limit_long_words(words[index])
        words[index] = _merge_punctuation(words[index])
    return words


def _words_from_path(tokenizer: Tokenizer, tokens: list[int], result: Any) -> list[AlignedWord]:
    pieces, piece_tokens = split_words(tokenizer, [*tokens, tokenizer.eot])
    if len(piece_tokens) <= 1:
        return []
    path = np.asarray(result.alignments, dtype=np.int64).reshape(-1, 2)
    text_index, time_index = path[:, 0], path[:, 1]
    jumps = np.pad(np.diff(text_index), (1, 0), constant_values=1).astype(bool)
    jump_times = time_index[jumps] / TOKENS_PER_SECOND
    boundaries = np.pad(np.cumsum([len(t) for t in piece_tokens[:-1]]), (1, 0))
    probabilities = np.asarray(result.text_token_probs, dtype=np.float64)
    words = []
    for i, (word, word_tokens) in enumerate(zip(pieces[:-1], piece_tokens[:-1], strict=True)):
        first, last = int(boundaries[i]), int(boundaries[i + 1])
        start = float(jump_times[min(first, len(jump_times) - 1)])
        end = float(jump_times[min(last, len(jump_times) - 1)])
        probability = float(np.mean(probabilities[first:last])) if last > first else 0.0
        words.append(AlignedWord(word, start, max(start, end), probability, word_tokens))
    return words


def words_past_the_audio(words: Sequence[AlignedWord]) -> int:
    """How many of a window's last words the model decoded past the audio it heard: a run of
    two or more words the alignment gave no time at its end. With a window encoded at its own
    length, that is most often the last sentence said again: two_voices_20s.wav's last clip
    came back as "... many requests together. A model server matches clips from many requests
    together." with every word of the second one at the clip's end. Real words always get a
    frame or more; had the model heard real speech there, the coverage check decodes it again
    (`windows.py`). A repeat that did get a few frames is `squeezed_copies`'."""
    run = 0
    for word in reversed(words):
        if word.end_sec - word.start_sec > _NO_TIME_SEC:
            break
        run += 1
    return run if run >= 2 else 0


_MIN_REPEAT_WORDS = 3
_SQUEEZED_SEC_PER_WORD = 0.05
"""Twenty words a second: three times faster than anyone speaks."""


def squeezed_copies(words: Sequence[AlignedWord]) -> set[int]:
    """Indices of words the model decoded twice in a window: of two equal stretches of
    `_MIN_REPEAT_WORDS` or more words, the copy the alignment squeezed under
    `_SQUEEZED_SEC_PER_WORD` a word, where the other took speakable time. Most often the last
    sentence said again into the window's last frames (the 2-voice bench file's first micro
    chunk: "... a lovely view on the sea. The set room had a lovely view on the sea.", the
    second copy in 0.16 s), but also inside: `base` on espeak's Scottish voice
    (tests/media/scottish_7s.mp3, an AVX2-only AMD CPU) decoded its sentences A B as A B A B,
    A at 0-2.16 s, then B in 0.03 s and A in 0.26 s, then B at 3.68-6.14 s. The copies with time
    stay. Stretches are tried longest first, so a long repeat is judged whole; a repeat said at
    speaking pace both times is speech, and stays."""

    def squeezed(start: int, length: int) -> bool:
        """Under the pace on average, and no word of it said at a speakable length (so a real
        word next to a squeezed repeat is not counted into it)."""
        stretch = words[start : start + length]
        span = stretch[-1].end_sec - stretch[0].start_sec
        longest = max(w.end_sec - w.start_sec for w in stretch)
        return span < length * _SQUEEZED_SEC_PER_WORD and longest < 2 * _SQUEEZED_SEC_PER_WORD

    short = [w.end_sec - w.start_sec < 2 * _SQUEEZED_SEC_PER_WORD for w in words]
    runs = range(len(words) - _MIN_REPEAT_WORDS + 1)
    if not any(all(short[i : i + _MIN_REPEAT_WORDS]) for i in runs):
        return set()  # no three short words in a row, so nothing squeezed: most windows
    text = [_bare(w.word) for w in words]
    dropped: set[int] = set()
    for length in range(len(words) // 2, _MIN_REPEAT_WORDS - 1, -1):
        starts: dict[tuple[str, ...], list[int]] = {}
        for start in range(len(words) - length + 1):
            starts.setdefault(tuple(text[start : start + length]), []).append(start)
        for same in starts.values():
            if len(same) < 2:
                continue
            fast = {start: squeezed(start, length) for start in same}
            timed = [start for start in same if not fast[start]]
            for start in same:
                stretch = range(start, start + length)
                if (
                    timed
                    and fast[start]
                    and dropped.isdisjoint(stretch)
                    and all(abs(start - s) >= length for s in timed)  # not overlapping it
                ):
                    dropped.update(stretch)
    return dropped


def _bare(word: str) -> str:
    return word.strip().strip(string.punctuation).lower()


def split_words(tokenizer: Tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """Whisper's word split: at spaces and punctuation, or at every character for languages
    written without spaces."""
    result: tuple[list[str], list[list[int]]] = tokenizer.split_to_word_tokens(tokens)
    return result


def _limit_long_words(words: list[AlignedWord]) -> None:
    """Words next to a sentence end may not exceed twice the median word length, and no word
    may last more than `_IMPLAUSIBLE_WORD_SEC`: the alignment path stretches a word over speech
    the model skipped, and a word that claims that speech would hide it from the coverage
    check."""
    durations = np.array([w.end_sec - w.start_sec for w in words])
    durations = durations[durations.nonzero()]
    if len(durations) == 0:
        return
    median = min(_MAX_MEDIAN_WORD_SEC, float(np.median(durations)))
    longest = 2 * median
    for i, word in enumerate(words):
        if word.end_sec - word.start_sec <= longest:
            continue
        ends_sentence = word.word.strip()[-1:] in SENTENCE_END
        follows_sentence = i > 0 and words[i - 1].word.strip()[-1:] in SENTENCE_END
        if ends_sentence or i == len(words) - 1:
            word.end_sec = word.start_sec + longest
        elif follows_sentence or i == 0:
            word.start_sec = word.end_sec - longest
        elif word.end_sec - word.start_sec > _IMPLAUSIBLE_WORD_SEC:
            word.end_sec = word.start_sec + longest


def _merge_punctuation(words: list[AlignedWord]) -> list[AlignedWord]:
    """Opening punctuation joins the next word, closing punctuation the previous one."""
    merged: list[AlignedWord] = []
    carry: AlignedWord | None = None
    for word in words:
        if carry is not None:
            word = AlignedWord(
                carry.word + word.word.lstrip() if carry.word.strip() else word.word,
                word.start_sec,
                word.end_sec,
                word.probability,
                carry.tokens + word.tokens,
            )
            carry = None
        bare = word.word.strip()
        if bare and word.word.startswith(" ") and bare in PREPEND_PUNCTUATION and len(bare) == 1:
            carry = word
            continue
        if (
            merged
            and bare
            and not word.word.startswith(" ")
            and all(c in APPEND_PUNCTUATION or c in string.punctuation for c in bare)
        ):
            previous = merged[-1]
            previous.word += word.word
            previous.tokens += word.tokens
            continue
        merged.append(word)
    if carry is not None:
        merged.append(carry)
    return merged
