"""Wire types of all three services: the single source of truth.

The public request/response (`TranscribeRequest`, `TranscribeOutput`) keep the field names of the
seed design, so a client written against its JSON works unchanged. Internal hops (orchestrator ->
chunk worker -> model server) use the types further down.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.errors import FIELD_TO_FIX, ErrorDetail
from shared.languages import language_name, normalize_language
from shared.streams import StreamTypes

SAMPLE_RATE_HZ = 16000
"""Every service speaks 16 kHz mono PCM internally: Whisper's native input."""

MAX_CLIP_SEC = 30.0
"""Whisper's window: the longest clip the model server accepts."""

MAX_SPEAKERS = 32
"""The most speakers a diarized job may be asked to find."""

MAX_KNOWN_SPEAKERS = 8
"""The most known speakers (a name and a 2-10 s reference clip each) one job may name."""

Seconds = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


def _require_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


MediaUrl = Annotated[str, AfterValidator(_require_http_url)]


UploadId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
"""An upload in an orchestrator's media store (128 random bits, hex)."""


class _Strict(BaseModel):
    """Rejects unknown fields: a misspelt parameter is a 422 naming it, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


LanguageCode = Annotated[str, AfterValidator(normalize_language)]
"""A Whisper language code ('en', 'de', ...; 'EN' and ' en ' are taken as 'en'), checked once
where a request names it. Inside, a language is always its code (the model server's answers
carry the codes it decoded in); the English name is added only at the public edge
(`Segment.language`)."""

Task = Literal["transcribe", "translate"]


def _comma_separated(value: object) -> object:
    """`languages` as a query string sends it (`en,de`, or the key repeated) as one list."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [
            part
            for item in value
            for part in (item.split(",") if isinstance(item, str) else [item])
        ]
    return value


def _distinct(value: list[str]) -> list[str]:
    return list(dict.fromkeys(value))


class DecodeOptions(_Strict):
    """What a clip is decoded with: the one options object, validated where a request enters
    (the JSON API's `params`, the OpenAI form, the model server's query string, all through
    this model), carried unchanged to the decoder, and the model server's batch key.

    Between a chunk worker and the model server it travels as the query string of
    `POST /v1/clips`, generated from this model (`query()`) and parsed back by it; a bad value
    is a 422 naming its field (`languages.1`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: LanguageCode | None = Field(
        None,
        description="Language code (e.g. 'en'). Omit to detect the language of every micro chunk.",
    )
    languages: (
        Annotated[
            list[LanguageCode],
            BeforeValidator(_comma_separated),
            AfterValidator(_distinct),
            Field(min_length=1, max_length=20),
        ]
        | None
    ) = Field(
        None,
        description="When detecting: the languages to choose among (e.g. ['en', 'de']); "
        "omit to allow every language Whisper knows.",
    )
    word_timestamps: bool = Field(
        False, description="Return every word with its start and end time (absolute)."
    )
    task: Task = Field(
        "transcribe", description="`translate` turns speech in any language into English text."
    )
    prompt: Annotated[str | None, BeforeValidator(lambda value: value or None)] = Field(
        None,
        max_length=1000,
        description="Text that conditions every micro chunk's decoding (Whisper's initial "
        "prompt): names, spelling, punctuation style.",
    )
    temperature: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="0: beam search, sampling at rising temperatures only where Whisper's "
        "quality checks fail; above 0: sample at this temperature first.",
    )

    @field_validator("languages")
    @classmethod
    def _languages_only_when_detecting(
        cls, value: list[str] | None, info: ValidationInfo
    ) -> list[str] | None:
        if value is not None and info.data.get("language") is not None:
            raise ValueError(
                "give language (one language, no detection) or languages (detection among "
                "them), not both"
            )
        return value

    def batch_key(self) -> tuple[object, ...]:
        """Clips whose keys are equal can share one generate call: every option but
        `word_timestamps` (word times are always computed; the server drops them unasked)."""
        return tuple(
            (name, tuple(value) if isinstance(value, list) else value)
            for name in DecodeOptions.model_fields
            if name != "word_timestamps" and (value := getattr(self, name)) is not None
        )

    def query(self) -> dict[str, str | float | bool | list[str]]:
        """The options as `POST /v1/clips` takes them: query parameters, defaults left out
        (lists as repeated keys, booleans as `true`)."""
        return self.model_dump(
            mode="json", include=set(DecodeOptions.model_fields), exclude_defaults=True
        )


def _to_fix(field: str, message: str) -> PydanticCustomError:
    """A check across fields, naming the one to fix: the error body's `param` is then
    `params.<field>`, not just `params` (shared.errors.validation_error_body)."""
    return PydanticCustomError("value_error", message, {FIELD_TO_FIX: field})


class TranscribeParams(DecodeOptions):
    """How a job is chunked and transcribed. Every field is optional. The decoding options are
    `DecodeOptions`' (the fields come first); a worker sends each clip `decode_options()`."""

    micro_chunk_size_sec: float = Field(
        30.0,
        ge=5.0,
        le=MAX_CLIP_SEC,
        description="Longest micro chunk sent to the model; cuts land at the quietest point of "
        "each chunk's second half.",
    )
    macro_chunk_size_sec: float = Field(
        300.0,
        ge=30.0,
        le=3600.0,
        description="Nominal length of the time range one chunk worker fetches and transcribes.",
    )
    silence_detection_smoothing_num_samples: int = Field(
        3200,
        ge=160,
        le=16000,
        description="Smoothing window (samples at 16 kHz) of the power envelope used to find "
        "silent cut points; 3200 = 0.2 s.",
    )
    diarize: bool = Field(
        False,
        description="Label every segment (and word) with who spoke it: `A`, `B`, ... in order "
        "of first speech, or a known speaker's name.",
    )
    num_speakers: int | None = Field(
        None, ge=1, le=MAX_SPEAKERS, description="When diarizing: exactly this many speakers."
    )
    min_speakers: int | None = Field(
        None, ge=1, le=MAX_SPEAKERS, description="When diarizing: at least this many speakers."
    )
    max_speakers: int | None = Field(
        None, ge=1, le=MAX_SPEAKERS, description="When diarizing: at most this many speakers."
    )
    known_speaker_names: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None,
        max_length=MAX_KNOWN_SPEAKERS,
        description="When diarizing: names of speakers whose voice you give in "
        "`known_speaker_references` (same order); their speech is labelled with the name.",
    )
    known_speaker_references: list[str] | None = Field(
        None,
        max_length=MAX_KNOWN_SPEAKERS,
        description="2-10 s of each known speaker's voice alone, as data URLs "
        "(`data:audio/wav;base64,...`).",
    )
    macro_chunk_overlap_sec: float = Field(
        0.0,
        ge=0.0,
        le=0.0,
        description="Accepted for compatibility with the seed design; must be 0 (boundaries are "
        "moved into silence instead of overlapping).",
    )
    wav_sampling_rate_hz: int = Field(
        SAMPLE_RATE_HZ,
        ge=SAMPLE_RATE_HZ,
        le=SAMPLE_RATE_HZ,
        description="Accepted for compatibility with the seed design; must be 16000.",
    )

    @field_validator("known_speaker_references")
    @classmethod
    def _data_urls(cls, value: list[str] | None) -> list[str] | None:
        for index, reference in enumerate(value or []):
            if not reference.startswith("data:") or ";base64," not in reference[:200]:
                raise ValueError(
                    f"reference {index} must be a data URL of audio "
                    "(data:audio/wav;base64,... ; 2-10 s of the speaker alone)"
                )
        return value

    @model_validator(mode="after")
    def _speakers_consistent(self) -> Self:
        names, references = self.known_speaker_names or [], self.known_speaker_references or []
        if len(names) != len(references):
            raise _to_fix(
                "known_speaker_names",
                f"known_speaker_names ({len(names)}) and known_speaker_references "
                f"({len(references)}) must name the same speakers, in the same order",
            )
        if len(set(names)) != len(names):
            raise _to_fix("known_speaker_names", "known_speaker_names must be distinct")
        if self.num_speakers is not None and (self.min_speakers or self.max_speakers):
            raise _to_fix(
                "num_speakers", "give num_speakers, or min_speakers/max_speakers, not both"
            )
        low, high = self.min_speakers or 1, self.max_speakers or MAX_SPEAKERS
        if low > high:
            raise _to_fix("min_speakers", f"min_speakers ({low}) is above max_speakers ({high})")
        asked = names or self.num_speakers or self.min_speakers or self.max_speakers
        if asked and not self.diarize:
            raise _to_fix("diarize", "speaker counts and known speakers need `diarize: true`")
        return self

    def decode_options(self) -> DecodeOptions:
        """What each micro chunk is decoded with (these params' own values, validated once
        already). Diarizing splits segments where the speaker changes, which needs word times:
        they are asked for, and the orchestrator drops them again unless the job wants them."""
        options = {name: getattr(self, name) for name in DecodeOptions.model_fields}
        options["word_timestamps"] = self.word_timestamps or self.diarize
        return DecodeOptions.model_construct(**options)

    def for_workers(self) -> TranscribeParams:
        """What a chunk worker needs: no reference clips (embedded once per job)."""
        if not self.known_speaker_references:
            return self
        return self.model_copy(
            update={"known_speaker_references": None, "known_speaker_names": None}
        )


class TranscribeRequest(_Strict):
    """Body of `POST /v1/transcribe` and `POST /v1/transcribe/stream`."""

    media_url: MediaUrl = Field(
        description="http(s) URL of an audio or video file; the host must support range requests."
    )
    params: TranscribeParams = Field(default_factory=TranscribeParams)


class Word(BaseModel):
    """A word and its time: absolute in the input file on the public API, relative to the clip
    between the chunk worker and the model server."""

    start_sec: float
    end_sec: float
    word: str
    probability: float
    speaker: str | None = Field(None, description="Who said it, when diarizing.")


class Segment(BaseModel):
    """One timed piece of the transcript (about a sentence), times absolute in the input file,
    as clients see it: the seed design's names (`start_time_sec`, `bcp47_key`, the language's
    English name). Inside the fleet a segment is a `ChunkSegment`; `of()` makes this one from
    it, the one conversion, where a job's segments leave the transcription path."""

    start_time_sec: float
    end_time_sec: float
    text: str
    language: str = Field(
        "", description="Language name, e.g. 'english' (made from `bcp47_key` when not given)."
    )
    bcp47_key: str = Field(description="Language code, e.g. 'en'.")
    words: list[Word] | None = Field(
        None, description="The segment's words, when `params.word_timestamps` is set."
    )
    avg_logprob: float | None = Field(None, description="Mean token log-probability.")
    compression_ratio: float | None = Field(None, description="gzip ratio of the decoded text.")
    no_speech_prob: float | None = Field(None, description="Whisper's no-speech probability.")
    temperature: float | None = Field(
        None,
        description="The sampling temperature the text was decoded at: 0 is beam search; "
        "above 0 where Whisper's quality checks failed at lower ones (or as asked).",
    )
    speaker: str | None = Field(
        None, description="Who spoke, when diarizing: `A`, `B`, ... or a known speaker's name."
    )
    overlapping_speakers: list[str] | None = Field(
        None, description="When diarizing: others heard speaking at the same time."
    )

    @model_validator(mode="after")
    def _named(self) -> Self:
        """Inside, a language is its code; the seed's English name is made here, at the edge."""
        if not self.language:
            self.language = language_name(self.bcp47_key)
        return self

    @classmethod
    def of(cls, segment: ChunkSegment) -> Segment:
        """The public segment of an internal one: the seed's names, the language named."""
        return cls(
            start_time_sec=segment.start_sec,
            end_time_sec=segment.end_sec,
            text=segment.text,
            bcp47_key=segment.language,
            words=segment.words,
            avg_logprob=segment.avg_logprob,
            compression_ratio=segment.compression_ratio,
            no_speech_prob=segment.no_speech_prob,
            temperature=segment.temperature,
            speaker=segment.speaker,
            overlapping_speakers=segment.overlapping_speakers,
        )


class TimeSpan(BaseModel):
    """A stretch of time in seconds, `[start_sec, end_sec)`: the one span type inside the fleet
    (macro and micro chunks, speakers' turns, segments). Only the public `Segment` keeps the
    seed design's `start_time_sec`/`end_time_sec`."""

    start_sec: Seconds
    end_sec: Seconds


class MicroChunkReport(TimeSpan):
    """A micro chunk, how much speech the VAD found in it, and how many segments came back.
    A micro chunk without speech is never sent to the model (`speech_sec` 0, no segments)."""

    num_segments: int
    speech_sec: float | None = None
    incomplete: bool = Field(
        False,
        exclude_if=lambda value: not value,
        description="The model server gave up on some of this micro chunk's speech (windows "
        "still open after its last round): words may be missing. Present only when true.",
    )


class MacroChunkReport(TimeSpan):
    micro_chunks: list[MicroChunkReport]


class SpeakerTurn(TimeSpan):
    """A stretch of one speaker's speech (who spoke when, apart from the words)."""

    speaker: str


class TranscribeOutput(BaseModel):
    """Response of `POST /v1/transcribe` (the seed design's fields, plus the chunk plan)."""

    segments: list[Segment]
    input_duration_sec: float
    processing_duration_sec: float
    speedup: float = Field(description="input_duration_sec / processing_duration_sec")
    macro_chunks: list[MacroChunkReport] = Field(
        default_factory=list, description="How the input was cut: for inspection and debugging."
    )
    speakers: list[str] | None = Field(
        None, description="When diarizing: every speaker's label, in order of first speech."
    )
    speaker_turns: list[SpeakerTurn] | None = Field(
        None,
        description="When diarizing: who spoke when, speech by speech, whether or not it held "
        "words (backchannels too); turns of two speakers overlap where they speak at once.",
    )


# -- orchestrator -> chunk worker -------------------------------------------------------------


class _Media(_Strict):
    """Where an internal request's media is: a client's URL, fetched under the worker's own
    address rule (`CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS`), or an upload, read from an
    orchestrator (`CHUNK_WORKER_ORCHESTRATOR_URLS`) with the fleet credential. Exactly one."""

    media_url: MediaUrl | None = None
    upload_id: UploadId | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.media_url is None) == (self.upload_id is None):
            raise ValueError("give exactly one of media_url and upload_id")
        return self


class ChunkRequest(_Media, TimeSpan):
    """Transcribe `[start_sec, end_sec)` of the media."""

    params: TranscribeParams = Field(default_factory=TranscribeParams)
    first_micro_chunk_sec: float | None = Field(None, ge=5.0, le=MAX_CLIP_SEC)
    """A shorter first micro chunk (the job's first words); None: like the others."""
    language_hint: LanguageCode | None = None
    """The language the job has been heard in so far (its most spoken, when the chunk was
    sent): each micro chunk's detection picks it where it is plausible (the model server's
    `X-Language-Hint`). None: nothing heard yet."""


EMBEDDING_DIM = 192
"""A voice embedding's length (CAM++)."""


class LocalSpeaker(BaseModel):
    """One voice as one diarization window of a micro chunk hears it: where it speaks
    (absolute times) and its voice embedding. Which voice it is across the whole file is
    decided once per job, by clustering every local speaker's embedding."""

    turns: list[TimeSpan]
    overlap: list[TimeSpan] = Field(default_factory=list)
    """Where this voice speaks at once with another in the same window."""
    embedding: list[float] | None = Field(None, min_length=EMBEDDING_DIM, max_length=EMBEDDING_DIM)
    """L2-normalised; None: too little clean speech to embed (placed by the nearest voice)."""


class ChunkSegment(TimeSpan):
    """A segment inside the fleet, from the chunk worker on: times absolute in the input file,
    the language as its code. The public `Segment` is made from it (`Segment.of`) where a job's
    segments leave the transcription path."""

    text: str
    language: str
    """The language code this segment was decoded in."""
    words: list[Word] | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None
    temperature: float | None = None
    speaker: str | None = None
    """Who spoke, when diarizing (set by the orchestrator)."""
    overlapping_speakers: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _seed_names(cls, value: object) -> object:
        """The seed design's shape (`start_time_sec`, `bcp47_key`, the language's English
        name), as a chunk worker of an older version sends it and an async job's micro chunks
        stored before an upgrade hold it, read too."""
        if isinstance(value, dict) and "start_time_sec" in value:
            value = {key: item for key, item in value.items() if key != "language"}
            value["start_sec"] = value.pop("start_time_sec")
            value["end_sec"] = value.pop("end_time_sec", None)
            value["language"] = value.pop("bcp47_key", None)
        return value


class MicroChunkResult(BaseModel):
    """One item of a chunk worker's stream: a micro chunk and its segments (absolute times)."""

    micro_chunk: MicroChunkReport
    segments: list[ChunkSegment]
    speakers: list[LocalSpeaker] | None = None
    """When diarizing: the voices heard in the micro chunk (None when not asked)."""


class ChunkStreamFooter(BaseModel):
    """Ends a chunk worker's stream; its absence means the stream was cut short."""

    micro_chunks: int


CHUNK_STREAM: StreamTypes[MicroChunkResult, BaseModel, ChunkStreamFooter] = StreamTypes(
    item=MicroChunkResult, footer=ChunkStreamFooter
)
"""`POST /v1/chunks` on a chunk worker: micro chunk results in timeline order."""


class SpeakerEmbedRequest(_Strict):
    """Embed known speakers' reference clips (data URLs) on a chunk worker."""

    references: list[str] = Field(min_length=1, max_length=MAX_KNOWN_SPEAKERS)


class SpeakerEmbeddings(BaseModel):
    embeddings: list[list[float]]
    """One L2-normalised embedding per reference, in order."""


class SilenceRequest(_Media, TimeSpan):
    """Find the quietest instant of the media within `[start_sec, end_sec)`."""

    smoothing_num_samples: int = Field(3200, ge=160, le=16000)


class SilenceResult(BaseModel):
    split_sec: float


# -- chunk worker -> model server -----------------------------------------------------------


class ClipSegment(BaseModel):
    """A segment with times relative to the start of its clip, clamped to the clip."""

    start_sec: float
    end_sec: float
    text: str
    words: list[Word] | None = None
    language: str
    """The language code this segment was decoded in (a clip can hold two)."""
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None
    temperature: float | None = None


class ClipTranscription(BaseModel):
    segments: list[ClipSegment]
    language: str | None
    """The clip's main language code (the requested one, else the one with most text; each
    segment carries its own); None: no words, and no language was requested."""
    language_probability: float
    duration_sec: float
    speech_sec: float | None = None
    """Speech found by the VAD; 0 means the model never saw the clip."""
    incomplete: bool = False
    """The model server stopped before every stretch of speech had words (windows still open
    after its last round): words may be missing. Absent from older servers' answers: false."""


# -- health -----------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok", "loading", "unavailable"]
    service: str
    detail: str | None = None


# -- streaming (orchestrator -> end client, as Server-Sent Events) ----------------------------


class StreamHeader(BaseModel):
    """First event of `POST /v1/transcribe/stream` (`event: header`)."""

    media_url: str
    """The request's media URL, or `upload:<file name>` for an uploaded file (in an async
    job's events too: the job table keeps the name; `upload:<id>` for a file sent without a
    name); never where the fleet reads it."""
    input_duration_sec: float
    macro_chunks: list[TimeSpan]


class StreamProgress(BaseModel):
    """`event: progress`: how much of the timeline is transcribed so far."""

    done_sec: float
    total_sec: float
    segments: int


class SpeakerMap(BaseModel):
    """`event: speakers` (diarized streams, just before the footer): streamed segments carry
    provisional labels; this maps each to its final label, decided over the whole file."""

    labels: dict[str, str]
    """Provisional label -> final label."""
    speakers: list[str]
    """Final labels in order of first speech."""


class StreamFooter(BaseModel):
    """Last event of a successful stream (`event: footer`): the JSON endpoint's totals."""

    input_duration_sec: float
    processing_duration_sec: float
    speedup: float
    num_segments: int
    languages: list[str] = Field(description="Language codes seen, in order of first appearance.")
    incomplete_clips: int = Field(
        0,
        exclude_if=lambda value: not value,
        description="Micro chunks the model server gave up on in part (words may be missing; "
        "each is marked `incomplete` in `macro_chunks`). Present only when above 0.",
    )


# -- async jobs (`/v1/jobs`) -------------------------------------------------------------------


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobRequest(TranscribeRequest):
    """Body of `POST /v1/jobs`: a transcribe request, and where to report when it ends."""

    webhook_url: MediaUrl | None = Field(
        None,
        description="POSTed the job (as `GET /v1/jobs/{id}` answers it, without the result) when "
        "it succeeds or fails; signed with HMAC-SHA256 when the server has a webhook secret.",
    )


class JobProgress(BaseModel):
    done_sec: float
    total_sec: float | None = None


class WebhookOutcome(BaseModel):
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


class JobInfo(BaseModel):
    """`GET /v1/jobs/{id}`: where a job stands, and its transcript once it succeeded."""

    id: str
    object: Literal["transcription.job"] = "transcription.job"
    status: JobStatus
    created_at: float = Field(description="Unix time, seconds.")
    started_at: float | None = None
    finished_at: float | None = None
    progress: JobProgress
    error: ErrorDetail | None = Field(
        None, description="The error body's `error` object, when the job failed."
    )
    result: TranscribeOutput | None = None
    webhook_url: str | None = None
    webhook: WebhookOutcome | None = None


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobInfo]
    has_more: bool
