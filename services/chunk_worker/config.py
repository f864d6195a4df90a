"""Settings of a chunk worker (environment prefix `CHUNK_WORKER_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.config import empty_is_unset, executable, networks, split_urls


class ChunkWorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHUNK_WORKER_", extra="ignore")

    whisper_urls: Annotated[list[str], NoDecode] = ["http://127.0.0.1:8002"]
    """Base URLs of the model server replicas, comma-separated."""
    allowed_media_networks: Annotated[list[str], NoDecode] = []
    """Non-public networks media URLs may point into, comma-separated CIDRs; empty: none (a URL
    or redirect resolving to a loopback, private, link-local, multicast or reserved address is
    refused). The worker's own rule, never taken from a request: set it like the
    orchestrator's `ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS` (`make run` sets `127.0.0.0/8,::1`)."""
    orchestrator_urls: Annotated[list[str], NoDecode] = ["http://127.0.0.1:8000"]
    """Where uploads are read (`/internal/uploads/<id>`, with the fleet credential): the
    orchestrators' base URLs, comma-separated, tried in turn when one can't be reached."""
    fleet_secret: SecretStr | None = None
    """The secret the whole fleet shares (at least 16 characters): the orchestrator must send
    it (`Authorization: Bearer`) to use this worker, and the worker sends it to the model
    server and to the orchestrator's uploads. Unset (and no file): every call but the health
    checks is refused."""
    fleet_secret_file: Path | None = None
    """A file whose first line is the fleet secret (a mounted Secret), if `fleet_secret` is
    unset."""
    whisper_refresh_sec: float = Field(10.0, ge=0.5, le=3600.0)
    """How often model server names are re-resolved (scaled replicas join) and probed."""
    max_inflight_clips: int = Field(8, ge=1, le=256)
    """Micro chunks of one range in flight to the model server at once (also bounds memory)."""
    whisper_deadline_sec: float = Field(600.0, gt=0)
    """Longest wait for one clip's transcript, retries included."""
    whisper_retry_attempts: int = Field(4, ge=1, le=20)
    """Tries per clip on connection errors, 503 and 504 (for at least `whisper_patience_sec`)."""
    whisper_patience_sec: float = Field(60.0, ge=0.0, le=3600.0)
    """How long a clip keeps retrying an unreachable or overloaded model server, however many
    tries that takes: a model server restarting (refused connections, then loading its model)
    is ridden out and the job goes on. After that the clip fails with the server's error."""
    chunk_deadline_sec: float = Field(3600.0, gt=0)
    """Longest time one range may take end to end."""
    ffmpeg_path: str | None = None
    """FFmpeg binary (a path, or a name on PATH); default: the one shipped with the
    imageio-ffmpeg package. Checked at start."""
    seek_preroll_sec: float = Field(2.0, ge=0.0, le=30.0)
    """Seek this much early and trim on the output side: exact starts for every format."""
    range_cache_mb: int = Field(32, ge=1, le=4096)
    """Memory the range proxy may keep for file heads and tails (indexes, moov atoms)."""
    media_read_timeout_sec: float = Field(30.0, gt=0)
    """Give up on a media host that sends nothing for this long (FFmpeg reconnects first)."""
    diarization: bool = True
    """Serve `diarize` requests: find who speaks in each micro chunk (pyannote segmentation and
    CAM++ speaker embeddings, ONNX on the CPU). Needs the converted weights in `models_dir`
    (`make setup`, the image build, or `python -m shared.diarization.weights` put them there);
    without them, or when off, such requests are a 400 that says so."""
    models_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "whisperfleet" / "models"
    )
    """Where the diarization models are cached (the Whisper weights' cache by default)."""
    diarization_threads: int = Field(1, ge=1, le=64)
    """CPU threads the diarization models use (one micro chunk at a time per worker)."""
    diarization_nice: int = Field(10, ge=0, le=19)
    """How far below the worker's other threads diarization runs (Linux nice steps; 0: the
    same). Nice orders threads within one session or container only: it does not make
    diarization yield to a model server started in another (speakers.py)."""
    host: str = "127.0.0.1"
    port: int = Field(8001, ge=0, le=65535)

    _split_urls = field_validator("whisper_urls", "orchestrator_urls", mode="before")(split_urls)
    _networks = field_validator("allowed_media_networks", mode="before")(networks)
    _unset = field_validator("fleet_secret", "fleet_secret_file", mode="before")(empty_is_unset)
    _ffmpeg = field_validator("ffmpeg_path", mode="before")(executable)
