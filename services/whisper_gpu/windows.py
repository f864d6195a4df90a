"""Windows: the stretches of a clip the model decodes, and the rules that make new ones.

A window is at most 30 s of one clip, decoded in one go. The first window of a clip spans its
speech; the engine makes more when

- a window may hold two languages: `split_window` halves it at its widest pause near the middle;
- the aligned words leave speech without words (`uncovered_windows`): before the first word,
  between two (a skipped sentence) or after the last (the model stopped early). Each such gap
  becomes a window that reaches `CONTEXT_SEC` into the words around it, for the model's sake
  (language, vocabulary), but only words inside the gap are taken from it (`accept`);
- a window with speech yields no words at all: it is tried once more, halved if it can be.

Pure functions on time spans, so every rule is unit-tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from shared.schemas import MAX_CLIP_SEC
from shared.vad import Span

UNCOVERED_SPEECH_SEC = 0.5
"""Speech without words longer than this is decoded again."""
COVERAGE_SLACK_SEC = 0.25
"""Aligned word edges may sit this far inside the speech they cover."""
CONTEXT_SEC = 3.0
"""A window over a gap also holds this much of the audio around it."""
MAX_CONTEXT_SEC = 8.0
"""A gap's window goes back at most this far to start at a pause."""
PAUSE_PADDING_SEC = 0.1
"""Of the pause before that speech, so its first sound is whole."""
MIN_SPLIT_SEC = 6.0
"""Windows shorter than this are never halved (too little audio to tell a language by)."""
MAX_SPLITS = 1
"""Halves are not halved again: shorter windows make language detection worse, not better."""

WindowKind = Literal["clip", "gap", "retry", "language"]
"""Why a window is decoded (a metric label): a clip's speech; speech the words left uncovered;
a window that gave no words, again; half of a window that may hold two languages."""


@dataclass
class Window:
    clip: int
    """Index of the clip in its batch."""
    start_sec: float
    end_sec: float
    retried: bool = False
    """Already a second try after a decode without words."""
    splits: int = 0
    """How many times the window this one came from was halved (for its language)."""
    features: np.ndarray | None = None
    """Log-mel features, once computed."""
    hint: str | None = None
    """The language of the window this one continues or was cut from."""
    prior: str | None = None
    """The language the clip's job has been heard in so far (its `language_hint`): chosen
    over the detection's first choice when it is plausible, as `hint` is."""
    accept: tuple[float, float] | None = None
    """Only words centred in this stretch are new (the rest of the window is context)."""
    kind: WindowKind = "clip"
    """Why it is decoded (counted by kind in `whisper_windows_total`)."""

    @property
    def duration_sec(self) -> float:
        return self.end_sec - self.start_sec


def speech_within(speech: list[Span], window: Window) -> list[Span]:
    """The speech spans of a clip cut to the window."""
    return [
        (max(s, window.start_sec), min(e, window.end_sec))
        for s, e in speech
        if e > window.start_sec and s < window.end_sec
    ]


def speech_between(speech: list[Span], start: float, end: float) -> float:
    """Seconds of speech between two times."""
    return sum(max(0.0, min(e, end) - max(s, start)) for s, e in speech)


def split_window(window: Window, clip_speech: list[Span]) -> list[Window] | None:
    """The window cut in two at its widest pause near the middle, if it has a pause and is long
    enough to halve."""
    speech = speech_within(clip_speech, window)
    if window.duration_sec < MIN_SPLIT_SEC or len(speech) < 2:
        return None
    middle = (window.start_sec + window.end_sec) / 2
    gaps = [(speech[i][1], speech[i + 1][0]) for i in range(len(speech) - 1)]
    gap = max(gaps, key=lambda g: (g[1] - g[0]) - 0.1 * abs((g[0] + g[1]) / 2 - middle))
    cut = (gap[0] + gap[1]) / 2
    return [
        replace(window, end_sec=cut, retried=True, features=None),
        replace(window, start_sec=cut, retried=True, features=None),
    ]


def given_up_speech(window: Window, speech: list[Span], word_spans: list[Span]) -> float:
    """Seconds of speech a retried window still left without a word: no round tries it again,
    so its clip comes back `incomplete` (a gap decoded, retried in halves, and still empty is
    speech the model cannot read, not silence the VAD misheard)."""
    if word_spans or not window.retried:
        return 0.0
    low, high = window.accept or (window.start_sec, window.end_sec)
    left = speech_between(speech, max(low, window.start_sec), min(high, window.end_sec))
    return left if left >= UNCOVERED_SPEECH_SEC * 2 else 0.0


def _context_start(speech: list[Span], gap_start: float) -> float:
    """Where a window over a gap starts: at the pause before the speech the gap begins in, when
    that is at most `MAX_CONTEXT_SEC` back (a window started mid-sentence, on the words before
    the gap, can read as no speech at all), else `CONTEXT_SEC` before the gap."""
    starts = [s for s, _ in speech if s <= gap_start]
    if starts and gap_start - starts[-1] <= MAX_CONTEXT_SEC:
        return max(0.0, starts[-1] - PAUSE_PADDING_SEC)
    return max(0.0, gap_start - CONTEXT_SEC)


def uncovered_windows(
    window: Window,
    speech: list[Span],
    word_spans: list[Span],
    clip_duration_sec: float,
    language: str,
) -> list[Window]:
    """Windows over the speech in `window` that the words (their time spans) left without
    words; `language` is the decoded window's, a hint for the new ones."""
    if not word_spans:
        total = speech_between(speech, window.start_sec, window.end_sec)
        if window.retried or total < UNCOVERED_SPEECH_SEC * 2:
            return []
        retries = split_window(window, speech) or [replace(window, retried=True)]
        return [replace(retry, kind="retry") for retry in retries]
    word_spans = sorted(word_spans)
    low, high = window.accept or (window.start_sec, window.end_sec)
    edges = [low, *(edge for span in word_spans for edge in span), high]
    follow_up = []
    for gap_start, gap_end in zip(edges[0::2], edges[1::2], strict=True):
        inner = speech_between(speech, gap_start + COVERAGE_SLACK_SEC, gap_end - COVERAGE_SLACK_SEC)
        if inner < UNCOVERED_SPEECH_SEC:
            continue
        start = _context_start(speech, gap_start)
        end = min(clip_duration_sec, gap_end + CONTEXT_SEC, start + MAX_CLIP_SEC)
        follow_up.append(
            Window(window.clip, start, end, hint=language, accept=(gap_start, gap_end), kind="gap")
        )
    return follow_up
