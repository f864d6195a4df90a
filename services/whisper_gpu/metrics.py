"""Prometheus metrics of the model server, in a registry per app (no process globals).

`whisper_queue_depth` is the signal to autoscale on; batch size and queue wait show whether
batching works; requests by outcome show overload (rejected), deadlines (timeout) and
abandoned requests (cancelled); `no_speech` counts clips answered without the model.

The rest show what completeness costs (`engine.py`): rounds per batch, windows decoded by why
(`gap` and `retry` are the coverage check's), windows halved for their language, decodes
repeated at a higher temperature, words dropped because the model decoded past the audio, and
windows still open when the rounds ran out (their clips come back `incomplete`: words may be
missing).
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
        self.rounds = Counter(
            "whisper_rounds",
            "Rounds of windows decoded: one per batch, one more per round over what the words "
            "left uncovered",
            registry=self.registry,
        )
        self.windows = Counter(
            "whisper_windows",
            "Windows decoded, by kind (clip: a clip's speech; gap: speech the words left "
            "uncovered; retry: a window without words, again; language: a half of a window "
            "that may hold two languages)",
            ["kind"],
            registry=self.registry,
        )
        self.language_splits = Counter(
            "whisper_language_splits",
            "Windows halved before decoding because they may hold two languages",
            registry=self.registry,
        )
        self.language_rechecks = Counter(
            "whisper_language_rechecks",
            "Short-encoded windows whose detected language was unsure or not their job's, "
            "detected again on Whisper's 30 s encoding",
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "whisper_temperature_fallbacks",
            "Window decodes repeated at a higher temperature after failing the quality checks",
            registry=self.registry,
        )
        self.words_past_the_audio = Counter(
            "whisper_words_past_the_audio",
            "Words dropped because the model decoded past the audio it heard or twice: no time "
            "at a window's end, or a repeat squeezed into a few frames (most often a sentence "
            "said again)",
            registry=self.registry,
        )
        self.windows_given_up = Counter(
            "whisper_windows_given_up",
            "Windows still open after the last round: their speech has no words, their clip "
            "is flagged incomplete",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
