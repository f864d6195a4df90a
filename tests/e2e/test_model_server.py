"""The model server as a real process: batching under load, backpressure, cancellation, input."""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import os
import secrets
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.stack import ServiceProcess, free_port
from shared import fleet
from shared.audio import pcm16_to_wav
from tests.conftest import MEDIA_DIR
from tests.support.metrics import metric

pytestmark = pytest.mark.e2e


SECRET = secrets.token_urlsafe(32)
"""The fleet secret of the model servers started here; the tests call them as a worker would."""
HEADERS = fleet.headers(SECRET)


def start_model_server(log_dir: Path, model_cache_dir: Path, **env: str) -> ServiceProcess:
    port = free_port()
    server = ServiceProcess(
        "whisper_gpu",
        "services.whisper_gpu",
        port,
        {
            "WHISPER_MODEL": "random-tiny",
            "WHISPER_MODEL_CACHE_DIR": str(model_cache_dir),
            "WHISPER_PORT": str(port),
            "WHISPER_FLEET_SECRET": SECRET,
            **env,
        },
        log_path=log_dir / f"whisper-{port}.log",
    )
    server.start()
    with httpx.Client() as client:
        for _ in range(300):
            try:
                if client.get(f"{server.url}/readyz").status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            assert server.process is not None and server.process.poll() is None, server.log_tail()
            asyncio.run(asyncio.sleep(0.1))
    server.stop()
    raise TimeoutError(server.log_tail())


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Iterator[str]:
    """A model server as shipped for a CPU: every setting but the model at its default."""
    server = start_model_server(
        tmp_path_factory.mktemp("whisper"), model_cache_dir, WHISPER_DEVICE="cpu"
    )
    yield server.url
    server.stop()


@functools.cache
def _speech() -> np.ndarray:
    pcm = (MEDIA_DIR / "speech_40s.wav").read_bytes()
    with wave.open(io.BytesIO(pcm)) as reader:
        return np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")


def speech_wav(seconds: float, seed: int = 0) -> bytes:
    """`seconds` of the committed speech (from a seeded offset): clips the VAD passes on to the
    model, as a worker would send them."""
    speech = _speech()
    length = int(16000 * seconds)
    offset = int(np.random.default_rng(seed).integers(0, max(1, len(speech) - length)))
    clip = speech[offset : offset + length]
    return pcm16_to_wav(np.pad(clip, (0, length - len(clip))))


async def post_clips(
    url: str, count: int, seconds: float, client_timeout: float = 60
) -> list[httpx.Response | BaseException]:
    async with httpx.AsyncClient(timeout=client_timeout, headers=HEADERS) as client:
        requests = [
            client.post(f"{url}/v1/clips?language=en", content=speech_wav(seconds, i))
            for i in range(count)
        ]
        return await asyncio.gather(*requests, return_exceptions=True)


def batches_of(url: str, clips: int, seconds: float) -> dict[str, float]:
    """Send `clips` clips at once; the model calls they took (`batches`, `clips`) and how many
    of those calls held at most n clips (`le_n`), from the batch size histogram."""
    before = httpx.get(f"{url}/metrics", headers=HEADERS).text
    responses = asyncio.run(post_clips(url, clips, seconds))
    assert all(isinstance(r, httpx.Response) and r.status_code == 200 for r in responses)
    after = httpx.get(f"{url}/metrics", headers=HEADERS).text

    def moved(name: str, labels: str = "") -> float:
        return metric(after, name, labels) - metric(before, name, labels)

    counts = {f"le_{n}": moved("whisper_batch_size_bucket", f'{{le="{n}.0"}}') for n in (1, 4, 8)}
    return {
        "clips": moved("whisper_batch_size_sum"),
        "batches": moved("whisper_batch_size_count"),
        "ok": moved("whisper_requests_total", '{outcome="ok"}'),
        **counts,
    }


def test_concurrent_requests_are_batched_up_to_the_limit(
    tmp_path: Path, model_cache_dir: Path
) -> None:
    """One replica taking up to 8: the first clip runs alone (an idle model never waits), the
    others queue behind it and go in full batches (1, 8, 7 when nothing else is running)."""
    server = start_model_server(
        tmp_path, model_cache_dir, WHISPER_MAX_BATCH_SIZE="8", WHISPER_NUM_WORKERS="1"
    )
    try:
        seen = batches_of(server.url, 16, 5.0)
    finally:
        server.stop()
    assert seen["clips"] == seen["ok"] == 16
    assert seen["le_8"] == seen["batches"], f"a batch went over the limit of 8: {seen}"
    # Ideally 3 calls (1, 8, 7); a loaded machine spreads the 16 uploads out, and a short clip
    # may leave before the rest arrive. One at a time would be 16 calls of one clip each.
    assert seen["le_4"] < seen["batches"] <= 8, f"queued clips did not share model calls: {seen}"


def test_the_shipped_cpu_default_is_one_clip_per_model_call(model_server: str) -> None:
    """`WHISPER_MAX_BATCH_SIZE` unset on a CPU: each replica takes one clip at a time, however
    many wait (a batch costs as much per clip as one clip alone there)."""
    seen = batches_of(model_server, 16, 5.0)
    assert seen["clips"] == seen["ok"] == 16
    assert seen["batches"] == seen["le_1"] == 16, f"clips shared a model call: {seen}"


def test_full_queue_answers_503_with_retry_after(tmp_path: Path, model_cache_dir: Path) -> None:
    server = start_model_server(
        tmp_path, model_cache_dir, WHISPER_MAX_QUEUE_SIZE="1", WHISPER_MAX_BATCH_SIZE="1"
    )
    try:
        responses = asyncio.run(post_clips(server.url, 12, 25.0))
    finally:
        server.stop()
    statuses = [r.status_code for r in responses if isinstance(r, httpx.Response)]
    rejected = [r for r in responses if isinstance(r, httpx.Response) and r.status_code == 503]
    assert rejected, statuses
    assert 200 in statuses
    assert rejected[0].json()["error"]["code"] == "overloaded"
    assert int(rejected[0].headers["retry-after"]) >= 1


def test_abandoned_requests_never_reach_the_model(tmp_path: Path, model_cache_dir: Path) -> None:
    server = start_model_server(tmp_path, model_cache_dir, WHISPER_MAX_BATCH_SIZE="1")
    try:
        sent = 10
        responses = asyncio.run(post_clips(server.url, sent, 29.0, client_timeout=0.4))
        assert any(isinstance(r, httpx.TimeoutException) for r in responses)
        text = ""
        with httpx.Client(headers=HEADERS) as client:
            for _ in range(100):  # the queue drains: abandoned clips are removed, not run
                text = client.get(f"{server.url}/metrics").text
                if (
                    metric(text, "whisper_queue_depth") == 0
                    and metric(text, "whisper_requests_total", '{outcome="cancelled"}')
                    + metric(text, "whisper_requests_total", '{outcome="ok"}')
                    >= sent
                ):
                    break
                asyncio.run(asyncio.sleep(0.1))
    finally:
        server.stop()
    reached_model = metric(text, "whisper_batch_size_sum") - 3  # 3 warm-up clips
    cancelled = metric(text, "whisper_requests_total", '{outcome="cancelled"}')
    assert cancelled >= 1
    assert reached_model < sent, "abandoned clips were transcribed anyway"


def test_seed_style_json_base64_body_is_accepted(model_server: str) -> None:
    body = {"audio_b64": base64.b64encode(speech_wav(2.0)).decode()}
    response = httpx.post(
        f"{model_server}/v1/clips?language=en", headers=HEADERS, json=body, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json()["duration_sec"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"", 422, "invalid_audio"),
        (speech_wav(31.0), 422, "invalid_audio"),
        (b"this is not audio at all" * 20, 415, "unsupported_media"),
    ],
)
def test_bad_clips_get_a_clear_4xx(
    model_server: str, content: bytes, status: int, code: str
) -> None:
    response = httpx.post(f"{model_server}/v1/clips", headers=HEADERS, content=content, timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_bad_base64_and_unknown_language_name_the_parameter(model_server: str) -> None:
    bad_b64 = httpx.post(
        f"{model_server}/v1/clips", headers=HEADERS, json={"audio_b64": "%%%"}, timeout=30
    )
    assert bad_b64.status_code == 422 and bad_b64.json()["error"]["param"] == "audio_b64"
    bad_language = httpx.post(
        f"{model_server}/v1/clips?language=xx", headers=HEADERS, content=speech_wav(1.0), timeout=30
    )
    assert bad_language.status_code == 422
    assert "language" in bad_language.json()["error"]["message"]


def test_oversized_body_is_a_413(tmp_path: Path, model_cache_dir: Path) -> None:
    server = start_model_server(tmp_path, model_cache_dir, WHISPER_MAX_BODY_BYTES="100000")
    try:
        response = httpx.post(
            f"{server.url}/v1/clips", headers=HEADERS, content=speech_wav(10.0), timeout=30
        )
    finally:
        server.stop()
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_model_that_cannot_be_had_stops_the_server_with_what_to_set(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.whisper_gpu"],
        env={
            **os.environ,
            "WHISPER_MODEL": "no-such-model-anywhere",
            "WHISPER_MODEL_CACHE_DIR": str(tmp_path),
            "WHISPER_PORT": str(free_port()),
            "HF_HUB_OFFLINE": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "WHISPER_MODEL='no-such-model-anywhere'" in result.stderr
    assert "random-tiny" in result.stderr
