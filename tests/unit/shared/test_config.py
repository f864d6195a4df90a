"""Settings from the environment: a bad value stops the service with a line naming the
variable as it is set, never a traceback naming a field (nor a secret's value)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from services.chunk_worker.config import ChunkWorkerSettings
from services.orchestrator.config import OrchestratorSettings
from services.whisper_gpu.config import WhisperSettings
from shared.config import from_environment


def refusal(settings: type[BaseSettings], monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        from_environment(settings)
    return str(stopped.value.code)


@pytest.fixture(autouse=True)
def orchestrator_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_WORKER_URLS", "http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("settings", "env", "says"),
    [
        (WhisperSettings, {"WHISPER_BEAM_SIZE": "-1"},
         "WHISPER_BEAM_SIZE '-1': Input should be greater than or equal to 1"),
        (WhisperSettings, {"WHISPER_COMPUTE_TYPE": "float99"}, "WHISPER_COMPUTE_TYPE 'float99'"),
        (ChunkWorkerSettings, {"CHUNK_WORKER_MAX_INFLIGHT_CLIPS": "0"},
         "CHUNK_WORKER_MAX_INFLIGHT_CLIPS '0'"),
        (ChunkWorkerSettings, {"CHUNK_WORKER_FFMPEG_PATH": "/nonexistent/ffmpeg"},
         "is not an executable file"),
        (OrchestratorSettings, {"ORCHESTRATOR_API_KEYS_FILE": "/nonexistent/keys"},
         "ORCHESTRATOR_API_KEYS_FILE '/nonexistent/keys': can't read /nonexistent/keys"),
        (OrchestratorSettings, {"ORCHESTRATOR_DATABASE_URL": "garbage"},
         "ORCHESTRATOR_DATABASE_URL: not a database URL"),
        (OrchestratorSettings, {"ORCHESTRATOR_API_KEYS": ","},
         "ORCHESTRATOR_API_KEYS: holds no key"),
    ],
)  # fmt: skip
def test_a_bad_value_names_its_variable(
    settings: type[BaseSettings], env: dict[str, str], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = refusal(settings, monkeypatch, **env)
    assert message.startswith("invalid configuration, nothing started:")
    assert says in message
    assert "Traceback" not in message and "validation error" not in message


def test_a_secret_value_is_never_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(
        OrchestratorSettings, monkeypatch, ORCHESTRATOR_DATABASE_URL="mysql://u:hunter2@db/jobs"
    )
    assert "ORCHESTRATOR_DATABASE_URL" in message and "hunter2" not in message


def test_good_values_pass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("k1\n")
    monkeypatch.setenv("ORCHESTRATOR_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("ORCHESTRATOR_API_KEYS", "")  # Compose's unset ${VAR:-}: an open API
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", "postgresql://u:p@db/jobs")
    monkeypatch.setenv("CHUNK_WORKER_FFMPEG_PATH", sys.executable)  # any executable file
    assert from_environment(OrchestratorSettings).api_keys == []
    assert from_environment(ChunkWorkerSettings).ffmpeg_path == sys.executable
    assert from_environment(WhisperSettings).compute_type == "auto"
