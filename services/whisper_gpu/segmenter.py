"""Aligned words -> segments: sentence by sentence, edges on the speech.

Windows are decoded without timestamp tokens, so segments are made here from the aligned words:
a segment ends after a word that ends a sentence, before a pause of `pause_sec`, or where a
segment would grow past `max_segment_sec` (cut at its widest pause). Its start and end are its
first word's start and last word's end, so a segment never includes the silence around it
(Whisper's own timestamps run from one segment's start to the next one's, pause included).
Words are first moved onto the VAD's speech: a word that begins in a stretch without speech
begins where the speech does. A word left with no time at all (the path gave it no frame, or it
was moved onto a speech edge) is then given some, so that no segment, word or subtitle cue lasts
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.whisper_gpu.alignment import SENTENCE_END, AlignedWord
from shared.vad import Span


def snap_to_speech(words: list[AlignedWord], speech: Sequence[Span]) -> None:
    """Keep each word inside the speech span it overlaps most: the alignment path often runs a
    sentence's last word on into the pause, sometimes into the next sentence's span. A word
    placed wholly in a pause ends the speech before it (the path drags a sentence's last
    words along), or starts the speech after it when none came before."""
    if not speech:
        return
    for word in words:
        overlaps = [
            (min(e, word.end_sec) - max(s, word.start_sec), s, e)
            for s, e in speech
            if s < word.end_sec and e > word.start_sec
        ]
        if not overlaps:
            before = [e for _, e in speech if e <= word.start_sec]
            edge = before[-1] if before else next(s for s, _ in speech if s >= word.end_sec)
            word.start_sec = word.end_sec = edge
            continue
        _, start, end = max(overlaps)
        word.start_sec = min(max(word.start_sec, start), end)
        word.end_sec = max(min(word.end_sec, end), word.start_sec)


INSTANT_SEC = 0.02
"""A word shorter than one alignment frame (20 ms) has no time of its own."""
INSTANT_WORD_SEC = 0.3
"""The time an instant word is given, at most: about a short word's length."""


def widen_instant_words(words: list[AlignedWord], speech: Sequence[Span]) -> None:
    """Give each word without time (`INSTANT_SEC`) up to `INSTANT_WORD_SEC` of the free time
    before it, else after it, within its speech span and never over a neighbour word. Such a
    word is most often a short reply said over the end of another's sentence ("Okay." at
    30.061-30.061 s in conversation_2v_143s.mp3, spoken 29.72-30.16 s; faster-whisper times it
    30.025-30.025): the path reaches it late, so the time it had lies before it. A word with
    no free time on either side (a clitic squeezed between two words: "'un", "'a") takes up to
    half of its longer neighbour's time instead; only between two instants does it stay one."""
    for i, word in enumerate(words):
        if word.end_sec - word.start_sec >= INSTANT_SEC:
            continue
        around = [(s, e) for s, e in speech if s <= word.start_sec <= e]
        span_start, span_end = around[0] if around else (float("-inf"), float("inf"))
        before = words[i - 1] if i > 0 else None
        after = words[i + 1] if i + 1 < len(words) else None
        low = max(span_start, before.end_sec if before else span_start, 0.0)
        high = min(span_end, after.start_sec if after else span_end)
        if word.end_sec - low >= INSTANT_SEC:
            word.start_sec = max(low, word.end_sec - INSTANT_WORD_SEC)
        elif high - word.start_sec >= INSTANT_SEC:
            word.end_sec = min(high, word.start_sec + INSTANT_WORD_SEC)
        else:
            _share_a_neighbours_time(word, before, after)


def _share_a_neighbours_time(
    word: AlignedWord, before: AlignedWord | None, after: AlignedWord | None
) -> None:
    """The instant `word` takes up to half of its longer neighbour that touches it."""
    touching = [
        (n.end_sec - n.start_sec, n is after, n)
        for n in (before, after)
        if n is not None
        and abs((n.end_sec if n is before else n.start_sec) - word.start_sec) < INSTANT_SEC
    ]
    if not touching:
        return
    length, is_after, neighbour = max(touching, key=lambda item: item[0])
    share = min(INSTANT_WORD_SEC, length / 2)
    if share < INSTANT_SEC:
        return
    if is_after:
        neighbour.start_sec += share
        word.end_sec = neighbour.start_sec
    else:
        neighbour.end_sec -= share
        word.start_sec = neighbour.end_sec


def split_segments(
    words: Sequence[AlignedWord],
    sources: Sequence[object],
    pause_sec: float = 1.0,
    max_segment_sec: float = 12.0,
) -> list[list[AlignedWord]]:
    """Group words into segments at sentence ends, pauses and where the decode that produced
    them changes (another window, maybe another language); none longer than the maximum."""
    groups: list[list[AlignedWord]] = []
    current: list[AlignedWord] = []
    previous_source: object = None
    for word, source in zip(words, sources, strict=True):
        if current and (
            word.start_sec - current[-1].end_sec >= pause_sec or source is not previous_source
        ):
            groups.append(current)
            current = []
        current.append(word)
        previous_source = source
        if word.word.strip()[-1:] in SENTENCE_END:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return [piece for group in groups for piece in _limit_length(group, max_segment_sec)]


def _limit_length(words: list[AlignedWord], max_sec: float) -> list[list[AlignedWord]]:
    if len(words) < 2 or words[-1].end_sec - words[0].start_sec <= max_sec:
        return [words]

    # Cut at the widest gap, preferring one after a comma-like mark, then the middle.
    def gap(i: int) -> tuple[float, float]:
        bonus = 0.3 if words[i - 1].word.strip()[-1:] in ",;:，、" else 0.0
        return words[i].start_sec - words[i - 1].end_sec + bonus, -abs(i - len(words) / 2)

    cut = max(range(1, len(words)), key=gap)
    return _limit_length(words[:cut], max_sec) + _limit_length(words[cut:], max_sec)
