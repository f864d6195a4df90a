"""Retries of transfers: one schedule for every transfer that is tried again (tenacity).

    RetrySchedule(attempts, unit_sec, max_delay_sec)
        tries in all, and the waits between them: 0, 1, 3, 7, 15 ... units (FFmpeg's reconnect
        schedule: the first retry at once, since a cut connection is usually gone for good and
        a new one works), each at most `max_delay_sec`
    Retries(schedule, retry_on)
        one transfer's tries: `for attempt in retries: with attempt: ...` (or `async for`), the
        last failure re-raised as it was; `progressed()` when a try got somewhere starts the
        count afresh, so a long transfer over a link that drops now and then fails only when
        `attempts` tries in a row get nowhere; a failure with a `retry_after_sec` (the server's
        Retry-After) waits at least that long, up to `max_delay_sec`

Every transfer that is retried uses it, each with its own schedule and failures:

    a media host's range request   shared.media_host.transfer_retries(): cut connections, 4 tries
    the worker's range proxy       a run of pages, resumed from the first missing page
                                   (RetrySchedule.reconnecting: retries while the wait <= 4 s)
    webhooks                       connection failures, 429 and 5xx; ORCHESTRATOR_WEBHOOK_ATTEMPTS
    the CLI's event stream         a dropped stream, picked up after its last event

Calls between our own services retry in `shared.clients.ServiceClient` instead: full jitter over
replicas, a peer's Retry-After and one deadline for a whole stream are a different problem.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    AttemptManager,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrySchedule:
    attempts: int
    """Tries in all, the first included (counted afresh after a try that got somewhere)."""
    unit_sec: float = 1.0
    """The waits are 0, 1, 3, 7 ... of these."""
    max_delay_sec: float = 60.0
    """No wait is longer."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a transfer is tried at least once")

    def delay(self, retry: int) -> float:
        """The wait before retry `retry` (0: the first)."""
        return float(min(self.max_delay_sec, self.unit_sec * (2**retry - 1)))

    @property
    def delays(self) -> list[float]:
        """Every wait, in order, when every try fails."""
        return [self.delay(retry) for retry in range(self.attempts - 1)]

    @classmethod
    def reconnecting(cls, max_delay_sec: float) -> RetrySchedule:
        """Retries while the wait is at most `max_delay_sec` s, as FFmpeg's
        `-reconnect_delay_max`: 4 gives 0, 1 and 3 s; 0 gives one retry, at once."""
        retries = 1
        while 2**retries - 1 <= max_delay_sec:
            retries += 1
        return cls(attempts=retries + 1, max_delay_sec=max_delay_sec)


class Retries:
    """One transfer's tries under `schedule`, retrying the failures `retry_on` names."""

    def __init__(
        self,
        schedule: RetrySchedule,
        retry_on: type[BaseException] | tuple[type[BaseException], ...],
        *,
        what: str = "transfer",
    ) -> None:
        self.schedule = schedule
        self.retry_on = retry_on
        self.what = what
        """Named in the log line of each retry."""
        self._attempt = 1
        self._fresh_from = 1

    def progressed(self) -> None:
        """The current try got somewhere: if it fails, the schedule starts again from its
        first retry."""
        self._fresh_from = self._attempt

    def _in_a_row(self, state: RetryCallState) -> int:
        """Tries that failed since the last progress, the one just failed included."""
        return state.attempt_number - self._fresh_from + 1

    def _wait(self, state: RetryCallState) -> float:
        delay = self.schedule.delay(self._in_a_row(state) - 1)
        failure = state.outcome.exception() if state.outcome else None
        asked = getattr(failure, "retry_after_sec", None)
        if isinstance(asked, int | float) and asked > 0:
            delay = max(delay, min(float(asked), self.schedule.max_delay_sec))
        return delay

    def _before(self, state: RetryCallState) -> None:
        self._attempt = state.attempt_number

    def _log(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.info("%s failed (%r); trying again in %g s", self.what, failure, wait)

    def _options(self) -> dict[str, Any]:
        return {
            "retry": retry_if_exception_type(self.retry_on),
            "wait": self._wait,
            "stop": lambda state: self._in_a_row(state) >= self.schedule.attempts,
            "before": self._before,
            "before_sleep": self._log,
            "reraise": True,
        }

    def __iter__(self) -> Iterator[AttemptManager]:
        return iter(Retrying(**self._options()))

    def __aiter__(self) -> AsyncIterator[AttemptManager]:
        return AsyncRetrying(**self._options()).__aiter__()
