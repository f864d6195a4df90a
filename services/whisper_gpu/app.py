"""Model server app factory: the lifespan loads the model in the background and owns the batcher."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.whisper_gpu.batcher import Batcher, BatchPolicy
from services.whisper_gpu.config import WhisperSettings
from services.whisper_gpu.engine import ClipEngine, PreparedClip, decode_clip
from services.whisper_gpu.loading import ModelUnavailableError, choose_placement, load_engine
from services.whisper_gpu.metrics import ModelMetrics
from shared import fleet
from shared.api import health_router, install_error_handlers
from shared.errors import NotReadyError
from shared.languages import check_languages
from shared.schemas import ClipTranscription, DecodeOptions
from shared.vad import Span

logger = logging.getLogger(__name__)

SECRET_SETTING = "WHISPER_FLEET_SECRET"


def _terminate_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class ModelHolder:
    """Loads the model off the event loop, warms it up, then serves clips through the batcher."""

    def __init__(self, settings: WhisperSettings, on_load_failure: Callable[[], None]) -> None:
        self.settings = settings
        self.metrics = ModelMetrics()
        self.engine: ClipEngine | None = None
        self.batcher: Batcher[PreparedClip] | None = None
        self.load_error: str | None = None
        self._on_load_failure = on_load_failure

    def not_ready_reason(self) -> str | None:
        if self.batcher is not None:
            return None
        if self.load_error is not None:
            return f"model failed to load: {self.load_error}"
        return f"loading model {self.settings.model!r}"

    async def load(self) -> None:
        try:
            placement = choose_placement(self.settings)
            engine = await asyncio.to_thread(load_engine, self.settings, placement, self.metrics)
        except ModelUnavailableError as exc:
            self.load_error = str(exc)
            logger.critical("%s", exc)
            self._on_load_failure()
            return
        await asyncio.to_thread(engine.warm_up)
        policy = BatchPolicy(
            max_batch_size=placement.max_batch_size,
            max_batch_wait_ms=self.settings.max_batch_wait_ms,
            max_queue_size=self.settings.max_queue_size,
            queue_timeout_sec=self.settings.queue_timeout_sec,
            slots=placement.replicas,
            position_speedup=self.settings.position_priority_speedup,
        )
        batcher = Batcher(engine.transcribe_batch, policy, self.metrics)
        await batcher.start()
        self.engine, self.batcher = engine, batcher

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()

    def prepare(
        self, body: bytes, speech: list[Span] | None = None, language_hint: str | None = None
    ) -> PreparedClip:
        """Decode, find the speech (unless the caller says where it is) and compute features
        (blocking: run in a thread)."""
        if self.engine is None:
            raise NotReadyError(self.not_ready_reason() or "not ready", retry_after_sec=5)
        clip = self.engine.prepare(decode_clip(body), speech)
        return dataclasses.replace(clip, language_hint=language_hint)

    async def transcribe(
        self, clip: PreparedClip, options: DecodeOptions, position_sec: float | None = None
    ) -> ClipTranscription:
        if self.batcher is None:
            raise NotReadyError(self.not_ready_reason() or "not ready", retry_after_sec=5)
        assert self.engine is not None
        check_languages(options, self.settings.model, self.engine.languages)
        if not clip.speech:  # nothing for the model: answer without queueing
            self.metrics.requests.labels(outcome="no_speech").inc()
            assert self.engine is not None
            return self.engine.transcribe_batch([clip], options)[0]
        result = await self.batcher.submit(clip, options, position_sec)
        if options.word_timestamps:
            return result
        segments = [s.model_copy(update={"words": None}) for s in result.segments]
        return result.model_copy(update={"segments": segments})


def create_app(
    settings: WhisperSettings | None = None,
    on_load_failure: Callable[[], None] = _terminate_process,
) -> FastAPI:
    from services.whisper_gpu.routes import router

    settings = settings or WhisperSettings()
    secret = fleet.load_secret(settings.fleet_secret, settings.fleet_secret_file, SECRET_SETTING)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder = ModelHolder(settings, on_load_failure)
        app.state.settings = settings
        app.state.models = holder
        loading = asyncio.create_task(holder.load())
        try:
            yield
        finally:
            loading.cancel()
            await holder.close()

    app = FastAPI(title="Whisperfleet model server", version="0.1.0", lifespan=lifespan)
    fleet.install(app, secret, SECRET_SETTING, fleet.all_but_probes)
    install_error_handlers(app)
    app.include_router(
        health_router("whisper_gpu", lambda r: r.app.state.models.not_ready_reason())
    )
    app.include_router(router)
    return app
