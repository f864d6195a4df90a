"""The OpenAI-compatible route in-process, through the official `openai` SDK (its multipart
encoding, its response models): speakers asked for as the SDK sends them, and the answers it
parses. The job runner is replaced by one that records the request and plays a script of
events, so what is checked is the route, not the fleet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from fastapi import FastAPI
from openai.types.audio import TranscriptionDiarized

from services.orchestrator.api.openai_compat import OpenAIOptions
from services.orchestrator.app import create_app
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.jobs.uploads import UploadForm
from services.orchestrator.transcription.speakers import Diarization
from shared.errors import BadRequestError
from shared.formats import Format
from shared.schemas import (
    ChunkSegment,
    DecodeOptions,
    MacroChunkReport,
    MicroChunkReport,
    Segment,
    SpeakerMap,
    StreamFooter,
    StreamHeader,
    TimeSpan,
    TranscribeParams,
    TranscribeRequest,
    Word,
)
from tests.support.asgi import serve

AUDIO = ("talk.wav", b"RIFF0000WAVEfmt " + bytes(64), "audio/wav")
ALICE = "data:audio/wav;base64,UklGRgAAAABXQVZF"
BOB = "data:audio/ogg;base64,T2dnUwAC"


def said(start: float, end: float, text: str, speaker: str, *words: Word) -> Segment:
    return Segment(start_time_sec=start, end_time_sec=end, text=text, language="english",
                   bcp47_key="en", speaker=speaker, words=list(words) or None)  # fmt: skip


class ScriptedJobs:
    """Stands in for the job runner's `prepare` and `events`: records each request and plays
    `events` (a diarized job's: provisional labels, then the `speakers` map)."""

    def __init__(self, events: list[Any]) -> None:
        self.events_script = events
        self.requests: list[TranscribeRequest] = []

    async def prepare(self, request: TranscribeRequest, *, upload: Any = None) -> object:
        self.requests.append(request)
        return object()

    async def events(self, job: object, log: Any = None) -> AsyncIterator[Any]:
        for event in self.events_script:
            yield event


HEADER = StreamHeader(media_url="upload:talk.wav", input_duration_sec=9.0,
                      macro_chunks=[TimeSpan(start_sec=0.0, end_sec=9.0)])  # fmt: skip
FOOTER = StreamFooter(input_duration_sec=9.0, processing_duration_sec=1.0, speedup=9.0,
                      num_segments=4, languages=["en"])  # fmt: skip


def diarized(labels: dict[str, str], *rows: tuple[float, float, str, str]) -> Diarization:
    """The job's `speakers` event as the runner yields it: the map and the final segments."""
    segments = [
        ChunkSegment(start_sec=start, end_sec=end, text=text, language="en", speaker=who)
        for start, end, text, who in rows
    ]
    return Diarization(
        SpeakerMap(labels=labels, speakers=list(dict.fromkeys(s.speaker for s in segments))),
        segments=segments,
        turns=[],
    )


ALICE_AND_BOB = {"A": "Alice", "B": "Bob", "C": "Alice"}
# Streamed with provisional labels; the whole file decides that provisional B is A's voice.
PROVISIONAL = [
    HEADER,
    said(0.0, 2.0, " Hello there.", "A"),
    said(2.0, 2.2, "  ", "A"),
    said(2.5, 4.0, " Hi, Alice.", "B"),
    said(4.5, 6.0, " It's me again.", "C"),
    # the final segments too, blank ones included as `label_segments` keeps them (a fake that
    # sent the bare map hid a route reading that)
    diarized(
        ALICE_AND_BOB,
        (0.0, 2.0, " Hello there.", "Alice"),
        (2.0, 2.2, "  ", "Alice"),
        (2.5, 4.0, " Hi, Alice.", "Bob"),
        (4.5, 6.0, " It's me again.", "Alice"),
    ),
    FOOTER,
]
# Streamed as one segment; the whole file's speakers split it where the voice changes.
SPLIT = [
    HEADER,
    said(0.0, 6.0, " Hi, Alice. It's me again.", "A"),
    diarized(
        {"A": "Bob"}, (0.0, 4.0, " Hi, Alice.", "Bob"), (4.5, 6.0, " It's me again.", "Alice")
    ),
    FOOTER,
]
# The job's result (what `run` collects): the `speakers` event's segments have final labels.
FINAL = [
    *PROVISIONAL[:-2],
    diarized(
        ALICE_AND_BOB,
        (0.0, 2.0, " Hello there.", "Alice"),
        (2.5, 4.0, " Hi, Alice.", "Bob"),
        (4.5, 6.0, " It's me again.", "Alice"),
    ),
    FOOTER,
]


def settings(tmp_path: Path) -> OrchestratorSettings:
    return OrchestratorSettings(
        worker_urls=["http://127.0.0.1:9"],  # never reached: the job runner is scripted
        upload_dir=tmp_path / "uploads",
        database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
    )


class Sdk:
    """The SDK over the app in-process, and every multipart body it sent."""

    def __init__(self, app: FastAPI, http: httpx2.AsyncClient, jobs: ScriptedJobs) -> None:
        self.bodies: list[bytes] = []

        async def keep(request: httpx2.Request) -> None:
            self.bodies.append(await request.aread())

        http.event_hooks["request"].append(keep)
        self.client = openai.AsyncOpenAI(
            base_url="http://localhost/v1", api_key="unused", http_client=http, max_retries=0
        )
        self.jobs = jobs
        app.state.runner.prepare = jobs.prepare
        app.state.runner.events = jobs.events

    async def create(self, **kwargs: Any) -> Any:
        kwargs.setdefault("model", "whisper-1")
        return await self.client.audio.transcriptions.create(file=AUDIO, **kwargs)


async def sdk_over(tmp_path: Path, events: list[Any]) -> AsyncIterator[Sdk]:
    app = create_app(settings(tmp_path))
    transport = httpx2.ASGITransport(app=app)  # the SDK's own HTTP client, as it sends
    async with serve(app), httpx2.AsyncClient(transport=transport) as http:
        yield Sdk(app, http, ScriptedJobs(events))


@pytest.fixture
async def sdk(tmp_path: Path) -> AsyncIterator[Sdk]:
    """A job whose result has final labels (what `run` collects)."""
    async for session in sdk_over(tmp_path, FINAL):
        yield session


@pytest.fixture
async def streaming_sdk(tmp_path: Path) -> AsyncIterator[Sdk]:
    """A job streamed with provisional labels, then the `speakers` map."""
    async for session in sdk_over(tmp_path, PROVISIONAL):
        yield session


async def test_diarized_json_with_known_speakers_as_the_sdk_sends_them(sdk: Sdk) -> None:
    result = await sdk.create(
        model="any-model-name",
        response_format="diarized_json",
        known_speaker_names=["Alice", "Bob"],
        known_speaker_references=[ALICE, BOB],
    )
    assert isinstance(result, TranscriptionDiarized)  # the SDK's own model parsed our answer
    assert [(s.speaker, s.text) for s in result.segments] == [
        ("Alice", "Hello there."), ("Bob", "Hi, Alice."), ("Alice", "It's me again.")
    ]  # fmt: skip
    assert result.text == "Hello there. Hi, Alice. It's me again." and result.duration == 9.0
    (request,) = sdk.jobs.requests
    params = request.params
    assert params.diarize  # diarized_json alone turns it on
    assert params.known_speaker_names == ["Alice", "Bob"]
    assert params.known_speaker_references == [ALICE, BOB]
    # The SDK repeats `name[]` per item; the route read those fields, in order.
    (body,) = sdk.bodies
    assert body.count(b'name="known_speaker_names[]"') == 2
    assert body.count(b'name="known_speaker_references[]"') == 2


async def test_our_speaker_fields_go_in_extra_body_and_any_format_shows_speakers(
    sdk: Sdk,
) -> None:
    srt = await sdk.create(
        response_format="srt", extra_body={"diarize": True, "min_speakers": 2, "max_speakers": 3}
    )
    assert "[Alice] Hello there." in srt and "[Bob] Hi, Alice." in srt
    params = sdk.jobs.requests[-1].params
    assert params.diarize and (params.min_speakers, params.max_speakers) == (2, 3)
    await sdk.create(response_format="vtt", extra_body={"diarize": "true", "num_speakers": "2"})
    assert sdk.jobs.requests[-1].params.num_speakers == 2


# A job whose model server gave up on one of its two micro chunks (words may be missing).
GAVE_UP = [
    HEADER,
    said(0.0, 2.0, " Hello there.", ""),
    MacroChunkReport(
        start_sec=0.0,
        end_sec=9.0,
        micro_chunks=[
            MicroChunkReport(start_sec=0.0, end_sec=5.0, num_segments=1),
            MicroChunkReport(start_sec=5.0, end_sec=9.0, num_segments=0, incomplete=True),
        ],
    ),
    FOOTER.model_copy(update={"num_segments": 1, "incomplete_clips": 1}),
]


async def test_an_answer_with_missing_words_says_so_in_a_header_and_its_json(
    tmp_path: Path,
) -> None:
    async for sdk in sdk_over(tmp_path, GAVE_UP):
        raw = await sdk.client.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=AUDIO, response_format="verbose_json"
        )
        assert raw.headers["X-Whisperfleet-Incomplete-Clips"] == "1"
        assert (raw.parse().model_extra or {})["incomplete_clips"] == 1
        text = await sdk.client.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=AUDIO, response_format="text"
        )
        assert text.headers["X-Whisperfleet-Incomplete-Clips"] == "1"
        stream = await sdk.create(stream=True)
        done = [event async for event in stream][-1]
        assert done.type == "transcript.text.done" and done.model_extra["incomplete_clips"] == 1


async def test_a_whole_answer_has_no_incomplete_marks(sdk: Sdk) -> None:
    raw = await sdk.client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=AUDIO, response_format="verbose_json"
    )
    assert "X-Whisperfleet-Incomplete-Clips" not in raw.headers
    assert "incomplete_clips" not in raw.http_response.json()


async def test_without_diarization_nothing_asks_for_speakers(sdk: Sdk) -> None:
    await sdk.create(response_format="json")
    params = sdk.jobs.requests[-1].params
    assert not params.diarize and params.known_speaker_names is None


@pytest.mark.parametrize(
    ("kwargs", "param", "words"),
    [
        ({"known_speaker_names": ["Alice"]}, "known_speaker_names[]", "same speakers"),
        ({"known_speaker_names": ["Alice", "Alice"], "known_speaker_references": [ALICE, BOB]},
         "known_speaker_names[]", "distinct"),
        ({"known_speaker_names": ["x" * 65], "known_speaker_references": [ALICE]},
         "known_speaker_names[]", "at most 64"),
        ({"known_speaker_names": ["Alice"], "known_speaker_references": ["alice.wav"]},
         "known_speaker_references[]", "data URL"),
        ({"known_speaker_names": [f"n{i}" for i in range(9)],
          "known_speaker_references": [ALICE] * 9}, "known_speaker_names[]", "at most 8"),
        ({"extra_body": {"num_speakers": 0}}, "num_speakers", "greater than or equal to 1"),
        ({"extra_body": {"num_speakers": "two"}}, "num_speakers", "integer"),
        ({"extra_body": {"max_speakers": 33}}, "max_speakers", "less than or equal to 32"),
        ({"extra_body": {"num_speakers": 2, "max_speakers": 3}}, "num_speakers", "not both"),
        ({"extra_body": {"min_speakers": 3, "max_speakers": 2}}, "min_speakers", "above"),
    ],
)  # fmt: skip
async def test_bad_speaker_fields_are_422s_naming_the_form_field(
    sdk: Sdk, kwargs: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match=words) as caught:
        await sdk.create(response_format="diarized_json", **kwargs)
    assert caught.value.param == param
    assert sdk.jobs.requests == []


async def test_speaker_fields_without_diarization_are_a_422_saying_how_to_ask(sdk: Sdk) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match="diarized_json") as caught:
        await sdk.create(
            response_format="text", known_speaker_names=["A"], known_speaker_references=[ALICE]
        )
    assert caught.value.param == "known_speaker_names[]"
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        await sdk.create(extra_body={"num_speakers": 2, "diarize": False})
    assert caught.value.param == "num_speakers"


async def test_bad_values_of_the_other_fields_keep_their_status_and_name(sdk: Sdk) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.create(extra_body={"diarize": "maybe"})
    assert caught.value.param == "diarize"
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.create(response_format="docx")
    assert caught.value.param == "response_format" and "diarized_json" in str(caught.value)
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.create(language="xx")
    assert caught.value.param == "language"
    with pytest.raises(openai.BadRequestError) as invalid:
        await sdk.create(prompt="x" * 1001)  # was named `language`; a 400 as OpenAI answers
    assert invalid.value.param == "prompt"


async def test_a_prompt_too_long_is_a_400_naming_prompt_not_language(sdk: Sdk) -> None:
    with pytest.raises(openai.BadRequestError, match="1000 characters") as caught:
        await sdk.create(language="en", prompt="x" * 1001)
    assert caught.value.param == "prompt"
    assert sdk.jobs.requests == []


async def test_the_decode_options_reach_the_job_as_the_form_gave_them(sdk: Sdk) -> None:
    await sdk.create(language=" DE", prompt="Jürgen", temperature=0.4, response_format="text")
    await sdk.client.audio.translations.create(
        model="whisper-1", file=AUDIO, prompt="Zoë", response_format="text",
        extra_body={"language": "xx"},  # a translation's language is ignored, as OpenAI does
    )  # fmt: skip
    transcribed, translated = (request.params.decode_options() for request in sdk.jobs.requests)
    assert transcribed == DecodeOptions(language="de", prompt="Jürgen", temperature=0.4)
    assert translated == DecodeOptions(task="translate", prompt="Zoë")
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.create(temperature=1.5)
    assert caught.value.param == "temperature"


async def test_a_translation_has_no_diarized_json(sdk: Sdk) -> None:
    with pytest.raises(openai.BadRequestError, match="translations") as caught:
        await sdk.client.audio.translations.create(
            model="whisper-1",
            file=AUDIO,
            response_format="diarized_json",  # type: ignore[call-overload]
        )
    assert caught.value.param == "response_format"


async def test_a_diarized_stream_sends_final_speakers_after_the_last_delta(
    streaming_sdk: Sdk,
) -> None:
    """Labels streamed live could change (B was Alice all along): each segment, with its
    final speaker, comes after the last delta; the deltas name their segment."""
    stream = await streaming_sdk.create(response_format="diarized_json", stream=True)
    events = [event async for event in stream]
    types = [event.type for event in events]
    assert types == ["transcript.text.delta"] * 3 + ["transcript.text.segment"] * 3 + [
        "transcript.text.done"
    ]
    deltas, segments, done = events[:3], events[3:6], events[6]
    assert [(s.speaker, s.text, s.start, s.end) for s in segments] == [
        ("Alice", "Hello there.", 0.0, 2.0),
        ("Bob", "Hi, Alice.", 2.5, 4.0),
        ("Alice", "It's me again.", 4.5, 6.0),
    ]
    assert [d.segment_id for d in deltas] == [s.id for s in segments]
    assert done.text == "".join(d.delta for d in deltas) == "Hello there. Hi, Alice. It's me again."


async def test_a_diarized_streams_segments_are_the_answers_where_speakers_split_one(
    tmp_path: Path,
) -> None:
    """A segment streamed whole, split at the end where the speaker changes: its segment
    events kept the streamed split with mapped labels ("And I'm Sheila ..." as one segment of
    B), where the answer without `stream` had two (found by this stop's review)."""
    async for sdk in sdk_over(tmp_path, SPLIT):
        stream = await sdk.create(response_format="diarized_json", stream=True)
        events = [event async for event in stream]
        answer = await sdk.create(response_format="diarized_json")
    segments = [e for e in events if e.type == "transcript.text.segment"]
    assert [(s.id, s.speaker, s.text, s.start, s.end) for s in segments] == [
        (s.id, s.speaker, s.text, s.start, s.end) for s in answer.segments
    ]
    assert [(s.speaker, s.text) for s in segments] == [
        ("Bob", "Hi, Alice."),
        ("Alice", "It's me again."),
    ]
    assert events[-1].text == answer.text


async def test_a_diarized_stream_in_another_format_is_openais_plain_text_stream(
    streaming_sdk: Sdk,
) -> None:
    stream = await streaming_sdk.create(stream=True, extra_body={"diarize": True})
    events = [event async for event in stream]
    assert [event.type for event in events] == ["transcript.text.delta"] * 3 + [
        "transcript.text.done"
    ]
    assert all(getattr(event, "segment_id", None) is None for event in events)
    assert streaming_sdk.jobs.requests[-1].params.diarize


# -- the form parser alone (OpenAIOptions.from_form) ---------------------------------------------


def options(task: str = "transcribe", /, **fields: str | list[str]) -> OpenAIOptions:
    form = UploadForm(None, {k: v if isinstance(v, list) else [v] for k, v in fields.items()})
    return OpenAIOptions.from_form(form, task=task)


def test_an_empty_form_is_json_with_segments_and_the_default_decoding() -> None:
    parsed = options()
    assert parsed.response_format == Format.JSON and not parsed.words and not parsed.stream
    assert parsed.params == TranscribeParams()


def test_word_granularity_asks_for_word_timestamps_with_or_without_brackets() -> None:
    for name in ("timestamp_granularities[]", "timestamp_granularities"):
        fields: dict[str, str | list[str]] = {name: ["segment", "word"]}
        parsed = options(response_format="verbose_json", **fields)
        assert parsed.words and parsed.params.word_timestamps
        assert parsed.response_format == Format.VERBOSE_JSON


def test_word_granularity_sent_indexed_is_read_as_the_array_it_is() -> None:
    fields: dict[str, str | list[str]] = {
        "timestamp_granularities[1]": "word",
        "timestamp_granularities[0]": "segment",
    }
    assert options(response_format="verbose_json", **fields).params.word_timestamps
    with pytest.raises(BadRequestError) as refused:
        options(**{"timestamp_granularities[0]": "char"})
    assert refused.value.param == "timestamp_granularities[]"


@pytest.mark.parametrize(
    "fields",
    [
        {"response_format": "json"},
        {"response_format": "srt"},
        {"response_format": "diarized_json"},
        {"response_format": "text", "stream": "true"},
    ],
)
def test_word_granularity_where_words_have_no_place_is_a_400_not_ignored(
    fields: dict[str, str],
) -> None:
    with pytest.raises(BadRequestError) as refused:
        options(**fields, **{"timestamp_granularities[]": ["segment", "word"]})
    assert refused.value.param == "timestamp_granularities[]"
    assert "verbose_json" in refused.value.message
    assert not options(**fields, **{"timestamp_granularities[]": "segment"}).words


def test_speaker_arrays_are_read_indexed_too() -> None:
    parsed = options(
        response_format="diarized_json",
        **{"known_speaker_names[1]": "bob", "known_speaker_names[0]": "ann"},
        **{"known_speaker_references[0]": "data:audio/wav;base64,UklGRg=="},
        **{"known_speaker_references[1]": "data:audio/wav;base64,UklGRg=="},
    )
    assert parsed.params.known_speaker_names == ["ann", "bob"]


def test_a_translation_ignores_the_language_as_openai_does() -> None:
    parsed = options("translate", language="de", prompt="Names: Zoë.")
    assert parsed.params.task == "translate" and parsed.params.language is None
    assert parsed.params.prompt == "Names: Zoë."


@pytest.mark.parametrize(
    ("task", "fields", "param", "words"),
    [
        ("transcribe", {"response_format": "docx"}, "response_format", "docx"),
        ("translate", {"response_format": "diarized_json"}, "response_format", "no diarized"),
        ("transcribe", {"timestamp_granularities[]": "char"}, "timestamp_granularities[]", "word"),
        ("transcribe", {"stream": "maybe"}, "stream", "true or false"),
        ("translate", {"stream": "true"}, "stream", "don't stream"),
        ("transcribe", {"chunking_strategy": "magic"}, "chunking_strategy", "server_vad"),
        ("transcribe", {"chunking_strategy[type]": "client_vad"}, "chunking_strategy", "auto"),
        ("transcribe", {"temperature": "2.5"}, "temperature", "temperature"),
        ("transcribe", {"prompt": "x" * 1001}, "prompt", "1000"),
        ("transcribe", {"stream": "true", "response_format": "srt"}, "response_format", "omit"),
        (
            "transcribe",
            {"stream": "true", "response_format": "verbose_json"},
            "response_format",
            "whole transcript",
        ),
    ],
)
def test_bad_fields_are_400s_naming_the_field(
    task: str, fields: dict[str, str], param: str, words: str
) -> None:
    with pytest.raises(BadRequestError) as refused:
        options(task, **fields)
    assert refused.value.status_code == 400 and refused.value.param == param
    assert words in refused.value.message


@pytest.mark.parametrize(
    "field", ["langauge", "timestamp_granularities[x]", "known_speaker_names[0", "speakers"]
)
def test_a_field_the_api_does_not_have_is_a_400_naming_it(field: str) -> None:
    with pytest.raises(BadRequestError) as refused:
        options(**{field: "en"})
    assert refused.value.param == field and "Unrecognized request argument" in refused.value.message


def test_every_field_the_sdk_sends_is_known() -> None:
    options(model="whisper-1", language="en", prompt="p", temperature="0",
            response_format="verbose_json", stream="false", chunking_strategy="auto",
            **{"include[]": "logprobs", "timestamp_granularities[]": "word"})  # fmt: skip


def test_server_vad_settings_are_accepted_as_json_or_as_bracketed_fields() -> None:
    options(chunking_strategy='{"type": "server_vad", "silence_duration_ms": 500}')
    options(**{"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "0.5"})
    options(chunking_strategy="auto")


def test_stream_and_diarize_take_openais_booleans() -> None:
    assert options(stream="True").stream and not options(stream="0").stream
    assert options(diarize="1").params.diarize
    assert options(response_format="diarized_json").params.diarize  # the format asks for it
