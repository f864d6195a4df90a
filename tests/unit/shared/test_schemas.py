"""The public schemas: seed-compatible names, bounds that name the field."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.errors import validation_error_body
from shared.schemas import (
    ChunkSegment,
    DecodeOptions,
    MicroChunkResult,
    Segment,
    TranscribeParams,
    TranscribeRequest,
    Word,
)


def test_defaults_match_the_design() -> None:
    params = TranscribeParams()
    assert params.micro_chunk_size_sec == 30
    assert params.macro_chunk_size_sec == 300
    assert params.language is None


def test_language_is_normalised_and_checked() -> None:
    assert TranscribeParams(language=" EN ").language == "en"
    with pytest.raises(ValidationError, match="unknown language code"):
        TranscribeParams(language="xx")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/a.mp3", "not a url", "http://"])
def test_only_absolute_http_urls_are_accepted(url: str) -> None:
    with pytest.raises(ValidationError):
        TranscribeRequest(media_url=url)


def test_validation_error_names_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        TranscribeRequest.model_validate(
            {"media_url": "http://h/a.mp3", "params": {"micro_chunk_size_sec": 31}}
        )
    error = validation_error_body(
        [{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors()]
    )
    assert error.status_code == 422
    assert error.param == "params.micro_chunk_size_sec"
    assert "params.micro_chunk_size_sec" in error.message


REFERENCE = "data:audio/wav;base64,UklGRg=="


@pytest.mark.parametrize(
    ("params", "words", "param"),
    [
        ({"diarize": True, "num_speakers": 0}, "num_speakers", "num_speakers"),
        ({"diarize": True, "max_speakers": 33}, "max_speakers", "max_speakers"),
        (
            {"diarize": True, "min_speakers": 4, "max_speakers": 2},
            "min_speakers (4) is above",
            "min_speakers",
        ),
        ({"diarize": True, "num_speakers": 2, "max_speakers": 3}, "not both", "num_speakers"),
        ({"num_speakers": 2}, "need `diarize: true`", "diarize"),
        (
            {"diarize": True, "known_speaker_names": ["Ann"]},
            "must name the same speakers",
            "known_speaker_names",
        ),
        (
            {
                "diarize": True,
                "known_speaker_names": ["Ann", "Ann"],
                "known_speaker_references": [REFERENCE] * 2,
            },
            "distinct",
            "known_speaker_names",
        ),
        (
            {
                "diarize": True,
                "known_speaker_names": ["Ann"],
                "known_speaker_references": ["https://example.com/ann.wav"],
            },
            "data URL",
            "known_speaker_references",
        ),
        (
            {
                "diarize": True,
                "known_speaker_names": [f"n{i}" for i in range(9)],
                "known_speaker_references": [REFERENCE] * 9,
            },
            "at most 8",
            "known_speaker_names",
        ),
    ],
)
def test_speaker_params_out_of_range_or_inconsistent_are_refused_naming_the_field(
    params: dict[str, object], words: str, param: str
) -> None:
    """A check across fields names the one to fix too (`min_speakers` above `max_speakers` was
    reported with `param: "params"`; the OpenAI route named `min_speakers`)."""
    with pytest.raises(ValidationError) as caught:
        TranscribeParams.model_validate(params)
    refusal = validation_error_body(caught.value.errors())
    assert words in refusal.message
    assert refusal.param == param


def test_workers_are_sent_no_reference_clips() -> None:
    params = TranscribeParams(
        diarize=True, known_speaker_names=["Ann"], known_speaker_references=[REFERENCE]
    )
    sent = params.for_workers()
    assert sent.diarize and sent.known_speaker_references is None
    assert params.known_speaker_references == [REFERENCE]  # the job keeps them


def test_a_jobs_decode_options_are_its_params_own_values() -> None:
    params = TranscribeParams(
        languages="de, EN,de", prompt="Names: Zoë", temperature=0.4, micro_chunk_size_sec=20
    )
    options = params.decode_options()
    assert type(options) is DecodeOptions
    assert options == DecodeOptions(languages=["de", "en"], prompt="Names: Zoë", temperature=0.4)
    assert DecodeOptions.model_validate(options.query()) == options
    assert options.query() == {
        "languages": ["de", "en"],
        "prompt": "Names: Zoë",
        "temperature": 0.4,
    }
    # Diarizing splits segments where the speaker changes: the clips need word times.
    assert TranscribeParams(diarize=True).decode_options().word_timestamps is True


def test_the_batch_key_is_every_decode_option_but_word_timestamps() -> None:
    base = DecodeOptions()
    assert base.batch_key() == DecodeOptions(word_timestamps=True).batch_key()
    hash(DecodeOptions(languages=["en", "de"]).batch_key())
    others = [{"language": "de"}, {"languages": ["de"]}, {"task": "translate"}, {"prompt": "Zoë"},
              {"temperature": 0.2}]  # fmt: skip
    keys = {DecodeOptions.model_validate(other).batch_key() for other in others}
    assert len(keys) == len(others) and base.batch_key() not in keys


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"language": "xx"}, "params.language"),
        ({"language": "en", "languages": ["en", "xx"]}, "params.languages.1"),
        ({"languages": []}, "params.languages"),
        ({"language": "en", "prompt": "x" * 1001}, "params.prompt"),
        ({"temperature": 1.5}, "params.temperature"),
        ({"task": "summarise"}, "params.task"),
    ],
)
def test_a_bad_decode_option_is_a_422_naming_it(params: dict[str, object], param: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TranscribeRequest.model_validate({"media_url": "http://h/a.mp3", "params": params})
    error = validation_error_body(
        [{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors()]
    )
    assert (error.status_code, error.param) == (422, param)


def test_a_segment_is_named_from_its_language_code_at_the_edge() -> None:
    segment = Segment(start_time_sec=0.0, end_time_sec=1.0, text=" Hallo.", bcp47_key="de")
    body = segment.model_dump()
    assert (body["language"], body["bcp47_key"]) == ("german", "de")
    assert list(body)[:5] == ["start_time_sec", "end_time_sec", "text", "language", "bcp47_key"]


def test_inside_a_segment_has_the_span_names_and_the_edge_makes_the_seeds() -> None:
    inside = ChunkSegment(start_sec=1.5, end_sec=2.25, text=" Hallo.", language="de",
                          speaker="A", words=[Word(start_sec=1.5, end_sec=2.25, word=" Hallo.",
                                                   probability=0.9)])  # fmt: skip
    public = Segment.of(inside).model_dump()
    assert (public["start_time_sec"], public["end_time_sec"]) == (1.5, 2.25)
    assert (public["language"], public["bcp47_key"], public["speaker"]) == ("german", "de", "A")
    assert public["words"][0]["start_sec"] == 1.5
    assert "start_time_sec" not in inside.model_dump()


def test_a_micro_chunk_in_the_seeds_names_is_still_read() -> None:
    """An async job's micro chunks stored before the rename (and an older worker's stream)
    carry the seed's segment names: a job resumed across the upgrade reads them."""
    stored = {
        "micro_chunk": {"start_sec": 0.0, "end_sec": 30.0, "num_segments": 1, "speech_sec": 2.0},
        "segments": [{"start_time_sec": 0.52, "end_time_sec": 2.61, "text": " Hello there.",
                      "language": "english", "bcp47_key": "en", "words": None,
                      "avg_logprob": -0.2, "speaker": None}],
    }  # fmt: skip
    [segment] = MicroChunkResult.model_validate_json(json.dumps(stored)).segments
    assert (segment.start_sec, segment.end_sec, segment.language) == (0.52, 2.61, "en")
    assert segment.avg_logprob == -0.2


def test_language_and_languages_together_is_a_422_naming_languages() -> None:
    """`{"language": "de", "languages": ["en"]}` was taken, and `languages` ignored."""
    with pytest.raises(ValidationError) as refused:
        TranscribeParams(language="de", languages=["en"])
    [error] = refused.value.errors()
    assert error["loc"] == ("languages",) and "not both" in error["msg"]
    assert TranscribeParams(languages=["en", "de"]).language is None  # detection among them
