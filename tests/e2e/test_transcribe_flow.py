"""A media URL in, a timed transcript out, through three real services and a real media host."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack import LocalStack, free_port
from shared.schemas import TranscribeOutput
from tests.conftest import in_pause, load_manifest
from tests.support.errors import assert_error
from tests.support.media_server import MediaServer
from tests.support.stack import start_stack

pytestmark = pytest.mark.e2e


def transcribe(stack: LocalStack, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/transcribe", json=body, timeout=300)


def test_transcript_of_minutes_of_speech_is_ordered_complete_and_timed(
    stack: LocalStack, media_server: MediaServer
) -> None:
    manifest = load_manifest("speech_200s.json")
    body = {
        "media_url": media_server.url("speech_200s.mp3"),
        "params": {"macro_chunk_size_sec": 60, "micro_chunk_size_sec": 20, "language": "en"},
    }
    response = transcribe(stack, body)
    assert response.status_code == 200, response.text
    output = TranscribeOutput.model_validate(response.json())
    duration = output.input_duration_sec
    assert duration == pytest.approx(manifest["duration_sec"], abs=0.1)

    # Segments: in order, non-overlapping, inside the file. A random model's text can't be
    # aligned, so each micro chunk is one segment over its speech (first VAD span to last):
    # together they cover every sentence of the manifest.
    assert output.segments
    previous_end = 0.0
    for segment in output.segments:
        assert (
            previous_end - 1e-6 <= segment.start_time_sec <= segment.end_time_sec <= duration + 1e-6
        )
        assert segment.bcp47_key == "en" and segment.language == "english"
        previous_end = segment.end_time_sec
    for sentence in manifest["sentences"]:
        assert any(
            s.start_time_sec - 0.3
            <= sentence["start_sec"]
            < sentence["end_sec"]
            <= s.end_time_sec + 0.3
            for s in output.segments
        ), f"sentence at {sentence['start_sec']} s is not inside any segment"

    # The plan: macro chunks tile [0, duration]; their micro chunks tile each macro chunk,
    # none longer than the maximum, and every one came back with segments.
    macros = output.macro_chunks
    assert len(macros) == 4  # 204 s in chunks of at most 60 s
    assert macros[0].start_sec == 0 and macros[-1].end_sec == pytest.approx(duration)
    micro_total = 0
    for macro, following in itertools.pairwise(macros):
        assert macro.end_sec == pytest.approx(following.start_sec)
        assert in_pause(macro.end_sec, manifest), f"macro boundary {macro.end_sec} cuts speech"
    for macro in macros:
        micros = macro.micro_chunks
        assert micros[0].start_sec == pytest.approx(macro.start_sec, abs=1e-6)
        assert micros[-1].end_sec == pytest.approx(macro.end_sec, abs=0.05)
        for micro, following_micro in itertools.pairwise(micros):
            assert micro.end_sec == pytest.approx(following_micro.start_sec, abs=1e-6)
            assert in_pause(micro.end_sec, manifest), f"micro cut {micro.end_sec} cuts speech"
        for micro in micros:
            assert 0 < micro.end_sec - micro.start_sec <= 20.0 + 1e-6
            assert micro.num_segments >= 1, "a micro chunk was not transcribed"
            assert micro.speech_sec and micro.speech_sec > 0
            inside = [
                s
                for s in output.segments
                if micro.start_sec - 1e-6 <= s.start_time_sec
                and s.end_time_sec <= micro.end_sec + 1e-6
            ]
            assert len(inside) >= micro.num_segments
        micro_total += len(micros)
    assert sum(m.num_segments for macro in macros for m in macro.micro_chunks) == len(
        output.segments
    )
    assert micro_total >= 204 / 20

    # Timing: speedup is the ratio it claims to be.
    assert output.processing_duration_sec > 0
    assert output.speedup == pytest.approx(duration / output.processing_duration_sec, rel=1e-6)


def test_seed_design_request_shape_is_accepted(
    stack: LocalStack, media_server: MediaServer
) -> None:
    """A client written against the seed design's JSON (its param names) works unchanged."""
    body = {
        "media_url": media_server.url("speech_40s.opus"),
        "params": {
            "micro_chunk_size_sec": 30,
            "macro_chunk_size_sec": 300,
            "macro_chunk_overlap_sec": 0,
            "silence_detection_smoothing_num_samples": 1600,
            "wav_sampling_rate_hz": 16000,
        },
    }
    response = transcribe(stack, body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) >= {"segments", "input_duration_sec", "processing_duration_sec", "speedup"}
    segment = data["segments"][0]
    assert set(segment) >= {"start_time_sec", "end_time_sec", "text", "language", "bcp47_key"}
    assert segment["words"] is None  # only when params.word_timestamps asks for them


def test_missing_media_is_a_422_naming_the_status(
    stack: LocalStack, media_server: MediaServer
) -> None:
    response = transcribe(stack, {"media_url": media_server.url("nothing.mp3", route="missing")})
    assert_error(response, 422, "media_unavailable", "404")


def test_host_without_range_support_is_a_422_saying_so(
    stack: LocalStack, media_server: MediaServer
) -> None:
    response = transcribe(stack, {"media_url": media_server.url("speech_40s.wav", route="norange")})
    assert_error(response, 422, "range_not_supported", "range")


def test_url_that_is_not_media_is_a_415(stack: LocalStack, media_server: MediaServer) -> None:
    response = transcribe(stack, {"media_url": media_server.url("speech_40s.json")})
    assert_error(response, 415, "unsupported_media", "media_url")


def test_unreachable_media_host_is_a_502(stack: LocalStack) -> None:
    response = transcribe(stack, {"media_url": f"http://127.0.0.1:{free_port()}/a.mp3"})
    assert_error(response, 502, "media_host_error")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"micro_chunk_size_sec": 31}, "params.micro_chunk_size_sec"),
        ({"micro_chunk_size_sec": 2}, "params.micro_chunk_size_sec"),
        ({"macro_chunk_size_sec": 5}, "params.macro_chunk_size_sec"),
        (
            {"silence_detection_smoothing_num_samples": 10},
            "params.silence_detection_smoothing_num_samples",
        ),
        ({"language": "klingon"}, "params.language"),
        ({"micro_chunk_sz": 10}, "params.micro_chunk_sz"),
    ],
)
def test_out_of_range_params_are_a_422_naming_the_field(
    stack: LocalStack, media_server: MediaServer, params: dict[str, Any], field: str
) -> None:
    response = transcribe(
        stack, {"media_url": media_server.url("speech_40s.wav"), "params": params}
    )
    assert_error(response, 422, "invalid_request", field)
    assert response.json()["error"]["param"] == field


def test_non_http_url_is_a_422(stack: LocalStack) -> None:
    response = transcribe(stack, {"media_url": "file:///etc/passwd"})
    assert_error(response, 422, "invalid_request", "media_url")


def test_unreachable_whisper_server_is_a_503_naming_it(
    tmp_path: Path, model_cache_dir: Path, media_server: MediaServer
) -> None:
    # Without patience: a model server that stays away fails the clip after the retries.
    broken = start_stack(
        tmp_path, model_cache_dir, workers=1, CHUNK_WORKER_WHISPER_PATIENCE_SEC="0"
    )
    try:
        broken.service("whisper_gpu").stop()
        worker = broken.service("chunk_worker_0")
        assert worker.process is not None
        response = httpx.post(
            f"{broken.url}/v1/transcribe",
            json={"media_url": media_server.url("speech_40s.wav")},
            timeout=120,
        )
    finally:
        broken.stop()
    assert_error(response, 503, "upstream_unavailable", "model server", "CHUNK_WORKER_WHISPER_URLS")
    assert "retry-after" in response.headers
