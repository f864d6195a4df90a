"""Whisper's languages: BCP-47 code to English name (the output's `language` field)."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from shared.errors import InvalidRequestError

if TYPE_CHECKING:  # schemas import this module
    from shared.schemas import DecodeOptions

LANGUAGE_NAMES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian",
    "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian",
    "sw": "swahili", "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala",
    "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans",
    "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi",
    "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek",
    "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan",
    "tl": "tagalog", "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian",
    "ln": "lingala", "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese",
    "yue": "cantonese",
}  # fmt: skip


def language_name(code: str) -> str:
    """English name for a Whisper language code; the code itself if unknown."""
    return LANGUAGE_NAMES.get(code, code)


def normalize_language(value: str) -> str:
    """A known Whisper language code, lower-cased; ValueError naming the problem otherwise."""
    code = value.strip().lower()
    if code not in LANGUAGE_NAMES:
        raise ValueError(f"unknown language code {value!r}; use a Whisper code such as 'en'")
    return code


ENGLISH = "en"
ENGLISH_ONLY = frozenset({ENGLISH})
"""What an English-only model (`tiny.en`, `base.en`) reads: it has no language tokens and no
detection, and decodes English whatever a request names."""


def is_english_only(model: str) -> bool:
    """An English-only model by its name (faster-whisper's and ours end in `.en`)."""
    return model.endswith(".en")


def check_languages(options: DecodeOptions, model: str, known: Collection[str]) -> None:
    """The options ask only for what the served model reads (`known`: its language codes;
    `ENGLISH_ONLY` for a model such as `tiny.en`): a 422 naming the option otherwise,
    rather than English words labelled German, or gibberish for a code the model has no token
    for (`yue` is large-v3's alone)."""
    asked = [options.language] if options.language is not None else []
    missing = [code for code in [*asked, *(options.languages or [])] if code not in known]
    english_only = set(known) == ENGLISH_ONLY
    if missing:
        param = "language" if options.language in missing else "languages"
        name = language_name(missing[0]).title()
        cannot = "is English-only: it can't read" if english_only else "has no"
        raise InvalidRequestError(
            f"the served model {model} {cannot} {name} ({missing[0]}); leave {param} out or "
            f"give a language it reads"
            + (", or serve a multilingual model (WHISPER_MODEL=base)" if english_only else ""),
            param=param,
        )
    if options.task == "translate" and english_only:
        raise InvalidRequestError(
            f"the served model {model} is English-only: it can't translate; transcribe, or "
            "serve a multilingual model (WHISPER_MODEL=base)",
            param="task",
        )
