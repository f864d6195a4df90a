"""A job's speakers: provisional labels while it streams, one global clustering at its end.

Each micro chunk result carries the voices its worker heard (`LocalSpeaker`: turns and an
embedding). While the job streams, every voice gets a provisional label at once (nearest voice
so far), so segments leave labelled; at the end, one clustering over every voice of the job
decides the final labels (a voice keeps one label across macro chunks and a 10 h file), the
`speakers` event maps provisional labels to final ones, and the segments are labelled again
from their words for the JSON answer and the job's result. Only embeddings and the segments'
text are kept: no audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.diarization.clustering import (
    KnownSpeaker,
    ProvisionalLabels,
    SpeakerConstraints,
    SpeakerTimeline,
    cluster_speakers,
)
from shared.diarization.labelling import label_segments
from shared.schemas import (
    ChunkSegment,
    LocalSpeaker,
    MicroChunkResult,
    SpeakerMap,
    SpeakerTurn,
    TranscribeParams,
)


@dataclass(frozen=True)
class Diarization:
    """A diarized job's final speakers, yielded just before its footer: the `speakers` event
    (`speaker_map`) and the segments the JSON answer and the job's result carry."""

    speaker_map: SpeakerMap
    segments: list[ChunkSegment]
    turns: list[SpeakerTurn]


class JobSpeakers:
    def __init__(self, params: TranscribeParams, known: Sequence[KnownSpeaker] = ()) -> None:
        self.keep_words = params.word_timestamps
        self.constraints = SpeakerConstraints(
            num_speakers=params.num_speakers,
            min_speakers=params.min_speakers,
            max_speakers=params.max_speakers,
        )
        self.known = list(known)
        self.provisional = ProvisionalLabels(self.constraints, self.known)
        self.voices: list[LocalSpeaker] = []
        self.raw: list[ChunkSegment] = []

    def label(self, result: MicroChunkResult) -> list[ChunkSegment]:
        """A micro chunk's segments with provisional speakers (results in timeline order)."""
        voices = result.speakers or []
        labels = self.provisional.add(voices) if voices else []
        self.voices += voices
        self.raw += result.segments
        timeline = timeline_of(voices, labels)
        return [self._public(s) for s in label_segments(list(result.segments), timeline)]

    def finish(self) -> Diarization:
        """One clustering over every voice of the job (CPU work: run it in a thread)."""
        final = cluster_speakers(self.voices, self.constraints, self.known)
        segments = [self._public(s) for s in label_segments(self.raw, final)]
        labels = self.provisional.final_map(self.voices, final)
        turns = [SpeakerTurn(start_sec=s, end_sec=e, speaker=who) for s, e, who in final.turns]
        return Diarization(SpeakerMap(labels=labels, speakers=final.speakers), segments, turns)

    def _public(self, segment: ChunkSegment) -> ChunkSegment:
        return segment if self.keep_words else segment.model_copy(update={"words": None})


def timeline_of(voices: Sequence[LocalSpeaker], labels: Sequence[str]) -> SpeakerTimeline:
    """The turns of `voices`, each labelled as given."""
    turns = sorted(
        (turn.start_sec, turn.end_sec, label)
        for voice, label in zip(voices, labels, strict=True)
        for turn in voice.turns
    )
    return SpeakerTimeline(turns=turns, speakers=list(dict.fromkeys(t[2] for t in turns)))
