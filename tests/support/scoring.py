"""Scoring a transcript against a speech manifest: WER, lost sentences, duplicates, timing.

The reference is the manifest's sentences in order; the hypothesis is a list of segments (text,
start, end). Both are normalised (case, punctuation, a few British spellings) and aligned word by
word with jiwer; every alignment operation is charged to the reference sentence it falls in, so a
score can be split by sentence: lost sentences, sentences next to a cut vs elsewhere, and how far
each segment's edges are from the sentence edges they should sit on.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jiwer
import numpy as np

_SPELLING = {
    "neighbour": "neighbor",
    "neighbours": "neighbors",
    "harbour": "harbor",
    "theatre": "theater",
    "practised": "practiced",
    "colour": "color",
    "colours": "colors",
    "okay": "ok",
}


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation; apostrophes inside words are kept."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    words = [word.strip("'") for word in text.split()]
    return [_SPELLING.get(word, word) for word in words if word]


@dataclass(frozen=True)
class HypSegment:
    start_sec: float
    end_sec: float
    text: str
    language: str | None = None


@dataclass
class SentenceScore:
    index: int
    start_sec: float
    end_sec: float
    words: int
    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    duplicated: int = 0
    """Inserted words in runs of two or more that repeat words of this sentence or its
    neighbours in the same order: text said once and transcribed twice (typically on both
    sides of a cut). A lone inserted word ("the") is an ordinary insertion."""

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def lost(self) -> bool:
        """Half or more of its words missing: the sentence did not come back."""
        return self.deletions * 2 >= self.words


@dataclass
class Score:
    sentences: list[SentenceScore]
    start_errors: list[float] = field(default_factory=list)
    """Segment start - start of the sentence it begins, for each segment that begins one."""
    end_errors: list[float] = field(default_factory=list)
    """Segment end - end of the sentence it ends, for each segment that ends one."""
    misplaced_segments: int = 0
    """Segments whose start or end lies outside the sentences of their words (by > 0.5 s)."""

    @property
    def reference_words(self) -> int:
        return sum(s.words for s in self.sentences)

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.sentences)

    @property
    def wer(self) -> float:
        return wer_of(self.sentences)

    @property
    def lost(self) -> list[int]:
        return [s.index for s in self.sentences if s.lost]

    @property
    def duplicated_words(self) -> int:
        return sum(s.duplicated for s in self.sentences)

    @property
    def max_timing_error(self) -> float:
        errors = [abs(e) for e in self.start_errors + self.end_errors]
        return max(errors, default=0.0)

    def timing_within(self, tolerance_sec: float) -> float:
        errors = [abs(e) for e in self.start_errors + self.end_errors]
        return sum(e <= tolerance_sec for e in errors) / len(errors) if errors else 1.0


def wer_of(sentences: Sequence[SentenceScore]) -> float:
    words = sum(s.words for s in sentences)
    return sum(s.errors for s in sentences) / words if words else 0.0


def score(manifest: dict[str, Any], segments: Sequence[HypSegment]) -> Score:
    """Align the hypothesis with the manifest's sentences and charge every error to one."""
    ref_words: list[str] = []
    ref_sentence: list[int] = []
    sentences: list[SentenceScore] = []
    for index, sentence in enumerate(manifest["sentences"]):
        words = normalise(sentence["text"])
        ref_words += words
        ref_sentence += [index] * len(words)
        sentences.append(
            SentenceScore(
                index, float(sentence["start_sec"]), float(sentence["end_sec"]), len(words)
            )
        )
    hyp_words: list[str] = []
    hyp_segment: list[int] = []
    for index, segment in enumerate(segments):
        words = normalise(segment.text)
        hyp_words += words
        hyp_segment += [index] * len(words)
    result = Score(sentences)
    if not hyp_words:
        for sentence in sentences:
            sentence.deletions = sentence.words
        return result
    output = jiwer.process_words(" ".join(ref_words), " ".join(hyp_words))
    # For each hypothesis word, the reference sentence it was matched to (None = inserted).
    matched: list[int | None] = [None] * len(hyp_words)
    for chunk in output.alignments[0]:
        if chunk.type == "insert":
            owner = ref_sentence[max(0, chunk.ref_start_idx - 1)]
            sentence = sentences[owner]
            sentence.insertions += chunk.hyp_end_idx - chunk.hyp_start_idx
            inserted = hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx]
            nearby = _nearby_text(ref_words, ref_sentence, owner)
            if len(inserted) >= 2 and f" {' '.join(inserted[:2])} " in nearby:
                sentence.duplicated += len(inserted)
            continue
        ref_range = range(chunk.ref_start_idx, chunk.ref_end_idx)
        hyp_range = range(chunk.hyp_start_idx, chunk.hyp_end_idx)
        for ref_index in ref_range:
            sentence = sentences[ref_sentence[ref_index]]
            if chunk.type == "equal":
                sentence.hits += 1
            elif chunk.type == "substitute":
                sentence.substitutions += 1
            else:
                sentence.deletions += 1
        for offset, hyp_index in enumerate(hyp_range):
            if chunk.type in ("equal", "substitute"):
                matched[hyp_index] = ref_sentence[ref_range[min(offset, len(ref_range) - 1)]]
    _score_timing(result, segments, hyp_segment, matched)
    return result


def _nearby_text(ref_words: list[str], ref_sentence: list[int], owner: int) -> str:
    """The words of a sentence and its neighbours, space-delimited for substring checks."""
    words = [w for w, s in zip(ref_words, ref_sentence, strict=True) if abs(s - owner) <= 1]
    return f" {' '.join(words)} "


def _score_timing(
    result: Score,
    segments: Sequence[HypSegment],
    hyp_segment: list[int],
    matched: list[int | None],
) -> None:
    by_segment: dict[int, list[int]] = {}
    for hyp_index, sentence in enumerate(matched):
        if sentence is not None:
            by_segment.setdefault(hyp_segment[hyp_index], []).append(sentence)
    for segment_index, owners in by_segment.items():
        segment = segments[segment_index]
        first, last = result.sentences[owners[0]], result.sentences[owners[-1]]
        starts_sentence = owners[0] != _previous_owner(by_segment, segment_index)
        ends_sentence = owners[-1] != _next_owner(by_segment, segment_index)
        if starts_sentence:
            result.start_errors.append(segment.start_sec - first.start_sec)
        if ends_sentence:
            result.end_errors.append(segment.end_sec - last.end_sec)
        if not (first.start_sec - 0.5 <= segment.start_sec <= first.end_sec + 0.5) or not (
            last.start_sec - 0.5 <= segment.end_sec <= last.end_sec + 0.5
        ):
            result.misplaced_segments += 1


def _previous_owner(by_segment: dict[int, list[int]], index: int) -> int | None:
    earlier = [i for i in by_segment if i < index]
    return by_segment[max(earlier)][-1] if earlier else None


def _next_owner(by_segment: dict[int, list[int]], index: int) -> int | None:
    later = [i for i in by_segment if i > index]
    return by_segment[min(later)][0] if later else None


def near_cuts(
    score: Score, cuts_sec: Sequence[float]
) -> tuple[list[SentenceScore], list[SentenceScore]]:
    """Sentences next to a cut (the last before it and the first after it) and the rest."""
    near: set[int] = set()
    starts = np.array([s.start_sec for s in score.sentences])
    for cut in cuts_sec:
        after = int(np.searchsorted(starts, cut))
        near.update(i for i in (after - 1, after) if 0 <= i < len(score.sentences))
    return (
        [s for s in score.sentences if s.index in near],
        [s for s in score.sentences if s.index not in near],
    )


def bootstrap_interval(
    sentences: Sequence[SentenceScore], rounds: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of the WER of these sentences, resampling sentences."""
    if not sentences:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    errors = np.array([s.errors for s in sentences], dtype=float)
    words = np.array([s.words for s in sentences], dtype=float)
    picks = rng.integers(0, len(sentences), size=(rounds, len(sentences)))
    wers = errors[picks].sum(axis=1) / np.maximum(words[picks].sum(axis=1), 1)
    low, high = np.percentile(wers, [2.5, 97.5])
    return float(low), float(high)
