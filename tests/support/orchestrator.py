"""The orchestrator's settings for in-process tests (every file under `tmp_path`, no worker), a
job that never ends in place of the runner, and a multipart upload body."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

from services.orchestrator.api.auth import Gate
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.transcription.runner import Job, JobEvent, OwnUpload
from shared.schemas import Segment, StreamHeader, TranscribeRequest


def settings(tmp_path: Path, **values: object) -> OrchestratorSettings:
    return OrchestratorSettings(
        worker_urls=["http://127.0.0.1:9"],  # never reached by these tests
        upload_dir=tmp_path / "uploads",
        database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        **values,  # type: ignore[arg-type]
    )


class EndlessJob:
    """Stands in for the JobRunner: a job whose events never end, and whose work (a task, as a
    real job's chunks are) records being cancelled, and how many job slots were held then."""

    def __init__(self, settings: OrchestratorSettings, gate: Gate) -> None:
        self.settings = settings
        self.gate = gate
        self.work_cancelled = asyncio.Event()
        self.slots_held_at_cancel: int | None = None

    async def prepare(self, request: TranscribeRequest, *, upload: OwnUpload | None = None) -> Job:
        return Job(request, 3600.0, time.monotonic(), upload)

    async def events(self, job: Job) -> AsyncIterator[JobEvent]:
        async def work() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.work_cancelled.set()
                self.slots_held_at_cancel = sum(self.gate._running.values())
                raise

        task = asyncio.create_task(work())
        try:
            yield StreamHeader(media_url=job.request.media_url, input_duration_sec=3600.0,
                               macro_chunks=[])  # fmt: skip
            for n in itertools.count():
                yield Segment(
                    start_time_sec=n, end_time_sec=n + 1, text="word " * 2000,
                    language="english", bcp47_key="en",
                )  # fmt: skip
                await asyncio.sleep(0)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def multipart(boundary: str, audio: bytes) -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + audio
        + f"\r\n--{boundary}--\r\n".encode()
    )
