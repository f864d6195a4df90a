"""The model server's routes in-process (app factory + lifespan, random model): parameters,
the speech header, and clips without speech answered without the model."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.whisper_gpu.app import ModelHolder, create_app
from services.whisper_gpu.config import WhisperSettings
from services.whisper_gpu.engine import PreparedClip
from shared import fleet
from shared.audio import pcm16_to_wav
from shared.clients import ModelServerClient, ServiceClient
from shared.replicas import ReplicaPool
from shared.schemas import ClipTranscription, DecodeOptions
from tests.support.asgi import serve
from tests.support.metrics import metric
from tests.support.real_models import audio_16k

SECRET = "the-fleet-secret-for-these-tests"


@contextlib.asynccontextmanager
async def model_server(
    cache: Path, headers: dict[str, str] | None = None, model: str = "random-tiny"
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, and a client sending `headers` (default: the credential)."""
    settings = WhisperSettings(
        model=model, model_cache_dir=cache, num_workers=1, fleet_secret=SECRET
    )
    app = create_app(settings, on_load_failure=lambda: None)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        sent = fleet.headers(SECRET) if headers is None else headers
        async with httpx.AsyncClient(
            transport=transport, base_url="http://model", headers=sent
        ) as client:
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
            ("/v1/clips?languages=en,xx", {}, "languages.1"),
            ("/v1/clips?languages=en&languages=xx", {}, "languages.1"),
            ("/v1/clips?language=xx", {}, "language"),
            ("/v1/clips?langauge=en", {}, "langauge"),  # a typo is named, not ignored
            ("/v1/clips?temperature=2", {}, "temperature"),
            ("/v1/clips", {"X-Speech-Spans": "3-1"}, "X-Speech-Spans"),
            ("/v1/clips", {"X-Speech-Spans": "a-b"}, "X-Speech-Spans"),
            ("/v1/clips", {"X-Language-Hint": "xx"}, "X-Language-Hint"),
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
        assert response.json()["incomplete"] is False
        metrics = (await client.get("/metrics")).text  # the engine counts into the app's
        assert metric(metrics, "whisper_rounds_total") == 1
        assert metric(metrics, "whisper_windows_total", '{kind="clip"}') == 1
        assert metric(metrics, "whisper_windows_given_up_total") == 0


async def test_a_clip_over_the_body_limit_is_a_413_declared_or_streamed(
    model_cache_dir: Path,
) -> None:
    settings = WhisperSettings(
        model="random-tiny", model_cache_dir=model_cache_dir, fleet_secret=SECRET
    )
    limit = settings.max_body_bytes
    async with model_server(model_cache_dir) as client:
        declared = await client.post("/v1/clips", content=b"\0" * (limit + 1))
        assert declared.status_code == 413
        assert f"body is {limit + 1} bytes" in declared.json()["error"]["message"]

        async def undeclared() -> AsyncIterator[bytes]:  # chunked: no Content-Length
            for _ in range(limit // 65536 + 2):
                yield b"\0" * 65536

        streamed = await client.post("/v1/clips", content=undeclared())
        assert streamed.status_code == 413
        assert f"exceeds the limit of {limit} bytes" in streamed.json()["error"]["message"]


async def test_bad_languages_beside_a_good_language_is_named_languages(
    model_cache_dir: Path,
) -> None:
    speech = wav(audio_16k("speech_40s.wav")[: 16000 * 8])
    async with model_server(model_cache_dir) as client:
        response = await client.post("/v1/clips?language=en&languages=en,xx", content=speech)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["param"] == "languages.1"  # was "language"
        assert "'xx'" in response.json()["error"]["message"]


async def test_an_english_only_model_refuses_other_languages_and_translation(
    model_cache_dir: Path,
) -> None:
    """`tiny.en` asked for German transcribed English and labelled it German."""
    speech = wav(audio_16k("speech_40s.wav")[: 16000 * 8])
    async with model_server(model_cache_dir, model="tiny.en") as client:
        for query, param in [("language=de", "language"), ("languages=en,de", "languages"),
                             ("task=translate", "task")]:  # fmt: skip
            response = await client.post(f"/v1/clips?{query}", content=speech)
            assert response.status_code == 422, response.text
            assert response.json()["error"]["param"] == param
            assert "English-only" in response.json()["error"]["message"]
        english = await client.post("/v1/clips?language=en", content=speech)
    assert english.status_code == 200 and english.json()["segments"]


async def test_a_language_the_model_has_no_token_for_is_a_422_not_gibberish(
    model_cache_dir: Path,
) -> None:
    """`base` asked for Cantonese (`yue`, a large-v3 token) answered "D", "Ho", "Forget even
    sh" after 54 s for 15 s of German."""
    speech = wav(audio_16k("speech_40s.wav")[: 16000 * 8])
    async with model_server(model_cache_dir, model="base") as client:
        for query, param in [("language=yue", "language"), ("languages=de,yue", "languages")]:
            response = await client.post(f"/v1/clips?{query}", content=speech)
            assert response.status_code == 422, response.text
            assert response.json()["error"]["param"] == param
            assert "has no Cantonese (yue)" in response.json()["error"]["message"]


async def test_the_options_a_worker_sends_are_the_options_the_engine_gets(
    model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One serialisation: `DecodeOptions.query()` out, the same model parsing it back."""
    received: list[DecodeOptions] = []
    transcribe = ModelHolder.transcribe

    async def recording(
        holder: ModelHolder, clip: PreparedClip, options: DecodeOptions, position: float | None
    ) -> ClipTranscription:
        received.append(options)
        return await transcribe(holder, clip, options, position)

    monkeypatch.setattr(ModelHolder, "transcribe", recording)
    speech = wav(audio_16k("speech_40s.wav")[: 16000 * 8])
    sent = [
        DecodeOptions(),
        DecodeOptions(
            languages=["de", "en"],
            task="translate",
            word_timestamps=True,
            prompt="Zoë & Jürgen,\nnaïve? 100%",
            temperature=0.2,
        ),
    ]
    async with model_server(model_cache_dir) as client:
        pool = ReplicaPool(["http://model"])
        whisper = ModelServerClient(ServiceClient(client, pool, name="model", setting_hint="URLS"))
        for options in sent:
            result = await whisper.transcribe_clip(speech, options, 0.0, [(1.0, 2.5)])
            # The engine's answer for this clip (random weights may decode to no text at all:
            # near-tied logits break differently across CPU threads).
            assert (result.duration_sec, result.speech_sec) == (8.0, 1.5)
    assert received == sent


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


async def test_without_the_credential_no_clip_reaches_the_model(model_cache_dir: Path) -> None:
    speech = wav(audio_16k("speech_40s.wav")[: 16000 * 8])
    settings = WhisperSettings(
        model="random-tiny", model_cache_dir=model_cache_dir, num_workers=1, fleet_secret=SECRET
    )
    app = create_app(settings, on_load_failure=lambda: None)
    for headers in ({}, {"Authorization": "Bearer not-the-fleet-secret-at-all"}):
        async with serve(app, headers=headers) as client:
            for method, path in (("POST", "/v1/clips?language=en"), ("GET", "/metrics"),
                                 ("GET", "/openapi.json")):  # fmt: skip
                response = await client.request(method, path, content=speech)
                assert response.status_code == 401, (path, response.text)
                assert "WHISPER_FLEET_SECRET" in response.json()["error"]["message"]
            assert (await client.get("/healthz")).status_code == 200
            metrics = app.state.models.metrics.render().decode()
            assert metric(metrics, "whisper_requests_total", '{outcome="ok"}') == 0
            assert metric(metrics, "whisper_requests_total", '{outcome="no_speech"}') == 0
            assert metric(metrics, "whisper_batch_size_count") == 0
