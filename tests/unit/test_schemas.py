"""The public schemas: seed-compatible names, bounds that name the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.errors import validation_error_body
from shared.schemas import TranscribeParams, TranscribeRequest


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
