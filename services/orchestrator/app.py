"""Orchestrator app factory: the lifespan owns the HTTP clients, the job runner, the job
table and the queue of async jobs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from services.orchestrator.api.auth import Gate, load_keys
from services.orchestrator.api.gate import GateMiddleware
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.jobs.queue import JobQueue
from services.orchestrator.jobs.sqlite import single_writer
from services.orchestrator.jobs.store import JobStore
from services.orchestrator.jobs.uploads import MediaStore
from services.orchestrator.transcription.runner import JobRunner, MediaClients
from shared import fleet
from shared.api import health_router, install_error_handlers
from shared.clients import RetryPolicy, ServiceClient, WorkerClient
from shared.media_host import AddressPolicy, media_client
from shared.replicas import ReplicaPool

SECRET_SETTING = "ORCHESTRATOR_FLEET_SECRET"
NETWORKS_SETTING = "ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS"


def create_app(settings: OrchestratorSettings | None = None) -> FastAPI:
    from services.orchestrator.api.jobs import router as job_router
    from services.orchestrator.api.openai_compat import router as openai_router
    from services.orchestrator.api.page import router as page_router
    from services.orchestrator.api.transcribe import router
    from services.orchestrator.metrics import router as metrics_router

    settings = settings or OrchestratorSettings()
    secret = fleet.load_secret(settings.fleet_secret, settings.fleet_secret_file, SECRET_SETTING)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker_timeout = httpx.Timeout(settings.worker_deadline_sec, connect=5.0)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        policy = AddressPolicy.parse(settings.allowed_media_networks, NETWORKS_SETTING)
        probe_timeout = httpx.Timeout(settings.probe_timeout_sec)
        own_media = media_client(AddressPolicy.anywhere(), probe_timeout)
        own_media.headers.update(fleet.headers(secret))  # for its own uploads only
        async with (
            contextlib.AsyncExitStack() as held,
            httpx.AsyncClient(
                timeout=worker_timeout, limits=limits, headers=fleet.headers(secret)
            ) as worker_http,
            media_client(policy, probe_timeout) as public_media,
            own_media,
            media_client(policy, httpx.Timeout(10.0)) as webhook_http,
        ):
            pool = ReplicaPool(settings.worker_urls)
            workers = WorkerClient(
                ServiceClient(
                    worker_http,
                    pool,
                    name="chunk worker",
                    setting_hint="ORCHESTRATOR_WORKER_URLS",
                    retry=RetryPolicy(attempts=settings.worker_retry_attempts),
                    deadline_sec=settings.worker_deadline_sec,
                )
            )
            # SQLite: this process is the file's one writer (a second one refuses to start).
            held.enter_context(single_writer(settings.async_database_url))
            job_store = JobStore.connect(
                settings.async_database_url, idle_transaction_sec=settings.job_lease_sec / 2
            )
            await job_store.migrate()
            store = MediaStore(
                settings.upload_dir,
                settings.own_url,
                settings.max_upload_mb * 1_000_000,
                settings.upload_min_free_mb * 1_000_000,
                source=job_store if job_store.keeps_uploads else None,
            )
            store.sweep(keep=await job_store.unfinished_uploads())
            keys = load_keys(settings.api_keys, settings.api_keys_file)
            app.state.gate = Gate(keys, settings.max_jobs_per_key)
            app.state.settings = settings
            app.state.worker_pool = pool
            app.state.media_store = store
            media = MediaClients(public_media, policy, own_media, fleet.headers(secret))
            app.state.runner = runner = JobRunner(workers, media, settings)
            app.state.job_queue = queue = JobQueue(
                job_store, runner, store, webhook_http, settings, webhook_policy=policy
            )
            maintenance = asyncio.create_task(
                pool.maintain(worker_http, settings.worker_refresh_sec)
            )
            await queue.start()
            try:
                yield
            finally:
                await queue.stop()  # running jobs go back to the queue
                maintenance.cancel()
                await job_store.close()

    app = FastAPI(
        title="Whisperfleet",
        version="0.1.0",
        description="Scale-out transcription of long audio and video: by URL or upload, as "
        "JSON, subtitles, Server-Sent Events, or through OpenAI's audio API.",
        lifespan=lifespan,
    )
    fleet.install(app, secret, SECRET_SETTING, fleet.internal_only)
    install_error_handlers(app)
    app.add_middleware(GateMiddleware, settings=settings)  # Host, key, type, size: before the body
    # Ready when a chunk worker is, which is when a model server is.
    app.include_router(
        health_router(
            "orchestrator",
            lambda request: request.app.state.worker_pool.readiness(
                "chunk worker", "ORCHESTRATOR_WORKER_URLS"
            ),
        )
    )
    app.include_router(metrics_router)
    app.include_router(router)
    app.include_router(job_router)
    app.include_router(openai_router)
    app.include_router(page_router)
    return app
