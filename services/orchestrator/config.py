"""Settings of the orchestrator (environment prefix `ORCHESTRATOR_`)."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from services.orchestrator.api.gate import parse_host
from shared.config import empty_is_unset, networks, readable_file, split_list, split_urls


def _default_upload_dir() -> Path:
    return Path.home() / ".cache" / "whisperfleet" / "uploads"


def _default_database_url() -> str:
    return f"sqlite+aiosqlite:///{Path.home() / '.cache' / 'whisperfleet' / 'jobs.db'}"


def _unique_instance_id() -> str:
    """The hostname and a random suffix: two processes on one host never share it."""
    return f"{socket.gethostname()}-{secrets.token_hex(4)}"


class OrchestratorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    allowed_media_networks: Annotated[list[str], NoDecode] = []
    """Non-public networks media URLs may point into, comma-separated CIDRs (e.g.
    `10.1.0.0/16,127.0.0.0/8`); empty: none, so a media URL (or a redirect) that resolves to
    any address that is not public (loopback, private, carrier-grade NAT, link-local,
    documentation, NAT64 local-use ...) is refused. `make run` sets `127.0.0.0/8,::1`. Chunk
    workers have their own (`CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS`)."""
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
    max_probes: int = Field(32, ge=1, le=10_000)
    """Media checks whose probe thread may run at once on this replica (each probe reads in a
    thread of its own, which ends by its deadline); more wait for one within their deadline,
    then get 503 with Retry-After. Bounds the threads a flood of slow hosts can hold."""
    worker_deadline_sec: float = Field(3600.0, gt=0)
    """Longest time one macro chunk may take, retries included."""
    worker_retry_attempts: int = Field(3, ge=1, le=20)
    """Tries per macro chunk on connection errors, 503 and 504 (another replica each time)."""
    sse_ping_sec: float = Field(15.0, ge=1.0, le=300.0)
    """Keep-alive comment sent on an idle event stream, so proxies don't cut it."""
    sse_send_timeout_sec: float = Field(30.0, gt=0.0, le=3600.0)
    """An event stream's reader that takes nothing for this long (it stopped reading, its TCP
    window is full) is dropped: its job is cancelled and its job slot and upload freed."""
    model_name: str = "base"
    """The model `GET /v1/models` lists: set it to the model server's WHISPER_MODEL (any name a
    client sends maps to the served model). An English-only name (`tiny.en`) also refuses
    other languages and translation at once, before the media is fetched (the model server
    refuses them too, whatever this says)."""
    upload_dir: Path = Field(default_factory=_default_upload_dir)
    """The media store: uploads are streamed here and served to the chunk workers from here;
    each is removed when its job ends, and leftovers of a crash at the next start."""
    max_upload_mb: int = Field(2048, ge=1, le=1_000_000)
    """Largest upload accepted (413 beyond it); a media URL has no such limit."""
    upload_min_free_mb: int = Field(1024, ge=0)
    """Free disk the media store keeps: an upload that would leave less is refused (507)."""
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
    max_request_kb: int = Field(4096, ge=1, le=1_000_000)
    """Largest JSON request body (413 beyond it; known speakers' reference clips ride in it as
    data URLs: 8 x 10 s of WAV is 3.4 MB); uploads have their own cap."""
    max_render_mb: int = Field(64, ge=1, le=4096)
    """Largest body of `POST /v1/render` (a whole transcript, words included: 48 h of speech
    with words is about 40 MB); 413 beyond it."""
    allowed_hosts: Annotated[list[str], NoDecode] = []
    """Host names the public API answers to besides the loopback ones (`localhost`,
    `127.0.0.1`, `::1`, always allowed), comma-separated, each with or without a port
    (`transcribe.example.com,10.0.0.5:8000`); `*` allows any (only behind a proxy that checks
    Host itself). Any other Host gets 400: a web page that rebinds its own name to this
    server's address can't use it."""
    database_url: str = Field(default_factory=_default_database_url, repr=False)
    """Where async jobs (`/v1/jobs`), their events and finished micro chunks are kept: an
    SQLite file by default (`sqlite+aiosqlite:///path`), or PostgreSQL for several replicas
    (`postgresql://user:password@host/db`, driven by asyncpg). Migrated at start."""
    max_running_jobs: int = Field(2, ge=1, le=1000)
    """Async jobs this replica runs at once; the rest wait as `queued`, the next one always
    from the key with the fewest running jobs (oldest first among equals)."""
    max_queued_jobs_per_key: int = Field(100, ge=0, le=1_000_000)
    """Queued plus running async jobs one key (or, without keys, everyone) may have; beyond it
    `POST /v1/jobs` answers 429 with Retry-After. 0 = no limit."""
    job_max_attempts: int = Field(3, ge=1, le=100)
    """Claims of one async job that may end without a word (its orchestrator crashed, was
    killed, ran out of memory, or stalled past its lease); at the next claim it ends `failed`
    instead, and is never run again. A hand-back at SIGTERM does not count."""
    job_retention_hours: float = Field(168.0, gt=0)
    """Finished async jobs (and their events and uploads) are deleted after this long."""
    job_lease_sec: float = Field(30.0, ge=2.0, le=3600.0)
    """A running job's owner renews its claim this often (x1/3); a claim not renewed for this
    long (its replica died) lets another replica resume the job."""
    instance_id: str = Field(default_factory=_unique_instance_id, min_length=1, max_length=128)
    """This replica's name in the job table; default: the hostname and a random suffix, unique
    per process. Set a stable name (a StatefulSet's pod name) and a restarted replica takes
    back the jobs it was running at once, instead of after `job_lease_sec`; two processes with
    one name then hand each other's jobs back at start (which fencing makes harmless, but
    wasteful)."""
    fleet_secret: SecretStr | None = None
    """The secret the whole fleet shares (at least 16 characters): sent to the chunk workers
    (`Authorization: Bearer`), and wanted from them for `/internal/uploads`, which takes it and
    no API key. Unset (and no file): workers refuse this orchestrator and uploads can't be
    read."""
    fleet_secret_file: Path | None = None
    """A file whose first line is the fleet secret (a mounted Secret), if `fleet_secret` is
    unset."""
    webhook_secret: str | None = Field(None, repr=False)
    """Key of the `X-Whisperfleet-Signature` HMAC-SHA256 over each webhook (timestamp, a dot,
    the body); unset: webhooks are sent unsigned."""
    webhook_attempts: int = Field(5, ge=1, le=20)
    """Tries per webhook (after 0, 1, 3, 7 ... s); the outcome is kept on the job."""
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
        """Where this orchestrator reads its own uploads back (range check, probe)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    _split_urls = field_validator("worker_urls", mode="before")(split_urls)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        keys = split_list(value)
        if isinstance(value, str) and value.strip() and not keys:  # `,`: an open API by typo
            raise ValueError("holds no key; give keys separated by commas, or leave it unset")
        return keys

    @field_validator("api_keys_file", mode="before")
    @classmethod
    def _keys_file(cls, value: object) -> object:
        return readable_file(empty_is_unset(value))

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            url = None
        if url is None or url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(
                "not a database URL; give sqlite+aiosqlite:///path/jobs.db or "
                "postgresql://user:password@host/db"
            )
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        hosts = split_list(value)
        for host in hosts if isinstance(hosts, list) else []:
            if host != "*" and parse_host(str(host)) is None:
                raise ValueError(f"{host!r} is not a host name (with an optional :port)")
        return hosts

    _unset = field_validator("webhook_secret", "fleet_secret", "fleet_secret_file", mode="before")(
        empty_is_unset
    )
    _networks = field_validator("allowed_media_networks", mode="before")(networks)
