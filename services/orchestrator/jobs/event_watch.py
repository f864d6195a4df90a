"""Waking the readers of async jobs' events: one watcher per replica, not a poll per reader.

    reader ──watch(job)──> Watch (shared by the job's readers) ──wake──> every reader reads
    local run ─────────────────────────────────────────────────┘ on each event it keeps
    watcher task: every `interval_sec`, ONE query for the last event id of every watched job
                  that this replica does not run; a job whose id moved (or that was deleted)
                  wakes its readers

A reader takes the current `Watch.woken` event before it reads the log and waits on it only
when it found nothing new, so a wake between its read and its wait is never lost. A thousand
clients following jobs another replica runs cost one query per interval, not two thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Protocol

logger = logging.getLogger(__name__)


class EventSeqs(Protocol):
    async def last_event_seqs(self, job_ids: Collection[str]) -> dict[str, int]: ...


@dataclass
class Watch:
    """The readers of one job."""

    readers: int = 0
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    """Set at the next wake; replaced by a fresh one at once."""
    last_seq: int | None = None
    gone: bool = False
    """The job was deleted (retention): its readers stop."""

    def wake(self) -> None:
        woken, self.woken = self.woken, asyncio.Event()
        woken.set()

    def saw(self, seq: int) -> None:
        """A reader found `seq` to be the last event (-1: none yet). The watcher's first poll
        then wakes nobody unless the log moved past it (it used to wake every new reader once,
        each of them paying two queries for nothing)."""
        if self.last_seq is None:
            self.last_seq = seq


class EventWatcher:
    def __init__(
        self, store: EventSeqs, runs_here: Callable[[str], bool], interval_sec: float = 0.5
    ) -> None:
        self.store = store
        self.runs_here = runs_here
        """Jobs this replica runs wake their readers themselves: not polled."""
        self.interval_sec = interval_sec
        self._watches: dict[str, Watch] = {}

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[Watch]:
        """A reader of `job_id`, for as long as the block lasts."""
        watch = self._watches.setdefault(job_id, Watch())
        watch.readers += 1
        try:
            yield watch
        finally:
            watch.readers -= 1
            if not watch.readers:
                self._watches.pop(job_id, None)

    def wake(self, job_id: str) -> None:
        watch = self._watches.get(job_id)
        if watch is not None:
            watch.wake()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_sec)
            try:
                await self.poll()
            except Exception:
                logger.exception("polling the event log of followed jobs failed; retrying")

    async def poll(self) -> None:
        """One query for every watched job another replica runs (or nobody does yet)."""
        job_ids = [job_id for job_id in self._watches if not self.runs_here(job_id)]
        if not job_ids:
            return
        seqs = await self.store.last_event_seqs(job_ids)
        for job_id in job_ids:
            watch = self._watches.get(job_id)
            if watch is None:
                continue
            seq = seqs.get(job_id)
            if seq is None:
                watch.gone = True
                watch.wake()
            elif seq != watch.last_seq:
                watch.last_seq = seq
                watch.wake()
