"""Prometheus metrics of a chunk worker, in a registry per app (no process globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.chunks = Counter(
            "chunk_worker_chunks",
            "Macro chunks by outcome (ok, error, cancelled)",
            ["outcome"],
            registry=self.registry,
        )
        self.active_chunks = Gauge(
            "chunk_worker_active_chunks", "Macro chunks in progress", registry=self.registry
        )
        self.clips = Counter(
            "chunk_worker_clips", "Micro chunks sent to the model server", registry=self.registry
        )
        self.clips_without_speech = Counter(
            "chunk_worker_clips_without_speech",
            "Micro chunks the VAD found no speech in (never sent to the model server)",
            registry=self.registry,
        )
        self.incomplete_clips = Counter(
            "chunk_worker_incomplete_clips",
            "Micro chunks the model server gave up on in part (windows still open after its "
            "last round: words may be missing)",
            registry=self.registry,
        )
        self.audio_seconds = Counter(
            "chunk_worker_audio_seconds", "Seconds of audio transcribed", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
