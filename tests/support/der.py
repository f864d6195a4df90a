"""Diarization error rate, the standard way (NIST md-eval, pyannote.metrics).

    result = diarization_error(reference, hypothesis)   # lists of (start_sec, end_sec, label)
    print(f"{result.der:.1%} = {result.missed:.1%} + {result.false_alarm:.1%} + "
          f"{result.confusion:.1%}")

The timeline is cut at every turn edge into elementary pieces. A piece is not scored when it
lies within `collar_sec` of a reference turn edge (either side: md-eval's `-c 0.25`, which is
pyannote's `collar=0.5`, its collar being the total width), nor, with `skip_overlap`, where two
or more reference speakers talk at once. Reference and hypothesis labels are matched one to one
so that they agree for the longest scored time (Hungarian assignment); then every scored piece
of length d with R reference and H hypothesis speakers, C of them matched, costs

    missed      max(0, R - H) * d
    false alarm max(0, H - R) * d
    confusion   (min(R, H) - C) * d

and DER = (missed + false alarm + confusion) / scored reference speech. A label's turns are
merged first, so a speaker overlapping himself counts once (as md-eval merges them; pyannote
would call that overlap). Checked against pyannote.metrics 4.2.0 (`collar=0.5,
skip_overlap=True`) on 300 random 4-speaker cases: the same seconds to 1e-13.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

Turn = tuple[float, float, str]
"""(start_sec, end_sec, label)."""

COLLAR_SEC = 0.25
"""Not scored on either side of every reference turn edge."""


@dataclass(frozen=True)
class DiarizationError:
    missed_sec: float
    false_alarm_sec: float
    confusion_sec: float
    scored_sec: float
    """Reference speech that is scored (outside collars and overlap)."""
    reference_speakers: int
    hypothesis_speakers: int
    """Distinct labels anywhere in the hypothesis (scored or not)."""
    mapping: dict[str, str] = field(default_factory=dict)
    """Hypothesis label -> the reference label it was matched to."""

    @property
    def missed(self) -> float:
        return self._rate(self.missed_sec)

    @property
    def false_alarm(self) -> float:
        return self._rate(self.false_alarm_sec)

    @property
    def confusion(self) -> float:
        return self._rate(self.confusion_sec)

    @property
    def der(self) -> float:
        return self._rate(self.missed_sec + self.false_alarm_sec + self.confusion_sec)

    def _rate(self, seconds: float) -> float:
        if self.scored_sec > 0:
            return seconds / self.scored_sec
        return 0.0 if seconds == 0 else float("inf")


@dataclass(frozen=True)
class _Grid:
    """The timeline cut at every edge: piece durations, which pieces are scored, and for each
    label which pieces it speaks in."""

    durations: np.ndarray
    scored: np.ndarray
    reference: dict[str, np.ndarray]
    hypothesis: dict[str, np.ndarray]


def diarization_error(
    reference: Sequence[Turn],
    hypothesis: Sequence[Turn],
    collar_sec: float = COLLAR_SEC,
    skip_overlap: bool = True,
) -> DiarizationError:
    """Score a hypothesis against a reference (see the module docstring)."""
    grid = _grid(reference, hypothesis, collar_sec, skip_overlap)
    ref_labels, hyp_labels = list(grid.reference), list(grid.hypothesis)
    weights = grid.durations * grid.scored
    ref = _matrix(grid.reference, len(weights))
    hyp = _matrix(grid.hypothesis, len(weights))
    together = (ref * weights) @ hyp.T  # seconds each (reference, hypothesis) pair agree
    rows, cols = linear_sum_assignment(together, maximize=True)
    mapping = {hyp_labels[c]: ref_labels[r] for r, c in zip(rows, cols, strict=True)}
    correct = sum(together[r, c] for r, c in zip(rows, cols, strict=True))
    ref_count, hyp_count = ref.sum(axis=0), hyp.sum(axis=0)
    return DiarizationError(
        missed_sec=float(np.sum(np.maximum(ref_count - hyp_count, 0) * weights)),
        false_alarm_sec=float(np.sum(np.maximum(hyp_count - ref_count, 0) * weights)),
        confusion_sec=max(0.0, float(np.sum(np.minimum(ref_count, hyp_count) * weights) - correct)),
        scored_sec=float(np.sum(ref_count * weights)),
        reference_speakers=len(ref_labels),
        hypothesis_speakers=len({label for _, _, label in hypothesis}),
        mapping=mapping,
    )


def labelled_share(
    reference: Sequence[Turn],
    hypothesis: Sequence[Turn],
    speaker: str,
    name: str,
    collar_sec: float = COLLAR_SEC,
    skip_overlap: bool = True,
) -> float:
    """The share of `speaker`'s scored reference speech that the hypothesis labels `name`
    (known speakers: is their speech labelled with their name?). Scored as for the DER."""
    grid = _grid(reference, hypothesis, collar_sec, skip_overlap)
    if speaker not in grid.reference:
        raise ValueError(f"{speaker!r} does not speak in the reference")
    weights = grid.durations * grid.scored * grid.reference[speaker]
    total = float(weights.sum())
    if name not in grid.hypothesis or total == 0:
        return 0.0
    return float((weights * grid.hypothesis[name]).sum()) / total


def named_precision(
    reference: Sequence[Turn],
    hypothesis: Sequence[Turn],
    speaker: str,
    name: str,
    collar_sec: float = COLLAR_SEC,
    skip_overlap: bool = True,
) -> float:
    """The share of the scored time the hypothesis labels `name` in which `speaker` speaks
    (the other side of `labelled_share`: a name put on everyone scores 100% there, not here)."""
    grid = _grid(reference, hypothesis, collar_sec, skip_overlap)
    if name not in grid.hypothesis:
        return 0.0
    weights = grid.durations * grid.scored * grid.hypothesis[name]
    total = float(weights.sum())
    if speaker not in grid.reference or total == 0:
        return 0.0
    return float((weights * grid.reference[speaker]).sum()) / total


def _grid(
    reference: Sequence[Turn], hypothesis: Sequence[Turn], collar_sec: float, skip_overlap: bool
) -> _Grid:
    for turns, side in ((reference, "reference"), (hypothesis, "hypothesis")):
        for start, end, label in turns:
            if not end >= start >= 0:
                raise ValueError(f"{side} turn ({start}, {end}, {label!r}) is not a time span")
    ref_edges = np.array([t for start, end, _ in reference for t in (start, end)], dtype=float)
    edges = np.unique(
        np.concatenate(
            [
                [0.0],
                ref_edges,
                np.maximum(ref_edges - collar_sec, 0.0),
                ref_edges + collar_sec,
                np.array([t for start, end, _ in hypothesis for t in (start, end)], dtype=float),
            ]
        )
    )
    durations = np.diff(edges)
    middles = (edges[:-1] + edges[1:]) / 2
    ref_activity = _activity(reference, edges)
    scored = np.ones(len(durations), dtype=bool)
    if len(ref_edges):
        # A piece lies wholly inside or wholly outside each collar: its middle decides.
        sorted_edges = np.sort(ref_edges)
        nearest = np.searchsorted(sorted_edges, middles)
        before = np.abs(middles - sorted_edges[np.clip(nearest - 1, 0, None)])
        after = np.abs(sorted_edges[np.clip(nearest, None, len(sorted_edges) - 1)] - middles)
        scored &= np.minimum(before, after) >= collar_sec
    if skip_overlap and ref_activity:
        scored &= np.sum(list(ref_activity.values()), axis=0) < 2
    return _Grid(durations, scored, ref_activity, _activity(hypothesis, edges))


def _matrix(activity: dict[str, np.ndarray], pieces: int) -> np.ndarray:
    """Labels x pieces, 1.0 where the label speaks."""
    if not activity:
        return np.zeros((0, pieces))
    return np.array(list(activity.values()), dtype=float)


def _activity(turns: Sequence[Turn], edges: np.ndarray) -> dict[str, np.ndarray]:
    """For each label (in order of first turn), whether it speaks in each piece."""
    counts: dict[str, np.ndarray] = {}
    for start, end, label in turns:
        delta = counts.setdefault(label, np.zeros(len(edges), dtype=int))
        delta[np.searchsorted(edges, start)] += 1
        delta[np.searchsorted(edges, end)] -= 1
    return {label: np.cumsum(delta)[:-1] > 0 for label, delta in counts.items()}
