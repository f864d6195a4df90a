"""The event watcher: one query for every followed job, waking only the readers whose job moved."""

from __future__ import annotations

from collections.abc import Collection

from services.orchestrator.jobs.event_watch import EventWatcher


class Seqs:
    """The last event id of each job, as the store would answer; every query is kept."""

    def __init__(self, seqs: dict[str, int]) -> None:
        self.seqs = seqs
        self.queries: list[list[str]] = []

    async def last_event_seqs(self, job_ids: Collection[str]) -> dict[str, int]:
        self.queries.append(sorted(job_ids))
        return {job_id: self.seqs[job_id] for job_id in job_ids if job_id in self.seqs}


async def test_a_reader_that_saw_the_last_event_is_not_woken_by_the_first_poll() -> None:
    store = Seqs({"a": 3})
    watcher = EventWatcher(store, lambda _: False)
    with watcher.watch("a") as watch:
        woken = watch.woken
        watch.saw(3)
        await watcher.poll()
        assert not woken.is_set()
        store.seqs["a"] = 4
        await watcher.poll()
        assert woken.is_set() and watch.last_seq == 4


async def test_a_reader_behind_the_log_is_woken_by_the_first_poll() -> None:
    """Seeded from a read the log has moved past since: the poll must still wake it."""
    store = Seqs({"a": 5})
    watcher = EventWatcher(store, lambda _: False)
    with watcher.watch("a") as watch:
        woken = watch.woken
        watch.saw(3)
        watch.saw(5)  # a later reader does not move what the watcher last saw
        await watcher.poll()
        assert woken.is_set()


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
