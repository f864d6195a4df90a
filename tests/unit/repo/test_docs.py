"""The README's configuration table keeps up with the Settings classes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from services.chunk_worker.config import ChunkWorkerSettings
from services.orchestrator.config import OrchestratorSettings
from services.whisper_gpu.config import WhisperSettings

README = (Path(__file__).parents[3] / "README.md").read_text()


@pytest.mark.parametrize("settings", [WhisperSettings, ChunkWorkerSettings, OrchestratorSettings])
def test_every_setting_is_documented_in_the_readme(settings: type[BaseSettings]) -> None:
    prefix = str(settings.model_config.get("env_prefix", ""))
    missing = [
        f"{prefix}{name}".upper()
        for name in settings.model_fields
        if f"{prefix}{name}".upper() not in README
    ]
    assert not missing, f"README.md's configuration table lacks {missing}"
