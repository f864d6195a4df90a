"""Hostile media against the real processes: each harms one request, and fast.

A stack whose address rule allows only 127.0.0.1 (the test media host); playlists point at a
second host on 127.0.0.2, refused by that rule, which records every request it gets: it must
see none. A WebM whose header claims 1e9 s, sync and async. Clients that give up on a host
dripping a byte a second, then a normal job.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.stack import LocalStack
from shared.schemas import TranscribeOutput
from tests.support.hostile_media import MANIFESTS
from tests.support.media_server import MediaServer
from tests.support.stack import start_stack

pytestmark = pytest.mark.e2e

DEADLINE_SEC = 4


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path
) -> Iterator[LocalStack]:
    running = start_stack(
        tmp_path_factory.mktemp("guarded"),
        model_cache_dir,
        workers=1,
        ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS="127.0.0.1/32",
        ORCHESTRATOR_PROBE_DEADLINE_SEC=str(DEADLINE_SEC),
    )
    try:
        yield running
    finally:
        running.stop()


def rss_mb(stack: LocalStack) -> float:
    process = stack.service("orchestrator").process
    assert process is not None
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_a_playlist_pointing_at_a_refused_host_is_a_415_and_that_host_sees_nothing(
    guarded: LocalStack, hostile: MediaServer, refused: MediaServer, name: str
) -> None:
    response = httpx.post(
        f"{guarded.url}/v1/transcribe", json={"media_url": hostile.url(name)}, timeout=60
    )
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media"
    assert MANIFESTS[name] in error["message"] and "media itself" in error["message"]
    assert refused.base_url not in response.text
    assert refused.traffic.requests_by_path == {}


def test_a_forged_duration_is_refused_in_seconds_sync_and_async_and_memory_stays_flat(
    guarded: LocalStack, media_server: MediaServer
) -> None:
    body = {"media_url": media_server.url("forged_duration_1e9s.webm")}
    before = rss_mb(guarded)
    started = time.monotonic()
    response = httpx.post(f"{guarded.url}/v1/transcribe", json=body, timeout=60)
    sync_sec = time.monotonic() - started
    started = time.monotonic()
    submitted = httpx.post(f"{guarded.url}/v1/jobs", json=body, timeout=60)
    async_sec = time.monotonic() - started
    after = rss_mb(guarded)
    print(f"forged 1e9 s: sync {sync_sec:.2f} s, async {async_sec:.2f} s to the 4xx; "
          f"orchestrator RSS {before:.0f} -> {after:.0f} MB")  # fmt: skip
    for answer in (response, submitted):
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "corrupt_media"
    assert sync_sec < 5 and async_sec < 5
    assert after - before < 50
    jobs = httpx.get(f"{guarded.url}/v1/jobs", timeout=10).json()["data"]
    assert jobs == []  # refused at submit: no job to crash-loop on


def test_abandoned_requests_to_a_dripping_host_then_a_normal_job(
    guarded: LocalStack, media_server: MediaServer
) -> None:
    """Clients give up on a host that drips a byte a second; the orchestrator's probes of it
    end by the deadline, and a normal job meanwhile runs as usual."""
    drip = {"media_url": media_server.url("speech_40s.wav", route="drip")}
    ended_before = len(media_server.traffic.drips_ended)

    def abandon() -> None:
        with contextlib.suppress(httpx.TimeoutException):  # the client gives up
            httpx.post(f"{guarded.url}/v1/transcribe", json=drip, timeout=1.0)

    clients = [threading.Thread(target=abandon) for _ in range(12)]
    started = time.monotonic()
    for client in clients:
        client.start()
    for client in clients:
        client.join()

    with httpx.stream(
        "POST",
        f"{guarded.url}/v1/transcribe/stream",
        json={"media_url": media_server.url("speech_40s.wav")},
        timeout=120,
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: header"):
                break
    header_sec = time.monotonic() - started
    response = httpx.post(
        f"{guarded.url}/v1/transcribe",
        json={"media_url": media_server.url("speech_40s.wav")},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert TranscribeOutput.model_validate(response.json()).segments
    for _ in range(100):
        if len(media_server.traffic.drips_ended) - ended_before >= 12:
            break
        time.sleep(0.1)
    drips_sec = max(media_server.traffic.drips_ended[ended_before:]) - started
    print(f"12 abandoned dripping requests: a normal job's header after {header_sec:.2f} s; "
          f"the last drip ended {drips_sec:.2f} s after they started")  # fmt: skip
    assert len(media_server.traffic.drips_ended) - ended_before >= 12
    # The clients' 1 s, then a check that waits for no one: well before a probe stuck behind
    # the drippers would have been let go (the deadline).
    assert header_sec < DEADLINE_SEC
    assert drips_sec < DEADLINE_SEC + 3.0  # cut by the deadline at the latest (seen at a drip)
