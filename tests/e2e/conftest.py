"""Real processes on loopback ports: the model server, chunk workers, orchestrator, media host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.stack import LocalStack, free_port
from tests.support.media_server import MediaServer


def start_stack(log_dir: Path, model_cache_dir: Path, workers: int = 2, **env: str) -> LocalStack:
    stack = LocalStack(
        port=free_port(),
        workers=workers,
        whisper_port=free_port(),
        worker_ports=[free_port() for _ in range(workers)],
        env={
            "WHISPER_MODEL": "random-tiny",
            "WHISPER_MODEL_CACHE_DIR": str(model_cache_dir),
            "WHISPER_CPU_THREADS": "1",
            **env,
        },
        log_dir=log_dir,
    )
    stack.start(timeout_sec=120)
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Iterator[LocalStack]:
    log_dir = tmp_path_factory.mktemp("stack-logs")
    running = start_stack(log_dir, model_cache_dir)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def media_server(media_dir: Path) -> Iterator[MediaServer]:
    with MediaServer(media_dir) as server:
        yield server
