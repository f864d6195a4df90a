"""Transcripts as files people use: the one place output formats are made.

    json           {"text": ...}                                      (OpenAI's `json`)
    verbose_json   task, language, duration, text, segments, words    (OpenAI's `verbose_json`)
    diarized_json  task, duration, text, segments with their speaker, usage
                                                                      (OpenAI's `diarized_json`)
    text / txt     the text, one segment per line
    srt, vtt       subtitles: cues of at most two lines of 42 characters and 7 s, split at word
                   times when the words are known (else in proportion to the characters)
    tsv            start, end (milliseconds) and text, tab-separated, as Whisper's CLI writes

Speakers. A diarized transcript (some segment has a `speaker`) shows them in every format but
json, and a cue never holds two: a segment's words are cut where their speaker changes.
    text / txt     one line per speaker turn (consecutive segments of one speaker joined), each
                   prefixed `[A] `: a transcript that reads like a script
    srt            every cue's first line prefixed `[A] ` (a cue is read alone, after any seek);
                   the prefix counts towards that line's 42 characters
    vtt            every cue a WebVTT voice span, `<v A>...</v>` (players may style or show it)
    tsv            a `speaker` column between `end` and `text`, only when diarized (a plain
                   transcript keeps Whisper's three columns)
    verbose_json   `speaker` on each segment and word that has one
    diarized_json  `speaker` on every segment ("" where none was heard: the SDK wants a string)
Labels are written on one line (whitespace collapsed); in WebVTT, escaped.

Gaps. When the model server gave up on some speech (`incomplete` micro chunks: words may be
missing), the JSON formats say how many micro chunks: `"incomplete_clips": N`, only when above
0 (a key the SDKs keep as an extra field); a text format can't say it (the OpenAI route puts it
in a header as well: `X-Whisperfleet-Incomplete-Clips`).

Used by the OpenAI-compatible API, the page (through `POST /v1/render`) and the CLI, so a
subtitle file looks the same wherever it comes from. Plain functions over the shared schemas.
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.errors import BadRequestError
from shared.languages import language_name
from shared.schemas import Segment, TranscribeOutput, Word


class Format(StrEnum):
    """A transcript's output format."""

    # (The docstring is the API schema's description.) The one list every route, the page and
    # the CLI name: our routes take it as a typed parameter (FastAPI checks it: a 422 naming
    # the parameter), forms and the command line read it with `Format.parse`.

    JSON = "json"
    VERBOSE_JSON = "verbose_json"
    DIARIZED_JSON = "diarized_json"
    TEXT = "text"
    TXT = "txt"
    SRT = "srt"
    VTT = "vtt"
    TSV = "tsv"

    @classmethod
    def parse(cls, name: str) -> Format:
        """The format called `name`; a ValueError that lists them all for anything else."""
        try:
            return cls(name)
        except ValueError:
            raise ValueError(f"unknown format {name!r}; use one of {', '.join(cls)}") from None

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self]


FORMATS: tuple[str, ...] = tuple(Format)
"""The formats' names (a command line's choices)."""
MEDIA_TYPES: dict[Format, str] = {
    Format.JSON: "application/json",
    Format.VERBOSE_JSON: "application/json",
    Format.DIARIZED_JSON: "application/json",
    Format.TEXT: "text/plain; charset=utf-8",
    Format.TXT: "text/plain; charset=utf-8",
    Format.SRT: "application/x-subrip; charset=utf-8",
    Format.VTT: "text/vtt; charset=utf-8",
    Format.TSV: "text/tab-separated-values; charset=utf-8",
}
EXTENSIONS: dict[Format, str] = {Format.JSON: "json", Format.VERBOSE_JSON: "json",
                                 Format.DIARIZED_JSON: "json", Format.TEXT: "txt",
                                 Format.TXT: "txt", Format.SRT: "srt", Format.VTT: "vtt",
                                 Format.TSV: "tsv"}  # fmt: skip

MAX_LINE_CHARS = 42
MAX_LINES = 2
MIN_CUE_SEC = 0.5
"""A cue is shown at least this long where the next one leaves room."""
MAX_CUE_SEC = 7.0


@dataclass(frozen=True)
class Cue:
    start_sec: float
    end_sec: float
    lines: tuple[str, ...]
    """The text as shown, without the speaker (its SRT prefix fits beside the first line)."""
    speaker: str | None = None


class NotDiarizedError(BadRequestError):
    """diarized_json asked of a transcript made without diarization (a 400 naming `format`
    wherever a transcript is rendered)."""


def render(
    output: TranscribeOutput,
    fmt: Format | str,
    *,
    task: str = "transcribe",
    words: bool = False,
    language: str | None = None,
) -> str:
    """The transcript in `fmt` (a `Format`, or its name: ValueError for an unknown one;
    NotDiarizedError for diarized_json of a transcript made without `diarize`, whose every
    speaker would be ""). `language`: the code the request named, verbose_json's language
    when no segment has one."""
    gaps = {"incomplete_clips": n} if (n := incomplete_clips(output)) else {}
    match Format.parse(fmt):
        case Format.JSON:
            return json.dumps({"text": full_text(output.segments), **gaps}, ensure_ascii=False)
        case Format.VERBOSE_JSON:
            body = verbose_json(output, task=task, words=words, language=language)
            return json.dumps({**body, **gaps}, ensure_ascii=False)
        case Format.DIARIZED_JSON:
            if output.speakers is None:  # set, maybe empty, whenever a job diarized
                raise NotDiarizedError(
                    "diarized_json needs a transcript made with diarize=true; this one has no "
                    "speakers (ask for verbose_json, or transcribe with diarize=true)",
                    param="format",
                )
            return json.dumps({**diarized_json(output, task=task), **gaps}, ensure_ascii=False)
        case Format.TEXT | Format.TXT:
            return text(output.segments)
        case Format.SRT:
            return srt(output.segments)
        case Format.VTT:
            return vtt(output.segments)
        case Format.TSV:
            return tsv(output.segments)


def incomplete_clips(output: TranscribeOutput) -> int:
    """Micro chunks the model server gave up on in part (words may be missing there)."""
    return sum(micro.incomplete for macro in output.macro_chunks for micro in macro.micro_chunks)


def diarized(segments: Sequence[Segment]) -> bool:
    """Whether the transcript was made with speakers (then every format but json shows them)."""
    return any(s.speaker for s in segments)


def full_text(segments: Sequence[Segment]) -> str:
    return " ".join(s.text.strip() for s in segments if s.text.strip())


def text(segments: Sequence[Segment]) -> str:
    """One line per segment; when diarized, one line per speaker turn, `[A] ` first."""
    spoken = [s for s in segments if s.text.strip()]
    if not diarized(spoken):
        return "".join(s.text.strip() + "\n" for s in spoken)
    turns = itertools.groupby(spoken, key=lambda s: s.speaker)
    return "".join(f"{_prefix(speaker)}{full_text(list(turn))}\n" for speaker, turn in turns)


def verbose_json(
    output: TranscribeOutput, *, task: str, words: bool, language: str | None = None
) -> dict[str, Any]:
    """OpenAI's verbose_json: segments with Whisper's scores, and words when asked for; the
    speaker on each segment and word that has one. Without segments (no speech) the language is
    the one the request named (`language`, a code), else "english", as OpenAI answers."""
    segments = [
        {
            "id": index,
            "seek": 0,
            "start": round(s.start_time_sec, 3),
            "end": round(s.end_time_sec, 3),
            "text": s.text,
            "tokens": [],
            "temperature": s.temperature if s.temperature is not None else 0.0,
            "avg_logprob": s.avg_logprob if s.avg_logprob is not None else 0.0,
            "compression_ratio": s.compression_ratio if s.compression_ratio is not None else 0.0,
            "no_speech_prob": s.no_speech_prob if s.no_speech_prob is not None else 0.0,
            **({"speaker": s.speaker} if s.speaker else {}),
        }
        for index, s in enumerate(output.segments)
    ]
    if output.segments:
        language = output.segments[0].language
    else:
        language = language_name(language) if language else "english"
    body: dict[str, Any] = {
        "task": task,
        "language": "english" if task == "translate" else language,  # the text's language
        "duration": round(output.input_duration_sec, 3),
        "text": full_text(output.segments),
        "segments": segments,
    }
    if words:
        body["words"] = [
            {
                "word": w.word.strip(),
                "start": round(w.start_sec, 3),
                "end": round(w.end_sec, 3),
                **({"speaker": w.speaker} if w.speaker else {}),
            }
            for s in output.segments
            for w in s.words or []
        ]
    return body


def diarized_json(output: TranscribeOutput, *, task: str) -> dict[str, Any]:
    """OpenAI's diarized_json (the SDK's `TranscriptionDiarized`): the text, and each segment
    with its speaker; usage is the input's duration."""
    duration = round(output.input_duration_sec, 3)
    return {
        "task": task,
        "duration": duration,
        "text": full_text(output.segments),
        "segments": [
            diarized_segment(index, s) for index, s in enumerate(output.segments) if s.text.strip()
        ],
        "usage": {"type": "duration", "seconds": duration},
    }


def diarized_segment(index: int, segment: Segment) -> dict[str, Any]:
    """One segment of diarized_json (the SDK's `TranscriptionDiarizedSegment`), `index` its
    place in the transcript: the OpenAI stream's `transcript.text.segment` event is the same."""
    return {
        "type": "transcript.text.segment",
        "id": segment_id(index),
        "start": round(segment.start_time_sec, 3),
        "end": round(segment.end_time_sec, 3),
        "speaker": _label(segment.speaker) if segment.speaker else "",
        "text": segment.text.strip(),
    }


def segment_id(index: int) -> str:
    return f"seg_{index}"


def srt(segments: Sequence[Segment]) -> str:
    blocks = []
    for number, cue in enumerate(cues(segments), start=1):
        times = f"{_timestamp(cue.start_sec, ',')} --> {_timestamp(cue.end_sec, ',')}"
        lines = [_prefix(cue.speaker) + cue.lines[0], *cue.lines[1:]]
        blocks.append(f"{number}\n{times}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def vtt(segments: Sequence[Segment]) -> str:
    blocks = ["WEBVTT\n"]
    for cue in cues(segments):
        times = f"{_timestamp(cue.start_sec, '.')} --> {_timestamp(cue.end_sec, '.')}"
        payload = "\n".join(cue.lines)
        if cue.speaker:
            payload = f"<v {_vtt_escape(_label(cue.speaker))}>{payload}</v>"
        blocks.append(f"{times}\n{payload}\n")
    return "\n".join(blocks)


def tsv(segments: Sequence[Segment]) -> str:
    """Whisper's start/end/text; a `speaker` column before the text when diarized."""
    with_speakers = diarized(segments)
    rows = ["start\tend\tspeaker\ttext" if with_speakers else "start\tend\ttext"]
    for s in segments:
        cells = [str(round(s.start_time_sec * 1000)), str(round(s.end_time_sec * 1000))]
        if with_speakers:
            cells.append(_label(s.speaker or ""))
        cells.append(s.text.strip().replace("\t", " ").replace("\n", " "))
        rows.append("\t".join(cells))
    return "\n".join(rows) + "\n"


def cues(segments: Sequence[Segment]) -> list[Cue]:
    """Subtitle cues: each segment split until every piece fits two lines of 42 characters and
    lasts at most 7 s; cut between words, at their times when known, and wherever the words'
    speaker changes."""
    result: list[Cue] = []
    for segment in segments:
        text = " ".join(segment.text.split())
        if not text:
            continue
        words = segment.words or _spread(text, segment.start_time_sec, segment.end_time_sec)
        for speaker, run in itertools.groupby(words, key=lambda w: w.speaker or segment.speaker):
            spoken = list(run)
            if any(w.word.strip() for w in spoken):
                result += _split(spoken, speaker)
    return _shown_long_enough(result)


def _shown_long_enough(cues: list[Cue]) -> list[Cue]:
    """A cue shorter than `MIN_CUE_SEC` (a word the alignment timed as an instant) is held on
    screen longer, up to the next cue: players drop cues of no length."""
    shown = []
    for index, cue in enumerate(cues):
        if cue.end_sec - cue.start_sec < MIN_CUE_SEC:
            later = cues[index + 1].start_sec if index + 1 < len(cues) else float("inf")
            end = max(cue.end_sec, min(cue.start_sec + MIN_CUE_SEC, later))
            cue = Cue(cue.start_sec, end, cue.lines, cue.speaker)
        shown.append(cue)
    return shown


def _split(words: Sequence[Word], speaker: str | None) -> list[Cue]:
    text = _joined(words)
    lines = _wrap(text, reserve=min(len(_prefix(speaker)), MAX_LINE_CHARS // 2))
    duration = words[-1].end_sec - words[0].start_sec
    if len(words) > 1 and (len(lines) > MAX_LINES or duration > MAX_CUE_SEC):
        middle = _best_cut(words)
        return _split(words[:middle], speaker) + _split(words[middle:], speaker)
    end = max(words[-1].end_sec, words[0].start_sec)
    return [Cue(words[0].start_sec, end, tuple(lines), speaker)]


def _joined(words: Sequence[Word]) -> str:
    """Words as the text says them: each carries its own leading space where its script puts
    one (Whisper's " Hello"; none between Chinese or Japanese words)."""
    return " ".join("".join(w.word for w in words).split())


def _wrap(text: str, reserve: int) -> list[str]:
    """Lines of at most 42 columns, the first `reserve` shorter (room for a prefix): broken at
    spaces, and between any two wide characters (Chinese, Japanese, Korean: two columns each,
    no spaces between words)."""
    lines: list[str] = []
    line, room = "", MAX_LINE_CHARS - reserve
    for unit, spaced in _units(text):
        joined = f"{line} {unit}" if line and spaced else line + unit
        if line and _columns(joined) > room:
            lines.append(line)
            line, room = unit, MAX_LINE_CHARS
        else:
            line = joined
    return [*lines, line] if line else lines


def _units(text: str) -> list[tuple[str, bool]]:
    """The pieces a line may break between, each with whether a space comes before it: words of
    spaced scripts whole, wide characters one by one (punctuation stays with what it follows:
    a line never starts with `，` or `。`)."""
    units: list[tuple[str, bool]] = []
    for index, word in enumerate(text.split()):
        spaced, piece = index > 0, ""
        for char in word:
            if piece and _is_wide(char) and not unicodedata.category(char).startswith("P"):
                units.append((piece, spaced))
                spaced, piece = False, ""
            piece += char
        units.append((piece, spaced))
    return units


def _is_wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def _columns(text: str) -> int:
    return sum(2 if _is_wide(char) else 1 for char in text)


def _best_cut(words: Sequence[Word]) -> int:
    """Where to split a cue: near the middle of its text, preferring punctuation and pauses."""
    total = sum(len(w.word) for w in words)
    best, best_score = len(words) // 2, float("inf")
    seen = 0
    for i in range(1, len(words)):
        seen += len(words[i - 1].word)
        score = abs(seen - total / 2) / max(total, 1)
        if words[i - 1].word.rstrip()[-1:] in ".,;:!?。，":
            score -= 0.15
        score -= min(words[i].start_sec - words[i - 1].end_sec, 1.0) * 0.2
        if score < best_score:
            best, best_score = i, score
    return best


def _spread(text: str, start: float, end: float) -> list[Word]:
    """Words with times in proportion to their characters (when the words weren't asked for):
    the units a line may break between, so Chinese text can be split into cues too."""
    pieces = [(" " + unit if spaced else unit) for unit, spaced in _units(text)]
    total = sum(len(p) + 1 for p in pieces)
    words, cursor = [], start
    for piece in pieces:
        length = (end - start) * (len(piece) + 1) / total
        words.append(Word(start_sec=cursor, end_sec=cursor + length, word=piece, probability=1.0))
        cursor += length
    return words


def _label(speaker: str) -> str:
    """A speaker's label on one line (a known speaker's name or a label renamed on the page
    may hold any text)."""
    return " ".join(speaker.split())


def _prefix(speaker: str | None) -> str:
    return f"[{_label(speaker)}] " if speaker else ""


def _vtt_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _timestamp(seconds: float, decimal: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"
