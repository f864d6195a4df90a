"""Chunk worker app factory: the lifespan owns the HTTP clients and the transcriber."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import imageio_ffmpeg
from fastapi import FastAPI

from services.chunk_worker.access import MediaAccess
from services.chunk_worker.config import ChunkWorkerSettings
from services.chunk_worker.media import FetchOptions
from services.chunk_worker.metrics import WorkerMetrics
from services.chunk_worker.pipeline import ChunkTranscriber
from services.chunk_worker.speakers import Speakers, diarization_thread
from shared import fleet
from shared.api import health_router, install_error_handlers
from shared.clients import ModelServerClient, RetryPolicy, ServiceClient
from shared.diarization.models import load_speaker_models
from shared.diarization.weights import DiarizationModelsMissing, locate
from shared.media_host import AddressPolicy
from shared.replicas import ReplicaPool

NETWORKS_SETTING = "CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS"
SECRET_SETTING = "CHUNK_WORKER_FLEET_SECRET"
logger = logging.getLogger(__name__)


async def _load_speakers(settings: ChunkWorkerSettings) -> Speakers:
    """The diarization models, or the reason `diarize` requests are refused."""
    if not settings.diarization:
        return Speakers(None, "diarization is turned off on this chunk worker "
                        "(CHUNK_WORKER_DIARIZATION)")  # fmt: skip
    try:
        weights = await asyncio.to_thread(locate, settings.models_dir)
    except DiarizationModelsMissing as exc:
        logger.warning("diarization unavailable: %s", exc)
        return Speakers(None, f"this chunk worker has no diarization models: {exc}")
    executor = diarization_thread(settings.diarization_nice)
    models = await asyncio.get_running_loop().run_in_executor(
        executor, load_speaker_models, weights, settings.diarization_threads
    )  # in the low-priority thread, so that onnxruntime's own threads inherit its priority
    return Speakers(models, executor=executor)


def create_app(settings: ChunkWorkerSettings | None = None) -> FastAPI:
    from services.chunk_worker.routes import router

    settings = settings or ChunkWorkerSettings()
    secret = fleet.load_secret(settings.fleet_secret, settings.fleet_secret_file, SECRET_SETTING)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=settings.max_inflight_clips * 4)
        timeout = httpx.Timeout(settings.whisper_deadline_sec, connect=5.0)
        access = MediaAccess(
            AddressPolicy.parse(settings.allowed_media_networks, NETWORKS_SETTING),
            settings.orchestrator_urls,
            fleet.headers(secret),
            settings.media_read_timeout_sec,
            settings.range_cache_mb << 20,
        )
        async with (
            httpx.AsyncClient(
                timeout=timeout, limits=limits, headers=fleet.headers(secret)
            ) as whisper_http,
            access,
        ):
            pool = ReplicaPool(settings.whisper_urls)
            whisper = ModelServerClient(
                ServiceClient(
                    whisper_http,
                    pool,
                    name="model server",
                    setting_hint="CHUNK_WORKER_WHISPER_URLS",
                    retry=RetryPolicy(
                        attempts=settings.whisper_retry_attempts,
                        patience_sec=settings.whisper_patience_sec,
                    ),
                    deadline_sec=settings.whisper_deadline_sec,
                )
            )
            fetch = FetchOptions(
                ffmpeg_path=settings.ffmpeg_path or imageio_ffmpeg.get_ffmpeg_exe(),
                preroll_sec=settings.seek_preroll_sec,
                rw_timeout_sec=settings.media_read_timeout_sec,
            )
            metrics = WorkerMetrics()
            app.state.settings = settings
            app.state.whisper_pool = pool
            app.state.metrics = metrics
            app.state.media_access = access
            speakers = await _load_speakers(settings)
            app.state.speakers = speakers
            app.state.transcriber = ChunkTranscriber(
                whisper, access, fetch, settings.max_inflight_clips, metrics, speakers
            )
            maintenance = asyncio.create_task(
                pool.maintain(whisper_http, settings.whisper_refresh_sec)
            )
            try:
                yield
            finally:
                maintenance.cancel()
                speakers.close()

    app = FastAPI(title="Whisperfleet chunk worker", version="0.1.0", lifespan=lifespan)
    fleet.install(app, secret, SECRET_SETTING, fleet.all_but_probes)
    install_error_handlers(app)
    app.include_router(
        health_router(
            "chunk_worker",
            lambda request: request.app.state.whisper_pool.readiness(
                "model server", "CHUNK_WORKER_WHISPER_URLS"
            ),
        )
    )
    app.include_router(router)
    return app
