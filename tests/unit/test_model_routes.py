"""The model server's routes in-process (app factory + lifespan, random model): parameters,
the speech header, and clips without speech answered without the model."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np

from services.whisper_gpu.app import create_app
from services.whisper_gpu.config import WhisperSettings
from shared.audio import pcm16_to_wav
from tests.support.metrics import metric
from tests.support.real_models import audio_16k


@contextlib.asynccontextmanager
async def model_server(cache: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = WhisperSettings(model="random-tiny", model_cache_dir=cache, num_workers=1)
    app = create_app(settings, on_load_failure=lambda: None)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
            for _ in range(300):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            yield client


def wav(audio: np.ndarray) -> bytes:
    return pcm16_to_wav((audio * 32767).astype(np.int16))


async def test_parameters_and_the_speech_header_are_checked(model_cache_dir: Path) -> None:
    speech = wav(audio_16k("speech_40s.wav")[: 16000 * 8])
    async with model_server(model_cache_dir) as client:
        cases = [
            ("/v1/clips?languages=en,xx", {}, "languages"),
            ("/v1/clips?language=xx", {}, "language"),
            ("/v1/clips", {"X-Speech-Spans": "3-1"}, "X-Speech-Spans"),
            ("/v1/clips", {"X-Speech-Spans": "a-b"}, "X-Speech-Spans"),
        ]
        for path, headers, param in cases:
            response = await client.post(path, content=speech, headers=headers)
            assert response.status_code == 422, response.text
            assert response.json()["error"]["param"] == param

        response = await client.post(
            "/v1/clips?language=en", content=speech, headers={"X-Speech-Spans": "1.0-2.5"}
        )
        assert response.status_code == 200
        [segment] = response.json()["segments"]
        assert (segment["start_sec"], segment["end_sec"]) == (1.0, 2.5)
        assert segment["words"] is None  # not asked for


async def test_a_clip_without_speech_is_answered_without_the_model(model_cache_dir: Path) -> None:
    noise = np.random.default_rng(0).standard_normal(16000 * 20).astype(np.float32) * 0.01
    async with model_server(model_cache_dir) as client:
        response = await client.post("/v1/clips?language=en", content=wav(noise))
        assert response.status_code == 200
        body = response.json()
        assert body["segments"] == [] and body["speech_sec"] == 0
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "whisper_requests_total", '{outcome="no_speech"}') == 1
        assert metric(metrics, "whisper_batch_size_count") == 0
