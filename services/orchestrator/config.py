"""Settings of the orchestrator (environment prefix `ORCHESTRATOR_`)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.config import split_list, split_urls
from shared.media_host import AddressPolicy


def _default_upload_dir() -> Path:
    return Path.home() / ".cache" / "whisperfleet" / "uploads"


def _default_database_url() -> str:
    return f"sqlite+aiosqlite:///{Path.home() / '.cache' / 'whisperfleet' / 'jobs.db'}"


class OrchestratorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    allowed_media_networks: Annotated[list[str], NoDecode] = []
    """Non-public networks media URLs may point into, comma-separated CIDRs (e.g.
    `10.1.0.0/16,127.0.0.0/8`); empty: none, so a media URL (or a redirect) that resolves to
    any address that is not public (loopback, private, carrier-grade NAT, link-local,
    documentation, NAT64 local-use ...) is refused. `make run` sets `127.0.0.0/8,::1`. Chunk
    workers get the same rule with every request."""
    worker_urls: Annotated[list[str], NoDecode] = ["http://127.0.0.1:8001"]
    """Base URLs of the chunk worker replicas, comma-separated."""
    worker_refresh_sec: float = Field(10.0, ge=0.5, le=3600.0)
    """How often worker names are re-resolved (scaled replicas join) and replicas probed."""
    max_concurrent_chunks: int = Field(32, ge=1, le=1024)
    """Macro chunks of one job in flight to the workers at once."""
    boundary_search_sec: float = Field(5.0, ge=0.0, le=30.0)
    """Macro chunk boundaries move to the quietest point within this many seconds of the
    nominal grid (0 keeps the fixed grid)."""
    head_start_sec: float = Field(5.0, ge=0.0, le=60.0)
    """The first macro chunk starts alone, with only its own end boundary searched, and the
    rest (chunks and boundary searches) follow once it has produced its first result, or after
    this long: the first streamed words come sooner. 0 starts all at once."""
    first_micro_chunk_sec: float = Field(10.0, ge=0.0, le=30.0)
    """The job's first micro chunk is cut by this length (in a pause of its second half), so
    the first words come back sooner; 0 = as long as the others."""
    probe_timeout_sec: float = Field(30.0, gt=0)
    """Longest wait for any one answer or read from the media host while checking range support
    and probing the duration (a host silent this long: 504)."""
    probe_deadline_sec: float = Field(60.0, gt=0, le=3600.0)
    """Longest time the whole check of a media URL (range check and probe together) may take,
    however the host trickles its bytes (504 beyond it). Each probe runs in a thread of its
    own that ends by this deadline, so slow hosts hold no pool that other requests need."""
    worker_deadline_sec: float = Field(3600.0, gt=0)
    """Longest time one macro chunk may take, retries included."""
    worker_retry_attempts: int = Field(3, ge=1, le=20)
    """Tries per macro chunk on connection errors, 503 and 504 (another replica each time)."""
    sse_ping_sec: float = Field(15.0, ge=1.0, le=300.0)
    """Keep-alive comment sent on an idle event stream, so proxies don't cut it."""
    model_name: str = "base"
    """The model `GET /v1/models` lists: set it to the model server's WHISPER_MODEL (any name a
    client sends maps to the served model)."""
    upload_dir: Path = Field(default_factory=_default_upload_dir)
    """The media store: uploads are streamed here and served to the chunk workers from here;
    each is removed when its job ends, and leftovers of a crash at the next start."""
    max_upload_mb: int = Field(2048, ge=1, le=1_000_000)
    """Largest upload accepted (413 beyond it); a media URL has no such limit."""
    upload_min_free_mb: int = Field(1024, ge=0)
    """Free disk the media store keeps: an upload that would leave less is refused (507)."""
    internal_url: str | None = None
    """How the chunk workers reach this orchestrator, for uploads (default
    `http://<host>:<port>`; behind replicas or NAT set this replica's own address)."""
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    """Keys that may use the public API (`Authorization: Bearer <key>`), comma-separated;
    empty (and no file): the API is open."""
    api_keys_file: Path | None = None
    """A file with one key per line, besides `api_keys` (a mounted secret)."""
    max_jobs_per_key: int = Field(0, ge=0, le=10_000)
    """Jobs one key (or, without keys, everyone) may run at once; 0 = no limit. Beyond it: 429
    with Retry-After."""
    max_duration_sec: float = Field(172_800.0, ge=0.0)
    """Longest media accepted, in seconds (413 beyond it): 48 h by default. 0 disables the cap
    explicitly; a header's duration is then believed as far as the file's size allows (below
    100 bit/s it is refused as forged), and the job's header event lists a span for every
    macro chunk of it."""
    max_request_kb: int = Field(1024, ge=1, le=1_000_000)
    """Largest JSON request body (413 beyond it); uploads have their own cap."""
    database_url: str = Field(default_factory=_default_database_url, repr=False)
    """Where async jobs (`/v1/jobs`), their events and finished micro chunks are kept: an
    SQLite file by default (`sqlite+aiosqlite:///path`), or PostgreSQL for several replicas
    (`postgresql://user:password@host/db`, driven by asyncpg). Migrated at start."""
    max_running_jobs: int = Field(2, ge=1, le=1000)
    """Async jobs this replica runs at once; the rest wait as `queued`, oldest first."""
    job_retention_hours: float = Field(168.0, gt=0)
    """Finished async jobs (and their events and uploads) are deleted after this long."""
    job_lease_sec: float = Field(30.0, ge=2.0, le=3600.0)
    """A running job's owner renews its claim this often (x1/3); a claim not renewed for this
    long (its replica died) lets another replica resume the job."""
    instance_id: str = Field(default_factory=socket.gethostname)
    """This replica's name in the job table: at start it takes back the jobs it was running
    when it stopped (a pod name or hostname is stable across restarts)."""
    webhook_secret: str | None = Field(None, repr=False)
    """Key of the `X-Whisperfleet-Signature` HMAC-SHA256 over each webhook (timestamp, a dot,
    the body); unset: webhooks are sent unsigned."""
    webhook_attempts: int = Field(5, ge=1, le=20)
    """Tries per webhook (exponential backoff from 1 s); the outcome is kept on the job."""
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    @property
    def async_database_url(self) -> str:
        """`database_url` with an async driver: plain `postgresql://` means asyncpg."""
        for plain in ("postgresql://", "postgres://"):
            if self.database_url.startswith(plain):
                return "postgresql+asyncpg://" + self.database_url.removeprefix(plain)
        if self.database_url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + self.database_url.removeprefix("sqlite:///")
        return self.database_url

    @property
    def own_url(self) -> str:
        if self.internal_url:
            return self.internal_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    _split_urls = field_validator("worker_urls", mode="before")(split_urls)
    _split_keys = field_validator("api_keys", mode="before")(split_list)

    @field_validator("api_keys_file", "internal_url", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`VAR=` (what Compose passes for an unset `${VAR:-}`) means not set."""
        return None if value == "" else value

    @field_validator("allowed_media_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> list[str]:
        items = value.split(",") if isinstance(value, str) else list(value or [])  # type: ignore[call-overload]
        try:
            return AddressPolicy.parse(str(item) for item in items).networks
        except ValueError as exc:
            raise ValueError(f"not a CIDR network list ({exc}), e.g. 10.0.0.0/8,::1") from None
