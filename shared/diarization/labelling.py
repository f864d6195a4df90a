"""Speakers onto the transcript: each segment (and word) gets the label of whoever speaks it.

A segment with word timestamps is labelled word by word: a word takes the label whose turns
cover most of it (a word in a pause between turns takes the label of the nearest labelled
word of its segment), and the segment is split wherever the label changes, so no segment
spans two speakers; each part's text is its words joined, its times its first word's start
and last word's end. A segment without words is labelled whole, with the label that speaks
most of it (or, in a pause, the nearest turn's). `overlapping_speakers` lists the others who
speak *at once* with the segment's speaker (at least `MIN_OVERLAP_SEC` of it) inside the
segment.
"""

from __future__ import annotations

import numpy as np

from shared.diarization.clustering import SpeakerTimeline
from shared.schemas import ChunkSegment, Word

MIN_OVERLAP_SEC = 0.2
"""Speech at once with the segment's speaker that makes another an overlapping speaker."""

MIN_WORD_SPAN_SEC = 0.02
"""A word's span is widened to this, so a zero-length word still meets the turn it sits in."""


def label_segments(segments: list[ChunkSegment], timeline: SpeakerTimeline) -> list[ChunkSegment]:
    """The segments with `speaker` (and their words' `speaker`, `overlapping_speakers`),
    split where their words change speaker. An empty timeline leaves them unlabelled."""
    if not timeline.turns:
        return list(segments)
    index = _TurnIndex(timeline)
    labelled: list[ChunkSegment] = []
    for segment in segments:
        if not segment.words:
            speaker = index.majority(segment.start_sec, segment.end_sec)
            labelled.append(_labelled(segment, speaker, index, {}))
            continue
        words = segment.words
        labels = _word_labels(words, index)
        if labels is None:
            speaker = index.majority(segment.start_sec, segment.end_sec)
            labelled.append(_labelled(segment, speaker, index, {"words": _with(words, speaker)}))
            continue
        runs = _runs(labels)
        if len(runs) == 1:
            speaker = labels[0]
            labelled.append(_labelled(segment, speaker, index, {"words": _with(words, speaker)}))
            continue
        for first, end in runs:
            part = words[first:end]
            speaker = labels[first]
            update = {
                "start_sec": part[0].start_sec,
                "end_sec": part[-1].end_sec,
                "text": "".join(word.word for word in part),
                "words": _with(part, speaker),
            }
            labelled.append(_labelled(segment, speaker, index, update))
    return labelled


def _labelled(
    segment: ChunkSegment, speaker: str, index: _TurnIndex, update: dict[str, object]
) -> ChunkSegment:
    labelled = segment.model_copy(update=update | {"speaker": speaker})
    others = index.at_once(speaker, labelled.start_sec, labelled.end_sec)
    labelled.overlapping_speakers = others or None
    return labelled


def _with(words: list[Word], speaker: str) -> list[Word]:
    return [word.model_copy(update={"speaker": speaker}) for word in words]


def _word_labels(words: list[Word], index: _TurnIndex) -> list[str] | None:
    """Each word's label; None when no word meets any turn. A word keeps the previous word's
    label while that speaker still covers half of it (overlapped speech stays with the voice
    being transcribed)."""
    found: list[str | None] = []
    for word in words:
        previous = found[-1] if found else None
        if previous is not None and index.covers(previous, word.start_sec, word.end_sec) >= 0.5:
            found.append(previous)
        else:
            found.append(index.most(word.start_sec, word.end_sec))
    known = [i for i, label in enumerate(found) if label is not None]
    if not known:
        return None
    labels: list[str] = []
    for i, label in enumerate(found):
        if label is None:
            label = found[min(known, key=lambda k: abs(k - i))]
        assert label is not None
        labels.append(label)
    return labels


def _runs(labels: list[str]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i, label in enumerate(labels):
        if runs and labels[runs[-1][0]] == label:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


class _TurnIndex:
    """Each label's turns merged and sorted, for overlap sums by bisection."""

    def __init__(self, timeline: SpeakerTimeline) -> None:
        spans: dict[str, list[tuple[float, float]]] = {}
        for start, end, label in timeline.turns:
            spans.setdefault(label, []).append((start, end))
        self.labels = list(dict.fromkeys(timeline.speakers + list(spans)))
        self._turns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for label, items in spans.items():
            merged: list[list[float]] = []
            for start, end in sorted(items):
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            array = np.array(merged, dtype=np.float64)
            self._turns[label] = (array[:, 0], array[:, 1])

    def spans(self, label: str, start: float, end: float) -> list[tuple[float, float]]:
        """The label's speech within [start, end]."""
        starts, ends = self._turns.get(label, (np.zeros(0), np.zeros(0)))
        first = int(np.searchsorted(ends, start, side="right"))
        last = int(np.searchsorted(starts, end, side="left"))
        return [
            (max(float(starts[i]), start), min(float(ends[i]), end))
            for i in range(first, last)
            if min(float(ends[i]), end) > max(float(starts[i]), start)
        ]

    def seconds(self, label: str, start: float, end: float) -> float:
        return sum(b - a for a, b in self.spans(label, start, end))

    def covers(self, label: str, start: float, end: float) -> float:
        """The share of [start, end] (widened to MIN_WORD_SPAN_SEC) that `label` speaks."""
        middle, half = (start + end) / 2, max(end - start, MIN_WORD_SPAN_SEC) / 2
        return self.seconds(label, middle - half, middle + half) / (2 * half)

    def most(self, start: float, end: float) -> str | None:
        """The label speaking most of [start, end]; None when nobody speaks in it."""
        middle, half = (start + end) / 2, max(end - start, MIN_WORD_SPAN_SEC) / 2
        held = {label: self.seconds(label, middle - half, middle + half) for label in self.labels}
        best = max(held, key=held.__getitem__)
        return best if held[best] > 0 else None

    def majority(self, start: float, end: float) -> str:
        """`most`, or in a pause the label of the nearest turn."""
        label = self.most(start, end)
        if label is not None:
            return label
        middle = (start + end) / 2

        def distance(label: str) -> float:
            starts, ends = self._turns[label]
            return float(np.maximum(np.maximum(starts - middle, middle - ends), 0.0).min())

        return min(self._turns, key=distance)

    def at_once(self, speaker: str, start: float, end: float) -> list[str]:
        """Others speaking at once with `speaker` for at least MIN_OVERLAP_SEC in [start, end]."""
        own = self.spans(speaker, start, end)
        others = []
        for label in self.labels:
            if label == speaker:
                continue
            held = sum(self.seconds(label, a, b) for a, b in own)
            if held >= MIN_OVERLAP_SEC:
                others.append(label)
        return others
