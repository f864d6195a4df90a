"""The event watcher: one query for every followed job, waking only the readers whose job moved."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from services.orchestrator.jobs.event_watch import EventWatcher


class Seqs:
    """The last event id of each job, as the store would answer; every query is kept."""

    def __init__(self, seqs: dict[str, int]) -> None:
        self.seqs = seqs
        self.queries: list[list[str]] = []

    async def last_event_seqs(self, job_ids: Collection[str]) -> dict[str, int]:
        self.queries.append(sorted(job_ids))
        return {job_id: self.seqs[job_id] for job_id in job_ids if job_id in self.seqs}


@pytest.mark.parametrize(
    ("seen", "in_log", "woken"),
    [
        ((3,), 3, False),  # what the reader saw is the last event: nothing to wake it for
        ((3,), 4, True),  # one came since its read
        ((3, 5), 5, True),  # a later reader saw 5: the first one, still at 3, must wake
    ],
)
async def test_the_first_poll_wakes_readers_only_when_the_log_moved_past_the_first_ones_read(
    seen: tuple[int, ...], in_log: int, woken: bool
) -> None:
    watcher = EventWatcher(Seqs({"a": in_log}), lambda _: False)
    with watcher.watch("a") as watch:
        event = watch.woken
        for seq in seen:
            watch.saw(seq)
        await watcher.poll()
        assert event.is_set() == woken
        assert watch.last_seq == in_log


async def test_one_query_covers_every_followed_job_another_replica_runs() -> None:
    store = Seqs({"a": 1, "b": 2, "mine": 7})
    watcher = EventWatcher(store, lambda job_id: job_id == "mine")
    with watcher.watch("a"), watcher.watch("a"), watcher.watch("b"), watcher.watch("mine"):
        await watcher.poll()
    await watcher.poll()  # nobody follows anything now: no query
    assert store.queries == [["a", "b"]]


async def test_a_deleted_job_ends_its_readers() -> None:
    watcher = EventWatcher(Seqs({}), lambda _: False)
    with watcher.watch("gone") as watch:
        woken = watch.woken
        watch.saw(2)
        await watcher.poll()
        assert woken.is_set() and watch.gone
