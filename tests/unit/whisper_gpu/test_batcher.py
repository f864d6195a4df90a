"""The batcher without HTTP or a model: a fake batch function records what reached "the model"."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import numpy as np
import pytest

from services.whisper_gpu.batcher import Batcher, BatchFailedError, BatchPolicy
from services.whisper_gpu.metrics import ModelMetrics
from shared.errors import OverloadedError, UpstreamTimeoutError
from shared.schemas import ClipTranscription, DecodeOptions
from tests.support.waiting import until

POISON = -99.0
MakeBatcher = Callable[..., Awaitable[Batcher[np.ndarray]]]


class FakeModel:
    """Records each batch; can be held busy; fails any batch holding a poisoned clip."""

    def __init__(self) -> None:
        self.batches: list[list[float]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def __call__(
        self,
        clips: Sequence[np.ndarray],
        options: DecodeOptions,
        abandoned: Callable[[], bool] = lambda: False,
    ) -> list[ClipTranscription]:
        self.abandoned = abandoned
        self.started.set()
        self.release.wait(10)
        self.batches.append([float(c[0]) for c in clips])
        if any(c[0] == POISON for c in clips):
            raise RuntimeError("poisoned clip")
        return [
            ClipTranscription(
                segments=[], language=options.language or "en", language_probability=1.0,
                duration_sec=float(c[0]),
            )
            for c in clips
        ]  # fmt: skip

    def hold(self) -> None:
        self.release.clear()
        self.started.clear()


def clip(tag: float) -> np.ndarray:
    return np.full(160, tag, dtype=np.float32)


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


@pytest.fixture
async def make_batcher(model: FakeModel) -> AsyncIterator[MakeBatcher]:
    made: list[Batcher[np.ndarray]] = []

    async def make(**policy: float) -> Batcher[np.ndarray]:
        batcher = Batcher(model, BatchPolicy(**policy), ModelMetrics())  # type: ignore[arg-type]
        await batcher.start()
        made.append(batcher)
        return batcher

    yield make
    model.release.set()
    for batcher in made:
        await batcher.stop()


def outcome(batcher: Batcher[np.ndarray], name: str) -> float:
    value = batcher.metrics.registry.get_sample_value("whisper_requests_total", {"outcome": name})
    return value or 0.0


async def wait_started(model: FakeModel) -> None:
    assert await asyncio.to_thread(model.started.wait, 5)


async def occupy(batcher: Batcher[np.ndarray], model: FakeModel) -> asyncio.Task[ClipTranscription]:
    """Hold the model busy with clip 0, so the next submissions queue up behind it."""
    model.hold()
    running = asyncio.create_task(batcher.submit(clip(0), DecodeOptions()))
    await wait_started(model)
    return running


async def test_a_lone_request_on_an_idle_model_does_not_wait(
    make_batcher: MakeBatcher, model: FakeModel
) -> None:
    batcher = await make_batcher(max_batch_wait_ms=10_000)
    result = await asyncio.wait_for(batcher.submit(clip(1), DecodeOptions()), timeout=2)
    assert result.duration_sec == 1
    assert model.batches == [[1.0]]


async def test_requests_arriving_while_busy_form_one_batch(
    make_batcher: MakeBatcher, model: FakeModel
) -> None:
    batcher = await make_batcher(max_batch_size=8, max_batch_wait_ms=10_000)
    first = await occupy(batcher, model)
    rest = [asyncio.create_task(batcher.submit(clip(i), DecodeOptions())) for i in range(1, 9)]
    await asyncio.sleep(0.05)
    model.release.set()
    results = await asyncio.gather(first, *rest)
    assert [r.duration_sec for r in results] == list(range(9))
    assert model.batches == [[0.0], [1.0, 2, 3, 4, 5, 6, 7, 8]]  # full batch runs at once
    assert batcher.metrics.registry.get_sample_value("whisper_batch_size_sum") == 9


async def test_a_free_slot_waits_for_companions_up_to_the_limit(
    make_batcher: MakeBatcher, model: FakeModel
) -> None:
    batcher = await make_batcher(max_batch_size=8, max_batch_wait_ms=1000, slots=2)
    first = await occupy(batcher, model)
    waiting_since = time.monotonic()
    second = asyncio.create_task(batcher.submit(clip(1), DecodeOptions()))
    await asyncio.sleep(0.05)
    third = asyncio.create_task(batcher.submit(clip(2), DecodeOptions()))
    await asyncio.sleep(0.02)
    assert batcher.queue_depth == 2  # slot 2 is free but waits for companions
    await until(lambda: batcher.queue_depth == 0, "the wait limit")  # both left together
    assert time.monotonic() - waiting_since >= 0.95
    model.release.set()
    await asyncio.gather(first, second, third)
    assert sorted(model.batches) == [[0.0], [1.0, 2.0]]


async def test_options_that_cannot_share_a_call_are_not_mixed(
    make_batcher: MakeBatcher, model: FakeModel
) -> None:
    batcher = await make_batcher(max_batch_size=8, max_batch_wait_ms=20)
    first = await occupy(batcher, model)
    english = [
        asyncio.create_task(batcher.submit(clip(i), DecodeOptions(language="en"))) for i in (1, 2)
    ]
    german = [
        asyncio.create_task(batcher.submit(clip(i), DecodeOptions(language="de"))) for i in (3, 4)
    ]
    model.release.set()
    results = await asyncio.gather(first, *english, *german)
    assert [r.language for r in results] == ["en", "en", "en", "de", "de"]
    assert sorted(model.batches[1:]) == [[1.0, 2.0], [3.0, 4.0]]


async def test_full_queue_answers_overloaded_with_retry_after(
    make_batcher: MakeBatcher, model: FakeModel
) -> None:
    batcher = await make_batcher(max_queue_size=2, max_batch_size=8)
    running = await occupy(batcher, model)
    queued = [asyncio.create_task(batcher.submit(clip(i), DecodeOptions())) for i in (1, 2)]
    await asyncio.sleep(0.01)
    with pytest.raises(OverloadedError) as caught:
        await batcher.submit(clip(3), DecodeOptions())
    assert caught.value.headers()["Retry-After"].isdigit()
    assert outcome(batcher, "rejected") == 1
    model.release.set()
    await asyncio.gather(running, *queued)


async def test_a_cancelled_request_never_reaches_the_model(
    make_batcher: MakeBatcher, model: FakeModel
) -> None:
    batcher = await make_batcher(max_batch_size=8, max_batch_wait_ms=10_000)
    running = await occupy(batcher, model)
    abandoned = asyncio.create_task(batcher.submit(clip(7), DecodeOptions()))
    kept = asyncio.create_task(batcher.submit(clip(8), DecodeOptions()))
    await asyncio.sleep(0.01)
    abandoned.cancel()
    await asyncio.sleep(0.01)
    assert batcher.queue_depth == 1
    model.release.set()
    await asyncio.gather(running, kept)
    assert 7.0 not in [tag for batch in model.batches for tag in batch]
    assert outcome(batcher, "cancelled") == 1


async def test_a_running_batch_learns_when_its_callers_have_all_gone(
    make_batcher: MakeBatcher, model: FakeModel
) -> None:
    batcher = await make_batcher(max_batch_size=8)
    model.hold()
    first = asyncio.create_task(batcher.submit(clip(1), DecodeOptions()))
    await asyncio.to_thread(model.started.wait, 2)
    assert not model.abandoned()
    first.cancel()
    await asyncio.sleep(0.01)
    assert model.abandoned()  # the engine checks this between rounds
    model.release.set()


async def test_a_poisoned_clip_fails_alone_and_the_next_batch_succeeds(
    make_batcher: MakeBatcher, model: FakeModel
) -> None:
    batcher = await make_batcher(max_batch_size=8, max_batch_wait_ms=10_000)
    running = await occupy(batcher, model)
    batch = [
        asyncio.create_task(batcher.submit(clip(tag), DecodeOptions())) for tag in (1, POISON, 2)
    ]
    await asyncio.sleep(0.01)
    model.release.set()
    await running
    results = await asyncio.gather(*batch, return_exceptions=True)
    assert isinstance(results[1], BatchFailedError) and "poisoned" in results[1].message
    assert [r.duration_sec for r in (results[0], results[2])] == [1, 2]  # type: ignore[union-attr]
    after = await batcher.submit(clip(5), DecodeOptions())
    assert after.duration_sec == 5
    assert outcome(batcher, "error") == 1


async def test_a_request_queued_past_its_deadline_gets_504(
    make_batcher: MakeBatcher, model: FakeModel
) -> None:
    batcher = await make_batcher(queue_timeout_sec=0.1, max_batch_size=8, max_batch_wait_ms=10_000)
    running = await occupy(batcher, model)
    with pytest.raises(UpstreamTimeoutError, match="waited"):
        await asyncio.wait_for(batcher.submit(clip(1), DecodeOptions()), timeout=5)
    model.release.set()
    await running
    assert outcome(batcher, "timeout") == 1


async def test_earlier_positions_in_the_media_are_served_first(
    make_batcher: MakeBatcher, model: FakeModel
) -> None:
    batcher = await make_batcher(max_batch_size=2, position_speedup=10.0)
    running = await occupy(batcher, model)
    late = [asyncio.create_task(batcher.submit(clip(t), DecodeOptions(), 600.0)) for t in (1, 2)]
    head = [asyncio.create_task(batcher.submit(clip(t), DecodeOptions(), 0.0)) for t in (3, 4)]
    await asyncio.sleep(0.01)
    model.release.set()
    await asyncio.gather(running, *late, *head)
    assert model.batches == [[0.0], [3.0, 4.0], [1.0, 2.0]]


def test_position_delay_is_capped_so_late_clips_cannot_starve() -> None:
    policy = BatchPolicy(queue_timeout_sec=120, position_speedup=50)
    assert policy.urgency(100.0, None) == 100.0
    assert policy.urgency(100.0, 500.0) == 110.0
    assert policy.urgency(100.0, 36_000.0) == 160.0
    assert BatchPolicy(position_speedup=0).urgency(5.0, 900.0) == 5.0
