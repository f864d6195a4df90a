"""Fixtures shared by every test layer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.stack import LocalStack
from tests.support import required
from tests.support.hostile_media import write_manifests
from tests.support.media_server import MediaServer
from tests.support.postgres import PostgresServer, postgres_bin
from tests.support.stack import start_stack

MEDIA_DIR = Path(__file__).parent / "media"
TESTS_DIR = Path(__file__).parent
LAYER_MARKS = {"integration": "integration", "e2e": "e2e", "browser": "e2e"}
"""The marker each layer's folder gives its tests (pyproject registers them): `-m "not e2e"`."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(TESTS_DIR):
            continue  # collected from elsewhere on the command line
        parts = item.path.relative_to(TESTS_DIR).parts
        mark = LAYER_MARKS.get(parts[0]) if len(parts) > 1 else None
        if mark is not None:
            item.add_marker(mark)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Says, last, which tests a missing tool kept from running (support/required.py), so a
    green run without them is not mistaken for a full one."""
    missing: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = str(longrepr[2]) if isinstance(longrepr, tuple) else ""
        if required.MARK in reason:
            reason = reason.removeprefix("Skipped: ")
            missing[reason] = missing.get(reason, 0) + 1
    if missing:
        terminalreporter.section("not run: a tool is missing", sep="-", yellow=True)
        for reason, count in missing.items():
            terminalreporter.line(f"{count} test(s): {reason}")


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return MEDIA_DIR


def load_manifest(name: str) -> dict[str, Any]:
    """Sentence times of a committed test file (see scripts/make_test_media.py)."""
    manifest: dict[str, Any] = json.loads((MEDIA_DIR / name).read_text())
    return manifest


def pauses(manifest: dict[str, Any]) -> list[tuple[float, float]]:
    """The gaps between sentences (and before the first), as (start, end) seconds."""
    gaps = []
    previous_end = 0.0
    for sentence in manifest["sentences"]:
        gaps.append((previous_end, float(sentence["start_sec"])))
        previous_end = float(sentence["end_sec"])
    gaps.append((previous_end, float(manifest["duration_sec"])))
    return gaps


def in_pause(time_sec: float, manifest: dict[str, Any], margin_sec: float = 0.0) -> bool:
    return any(
        start + margin_sec <= time_sec <= end - margin_sec for start, end in pauses(manifest)
    )


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole session: random models are built in under a second, real
    ones assembled from their packages in about one."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Iterator[LocalStack]:
    """Model server, two chunk workers and the orchestrator as real processes (random model)."""
    running = start_stack(tmp_path_factory.mktemp("stack-logs"), model_cache_dir)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def english_stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path
) -> Iterator[LocalStack]:
    """The stack with the real `tiny.en` (English words) and the speaker models (the shipped
    default), for the tests that diarize."""
    running = start_stack(
        tmp_path_factory.mktemp("tiny-en"),
        model_cache_dir,
        WHISPER_MODEL="tiny.en",
        CHUNK_WORKER_DIARIZATION="true",
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def multilingual_stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path
) -> Iterator[LocalStack]:
    """The stack with the real multilingual `base` (languages, translation)."""
    running = start_stack(tmp_path_factory.mktemp("base"), model_cache_dir, WHISPER_MODEL="base")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def media_server(media_dir: Path) -> Iterator[MediaServer]:
    """The committed test media behind a range-capable HTTP host."""
    with MediaServer(media_dir) as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (Debian's `postgresql` package, which
    .ci/run installs): without it its tests skip, or fail where CI requires it."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        required.unavailable(required.POSTGRES, "PostgreSQL", "apt-get install postgresql")
    with PostgresServer(bin_dir) as server:
        yield server


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    """A host the address rule refuses (127.0.0.2: loopback, outside the tests' policy) that
    records every request: what hostile media points at, so it must see none (one per module:
    a module may leave requests on it on purpose)."""
    with MediaServer(tmp_path_factory.mktemp("refused"), host="127.0.0.2") as server:
        yield server


@pytest.fixture(scope="module")
def hostile(
    tmp_path_factory: pytest.TempPathFactory, refused: MediaServer
) -> Iterator[MediaServer]:
    """Serves playlists and manifests (tests/support/hostile_media.py) whose entries point at
    `refused` and at a local file."""
    directory = tmp_path_factory.mktemp("hostile")
    write_manifests(directory, refused.base_url, MEDIA_DIR / "speech_40s.wav")
    with MediaServer(directory) as server:
        yield server
