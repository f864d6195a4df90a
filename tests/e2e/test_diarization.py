"""Who spoke when, end to end: real processes, the real `tiny.en` and the real diarization
models, on a committed two-voice espeak-ng conversation (143 s) cut into 60 s macro chunks, so
both voices recur across macro chunks handled by different workers."""

from __future__ import annotations

import base64
import json
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from scripts.make_conversations import reference_turns, wav_data_url
from services.stack import LocalStack
from shared.audio import decode_clip_bytes, pcm16_to_wav
from tests.support.der import diarization_error, labelled_share
from tests.support.media_server import MediaServer
from tests.support.sse import parse_sse

pytestmark = pytest.mark.e2e

CONVERSATION = "conversation_2v_143s"
DIARIZED = {"diarize": True, "macro_chunk_size_sec": 60}
Turn = tuple[float, float, str]


@pytest.fixture(scope="module")
def manifest(media_dir: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((media_dir / f"{CONVERSATION}.json").read_text())
    return manifest


@pytest.fixture(scope="module")
def reference(manifest: dict[str, Any]) -> list[Turn]:
    return reference_turns(manifest)


@pytest.fixture(scope="module")
def diarized(english_stack: LocalStack, media_server: MediaServer) -> dict[str, Any]:
    """One diarized transcript with word times, shared by the checks that read it."""
    response = httpx.post(
        f"{english_stack.url}/v1/transcribe",
        json={
            "media_url": media_server.url(f"{CONVERSATION}.mp3"),
            "params": {**DIARIZED, "word_timestamps": True},
        },
        timeout=600,
    )
    assert response.status_code == 200, response.text
    output: dict[str, Any] = response.json()
    return output


def hypothesis(segments: list[dict[str, Any]]) -> list[Turn]:
    return [(s["start_time_sec"], s["end_time_sec"], s["speaker"]) for s in segments]


def test_two_voices_are_found_and_labelled_a_and_b_in_order_of_first_speech(
    diarized: dict[str, Any], reference: list[Turn]
) -> None:
    assert diarized["speakers"] == ["A", "B"]
    assert diarized["segments"][0]["speaker"] == "A"
    turns = [(t["start_sec"], t["end_sec"], t["speaker"]) for t in diarized["speaker_turns"]]
    who_spoke_when = diarization_error(reference, turns)
    assert who_spoke_when.der < 0.05, who_spoke_when  # senko 0.2.2: 0.2% (bench-diarization)
    # The segments (speech with words) hold every voice's words under the right label.
    assert diarization_error(reference, hypothesis(diarized["segments"])).confusion < 0.03


def test_a_voice_keeps_its_label_in_every_macro_chunk(
    diarized: dict[str, Any], reference: list[Turn]
) -> None:
    """One clustering per job: the label a voice has in the first macro chunk is its label in
    every other (each was diarized by whichever worker took it)."""
    mapping = diarization_error(reference, hypothesis(diarized["segments"])).mapping
    assert len(diarized["macro_chunks"]) >= 3
    for chunk in diarized["macro_chunks"]:
        inside = [s for s in diarized["segments"]
                  if chunk["start_sec"] <= s["start_time_sec"] < chunk["end_sec"]]  # fmt: skip
        chunk_score = diarization_error(
            [t for t in reference if chunk["start_sec"] <= t[0] < chunk["end_sec"]],
            hypothesis(inside),
        )
        assert chunk_score.mapping.items() <= mapping.items(), (chunk, chunk_score.mapping)


def test_no_segment_spans_two_speakers_and_every_word_carries_its_speaker(
    diarized: dict[str, Any],
) -> None:
    for segment in diarized["segments"]:
        assert segment["words"], segment
        assert {word["speaker"] for word in segment["words"]} == {segment["speaker"]}, segment


def test_diarizing_loses_no_words(
    english_stack: LocalStack, media_server: MediaServer, diarized: dict[str, Any]
) -> None:
    """Splitting segments where the speaker changes rebuilds them from their words: the words
    are the ones the same job gives without diarization."""
    plain = httpx.post(
        f"{english_stack.url}/v1/transcribe",
        json={
            "media_url": media_server.url(f"{CONVERSATION}.mp3"),
            "params": {"macro_chunk_size_sec": 60, "word_timestamps": True},
        },
        timeout=600,
    ).json()

    def words(output: dict[str, Any]) -> list[str]:
        return [w["word"].strip() for s in output["segments"] for w in s["words"]]

    assert words(diarized) == words(plain)
    assert "speaker" not in plain["segments"][0] or plain["segments"][0]["speaker"] is None


def test_a_stream_labels_segments_at_once_then_maps_them_in_one_event_before_the_footer(
    english_stack: LocalStack, media_server: MediaServer
) -> None:
    body = {"media_url": media_server.url(f"{CONVERSATION}.mp3"), "params": DIARIZED}
    with httpx.stream(
        "POST", f"{english_stack.url}/v1/transcribe/stream", json=body, timeout=600
    ) as response:
        assert response.status_code == 200
        events = [(e.name, e.data) for e in parse_sse(response.iter_lines())]
    names = [name for name, _ in events]
    assert names[-2:] == ["speakers", "footer"] and names.count("speakers") == 1
    shown = {data["speaker"] for name, data in events if name == "segment"}
    speaker_map = events[-2][1]
    assert shown and shown <= set(speaker_map["labels"])
    assert set(speaker_map["labels"].values()) == set(speaker_map["speakers"]) == {"A", "B"}
    assert all(
        "words" not in data or data["words"] is None for name, data in events if name == "segment"
    )  # fmt: skip  (not asked for)


def test_an_async_jobs_result_and_events_carry_the_final_speakers(
    english_stack: LocalStack, media_server: MediaServer
) -> None:
    body = {"media_url": media_server.url(f"{CONVERSATION}.mp3"), "params": DIARIZED}
    job = httpx.post(f"{english_stack.url}/v1/jobs", json=body, timeout=60).json()
    with httpx.stream("GET", f"{english_stack.url}/v1/jobs/{job['id']}/events", timeout=600) as r:
        names = [event.name for event in parse_sse(r.iter_lines())]
    assert names[-2:] == ["speakers", "footer"]
    result = httpx.get(f"{english_stack.url}/v1/jobs/{job['id']}", timeout=30).json()["result"]
    assert result["speakers"] == ["A", "B"]
    assert Counter(s["speaker"] for s in result["segments"]).keys() == {"A", "B"}


def voice_alone(audio: np.ndarray, reference: list[Turn], speaker: str, seconds: float) -> str:
    """A WAV data URL of `seconds` of `speaker` with nobody else speaking: their longest clear
    stretches of the conversation, end to end."""
    others = [(s, e) for s, e, who in reference if who != speaker]
    pieces: list[np.ndarray] = []
    for start, end, who in sorted(reference, key=lambda t: t[0] - t[1]):
        if who == speaker and not any(s < end and start < e for s, e in others):
            pieces.append(audio[int(start * 16000) : int(end * 16000)])
        if sum(map(len, pieces)) >= seconds * 16000:
            clip = np.concatenate(pieces)[: int(seconds * 16000)]
            return wav_data_url(clip)
    raise AssertionError(f"{speaker} never speaks {seconds} s alone")


def test_known_speakers_are_named_through_the_openai_sdk(
    english_stack: LocalStack, media_dir: Path, manifest: dict[str, Any], reference: list[Turn]
) -> None:
    audio = decode_clip_bytes((media_dir / f"{CONVERSATION}.mp3").read_bytes())
    names = list(manifest["speakers"])
    sdk = openai.OpenAI(base_url=f"{english_stack.url}/v1", api_key="unused", timeout=600,
                        max_retries=0)  # fmt: skip
    with (media_dir / f"{CONVERSATION}.mp3").open("rb") as file:
        result = sdk.audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize",
            file=file,
            response_format="diarized_json",
            chunking_strategy="auto",
            known_speaker_names=names,
            known_speaker_references=[voice_alone(audio, reference, n, 6) for n in names],
        )
    labelled = [(s.start, s.end, s.speaker) for s in result.segments]
    assert {s.speaker for s in result.segments} == set(names)
    for name in names:
        assert labelled_share(reference, labelled, name, name) >= 0.9, name


def test_a_reference_clip_too_long_is_a_400_naming_it(
    english_stack: LocalStack, media_server: MediaServer, media_dir: Path
) -> None:
    audio = decode_clip_bytes((media_dir / f"{CONVERSATION}.mp3").read_bytes())
    long_clip = pcm16_to_wav((audio[: 12 * 16000] * 32767).astype(np.int16))
    params = {**DIARIZED, "known_speaker_names": ["Ann"], "known_speaker_references": [
        "data:audio/wav;base64," + base64.b64encode(long_clip).decode()]}  # fmt: skip
    response = httpx.post(
        f"{english_stack.url}/v1/transcribe",
        json={"media_url": media_server.url(f"{CONVERSATION}.mp3"), "params": params},
        timeout=120,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "known_speaker_references[0]" and "12.0 s long" in error["message"]


def test_a_file_without_speech_has_no_speakers_and_no_error(
    english_stack: LocalStack, tmp_path: Path
) -> None:
    noise = (np.random.default_rng(3).normal(0, 30, 20 * 16000)).astype(np.int16)
    with wave.open(str(tmp_path / "hiss.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(noise.tobytes())
    with MediaServer(tmp_path) as host:
        response = httpx.post(
            f"{english_stack.url}/v1/transcribe",
            json={"media_url": host.url("hiss.wav"), "params": {"diarize": True}},
            timeout=120,
        )
    assert response.status_code == 200, response.text
    assert response.json()["segments"] == [] and response.json()["speakers"] == []
