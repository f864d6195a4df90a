"""Server-Sent Events end to end: order, ids, pings, equality with JSON, cancellation."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack import LocalStack
from tests.support.media_server import MediaServer
from tests.support.metrics import metric, scrape
from tests.support.sse import Event, parse_sse
from tests.support.stack import start_stack

pytestmark = pytest.mark.e2e


def stream_events(url: str, body: dict[str, Any]) -> tuple[list[Event], list[str], httpx.Headers]:
    comments: list[str] = []
    with httpx.stream("POST", f"{url}/v1/transcribe/stream", json=body, timeout=300) as response:
        assert response.status_code == 200, response.read()
        events = list(parse_sse(response.iter_lines(), comments))
        return events, comments, response.headers


def test_stream_has_ordered_events_with_ids_and_matches_the_json_endpoint(
    stack: LocalStack, media_server: MediaServer
) -> None:
    body = {
        "media_url": media_server.url("speech_200s.mp3"),
        "params": {"macro_chunk_size_sec": 60, "micro_chunk_size_sec": 10, "language": "en"},
    }
    events, _, headers = stream_events(stack.url, body)
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-accel-buffering"] == "no"
    assert [int(e.id or -1) for e in events] == list(range(len(events)))
    names = [e.name for e in events]
    assert names[0] == "header" and names[-1] == "footer"
    assert set(names[1:-1]) <= {"segment", "progress"}

    header, footer = events[0].data, events[-1].data
    segments = [e.data for e in events if e.name == "segment"]
    assert len(header["macro_chunks"]) == 4
    starts = [s["start_time_sec"] for s in segments]
    assert starts == sorted(starts)
    progress = [e.data for e in events if e.name == "progress"]
    done = [p["done_sec"] for p in progress]
    assert done == sorted(done) and done[-1] == pytest.approx(
        header["input_duration_sec"], abs=0.05
    )
    assert footer["num_segments"] == len(segments)
    assert footer["languages"] == ["en"]
    # The first segment arrived before the work was done.
    first_segment = names.index("segment")
    assert any(e.name == "progress" for e in events[first_segment:])
    assert progress[0]["done_sec"] < header["input_duration_sec"]

    response = httpx.post(f"{stack.url}/v1/transcribe", json=body, timeout=300)
    assert response.status_code == 200
    assert response.json()["segments"] == segments


def test_bad_input_on_the_stream_endpoint_is_a_plain_http_error(
    stack: LocalStack, media_server: MediaServer
) -> None:
    body = {"media_url": media_server.url("speech_40s.wav", route="norange")}
    response = httpx.post(f"{stack.url}/v1/transcribe/stream", json=body, timeout=60)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "range_not_supported"


def test_idle_stream_sends_keepalive_pings(
    tmp_path: Path, model_cache_dir: Path, media_server: MediaServer
) -> None:
    slow = start_stack(
        tmp_path,
        model_cache_dir,
        workers=1,
        ORCHESTRATOR_SSE_PING_SEC="1",
        WHISPER_MODEL="random-tiny-shape",
        WHISPER_MAX_BATCH_SIZE="1",
    )
    try:
        body = {
            "media_url": media_server.url("speech_40s.wav"),
            "params": {"micro_chunk_size_sec": 5, "language": "en"},
        }
        events, comments, _ = stream_events(slow.url, body)
    finally:
        slow.stop()
    assert events[-1].name == "footer"
    assert any(comment.startswith(": ping") for comment in comments)


def children_named(parents: list[int], name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent in parents and name in cmdline:
            found.append(int(entry.name))
    return found


def test_client_disconnect_cancels_the_job_everywhere(
    tmp_path: Path, model_cache_dir: Path, media_server: MediaServer
) -> None:
    """Nothing keeps computing for nobody: FFmpeg dies and the model queue drains."""
    busy = start_stack(
        tmp_path,
        model_cache_dir,
        workers=2,
        WHISPER_MODEL="random-tiny-shape",
        WHISPER_MAX_BATCH_SIZE="1",
    )
    whisper = busy.service("whisper_gpu").url
    workers = [s.process.pid for s in busy.services if s.name.startswith("chunk") and s.process]
    try:
        body = {
            "media_url": media_server.url("speech_200s.mp3"),
            "params": {"macro_chunk_size_sec": 60, "micro_chunk_size_sec": 5, "language": "en"},
        }
        with httpx.stream("POST", f"{busy.url}/v1/transcribe/stream", json=body, timeout=60) as r:
            lines = r.iter_lines()  # keep a reference: a dropped iterator closes the stream
            for line in lines:
                if line.startswith("event: segment"):
                    break
            queued = 0.0
            for _ in range(100):  # every chunk running, clips waiting: then hang up
                queued = metric(scrape(whisper, busy.fleet_secret), "whisper_queue_depth")
                if queued >= 4:
                    break
                time.sleep(0.1)
            r.close()  # the client goes away mid-job
        assert queued >= 4, "the test needs a backlog to watch drain"
        deadline = time.monotonic() + 15
        text = ""
        while time.monotonic() < deadline:
            text = scrape(whisper, busy.fleet_secret)
            if metric(text, "whisper_queue_depth") == 0 and not children_named(workers, "ffmpeg"):
                break
            time.sleep(0.2)
        assert metric(text, "whisper_queue_depth") == 0, "model queue did not drain"
        assert not children_named(workers, "ffmpeg"), "FFmpeg still running"
        ran = metric(text, "whisper_batch_size_count")
        time.sleep(1.5)
        after = metric(scrape(whisper, busy.fleet_secret), "whisper_batch_size_count")
        assert after <= ran + 1, "the model kept working after the client left"
    finally:
        busy.stop()
    assert os.path.exists(tmp_path)
