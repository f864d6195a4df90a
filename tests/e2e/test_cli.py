"""The `whisperfleet` command against the real stack: an upload, a URL, a failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.stack import LocalStack
from tests.support.media_server import MediaServer

pytestmark = pytest.mark.e2e

CLI = Path(sys.executable).with_name("whisperfleet")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "services.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)


def test_a_file_is_uploaded_and_written_as_subtitles(
    english_stack: LocalStack, media_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "talk.srt"
    done = run("transcribe", str(media_dir / "speech_40s.flac"), "-o", str(out),
               "--server", english_stack.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.startswith("1\n00:00:") and " --> " in text
    assert "segments" in done.stderr  # the summary line
    assert done.stdout == ""  # the transcript went to the file


def test_a_url_goes_to_stdout_in_the_asked_format_with_live_segments(
    english_stack: LocalStack, media_server: MediaServer
) -> None:
    done = run("transcribe", media_server.url("speech_40s.opus"), "--format", "vtt",
               "--language", "en", "--server", english_stack.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("WEBVTT\n")
    assert " → " in done.stderr  # segments were shown as they came


def test_a_failure_is_one_clear_line_and_exit_status_1(
    english_stack: LocalStack, media_server: MediaServer, tmp_path: Path
) -> None:
    done = run("transcribe", media_server.url("nothing.mp3", route="missing"),
               "--server", english_stack.url)  # fmt: skip
    assert done.returncode == 1
    assert "HTTP 422" in done.stderr and "media_url" in done.stderr
    missing = run("transcribe", str(tmp_path / "nope.mp3"), "--server", english_stack.url)
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_a_detached_job_is_watched_and_listed_by_id(
    stack: LocalStack, media_server: MediaServer, tmp_path: Path
) -> None:
    detached = run("transcribe", media_server.url("speech_40s.wav"), "--detach",
                   "--server", stack.url)  # fmt: skip
    assert detached.returncode == 0, detached.stderr
    job_id = detached.stdout.strip()
    assert job_id.startswith("job_") and f"whisperfleet watch {job_id}" in detached.stderr
    out = tmp_path / "talk.vtt"
    watched = run("watch", job_id, "-o", str(out), "--server", stack.url)
    assert watched.returncode == 0, watched.stderr
    assert out.read_text().startswith("WEBVTT\n")
    listed = run("jobs", "--status", "succeeded", "--server", stack.url)
    assert listed.returncode == 0 and job_id in listed.stdout
    unknown = run("watch", "job_nope", "--server", stack.url)
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr
