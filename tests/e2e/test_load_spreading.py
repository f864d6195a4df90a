"""Load really spreads over worker replicas, and a job survives losing one mid-way."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import imageio_ffmpeg
import pytest

from services.stack import LocalStack
from shared.schemas import TranscribeOutput
from tests.support.coverage import assert_every_micro_chunk_once
from tests.support.media_server import MediaServer
from tests.support.metrics import metric, scrape
from tests.support.stack import start_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def long_media(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Path:
    """~7 minutes: the committed speech looped twice, without re-encoding."""
    folder = tmp_path_factory.mktemp("long-media")
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-stream_loop", "1", "-i",
         str(media_dir / "speech_200s.mp3"), "-c", "copy", str(folder / "speech_400s.mp3")],
        check=True,
    )  # fmt: skip
    return folder


def chunks_served(worker_url: str, fleet_secret: str) -> float:
    text = scrape(worker_url, fleet_secret)
    served = re.findall(r'^chunk_worker_chunks_total\{outcome="\w+"\} ([0-9.]+)$', text, re.M)
    return sum(float(value) for value in served)


@pytest.fixture
def three_workers(tmp_path: Path, model_cache_dir: Path) -> LocalStack:
    return start_stack(tmp_path, model_cache_dir, workers=3)


def test_each_of_three_workers_gets_a_fair_share(
    three_workers: LocalStack, long_media: Path
) -> None:
    stack = three_workers
    try:
        with MediaServer(long_media) as media:
            body = {
                "media_url": media.url("speech_400s.mp3"),
                "params": {"macro_chunk_size_sec": 30, "language": "en"},
            }
            response = httpx.post(f"{stack.url}/v1/transcribe", json=body, timeout=300)
        assert response.status_code == 200, response.text
        output = TranscribeOutput.model_validate(response.json())
        total = len(output.macro_chunks)
        assert total >= 12
        workers = [s for s in stack.services if s.name.startswith("chunk_worker")]
        shares = [chunks_served(w.url, stack.fleet_secret) / total for w in workers]
    finally:
        stack.stop()
    assert all(share >= 0.2 for share in shares), shares


def test_job_completes_when_a_worker_dies_mid_job(
    three_workers: LocalStack, long_media: Path
) -> None:
    stack = three_workers
    victim = stack.service("chunk_worker_1")
    result: dict[str, httpx.Response] = {}
    try:
        with MediaServer(long_media) as media:
            body = {
                "media_url": media.url("speech_400s.mp3"),
                "params": {"macro_chunk_size_sec": 30, "micro_chunk_size_sec": 10},
            }
            job = threading.Thread(
                target=lambda: result.update(
                    response=httpx.post(f"{stack.url}/v1/transcribe", json=body, timeout=300)
                )
            )
            job.start()
            deadline = time.monotonic() + 60
            while metric(scrape(victim.url, stack.fleet_secret), "chunk_worker_clips_total") < 1:
                assert time.monotonic() < deadline and job.is_alive(), "the job ended too soon"
                time.sleep(0.05)
            assert victim.process is not None
            victim.process.kill()  # with its macro chunk half done
            job.join(timeout=300)
    finally:
        stack.stop()
    assert victim.process is not None and victim.process.returncode is not None
    response = result["response"]
    assert response.status_code == 200, response.text
    assert_every_micro_chunk_once(TranscribeOutput.model_validate(response.json()))
