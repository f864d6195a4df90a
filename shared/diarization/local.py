"""The voices of one micro chunk: pyannote segmentation on 10 s windows, one embedding each.

    clip (5-30 s)  |----------------------------------------------|
    windows (10 s) |--------------|
                                  |--------------|
                                                 |--------------|   n = ceil(clip / 10 s),
    cores          |==============|==============|==============|   evenly spread

A clip is covered by the fewest 10 s windows that reach its end, spread evenly, so a clip of
a multiple of 10 s has no overlap at all and a 25 s clip has three windows overlapping by
2.5 s. Overlapping windows split their shared stretch in the middle: each window's *core*
is the part of the clip nearer its centre than any other window's, the cores tile the clip,
and a window reports speech only inside its core. So every instant belongs to one window and
no voice is counted twice (the global clustering gives the same voice in two windows one
label; their touching turns merge there).

In each window the model gives, per 16.9 ms frame, log-probabilities over pyannote's seven
powerset classes (nobody, one of three voices, or two at once); the argmax class says who
speaks. Each window-local voice has turns (gaps shorter than `min_gap_sec` closed, turns
shorter than `min_turn_sec` dropped), stretches where another voice speaks too (`overlap`),
and *clean* speech (where it alone speaks) inside the core; only clean speech is embedded
(CAM++), at most `max_embed_sec` per clip, because the embedding is what costs (~0.09 s per
10 s of audio on one thread, against ~0.025 s to segment a window).

The model sometimes hears two voices taking turns across a short pause as one voice (similar
voices; fast exchanges). So each voice's turns are first cut in the middle of every pause of
`pause_sec` or more (10 ms frames quiet relative to the window's own levels): the pieces are
*utterances*. When two or more of a voice's utterances hold `split_min_sec` of clean speech,
each is embedded on its own, and with `split_distance` 0 each is a local speaker of its own
(an utterance too short to embed joins the one nearest in time; touching pieces that stay one
local speaker are one turn again), so the global clustering decides who said each utterance.
The cost: every utterance of 0.5 s or more is embedded (up to `max_embed_sec` each) instead of
one clip per voice. On generated conversations this took the confusion of the 4-voice file
from 1.85% to 0.33% of the speech (whole file in one process; the 2-voice file's stayed at
0.03%).

A voice with less than `min_embed_sec` of clean speech gets no embedding; the clustering
places it by time. Local speakers of one window whose turns interleave are distinct voices
(the utterances of one voice follow each other, they never interleave); of different windows,
independent (the global clustering ties them).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from shared.diarization.models import (
    FRAME_DURATION_SEC,
    FRAME_STEP_SEC,
    SEGMENTATION_WINDOW_SAMPLES,
    SpeakerModels,
)
from shared.schemas import SAMPLE_RATE_HZ, LocalSpeaker, TimeSpan

POWERSET: np.ndarray = np.array(
    [
        [0, 0, 0],
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
        [1, 1, 0],
        [1, 0, 1],
        [0, 1, 1],
    ],
    dtype=bool,
)
"""Powerset class -> which of the window's three voices speak (pyannote's class order)."""

MAX_LOCAL_VOICES = POWERSET.shape[1]


@dataclass(frozen=True)
class LocalOptions:
    min_turn_sec: float = 0.1
    """Turns shorter than this (after closing gaps) are dropped: clicks, breaths."""
    min_gap_sec: float = 0.1
    """Pauses shorter than this inside one voice's speech are closed."""
    min_embed_sec: float = 0.5
    """Clean speech a voice needs in a window to be embedded; below it, no embedding."""
    max_embed_sec: float = 5.0
    """Clean speech embedded at most per clip (a voice's, or one turn's; its longest stretches
    first). On generated conversations 5 s instead of 10 s left the DER as it was and embeds
    77% of the audio instead of 88%; 3 s split voices."""
    split_min_sec: float = 0.5
    """A turn with this much clean speech is embedded on its own, to check that a voice's turns
    in one window are one voice (the model can miss a change of speaker across a pause)."""
    split_distance: float | None = 0.0
    """Turns of one voice further apart than this (cosine distance, average linkage) become
    separate local speakers; 0: every turn embedded on its own is a local speaker of its own
    (the global clustering ties them); None: never split."""
    phantom_sec: float = 2.0
    """A voice shorter than this, heard more over another voice than alone and alone for less
    than `phantom_clean_sec` (too little to embed), is dropped. The model hears such second
    voices inside one speaker's speech, most often at a window's first frames, where nobody
    else speaks; placed by time, they took another speaker's label (false alarms; on the
    generated 4-voice file, scale-out DER 0.76% -> 0.47%). A real backchannel under another's
    speech is overlap, which DER does not score and a transcript has no words for."""
    phantom_clean_sec: float = 0.5
    pause_sec: float | None = 0.25
    """A voice's turn is cut in two in the middle of every pause this long (audio below
    `pause_quiet`); None: turns as the model gives them."""
    pause_quiet: float = 0.2
    """Quiet: a 10 ms frame below the window's floor (10th percentile, dB) plus this share of
    the way up to its loud level (95th percentile)."""


Run = tuple[int, int]
"""[first, end) frame indices."""


def local_speakers(
    models: SpeakerModels,
    pcm: np.ndarray,
    offset_sec: float,
    options: LocalOptions | None = None,
) -> list[LocalSpeaker]:
    """The voices in one micro chunk (16 kHz mono float32 `pcm` that starts `offset_sec` into
    the file), in window order, then order of first speech; turns and overlap in absolute
    seconds. Pure CPU work: the worker runs it in a thread."""
    options = options or LocalOptions()
    pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
    if len(pcm) == 0:
        return []
    starts = window_starts(len(pcm))
    cores = window_cores(starts, len(pcm))
    windows = np.zeros((len(starts), SEGMENTATION_WINDOW_SAMPLES), dtype=np.float32)
    for row, start in enumerate(starts):
        piece = pcm[start : start + SEGMENTATION_WINDOW_SAMPLES]
        windows[row, : len(piece)] = piece
    classes = np.asarray(models.segment(windows)).argmax(axis=-1)

    plans: list[tuple[float, _Voice, list[int | None]]] = []
    clips: list[np.ndarray] = []
    for start, (core_first, core_end), window_classes in zip(starts, cores, classes, strict=True):
        base = offset_sec + start / SAMPLE_RATE_HZ
        voices = _window_voices(window_classes, start, core_first, core_end, options)
        if options.pause_sec is not None:
            quiet = _quiet(pcm[start : start + SEGMENTATION_WINDOW_SAMPLES], options)
            for voice in voices:
                voice.turns = _cut_at_pauses(voice.turns, quiet, options)
        for voice in sorted(voices, key=lambda voice: voice.turns[0][0]):
            pieces: list[int | None] = []  # per turn: the index of its clip, if it has one
            for clip in _clips(pcm, start, voice, options):
                pieces.append(None if clip is None else len(clips))
                if clip is not None:
                    clips.append(clip)
            plans.append((base, voice, pieces))
    embeddings = np.asarray(models.embed(clips), dtype=np.float32) if clips else None
    speakers: list[LocalSpeaker] = []
    for base, voice, pieces in plans:
        speakers += _local_speakers(base, voice, pieces, embeddings, clips, options)
    return speakers


def within_speech(
    speakers: list[LocalSpeaker], start_sec: float, end_sec: float
) -> list[LocalSpeaker]:
    """The voices cut to [start_sec, end_sec] (absolute): a micro chunk's first to last speech as
    the VAD hears it. The segmentation model often hears a voice in the silence at a window's
    first frames, most often the voice whose speech follows (a micro chunk is cut in a pause, so
    it starts with one); cut there, a voice starts no earlier than the speech. On the generated
    conversations (simulated cuts, macro chunks of 120 and 100 s) the false alarms went from
    0.21-0.38% of the speech to 0.00-0.08% (DER 2 voices 0.27 -> 0.11% and 0.63 -> 0.33%,
    4 voices 0.47 -> 0.26% and 0.94 -> 0.27%); the real recordings stayed as they were (AMI
    excerpts 30.32 -> 30.19% and 24.65 -> 24.67%, the call 1.68%). Cutting to every VAD span
    instead of their outer bounds missed 6-7% more of the AMI excerpts' speech. A voice left
    without turns is dropped."""

    def cut(spans: list[TimeSpan]) -> list[TimeSpan]:
        kept = [
            TimeSpan(start_sec=max(span.start_sec, start_sec), end_sec=min(span.end_sec, end_sec))
            for span in spans
        ]
        return [span for span in kept if span.end_sec > span.start_sec]

    cut_speakers = []
    for speaker in speakers:
        turns = cut(speaker.turns)
        if turns:
            cut_speakers.append(
                speaker.model_copy(update={"turns": turns, "overlap": cut(speaker.overlap)})
            )
    return cut_speakers


def window_starts(num_samples: int) -> list[int]:
    """First sample of each window: the fewest 10 s windows that cover the clip, evenly spread
    (one, zero-padded, for a clip up to 10 s)."""
    window = SEGMENTATION_WINDOW_SAMPLES
    count = max(1, -(-num_samples // window))
    if count == 1:
        return [0]
    step = (num_samples - window) / (count - 1)
    return [round(i * step) for i in range(count)]


def window_cores(starts: list[int], num_samples: int) -> list[tuple[int, int]]:
    """Each window's core [first, end) in clip samples: overlaps cut in the middle, so the
    cores tile the clip."""
    window = SEGMENTATION_WINDOW_SAMPLES
    cuts = [0]
    for previous, start in itertools.pairwise(starts):
        cuts.append((start + min(previous + window, num_samples)) // 2)
    cuts.append(num_samples)
    return list(itertools.pairwise(cuts))


@dataclass
class _Voice:
    turns: list[tuple[float, float]]
    """Seconds from the window's start."""
    overlap: list[tuple[float, float]]
    clean: list[tuple[float, float]]


def _window_voices(
    classes: np.ndarray, start: int, core_first: int, core_end: int, options: LocalOptions
) -> list[_Voice]:
    active = POWERSET[classes]  # [frames, 3]
    several = active.sum(axis=1) > 1
    lo = (core_first - start) / SAMPLE_RATE_HZ
    hi = (core_end - start) / SAMPLE_RATE_HZ
    voices = []
    for k in range(MAX_LOCAL_VOICES):
        speaks = _smooth(active[:, k], options)
        turns = _clip_times(_frame_times(_runs(speaks), len(classes)), lo, hi)
        turns = [turn for turn in turns if turn[1] - turn[0] >= options.min_turn_sec]
        if not turns:
            continue
        overlap = _clip_times(_frame_times(_runs(speaks & several), len(classes)), lo, hi)
        clean = _clip_times(_frame_times(_runs(speaks & ~several), len(classes)), lo, hi)
        heard_alone = _seconds(clean)
        if (
            heard_alone < options.phantom_clean_sec
            and heard_alone < _seconds(overlap)
            and _seconds(turns) < options.phantom_sec
        ):
            continue
        voices.append(_Voice(turns=turns, overlap=overlap, clean=clean))
    return voices


QUIET_FRAME_SEC = 0.01


def _seconds(spans: list[tuple[float, float]]) -> float:
    return sum(b - a for a, b in spans)


def _quiet(window: np.ndarray, options: LocalOptions) -> np.ndarray:
    """Per 10 ms frame of the window: is it quiet (a pause, relative to this window's levels)."""
    frame = round(QUIET_FRAME_SEC * SAMPLE_RATE_HZ)
    n = len(window) // frame
    power = (window[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1)
    db = 10 * np.log10(power + 1e-12)
    floor, peak = np.percentile(db, [10, 95])
    return np.asarray(db < floor + options.pause_quiet * (peak - floor))


def _cut_at_pauses(
    turns: list[tuple[float, float]], quiet: np.ndarray, options: LocalOptions
) -> list[tuple[float, float]]:
    """Each turn cut in the middle of every pause inside it (the pieces tile the turn)."""
    assert options.pause_sec is not None
    pauses = [
        (a * QUIET_FRAME_SEC, b * QUIET_FRAME_SEC)
        for a, b in _runs(quiet)
        if (b - a) * QUIET_FRAME_SEC >= options.pause_sec
    ]
    out = []
    for start, end in turns:
        for a, b in pauses:
            if start < a and b < end:
                middle = (a + b) / 2
                out.append((start, middle))
                start = middle
        out.append((start, end))
    return out


def _runs(mask: np.ndarray) -> list[Run]:
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _smooth(mask: np.ndarray, options: LocalOptions) -> np.ndarray:
    """Close gaps shorter than `min_gap_sec` between runs (not at the window's edges)."""
    out = mask.copy()
    runs = _runs(mask)
    max_gap = options.min_gap_sec / FRAME_STEP_SEC
    for (_, end), (first, _) in itertools.pairwise(runs):
        if first - end < max_gap:
            out[end:first] = True
    return out


def _frame_times(runs: list[Run], num_frames: int) -> list[tuple[float, float]]:
    """Frame f stands for the FRAME_STEP_SEC around its receptive field's centre; a run that
    reaches the window's first or last frame reaches its edge (so a voice that goes on into the
    next window's core has touching turns there)."""
    centre = FRAME_DURATION_SEC / 2
    half = FRAME_STEP_SEC / 2
    last = SEGMENTATION_WINDOW_SAMPLES / SAMPLE_RATE_HZ
    return [
        (
            0.0 if first == 0 else centre + first * FRAME_STEP_SEC - half,
            last if end == num_frames else centre + (end - 1) * FRAME_STEP_SEC + half,
        )
        for first, end in runs
    ]


def _clip_times(
    spans: list[tuple[float, float]], lo: float, hi: float
) -> list[tuple[float, float]]:
    clipped = [(max(a, lo), min(b, hi)) for a, b in spans]
    return [(a, b) for a, b in clipped if b > a]


def _time_spans(times: list[tuple[float, float]], base: float) -> list[TimeSpan]:
    return [TimeSpan(start_sec=round(base + a, 3), end_sec=round(base + b, 3)) for a, b in times]


def _clips(
    pcm: np.ndarray, start: int, voice: _Voice, options: LocalOptions
) -> list[np.ndarray | None]:
    """What to embed of one voice: each turn's clean speech on its own where two or more
    turns have `split_min_sec` of it (one clip per turn, None for the others); else the
    voice's clean speech as one clip (listed under its first turn), or nothing."""
    per_turn = [_within(voice.clean, a, b) for a, b in voice.turns]
    if options.split_distance is not None:
        own = [
            _clean_speech(pcm, start, clean, options, options.split_min_sec) for clean in per_turn
        ]
        if sum(clip is not None for clip in own) >= 2:
            return own
    whole = _clean_speech(pcm, start, voice.clean, options, options.min_embed_sec)
    return [whole] + [None] * (len(voice.turns) - 1)


def _within(spans: list[tuple[float, float]], lo: float, hi: float) -> list[tuple[float, float]]:
    return _clip_times(spans, lo, hi)


def _local_speakers(
    base: float,
    voice: _Voice,
    pieces: list[int | None],
    embeddings: np.ndarray | None,
    clips: list[np.ndarray],
    options: LocalOptions,
) -> list[LocalSpeaker]:
    """One voice of one window as local speakers: one, or one per group of its turns that
    sound alike (turns without a clip of their own join the group nearest in time)."""
    indices = [piece for piece in pieces if piece is not None]
    embedded = [i for i, piece in enumerate(pieces) if piece is not None]
    if embeddings is None or not embedded:
        return [_local(base, voice, list(range(len(voice.turns))), None)]
    vectors = embeddings[indices]
    weights = np.array([len(clips[index]) for index in indices], dtype=np.float64)
    groups = np.zeros(len(embedded), dtype=int)
    if len(embedded) > 1 and options.split_distance is not None:
        tree = linkage(vectors.astype(np.float64), method="average", metric="cosine")
        groups = fcluster(tree, t=options.split_distance, criterion="distance") - 1
    middles = np.array([(a + b) / 2 for a, b in voice.turns])
    owner = groups[np.abs(middles[:, None] - middles[None, embedded]).argmin(axis=1)]
    speakers = []
    for group in range(int(groups.max()) + 1):
        members = [i for i in range(len(voice.turns)) if owner[i] == group]
        mean = (vectors[groups == group] * weights[groups == group, None]).sum(axis=0)
        speakers.append(_local(base, voice, members, mean / max(np.linalg.norm(mean), 1e-12)))
    return sorted(speakers, key=lambda speaker: speaker.turns[0].start_sec)


def _local(
    base: float, voice: _Voice, members: list[int], embedding: np.ndarray | None
) -> LocalSpeaker:
    turns: list[tuple[float, float]] = []
    for i in members:
        if turns and turns[-1][1] == voice.turns[i][0]:  # pieces of one turn, cut at a pause
            turns[-1] = (turns[-1][0], voice.turns[i][1])
        else:
            turns.append(voice.turns[i])
    overlap = [span for a, b in turns for span in _within(voice.overlap, a, b)]
    return LocalSpeaker(
        turns=_time_spans(turns, base),
        overlap=_time_spans(overlap, base),
        embedding=None if embedding is None else [round(float(x), 4) for x in embedding],
    )  # 4 decimals: cosine unchanged to 1e-4; ~1.5 kB of JSON a local speaker


def _clean_speech(
    pcm: np.ndarray,
    start: int,
    clean: list[tuple[float, float]],
    options: LocalOptions,
    min_sec: float,
) -> np.ndarray | None:
    """The voice's clean speech, longest stretches first up to `max_embed_sec`, in time order;
    None below `min_sec`."""
    pieces = [
        (round(a * SAMPLE_RATE_HZ) + start, min(round(b * SAMPLE_RATE_HZ) + start, len(pcm)))
        for a, b in clean
    ]
    pieces = [(a, b) for a, b in pieces if b > a]
    if sum(b - a for a, b in pieces) < min_sec * SAMPLE_RATE_HZ:
        return None
    budget = round(options.max_embed_sec * SAMPLE_RATE_HZ)
    kept: list[tuple[int, int]] = []
    for a, b in sorted(pieces, key=lambda piece: piece[0] - piece[1]):
        if budget <= 0:
            break
        kept.append((a, min(b, a + budget)))
        budget -= kept[-1][1] - a
    kept.sort()
    return np.concatenate([pcm[a:b] for a, b in kept])
