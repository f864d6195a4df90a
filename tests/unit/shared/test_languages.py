"""Language codes and the English-only model's limits."""

from __future__ import annotations

import pytest

from shared.errors import InvalidRequestError
from shared.languages import check_languages
from shared.schemas import DecodeOptions


@pytest.mark.parametrize(
    ("options", "param", "says"),
    [
        (DecodeOptions(language="de"), "language", "can't read German"),
        (DecodeOptions(languages=["en", "fr"]), "languages", "can't read French"),
        (DecodeOptions(task="translate"), "task", "can't translate"),
    ],
)
def test_an_english_only_model_names_what_it_cant_do(
    options: DecodeOptions, param: str, says: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        check_languages(options, "tiny.en", {"en"})
    assert refused.value.param == param and says in refused.value.message
    assert "tiny.en" in refused.value.message


@pytest.mark.parametrize(
    "options", [DecodeOptions(), DecodeOptions(language="en"), DecodeOptions(languages=["en"])]
)
def test_english_or_detection_is_what_it_does(options: DecodeOptions) -> None:
    check_languages(options, "tiny.en", {"en"})


def test_a_code_the_multilingual_model_has_no_token_for_is_named() -> None:
    known = {"en", "de", "fr"}
    for options, param in [(DecodeOptions(language="yue"), "language"),
                           (DecodeOptions(languages=["de", "yue"]), "languages")]:  # fmt: skip
        with pytest.raises(InvalidRequestError) as refused:
            check_languages(options, "base", known)
        assert refused.value.param == param
        assert "has no Cantonese (yue)" in refused.value.message
    check_languages(DecodeOptions(language="de", task="translate"), "base", known)
