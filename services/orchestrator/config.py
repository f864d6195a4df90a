"""Settings of the orchestrator (environment prefix `ORCHESTRATOR_`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.config import split_urls


class OrchestratorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    worker_urls: Annotated[list[str], NoDecode] = ["http://127.0.0.1:8001"]
    """Base URLs of the chunk worker replicas, comma-separated."""
    worker_refresh_sec: float = Field(10.0, ge=0.5, le=3600.0)
    """How often worker names are re-resolved (scaled replicas join) and replicas probed."""
    max_concurrent_chunks: int = Field(32, ge=1, le=1024)
    """Macro chunks of one job in flight to the workers at once."""
    boundary_search_sec: float = Field(5.0, ge=0.0, le=30.0)
    """Macro chunk boundaries move to the quietest point within this many seconds of the
    nominal grid (0 keeps the fixed grid)."""
    head_start_sec: float = Field(2.0, ge=0.0, le=60.0)
    """The first macro chunk starts alone and the rest follow once it has produced its first
    result (or after this long): the first streamed words come sooner. 0 starts all at once."""
    probe_timeout_sec: float = Field(30.0, gt=0)
    """Longest wait for the media host while checking range support and probing the duration."""
    worker_deadline_sec: float = Field(3600.0, gt=0)
    """Longest time one macro chunk may take, retries included."""
    worker_retry_attempts: int = Field(3, ge=1, le=20)
    """Tries per macro chunk on connection errors, 503 and 504 (another replica each time)."""
    sse_ping_sec: float = Field(15.0, ge=1.0, le=300.0)
    """Keep-alive comment sent on an idle event stream, so proxies don't cut it."""
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    _split_urls = field_validator("worker_urls", mode="before")(split_urls)
