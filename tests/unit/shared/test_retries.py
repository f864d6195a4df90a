"""The one retry schedule for transfers: its waits, its stop, and progress starting it afresh."""

from __future__ import annotations

import pytest

from shared.retries import Retries, RetrySchedule

FAST = 0.001
"""A unit small enough that a test waits milliseconds, large enough to see in `idle_for`."""


class Dropped(Exception):
    pass


def test_the_waits_are_ffmpegs_reconnect_schedule_capped() -> None:
    assert RetrySchedule(5).delays == [0, 1, 3, 7]
    assert RetrySchedule(6, unit_sec=0.5).delays == [0, 0.5, 1.5, 3.5, 7.5]
    assert RetrySchedule(7, max_delay_sec=10).delays == [0, 1, 3, 7, 10, 10]
    assert RetrySchedule(1).delays == []
    with pytest.raises(ValueError, match="at least once"):
        RetrySchedule(0)


@pytest.mark.parametrize(
    ("max_delay_sec", "delays"),
    [(0, [0]), (1, [0, 1]), (4, [0, 1, 3]), (7, [0, 1, 3, 7]), (120, [0, 1, 3, 7, 15, 31, 63])],
)
def test_reconnecting_retries_while_the_wait_is_within_the_maximum(
    max_delay_sec: float, delays: list[float]
) -> None:
    assert RetrySchedule.reconnecting(max_delay_sec).delays == delays


def test_a_transfer_is_tried_attempts_times_then_its_last_failure_raised_as_it_was() -> None:
    tries, slept = 0, 0.0
    with pytest.raises(Dropped, match="try 4"):
        for attempt in Retries(RetrySchedule(4, unit_sec=FAST), Dropped):
            with attempt:
                tries += 1
                slept = attempt.retry_state.idle_for
                raise Dropped(f"try {tries}")
    assert tries == 4
    assert slept == pytest.approx(FAST * (0 + 1 + 3), abs=FAST / 2)  # the waits before try 4


def test_a_failure_it_is_not_told_to_retry_is_raised_at_once() -> None:
    tries = 0
    with pytest.raises(KeyError):
        for attempt in Retries(RetrySchedule(4, unit_sec=FAST), Dropped):
            with attempt:
                tries += 1
                raise KeyError("not a dropped transfer")
    assert tries == 1


def test_success_ends_the_tries() -> None:
    tries = 0
    for attempt in Retries(RetrySchedule(4, unit_sec=FAST), Dropped):
        with attempt:
            tries += 1
            if tries < 3:
                raise Dropped
    assert tries == 3


def test_progress_starts_the_schedule_afresh() -> None:
    """Ten tries, each getting somewhere before it fails: with 3 attempts in a row allowed, the
    transfer goes on, and each retry after progress is at once (the schedule's first wait)."""
    retries = Retries(RetrySchedule(3, unit_sec=FAST), Dropped)
    tries = 0
    for attempt in retries:
        with attempt:
            tries += 1
            assert attempt.retry_state.idle_for == 0  # never waited: always a first retry
            if tries < 10:
                retries.progressed()
                raise Dropped
    assert tries == 10


def test_after_progress_the_tries_in_a_row_count_again() -> None:
    retries = Retries(RetrySchedule(3, unit_sec=FAST), Dropped)
    tries = 0
    with pytest.raises(Dropped):
        for attempt in retries:
            with attempt:
                tries += 1
                if tries == 2:
                    retries.progressed()
                raise Dropped
    assert tries == 4  # try 2 got somewhere and failed: tries 2, 3, 4 in a row


async def test_the_same_under_asyncio() -> None:
    retries = Retries(RetrySchedule(3, unit_sec=FAST), Dropped)
    tries = 0
    with pytest.raises(Dropped):
        async for attempt in retries:
            with attempt:
                tries += 1
                if tries in (2, 4):
                    retries.progressed()
                raise Dropped
    assert tries == 6
