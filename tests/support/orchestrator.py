"""The orchestrator's settings for in-process tests: every file under `tmp_path`, no worker."""

from __future__ import annotations

from pathlib import Path

from services.orchestrator.config import OrchestratorSettings


def settings(tmp_path: Path, **values: object) -> OrchestratorSettings:
    return OrchestratorSettings(
        worker_urls=["http://127.0.0.1:9"],  # never reached by these tests
        upload_dir=tmp_path / "uploads",
        database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        **values,  # type: ignore[arg-type]
    )
