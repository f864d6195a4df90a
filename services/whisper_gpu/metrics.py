"""Prometheus metrics of the model server, in a registry per app (no process globals).

`whisper_queue_depth` is the signal to autoscale on; batch size and queue wait show whether
batching works; requests by outcome show overload (rejected), deadlines (timeout) and
abandoned requests (cancelled); `no_speech` counts clips answered without the model.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class ModelMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "whisper_queue_depth", "Clips waiting to be batched", registry=self.registry
        )
        self.batch_size = Histogram(
            "whisper_batch_size",
            "Clips per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "whisper_queue_wait_seconds",
            "Time a clip waited before its batch started",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
            registry=self.registry,
        )
        self.inference = Histogram(
            "whisper_inference_seconds",
            "Time of one model call (a whole batch)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.requests = Counter(
            "whisper_requests",
            "Clip requests by outcome (ok, no_speech, error, rejected, timeout, cancelled)",
            ["outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
