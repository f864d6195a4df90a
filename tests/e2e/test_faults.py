"""Faults survived with nothing lost, on the real processes (random model: the words don't
matter here, the plan's coverage does; one restart on the real tiny.en, whose words are checked
against faster-whisper's). Each finished job is checked micro chunk by micro chunk
(`assert_every_micro_chunk_once`); a fault that can't be ridden out is a clear error in time.
A worker killed mid-job is in test_load_spreading.py.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import pytest

from services.stack import LocalStack
from shared.schemas import TranscribeOutput
from tests.conftest import load_manifest
from tests.support.coverage import assert_every_micro_chunk_once
from tests.support.media_server import MediaServer
from tests.support.metrics import metric, scrape
from tests.support.real_models import manifest, reference_transcript
from tests.support.scoring import HypSegment, score
from tests.support.stack import start_stack

pytestmark = pytest.mark.e2e

SPEECH_200S_SEC = float(load_manifest("speech_200s.json")["duration_sec"])
PARAMS = {"macro_chunk_size_sec": 60, "micro_chunk_size_sec": 10, "language": "en"}
DEFAULTS_EN = {"language": "en"}
"""The shipped chunk sizes, as test_words.py compares them with faster-whisper."""


def transcribe(stack: LocalStack, media_url: str, timeout: float = 300) -> httpx.Response:
    body: dict[str, Any] = {"media_url": media_url, "params": PARAMS}
    return httpx.post(f"{stack.url}/v1/transcribe", json=body, timeout=timeout)


def finished(response: httpx.Response) -> TranscribeOutput:
    assert response.status_code == 200, response.text
    output = TranscribeOutput.model_validate(response.json())
    assert_every_micro_chunk_once(output)
    return output


def clips_served(stack: LocalStack) -> float:
    text = scrape(stack.service("whisper_gpu").url, stack.fleet_secret)
    return metric(text, "whisper_requests_total", '{outcome="ok"}')


@pytest.fixture(scope="module")
def big_wav(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Iterator[MediaServer]:
    """6.5 MB: the 200 s of speech as 16 kHz 16-bit WAV, behind its own host."""
    folder = tmp_path_factory.mktemp("big-wav")
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i",
         str(media_dir / "speech_200s.mp3"), "-ac", "1", "-ar", "16000",
         str(folder / "speech_200s.wav")],
        check=True,
    )  # fmt: skip
    with MediaServer(folder) as server:
        yield server


def test_a_job_survives_the_model_server_restarting_mid_job(
    tmp_path: Path, model_cache_dir: Path, media_server: MediaServer
) -> None:
    stack = start_stack(tmp_path, model_cache_dir)
    model_server = stack.service("whisper_gpu")
    try:
        result: dict[str, httpx.Response] = {}
        job = threading.Thread(
            target=lambda: result.update(
                response=transcribe(stack, media_server.url("speech_200s.mp3"))
            )
        )
        job.start()
        deadline = time.monotonic() + 60
        while clips_served(stack) < 3:
            assert time.monotonic() < deadline and job.is_alive(), "the job ended too soon"
            time.sleep(0.05)
        assert model_server.process is not None
        model_server.process.kill()  # mid-batch, like an OOM kill
        model_server.process.wait()
        model_server.stop()
        time.sleep(1.0)  # refused connections meanwhile
        model_server.start()
        job.join(timeout=300)
        assert not job.is_alive()
        served_after_restart = clips_served(stack)
    finally:
        stack.stop()
    finished(result["response"])
    assert served_after_restart >= 1, "the job finished without the restarted model server"


def test_the_model_server_killed_mid_job_on_the_real_model_loses_no_words(
    tmp_path: Path, model_cache_dir: Path, media_server: MediaServer
) -> None:
    """The real decode path (alignment, coverage rounds) through a restart: the clips the dead
    server held are asked again of the new one, and the words are faster-whisper's or better."""
    name = "words_en_180s"
    stack = start_stack(tmp_path, model_cache_dir, WHISPER_MODEL="tiny.en")
    model_server = stack.service("whisper_gpu")
    try:
        result: dict[str, httpx.Response] = {}
        job = threading.Thread(
            target=lambda: result.update(
                response=httpx.post(
                    f"{stack.url}/v1/transcribe",
                    json={"media_url": media_server.url(f"{name}.mp3"), "params": DEFAULTS_EN},
                    timeout=600,
                )
            )
        )
        job.start()
        deadline = time.monotonic() + 300
        while clips_served(stack) < 2:
            assert time.monotonic() < deadline and job.is_alive(), "the job ended too soon"
            time.sleep(0.05)
        assert model_server.process is not None
        model_server.process.kill()  # mid-job, like an OOM kill
        model_server.process.wait()
        model_server.stop()
        time.sleep(1.0)  # refused connections meanwhile
        model_server.start()
        job.join(timeout=600)
        assert not job.is_alive()
        served_after_restart = clips_served(stack)
    finally:
        stack.stop()
    output = finished(result["response"])
    assert served_after_restart >= 1, "the job finished without the restarted model server"
    spoken = manifest(name)
    segments = [HypSegment(s.start_time_sec, s.end_time_sec, s.text) for s in output.segments]
    ours = score(spoken, segments)
    theirs = score(spoken, reference_transcript("tiny.en", model_cache_dir, f"{name}.mp3", "en"))
    assert ours.lost == [], f"sentences lost: {ours.lost}"
    assert ours.duplicated_words == 0
    assert ours.wer <= theirs.wer, f"WER {ours.wer:.3f} vs faster-whisper {theirs.wer:.3f}"


def test_a_host_that_drops_the_connection_every_mb_costs_little_and_loses_nothing(
    stack: LocalStack, big_wav: MediaServer
) -> None:
    """The same job from a steady host and from one that cuts a connection whenever another
    MB has gone out, side by side: the cut transfers are resumed, not restarted."""
    every = 1 << 20
    fetched = {}
    for route, query in (("media", ""), ("flaky", f"?every={every}")):
        big_wav.traffic.reset()
        output = finished(transcribe(stack, big_wav.url("speech_200s.wav", route) + query))
        assert output.input_duration_sec == pytest.approx(SPEECH_200S_SEC, abs=0.1)
        fetched[route] = big_wav.traffic.bytes_by_path[f"/{route}/speech_200s.wav"]
    size = (big_wav.root / "speech_200s.wav").stat().st_size
    print(f"fetched {fetched['media'] / size:.3f}x the file from a steady host, "
          f"{fetched['flaky'] / size:.3f}x from one dropping every {every} bytes")  # fmt: skip
    assert fetched["flaky"] >= 2 * every, "the host never dropped a connection"
    assert fetched["flaky"] <= 1.15 * fetched["media"]


@pytest.fixture(scope="module")
def strained_stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path
) -> Iterator[LocalStack]:
    """Short media deadlines (a silent host is given up on in seconds) and a model server
    that queues one clip at most (several jobs overload it)."""
    running = start_stack(
        tmp_path_factory.mktemp("strained"),
        model_cache_dir,
        ORCHESTRATOR_PROBE_TIMEOUT_SEC="2",
        CHUNK_WORKER_MEDIA_READ_TIMEOUT_SEC="2",
        WHISPER_MAX_QUEUE_SIZE="1",
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("silent", "most_sec"),
    [
        ("", 15),  # from the first byte: the range check times out
        ("&from=0.4&to=0.9", 60),  # in the middle only: the probe passes, the workers stall
    ],
)
def test_a_silent_media_host_is_a_504_in_bounded_time(
    strained_stack: LocalStack, media_server: MediaServer, silent: str, most_sec: float
) -> None:
    url = media_server.url("speech_200s.mp3", "slow") + "?delay=120" + silent
    started = time.monotonic()
    response = transcribe(strained_stack, url, timeout=most_sec + 30)
    took = time.monotonic() - started
    print(f"{response.status_code} after {took:.1f} s: {response.text}")
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_timeout", error
    assert "media host sent nothing for 2 s" in error["message"], error
    assert took <= most_sec


def test_model_server_overload_from_several_jobs_is_absorbed(
    strained_stack: LocalStack, media_server: MediaServer
) -> None:
    stack = strained_stack
    url = media_server.url("speech_40s.wav")
    responses: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: responses.append(transcribe(stack, url)), daemon=True)
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    text = scrape(stack.service("whisper_gpu").url, stack.fleet_secret, timeout=10)
    assert len(responses) == 3
    for response in responses:
        finished(response)
    assert metric(text, "whisper_requests_total", '{outcome="rejected"}') > 0, "never overloaded"
