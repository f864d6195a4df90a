"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import anyio

from shared.errors import WhisperfleetError

T = TypeVar("T")


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a failed task group: a known error first, then anything."""
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    known = [e for e in leaves if isinstance(e, WhisperfleetError)]
    return (known or leaves)[0]


async def gather_bounded(awaitables: Iterable[Awaitable[T]], limit: int) -> list[T]:
    """Run awaitables concurrently, at most `limit` at once; results in input order.

    The first failure cancels the rest and is raised as itself (not as an exception group).
    """
    slots = asyncio.Semaphore(limit)

    async def bounded(awaitable: Awaitable[T]) -> T:
        async with slots:
            return await awaitable

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bounded(a)) for a in awaitables]
    except BaseExceptionGroup as errors:
        raise first_error(errors) from None
    return [task.result() for task in tasks]


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel tasks once and wait until they have finished cleaning up.

    `asyncio.wait`, not `gather`: if the caller is itself being cancelled (again and again, as
    anyio's cancel scopes do), a cancelled `gather` would forward every one of those
    cancellations into the tasks and cut their cleanup short, e.g. leave an HTTP connection
    open, so the peer never learns its client is gone. `wait` leaves the tasks alone.
    """
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


async def finish_shielded(
    close: Callable[[], Awaitable[object]], timeout_sec: float = 30.0
) -> None:
    """Run `close()` to its end even when the caller is being cancelled, for at most
    `timeout_sec`. A stream's cleanup runs in a `finally` of a task group that was cancelled
    (its reader left: sse-starlette cancels its scope), where anyio re-delivers the cancellation
    at every await: a cleanup that awaits (removing an upload kept in the database) would stop
    at its first step, leaving it behind."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(timeout_sec):
        await close()
